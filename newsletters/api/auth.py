"""Who is calling: the bearer key of every API request, and the newsletters it may reach.

Every view of the API's blueprint needs a working key (a before_request of the blueprint, so
a new endpoint cannot forget it); the OpenAPI document and its page live on another
blueprint and are open to all.
"""

from flask import g, request

from .. import apikeys, catalogue, db
from ..models import ApiKey, Newsletter
from .errors import ApiError

CHALLENGE = 'Bearer realm="newsletters"'


def authenticate() -> None:
    """Refuse (401) a request without a working key; else keep its key on ``g``."""
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if not header:
        raise _unauthorized("Send your API key as 'Authorization: Bearer <key>'.", None)
    if scheme.lower() != "bearer" or not presented.strip():
        raise _unauthorized("The Authorization header must be 'Bearer <key>'.", "invalid_request")
    session = db.session()
    api_key = apikeys.authenticate(session, presented.strip())
    if api_key is None:
        raise _unauthorized(
            "This API key is not valid: it is unknown, revoked, or its editor is disabled.",
            "invalid_token",
        )
    # Ends the transaction now (authenticate may have noted the key's use): a read must not
    # hold SQLite's write lock for as long as it lasts.
    session.commit()
    g.api_key = api_key
    g.api_key_id = api_key.id


def current_key() -> ApiKey:
    """Return the key of the current request (authenticated before the view ran)."""
    return g.api_key


def newsletter(slug: str, *, write: bool = False) -> Newsletter:
    """Return the newsletter ``slug`` (current or old) if the key may reach it: else 404/403.

    ``write``: the request changes something, which a read-only key may not do.
    """
    api_key = current_key()
    found = catalogue.lookup(db.session(), slug)
    if found is None:
        raise ApiError(404, "newsletter_not_found", f"There is no newsletter called {slug!r}.")
    if not apikeys.may_use(api_key, found):
        raise ApiError(
            403, "forbidden", "This API key's editor is not an editor of this newsletter."
        )
    if write and api_key.read_only:
        raise ApiError(403, "read_only_key", "This API key may only read; use a read-write key.")
    return found


def _unauthorized(message: str, error: str | None) -> ApiError:
    # RFC 6750: the challenge says what was wrong with the key, if one was sent.
    challenge = CHALLENGE + (f', error="{error}"' if error else "")
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})
