"""Editors' accounts: create, authenticate, change passwords. Shared by the CLI and admin."""

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from .models import Editor, Newsletter

MIN_PASSWORD_LENGTH = 10
# Checked when the address is unknown, so that a wrong address costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not a real password")


class AccountError(ValueError):
    """An account change that cannot be made; the message says why."""


def create(
    session: Session,
    email: str,
    password: str,
    *,
    is_admin: bool = False,
    newsletters: list[Newsletter] = (),
) -> Editor:
    """Add an editor with a hashed password (werkzeug's scrypt)."""
    try:
        address = validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise AccountError(f"{email!r} is not a valid email address: {exc}") from None
    if session.scalar(sa.select(Editor.id).where(Editor.email == address)):
        raise AccountError(f"an editor {address} exists already")
    _check_password(password)
    editor = Editor(
        email=address,
        password_hash=generate_password_hash(password),
        is_admin=is_admin,
        newsletters=list(newsletters),
    )
    session.add(editor)
    session.flush()
    return editor


def authenticate(session: Session, email: str, password: str) -> Editor | None:
    """Return the editor with this address and password, or None."""
    editor = session.scalar(sa.select(Editor).where(Editor.email == (email or "").strip().lower()))
    if editor is None:
        check_password_hash(_DUMMY_HASH, password or "")
        return None
    return editor if check_password_hash(editor.password_hash, password or "") else None


def change_password(session: Session, editor: Editor, password: str) -> None:
    """Set a new password and end every session of the editor begun before."""
    _check_password(password)
    editor.password_hash = generate_password_hash(password)
    editor.session_version += 1
    session.flush()


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
