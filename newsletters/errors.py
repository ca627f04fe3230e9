"""Error answers: a page for browsers, JSON for clients that asked for it; never a bare 500."""

import logging

from flask import Flask, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DataError, OperationalError
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    InternalServerError,
    RequestEntityTooLarge,
    ServiceUnavailable,
)

from .negotiation import wants_json

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Register the error handlers."""
    app.register_error_handler(CSRFError, csrf_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(RequestEntityTooLarge, too_large)
    app.register_error_handler(OperationalError, database_unavailable)
    app.register_error_handler(DataError, unstorable_data)
    app.register_error_handler(Exception, unexpected_error)


def _answer(exc: HTTPException):
    if request.path.startswith("/api/") or wants_json():
        response = jsonify(error=exc.name, message=exc.description)
    else:
        response = render_template("errors/error.html", error=exc)
    # Keep what the exception adds, such as a 405's Allow.
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    return response, exc.code, headers


def http_error(exc: HTTPException):
    if request.path.startswith("/api/v1/"):
        # Routing errors (an unknown path, a wrong method) reach no blueprint's handlers:
        # give them the API's own shape and code, and its no-store, here.
        from .api import errors as api_errors

        response, status, headers = api_errors.http_error(exc)
        return response, status, {**headers, "Cache-Control": "no-store"}
    return _answer(exc)


def too_large(exc: RequestEntityTooLarge):
    size = current_app.config["MAX_CONTENT_LENGTH"]
    parts = current_app.config.get("MAX_FORM_PARTS")
    limits = [f"{size // 1024} KB" if size else None, f"{parts} fields" if parts else None]
    shown = " and ".join(limit for limit in limits if limit)
    at_most = f": send at most {shown}" if shown else ""
    return _answer(
        RequestEntityTooLarge(
            f"The request is too large{at_most}. Nothing was saved; send only the form's fields."
        )
    )


def csrf_error(exc: CSRFError):
    return _answer(
        BadRequest(
            "This form is missing its security token or has expired (CSRF: "
            f"{exc.description.rstrip('.')}). Reload the page and submit it again."
        )
    )


def database_unavailable(exc: OperationalError):
    log.error("database unavailable: %s", exc)
    _rollback()
    return _answer(
        ServiceUnavailable("The service is briefly unavailable. Nothing was saved; try again.")
    )


def unstorable_data(exc: DataError):
    # PostgreSQL refuses some text that got past validation (a NUL character, above all):
    # that is the request's fault, not ours.
    log.warning("refused data the database cannot store: %s", exc.orig)
    _rollback()
    return _answer(
        BadRequest(
            "The request holds text that cannot be stored (such as a NUL character). "
            "Nothing was saved; correct it and try again."
        )
    )


def unexpected_error(exc: Exception):
    log.exception("unexpected error")
    _rollback()
    return _answer(InternalServerError("Something went wrong on our side. Nothing was saved."))


def _rollback():
    from . import db

    try:
        db.session().rollback()
    except Exception:  # noqa: BLE001 - the original error is the one worth reporting
        log.exception("rollback failed")
