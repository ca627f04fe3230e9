"""Error answers: a page for browsers, JSON for clients that asked for it; never a bare 500.

Both speak the request's language: our own messages are translated where they are made, and
werkzeug's standard names and descriptions (marked below) when they are answered.
"""

import logging

from flask import Flask, current_app, jsonify, render_template, request
from flask_babel import gettext, ngettext
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


def _(text: str) -> str:
    """Mark ``text`` for the catalogue; ``translated`` translates it when it is answered."""
    return text


# werkzeug's names and descriptions of the errors a reader may meet, as werkzeug writes them
# in English: marked so that the catalogue holds them.
WERKZEUG_TEXTS = (
    _("Bad Request"),
    _("The browser (or proxy) sent a request that this server could not understand."),
    _("Forbidden"),
    _(
        "You don't have the permission to access the requested resource. It is either "
        "read-protected or not readable by the server."
    ),
    _("Not Found"),
    _(
        "The requested URL was not found on the server. If you entered the URL manually please "
        "check your spelling and try again."
    ),
    _("Method Not Allowed"),
    _("The method is not allowed for the requested URL."),
    _("Gone"),
    _(
        "The requested URL is no longer available on this server and there is no forwarding "
        "address. If you followed a link from a foreign page, please contact the author of "
        "this page."
    ),
    _("Request Entity Too Large"),
    _("Too Many Requests"),
    _("Internal Server Error"),
    _("Service Unavailable"),
)


def init_app(app: Flask) -> None:
    """Register the error handlers."""
    app.register_error_handler(CSRFError, csrf_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(RequestEntityTooLarge, too_large)
    app.register_error_handler(OperationalError, database_unavailable)
    app.register_error_handler(DataError, unstorable_data)
    app.register_error_handler(Exception, unexpected_error)


def translated(text: str | None) -> str | None:
    """Return ``text`` in the request's language if the catalogue holds it, else as it is."""
    return gettext(text) if text else text


def _answer(exc: HTTPException):
    description = translated(exc.description)
    if request.path.startswith("/api/") or wants_json():
        # ``error`` stays werkzeug's English name: clients read it as a code.
        response = jsonify(error=exc.name, message=description)
    else:
        response = render_template(
            "errors/error.html", error=exc, name=translated(exc.name), description=description
        )
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
    kb = size // 1024 if size else None
    if size and parts:
        message = ngettext(
            "The request is too large: send at most %(kb)s KB and %(num)d field. Nothing was "
            "saved; send only the form's fields.",
            "The request is too large: send at most %(kb)s KB and %(num)d fields. Nothing was "
            "saved; send only the form's fields.",
            parts,
            kb=kb,
        )
    elif size:
        message = gettext(
            "The request is too large: send at most %(kb)s KB. Nothing was saved; send only "
            "the form's fields.",
            kb=kb,
        )
    elif parts:
        message = ngettext(
            "The request is too large: send at most %(num)d field. Nothing was saved; send "
            "only the form's fields.",
            "The request is too large: send at most %(num)d fields. Nothing was saved; send "
            "only the form's fields.",
            parts,
        )
    else:
        message = gettext(
            "The request is too large. Nothing was saved; send only the form's fields."
        )
    return _answer(RequestEntityTooLarge(message))


def csrf_error(exc: CSRFError):
    return _answer(
        BadRequest(
            gettext(
                "This form is missing its security token or has expired (CSRF: %(reason)s). "
                "Reload the page and submit it again.",
                reason=exc.description.rstrip("."),
            )
        )
    )


def database_unavailable(exc: OperationalError):
    log.error("database unavailable: %s", exc)
    _rollback()
    return _answer(
        ServiceUnavailable(
            gettext("The service is briefly unavailable. Nothing was saved; try again.")
        )
    )


def unstorable_data(exc: DataError):
    # PostgreSQL refuses some text that got past validation (a NUL character, above all):
    # that is the request's fault, not ours.
    log.warning("refused data the database cannot store: %s", exc.orig)
    _rollback()
    return _answer(
        BadRequest(
            gettext(
                "The request holds text that cannot be stored (such as a NUL character). "
                "Nothing was saved; correct it and try again."
            )
        )
    )


def unexpected_error(exc: Exception):
    log.exception("unexpected error")
    _rollback()
    return _answer(
        InternalServerError(gettext("Something went wrong on our side. Nothing was saved."))
    )


def _rollback():
    from . import db

    try:
        db.session().rollback()
    except Exception:  # noqa: BLE001 - the original error is the one worth reporting
        log.exception("rollback failed")
