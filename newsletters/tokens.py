"""Issue, derive and look up the secrets behind confirmation and unsubscribe links.

A link's secret is ``HMAC(key, purpose:salt)``; only its SHA-256 digest is stored. Each token
records which secret key derived it (a fingerprint, never the key), so that after a rotation
(SECRET_KEY new, the old one in SECRET_KEY_FALLBACKS) every link already mailed, queued or
exported is derived again with the key it was made with, and keeps working.
"""

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from .db import utcnow
from .models import Subscriber, Token, TokenPurpose

# Anything longer than this cannot be one of ours; refuse it before hashing.
MAX_TOKEN_LENGTH = 64

# (purpose, salt, key_id, digest) -> the link secret, or None when no known key made it.
Deriver = Callable[[str, str, str | None, str], str | None]


def key_id(key: str) -> str:
    """Return the fingerprint that names ``key`` on the tokens it derives (not reversible)."""
    return hashlib.sha256(f"newsletters token key:{key}".encode()).hexdigest()[:16]


def keys() -> list[str]:
    """Return the current secret key, then the earlier ones still honoured."""
    return [current_app.config["SECRET_KEY"], *current_app.config["SECRET_KEY_FALLBACKS"]]


def mac(key: bytes, purpose: TokenPurpose | str, salt: str) -> str:
    """Return the link secret that ``key`` derives for a token's purpose and salt."""
    mac = hmac.digest(key, f"{purpose}:{salt}".encode(), "sha256")
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def deriver() -> Deriver:
    """Return a function that derives link secrets with the key each token was made with.

    Built once per export or mail batch: the keys are looked up here, not per row. A token
    from before keys were recorded (no ``key_id``) is derived with the current key, or,
    while fallbacks are set, with the first key whose secret matches its stored digest.
    """
    known = [(key_id(key), key.encode()) for key in keys()]
    by_id = dict(known)
    current = known[0][1]

    def derive(purpose: str, salt: str, token_key_id: str | None, digest: str) -> str | None:
        if token_key_id is not None:
            key = by_id.get(token_key_id)
            return None if key is None else mac(key, purpose, salt)
        if len(known) == 1:
            return mac(current, purpose, salt)
        for _, key in known:
            secret = mac(key, purpose, salt)
            if digest_of(secret) == digest:
                return secret
        return None

    return derive


def secret_for(token: Token) -> str | None:
    """Derive the link secret of ``token`` (None if the key that made it is gone)."""
    return deriver()(token.purpose, token.salt, token.key_id, token.digest)


def digest_of(secret: str) -> str:
    """Return the stored form of a link secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def issue(
    session: Session,
    purpose: TokenPurpose,
    subscriber: Subscriber,
    expires_at: datetime | None = None,
) -> Token:
    """Add a new token for ``subscriber`` and return it; its secret is ``secret_for(token)``."""
    key = current_app.config["SECRET_KEY"]
    salt = secrets.token_hex(16)
    token = Token(
        purpose=purpose,
        subscriber=subscriber,
        salt=salt,
        key_id=key_id(key),
        digest=digest_of(mac(key.encode(), purpose, salt)),
        expires_at=expires_at,
    )
    session.add(token)
    return token


def confirm_expiry() -> datetime:
    """Return when a confirmation token issued now stops working."""
    return utcnow() + timedelta(hours=current_app.config["CONFIRM_TTL_HOURS"])


def find(session: Session, purpose: TokenPurpose, secret: str) -> Token | None:
    """Return the token whose secret is ``secret`` and whose purpose matches, if any."""
    if not secret or len(secret) > MAX_TOKEN_LENGTH:
        return None
    token = session.scalar(sa.select(Token).where(Token.digest == digest_of(secret)))
    if token is None or token.purpose != purpose:
        return None
    return token
