"""Idempotency-Key: a retried request gets the first one's answer and does nothing again.

The answer is stored in the request's own transaction, before the work it answers for, so
the two commit together or not at all. Of two requests with one key running at once, the
second's INSERT waits for the first's commit (PostgreSQL's unique index; SQLite lets one
writer in at a time), then finds its answer.
"""

import hashlib
import re
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app, request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import utcnow
from ..models import ApiKey, IdempotentRequest
from .errors import ApiError

HEADER = "Idempotency-Key"
# Printable ASCII without spaces, as the column holds it: a UUID is the usual choice.
KEY = re.compile(r"[\x21-\x7e]{1,255}")
REPLAYED = {"Idempotent-Replayed": "true"}
# As the OpenAPI document describes the header.
PARAMETER = {
    "in": "header",
    "name": HEADER,
    "required": False,
    "description": "Any unique value (a UUID): a retry with it gets the first answer again.",
    "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
}

Answer = tuple[dict, int, dict]


def key() -> str | None:
    """Return the request's Idempotency-Key, None without one; refuse (400) a malformed one."""
    value = request.headers.get(HEADER)
    if value is None:
        return None
    if not KEY.fullmatch(value):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"The {HEADER} header must be 1 to 255 printable ASCII characters without spaces "
            "(a UUID, for example).",
        )
    return value


def replay(session: Session, api_key: ApiKey, idempotency_key: str) -> Answer | None:
    """Return the stored answer of an earlier request with this key; None if there was none.

    The same key with another request (method, path or body) is refused (409): its answer
    would not be this request's.
    """
    row = session.scalar(
        sa.select(IdempotentRequest).where(
            IdempotentRequest.api_key_id == api_key.id, IdempotentRequest.key == idempotency_key
        )
    )
    if row is None:
        return None
    hours = current_app.config["API_IDEMPOTENCY_HOURS"]
    if row.created_at <= utcnow() - timedelta(hours=hours):
        session.delete(row)  # forgotten: this key may start afresh
        session.flush()
        return None
    if row.request_digest != request_digest():
        raise ApiError(
            409,
            "idempotency_conflict",
            f"This {HEADER} was used with another request in the last {hours} hours; "
            "use a new key for a new request.",
        )
    return row.body, row.status_code, REPLAYED


def remember(
    session: Session, api_key: ApiKey, idempotency_key: str, body: dict, status: int
) -> Answer | None:
    """Store the answer this request is about to give; None, or the answer another request
    with the same key committed meanwhile (then this one must do nothing)."""
    try:
        with session.begin_nested():
            session.add(
                IdempotentRequest(
                    api_key_id=api_key.id,
                    key=idempotency_key,
                    request_digest=request_digest(),
                    status_code=status,
                    body=body,
                )
            )
    except IntegrityError:
        stored = replay(session, api_key, idempotency_key)
        if stored is None:
            raise
        return stored
    return None


def request_digest() -> str:
    """Return the SHA-256 of the request's method, path and body."""
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.path.encode(), request.get_data(cache=True)):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()
