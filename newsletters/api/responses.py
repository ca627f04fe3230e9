"""The error answers each operation documents, in the API's one error shape."""

from . import bp
from .errors import ErrorSchema

DESCRIPTIONS = {
    400: "A malformed request: broken JSON, a bad parameter or cursor (`bad_cursor`).",
    401: "No working API key: missing, unknown, revoked, or its editor disabled.",
    403: "A newsletter outside the key's reach, or a read-only key writing (`read_only_key`).",
    404: "No such newsletter or subscription.",
    409: "An Idempotency-Key already used with another request (`idempotency_conflict`), or "
    "a signup of an address erased at its owner's request (`erased`).",
    415: "A body that is not JSON.",
    422: "Fields refused; `fields` says why, field by field.",
    429: "Too many requests with this key: wait as Retry-After says.",
}
HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer challenge"}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}},
}


def documented(*statuses: int):
    """Document the error answers ``statuses`` (and 401, 429, which every operation has)."""

    def decorate(view):
        for status in sorted({401, 429, *statuses}, reverse=True):
            view = bp.alt_response(
                status,
                schema=ErrorSchema,
                description=DESCRIPTIONS[status],
                headers=HEADERS.get(status),
            )(view)
        return view

    return decorate
