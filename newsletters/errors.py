"""Error answers: a page for browsers, JSON for clients that asked for it; never a bare 500."""

import logging

from flask import Flask, jsonify, render_template, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

from .negotiation import wants_json

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Register the error handlers."""
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(OperationalError, database_unavailable)
    app.register_error_handler(Exception, unexpected_error)


def _answer(exc: HTTPException):
    if request.path.startswith("/api/") or wants_json():
        response = jsonify(error=exc.name, message=exc.description)
    else:
        response = render_template("errors/error.html", error=exc)
    return response, exc.code


def http_error(exc: HTTPException):
    return _answer(exc)


def database_unavailable(exc: OperationalError):
    log.error("database unavailable: %s", exc)
    _rollback()
    return _answer(
        ServiceUnavailable("The service is briefly unavailable. Nothing was saved; try again.")
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
