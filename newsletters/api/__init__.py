"""The JSON API under /api/v1, and its OpenAPI document.

flask-smorest (marshmallow schemas, apispec) generates the OpenAPI 3.1 document from the
views' own decorators. It works on a plain Flask app with a Blueprint; APIFlask, the other
choice, needs its own app class in place of create_app's Flask. Its Api is made per app,
like every extension here, and without its app-wide error handler: the API's errors are its
blueprint's (errors.py), and the rest of the app keeps its pages.
"""

from flask import Flask
from flask_smorest import Api
from flask_smorest import Blueprint as ApiBlueprint

from .. import headers
from . import auth, errors

OPENAPI_VERSION = "3.1.0"
VERSION = "1"
DESCRIPTION = """\
Sign people up from other servers (with the form's checks and double opt-in), page through
subscriptions, look one up, unsubscribe, stream the export, and follow every change.

Authenticate with `Authorization: Bearer <key>` (`newsletters apikey create EDITOR_EMAIL`, or
the editors' area). A key reaches its editor's newsletters (an admin's, all of them); a
read-only key reads only. Each key has a request budget (API_RATE_LIMIT): past it, 429 with
Retry-After.

Errors are `{"error": "<stable code>", "message": "…", "fields": {…}}`; nothing is stored
when the answer is an error.
"""

bp = ApiBlueprint(
    "api", __name__, url_prefix="/api/v1", description="Newsletters and their subscriptions."
)
bp.before_request(auth.authenticate)
errors.register(bp)
# Lists of people: never kept by a cache on the way.
headers.declare(bp, headers.Policy(cache_control="no-store"))


class _Api(Api):
    """flask-smorest's Api, answering errors in the API's own shape, on its blueprint only."""

    ERROR_SCHEMA = errors.ErrorSchema

    def _register_error_handlers(self):
        pass  # its handler would be the whole app's, HTML pages included


def init_app(app: Flask) -> None:
    """Register the API's blueprint (exempt from CSRF: it authenticates by bearer key)."""
    from .. import csrf
    from . import docs, newsletters, subscriptions  # noqa: F401 - routes

    api = _Api(
        app,
        spec_kwargs={
            "title": "Newsletters API",
            "version": VERSION,
            "openapi_version": OPENAPI_VERSION,
            "info": {"description": DESCRIPTION},
            "security": [{"bearer": []}],
        },
    )
    api.spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "description": "An API key."}
    )
    api.register_blueprint(bp)
    csrf.exempt(bp)
    app.register_blueprint(docs.bp)
    app.extensions["newsletters.api"] = api
