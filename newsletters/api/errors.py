"""The API's errors: one JSON shape, a stable code per kind, registered on its blueprint only.

``{"error": "<code>", "message": "<for a person>", "fields": {"<field>": "<why>"}}``; the
rest of the app keeps its pages and its own JSON (newsletters/errors.py). A failure rolls
the request's transaction back, so nothing is stored on an error.
"""

import logging

import marshmallow as ma
from flask import jsonify
from sqlalchemy.exc import DataError, OperationalError
from werkzeug.exceptions import HTTPException

from .. import db

log = logging.getLogger(__name__)

# The stable code of each HTTP status the API answers with, unless the error names its own.
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_fields",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ErrorSchema(ma.Schema):
    """Document the body of every error answer (see the module's doc)."""

    error = ma.fields.String(
        required=True, metadata={"description": "A stable code: test this, not the message."}
    )
    message = ma.fields.String(required=True, metadata={"description": "For a person."})
    # Not "fields" as the attribute: a marshmallow Schema has its own.
    field_errors = ma.fields.Dict(
        data_key="fields",
        keys=ma.fields.String(),
        values=ma.fields.String(),
        metadata={"description": "Why each refused field was refused, by field name."},
    )
    suggestion = ma.fields.String(
        metadata={
            "description": "With `invalid_fields` for a likely typo (name@gmial.com): the "
            "address probably meant. Send the signup again with it, or with "
            "`accept_as_typed: true` to keep the address as typed."
        }
    )


class ApiError(Exception):
    """An answer other than success: HTTP ``status``, stable ``code``, a person's message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        suggestion: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = headers or {}
        self.suggestion = suggestion


def answer(error: ApiError):
    """Return the JSON answer of ``error``, after rolling back whatever the request did."""
    _rollback()
    body = {"error": error.code, "message": error.message}
    if error.fields:
        body["fields"] = error.fields
    if error.suggestion:
        body["suggestion"] = error.suggestion
    return jsonify(body), error.status, error.headers


def api_error(error: ApiError):
    return answer(error)


def http_error(exc: HTTPException):
    """Answer werkzeug's and webargs' exceptions (404, 405, 413, 429, 422 …) in the API's shape."""
    data = getattr(exc, "data", None) or {}
    status = exc.code or 500
    if "messages" in data:
        # webargs refused a part of the request: {"query": {"limit": ["Not a valid…"]}}.
        fields = _flatten(data["messages"])
        where = "the query" if "query" in data["messages"] else "the body"
        first = next(iter(fields.items()), ("", "invalid"))
        if status == 422 and "query" in data["messages"]:
            status = 400
        code = "invalid_parameter" if status == 400 else CODES.get(status, "bad_request")
        message = f"A field of {where} was refused: {first[0]}: {first[1]}"
        return answer(ApiError(status, code, message, fields))
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    code = CODES.get(status, "bad_request" if status < 500 else "internal_error")
    return answer(ApiError(status, code, exc.description or exc.name, headers=headers))


def database_unavailable(exc: OperationalError):
    log.error("database unavailable: %s", exc)
    return answer(
        ApiError(503, "unavailable", "The service is briefly unavailable. Nothing was saved.")
    )


def unstorable_data(exc: DataError):
    # PostgreSQL refuses text that got past validation (a NUL character, above all).
    log.warning("refused data the database cannot store: %s", exc.orig)
    return answer(
        ApiError(
            422,
            "invalid_fields",
            "The request holds text that cannot be stored (such as a NUL character). "
            "Nothing was saved.",
        )
    )


def unexpected_error(exc: Exception):
    log.exception("unexpected error in the API")
    return answer(
        ApiError(500, "internal_error", "Something went wrong on our side. Nothing was saved.")
    )


def register(bp) -> None:
    """Register the handlers on the API's blueprint (and so for its views only)."""
    bp.register_error_handler(ApiError, api_error)
    bp.register_error_handler(HTTPException, http_error)
    bp.register_error_handler(OperationalError, database_unavailable)
    bp.register_error_handler(DataError, unstorable_data)
    bp.register_error_handler(Exception, unexpected_error)


def _flatten(messages, prefix: str = "") -> dict[str, str]:
    """Return webargs' nested messages as {"consent.at": "Not a valid datetime."}."""
    flat = {}
    for key, value in messages.items():
        if key in ("json", "query", "headers", "path") and not prefix:
            flat |= _flatten(value) if isinstance(value, dict) else {key: _first(value)}
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flatten(value, f"{name}.")
        else:
            flat[name] = _first(value)
    return flat


def _first(value) -> str:
    return str(value[0]) if isinstance(value, list) and value else str(value)


def _rollback() -> None:
    try:
        db.session().rollback()
    except Exception:  # noqa: BLE001 - the original error is the one worth reporting
        log.exception("rollback failed")
