"""Editors' accounts: create, authenticate, change, disable and remove. Shared by the CLI and admin.

Each function is one use case; it flushes and never commits. Two rules hold for every change:
the last active admin stays an active admin (someone must be able to manage editors), and an
admin acting in the editors' area (``by``) cannot disable, remove or demote themselves.
"""

import functools
import logging

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from .db import utcnow
from .models import Editor, Newsletter

log = logging.getLogger(__name__)
MIN_PASSWORD_LENGTH = 10
# Checked when the address is unknown, so that a wrong address costs as long as a wrong password.


@functools.cache
def _dummy_hash() -> str:
    # Made on the first login, not at import: scrypt costs every command 0.1 s and 32 MiB.
    return generate_password_hash("not a real password")


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
        raise AccountError(
            _("%(email)s is not a valid email address: %(reason)s", email=repr(email), reason=exc)
        ) from None
    if session.scalar(sa.select(Editor.id).where(Editor.email == address)):
        raise AccountError(_("an editor %(email)s exists already", email=address))
    _check_password(password)
    editor = Editor(
        email=address,
        password_hash=generate_password_hash(password),
        is_admin=is_admin,
        newsletters=_distinct(newsletters),
    )
    session.add(editor)
    session.flush()
    return editor


def find(session: Session, email: str) -> Editor:
    """Return the editor with the address ``email``, or raise ``AccountError``."""
    editor = session.scalar(sa.select(Editor).where(Editor.email == _address(email)))
    if editor is None:
        raise AccountError(
            _(
                "there is no editor %(email)s (see 'newsletters editor list')",
                email=repr(email.strip()),
            )
        )
    return editor


def listing(session: Session) -> list[Editor]:
    """Return every editor, by address."""
    return list(session.scalars(sa.select(Editor).order_by(Editor.email)))


def authenticate(session: Session, email: str, password: str) -> Editor | None:
    """Return the active editor with this address and password, or None.

    A disabled account gets None, as a wrong password does: the login page then tells a
    stranger nothing about which addresses have accounts, or had them.
    """
    editor = session.scalar(sa.select(Editor).where(Editor.email == _address(email)))
    if editor is None:
        check_password_hash(_dummy_hash(), password or "")
        return None
    if not check_password_hash(editor.password_hash, password or ""):
        return None
    if not editor.is_active:
        # The page says only "wrong email or password"; the operator can learn why here.
        log.info("login refused: the account of %s is disabled", editor.email)
        return None
    return editor


def change_password(session: Session, editor: Editor, password: str) -> None:
    """Set a new password and end every session of the editor begun before."""
    _check_password(password)
    editor.password_hash = generate_password_hash(password)
    editor.session_version += 1
    session.flush()


def disable(session: Session, editor: Editor, *, by: Editor | None = None) -> None:
    """Disable ``editor``'s account: no more logins, and their sessions end at once."""
    _not_yourself(editor, by, "disable")
    if not editor.is_active:
        return
    _keep_an_admin(session, editor, "disable")
    editor.disabled_at = utcnow()
    # Sessions are also refused while disabled; the bump keeps them ended after an enable.
    editor.session_version += 1
    session.flush()


def enable(session: Session, editor: Editor) -> None:
    """Let a disabled editor log in again (their old sessions stay ended)."""
    editor.disabled_at = None
    session.flush()


def remove(session: Session, editor: Editor, *, by: Editor | None = None) -> None:
    """Delete ``editor``'s account; the export log keeps its rows, without the name."""
    _not_yourself(editor, by, "remove")
    _keep_an_admin(session, editor, "remove")
    session.delete(editor)
    session.flush()


def set_admin(
    session: Session, editor: Editor, is_admin: bool, *, by: Editor | None = None
) -> None:
    """Make ``editor`` an admin, or an editor of their newsletters only."""
    if editor.is_admin and not is_admin:
        _not_yourself(editor, by, "demote")
        _keep_an_admin(session, editor, "demote")
    editor.is_admin = is_admin
    session.flush()


def set_newsletters(session: Session, editor: Editor, newsletters: list[Newsletter]) -> None:
    """Make ``newsletters`` the ones ``editor`` edits, in place of those before."""
    editor.newsletters = _distinct(newsletters)
    session.flush()


def _distinct(newsletters: list[Newsletter]) -> list[Newsletter]:
    """Return ``newsletters`` once each, by name: the order the relationship loads them in."""
    return sorted({n.id: n for n in newsletters}.values(), key=lambda n: n.name)


def _address(email: str) -> str:
    """Return ``email`` as ``create`` stores it, or as given (trimmed, lower-cased) if invalid."""
    try:
        return validate_email(email or "", check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return (email or "").strip().lower()


# Why an admin may not make a change (``action``) to their own account, or to the last active
# admin's: whole sentences, so that each is translated as one.
_NOT_YOURSELF = {
    "disable": _l("You cannot disable your own account: another admin has to do it."),
    "remove": _l("You cannot remove your own account: another admin has to do it."),
    "demote": _l("You cannot take away your own admin rights: another admin has to do it."),
}
_LAST_ADMIN = {
    "disable": _l(
        "%(email)s is the last active admin: make another editor an admin before you disable them."
    ),
    "remove": _l(
        "%(email)s is the last active admin: make another editor an admin before you remove them."
    ),
    "demote": _l(
        "%(email)s is the last active admin: make another editor an admin before you "
        "take admin rights from them."
    ),
}


def _not_yourself(editor: Editor, by: Editor | None, action: str) -> None:
    if by is not None and by.id == editor.id:
        raise AccountError(str(_NOT_YOURSELF[action]))


def _keep_an_admin(session: Session, editor: Editor, action: str) -> None:
    """Refuse to ``action`` the last active admin, so that someone can still manage editors."""
    if not (editor.is_admin and editor.is_active):
        return
    # Every active admin's row is locked, in one order: of two admins disabling each other
    # at once, the second waits for the first, then sees it gone and is refused.
    admins = session.scalars(
        sa.select(Editor.id)
        .where(Editor.is_admin.is_(True), Editor.disabled_at.is_(None))
        .order_by(Editor.id)
        .with_for_update()
    ).all()
    if not set(admins) - {editor.id}:
        raise AccountError(_LAST_ADMIN[action] % {"email": editor.email})


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise AccountError(
            ngettext(
                "the password must have at least %(num)d character",
                "the password must have at least %(num)d characters",
                MIN_PASSWORD_LENGTH,
            )
        )
