"""API keys: created per editor, shown once, stored hashed, named, revocable.

Each service function is one use case; it flushes and never commits: the CLI command, the
admin view or the API request commits. The ``apikey`` commands sit at the bottom.
"""

import hashlib
import secrets
from datetime import datetime, timedelta

import click
import sqlalchemy as sa
from flask.cli import with_appcontext
from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy.orm import Session, contains_eager, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from . import db, editors
from .db import utcnow
from .models import ApiKey, Editor, Newsletter
from .text import has_control_characters

# Recognisable in a config file, a log or a secret scanner's rules.
KEY_PREFIX = "nlk_"
# "nlk_" and 8 characters of the random part: enough to tell keys apart, far from enough to
# guess the rest (ApiKey.prefix holds 16 at most).
SHOWN_LENGTH = 12
NAME_MAX_LENGTH = 100
# A key is at most this long; anything longer is not one of ours and is not even hashed.
KEY_MAX_LENGTH = 100
# last_used_at is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyError(ValueError):
    """An API key that cannot be created or found; the message says why."""


def create(
    session: Session, editor: Editor, name: str, read_only: bool = False
) -> tuple[ApiKey, str]:
    """Add a key for ``editor``; return it with the key itself, which is stored nowhere."""
    name = _checked_name(name)
    if not editor.is_active:
        raise ApiKeyError(
            _(
                "the account of %(email)s is disabled, and a disabled editor's keys do not "
                "work: enable it first ('newsletters editor enable %(email)s')",
                email=editor.email,
            )
        )
    # 256 random bits.
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey(
        editor=editor,
        name=name,
        prefix=key[:SHOWN_LENGTH],
        digest=digest(key),
        read_only=read_only,
    )
    session.add(api_key)
    session.flush()
    return api_key, key


def digest(key: str) -> str:
    """Return the SHA-256 hex digest of ``key``: what the table stores in its place."""
    return hashlib.sha256(key.encode()).hexdigest()


def authenticate(session: Session, presented: str) -> ApiKey | None:
    """Return the working key ``presented`` is, with its editor; None if unknown or stopped.

    A revoked key, or a key of a disabled editor, fails from the moment of the change: each
    request looks both up. The key's ``last_used_at`` is brought up to date at most once a
    minute; the caller commits it with the rest of its request.
    """
    if not isinstance(presented, str) or not presented.startswith(KEY_PREFIX):
        return None
    if len(presented) > KEY_MAX_LENGTH:
        return None
    # The database compares digests, not keys: how long a comparison takes tells an attacker
    # about the hash of what they sent, which brings them no closer to any key.
    api_key = session.scalar(
        sa.select(ApiKey)
        .join(ApiKey.editor)
        .options(contains_eager(ApiKey.editor))
        .where(
            ApiKey.digest == digest(presented),
            ApiKey.revoked_at.is_(None),
            Editor.disabled_at.is_(None),
        )
    )
    if api_key is not None:
        _note_use(session, api_key)
    return api_key


def _note_use(session: Session, api_key: ApiKey) -> None:
    """Set ``last_used_at`` to now unless it is under a minute old: one write a minute, at most."""
    now = utcnow()
    cutoff = now - LAST_USED_RESOLUTION
    if api_key.last_used_at is not None and api_key.last_used_at > cutoff:
        return
    # Conditional, so of many requests at once only the first of the minute writes the row.
    session.execute(
        sa.update(ApiKey)
        .where(
            ApiKey.id == api_key.id,
            sa.or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= cutoff),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    # As loaded, not as changed: the UPDATE has written it, a flush must not write it again.
    set_committed_value(api_key, "last_used_at", now)


def may_use(api_key: ApiKey, newsletter: Newsletter) -> bool:
    """Tell whether ``api_key`` may reach ``newsletter``: any for an admin's, else the editor's."""
    editor = api_key.editor
    return api_key.revoked_at is None and editor.is_active and editor.may_edit(newsletter)


def newsletters_of(session: Session, api_key: ApiKey) -> list[Newsletter]:
    """Return the newsletters ``api_key`` may reach, by name (none for a stopped key)."""
    editor = api_key.editor
    if api_key.revoked_at is not None or not editor.is_active:
        return []
    if editor.is_admin:
        return list(session.scalars(sa.select(Newsletter).order_by(Newsletter.name)))
    return list(editor.newsletters)


def listing(session: Session, editor: Editor | None = None) -> list[ApiKey]:
    """Return the keys of ``editor``, or everybody's, newest first, revoked ones included."""
    query = (
        sa.select(ApiKey)
        .options(joinedload(ApiKey.editor))
        .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    )
    if editor is not None:
        query = query.where(ApiKey.editor_id == editor.id)
    return list(session.scalars(query))


def find(session: Session, key_id: int) -> ApiKey:
    """Return the key with the number ``key_id``, or raise ``ApiKeyError``."""
    api_key = session.get(ApiKey, key_id)
    if api_key is None:
        raise ApiKeyError(
            _(
                "there is no API key number %(number)s (see 'newsletters apikey list')",
                number=key_id,
            )
        )
    return api_key


def revoke(session: Session, api_key: ApiKey) -> None:
    """Stop ``api_key`` for good, from its next request on; a revoked key stays revoked."""
    if api_key.revoked_at is None:
        api_key.revoked_at = utcnow()
        session.flush()


def _checked_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ApiKeyError(_("give the key a name, e.g. where it is used ('shop signups')"))
    if len(name) > NAME_MAX_LENGTH:
        raise ApiKeyError(
            ngettext(
                "the name is %(num)d character long; it may have %(most)d at most",
                "the name is %(num)d characters long; it may have %(most)d at most",
                len(name),
                most=NAME_MAX_LENGTH,
            )
        )
    if has_control_characters(name):
        raise ApiKeyError(
            _("the name holds a control character (a line break?): keep it on one line")
        )
    return name


apikey_group = click.Group("apikey", help="Create, list and revoke API keys.")


@apikey_group.command("create")
@click.argument("editor_email")
@click.option("--name", help="Where the key is used (default: 'command line' and the date).")
@click.option("--read-only", is_flag=True, help="May read lists and changes, not sign anyone up.")
@with_appcontext
def apikey_create(editor_email, name, read_only):
    """Print a new API key of EDITOR_EMAIL once; only its hash is stored."""
    session = db.session()
    try:
        editor = editors.find(session, editor_email)
        api_key, key = create(
            session, editor, name or f"command line, {utcnow():%Y-%m-%d}", read_only
        )
    except (editors.AccountError, ApiKeyError) as exc:
        session.rollback()
        raise click.ClickException(str(exc)) from None
    session.commit()
    # The key alone on stdout, so that a script can take it; the rest on stderr.
    click.echo(key)
    access = "read-only" if read_only else "read-write"
    click.echo(
        f"API key {api_key.id} ({api_key.prefix}…, {access}) of {editor.email}: copy it now, "
        "it is not shown again; send it as 'Authorization: Bearer <key>'",
        err=True,
    )


@apikey_group.command("list")
@click.argument("editor_email", required=False)
@with_appcontext
def apikey_list(editor_email):
    """List the API keys, of EDITOR_EMAIL or everybody's: id, prefix, name, editor, use."""
    session = db.session()
    try:
        editor = editors.find(session, editor_email) if editor_email else None
    except editors.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    for k in listing(session, editor):
        click.echo(
            "\t".join(
                (
                    str(k.id),
                    k.prefix + "…",
                    k.name,
                    k.editor.email,
                    "read-only" if k.read_only else "read-write",
                    f"created {_when(k.created_at)}",
                    f"last used {_when(k.last_used_at)}" if k.last_used_at else "never used",
                    f"revoked {_when(k.revoked_at)}" if k.revoked_at else "active",
                )
            )
        )


@apikey_group.command("revoke")
@click.argument("key_id", type=int)
@with_appcontext
def apikey_revoke(key_id):
    """Revoke the API key KEY_ID (see 'apikey list'): it stops working at once."""
    session = db.session()
    try:
        api_key = find(session, key_id)
    except ApiKeyError as exc:
        raise click.ClickException(str(exc)) from None
    revoke(session, api_key)
    session.commit()
    click.echo(
        f"revoked API key {api_key.id} ({api_key.prefix}…, {api_key.name}) "
        f"of {api_key.editor.email}"
    )


def _when(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"
