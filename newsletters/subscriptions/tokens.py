"""Issue, derive and look up the secrets behind confirmation and unsubscribe links."""

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from ..db import utcnow
from ..models import Subscriber, Token, TokenPurpose

# Anything longer than this cannot be one of ours; refuse it before hashing.
MAX_TOKEN_LENGTH = 64


def secret_for(token: Token) -> str:
    """Derive the link secret of ``token``: 256 bits of HMAC, URL-safe."""
    return derive(token.purpose, token.salt)


def derive(purpose: TokenPurpose | str, salt: str) -> str:
    """Derive a link secret from a token's purpose and salt with the app's secret key."""
    key = current_app.config["SECRET_KEY"].encode()
    mac = hmac.new(key, f"{purpose}:{salt}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


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
    token = Token(
        purpose=purpose,
        subscriber=subscriber,
        salt=secrets.token_hex(16),
        expires_at=expires_at,
    )
    token.digest = digest_of(secret_for(token))
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
