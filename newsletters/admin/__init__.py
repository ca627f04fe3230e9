"""The editors' area: login, newsletters, subscribers, dashboards, exports and imports."""

import logging
from functools import wraps
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Blueprint, Flask, abort, flash, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager, current_user
from werkzeug.exceptions import Forbidden

from .. import db, headers, i18n
from ..errors import http_error
from ..models import Editor, Newsletter
from ..text import has_control_characters

log = logging.getLogger(__name__)
bp = Blueprint("admin", __name__, url_prefix="/admin")
login_manager = LoginManager()
login_manager.login_view = "admin.login"
login_manager.login_message = _l("Log in to see this page.")
# Flashed in the language of the request that asks for a login; a flash must be plain text.
login_manager.localize_callback = str
login_manager.session_protection = "basic"


@login_manager.user_loader
def load_editor(identity: str) -> Editor | None:
    """Return the editor of a session, unless disabled or their password changed since."""
    editor_id, _, version = identity.partition(":")
    if not editor_id.isdigit() or not version.isdigit():
        return None
    editor = db.session().get(Editor, int(editor_id))
    # Flask-Login checks is_active only at login_user: a session begun before the account
    # was disabled must end here, on its next request.
    if editor is None or not editor.is_active or editor.session_version != int(version):
        return None
    return editor


@bp.before_request
def require_login():
    """Send anyone not logged in to the login page; the login page itself is open."""
    if request.endpoint in ("admin.login", "admin.language") or current_user.is_authenticated:
        return None
    return login_manager.unauthorized()


# Keep the editors' area out of every frame (clickjacking), and its pages of subscribers'
# data out of every cache.
headers.declare(
    bp, headers.Policy(frame_ancestors="frame-ancestors 'none'", cache_control="no-store")
)


@bp.errorhandler(Forbidden)
def log_denied(exc: Forbidden):
    """Log each refusal in the editors' area (who, where, which newsletter), then answer 403.

    Every 403 of the area passes here (``admin_required``, ``editable_newsletter`` and any
    later one), so an editor probing other newsletters' pages shows up in the log.
    """
    who = current_user if current_user.is_authenticated else None
    facts = {
        "editor": who.email if who else None,
        "editor_id": who.id if who else None,
        "endpoint": request.endpoint,
        "newsletter": (request.view_args or {}).get("slug"),
    }
    # The path as repr: a decoded %0A in it must not start a forged line in the log.
    log.warning(
        "access denied: editor %s (id %s), %s %r (endpoint %s, newsletter %s): %s",
        facts["editor"],
        facts["editor_id"],
        request.method,
        request.path,
        facts["endpoint"],
        facts["newsletter"],
        exc.description,
        extra=facts,
    )
    return http_error(exc)


def admin_required(view):
    """Let only admins through; others get a 403 page."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_admin:
            abort(403, description=_("Only admins may do this."))
        return view(*args, **kwargs)

    return wrapped


def editable_newsletter(slug: str) -> Newsletter:
    """Return the newsletter ``slug`` if the current editor may edit it: else 404 or 403."""
    newsletter = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == slug))
    if newsletter is None:
        abort(404, description=_("There is no newsletter called %(slug)s.", slug=repr(slug)))
    if not current_user.may_edit(newsletter):
        abort(403, description=_("You are not an editor of this newsletter."))
    return newsletter


def visible_newsletters() -> list[Newsletter]:
    """Return the newsletters the current editor may see, by name."""
    if current_user.is_admin:
        return list(db.session().scalars(sa.select(Newsletter).order_by(Newsletter.name)))
    return list(current_user.newsletters)


def done(message: str, endpoint: str, **values):
    """Flash ``message`` and redirect (303) to ``endpoint``: the end of a successful POST."""
    flash(message)
    return redirect(url_for(endpoint, **values), 303)


def local_path(target: str | None) -> str | None:
    """Return ``target`` if it is a path on this site, never another site; else None.

    Browsers read ``/\\host`` as ``//host``, and drop tabs and line breaks from a URL, so a
    backslash or a control character anywhere refuses the target too.
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(c.isspace() for c in target) or has_control_characters(target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


@bp.post("/language")
def language():
    """Remember the language the editor chose (field ``language``), then go back (``next``).

    Open before login too: the login page carries the menu. CSRFProtect checks the token.
    """
    session["language"] = i18n.known_language(request.form.get("language", ""))
    target = local_path(request.form.get("next")) or url_for(".index")
    return redirect(target, 303)


def init_app(app: Flask) -> None:
    """Set up Flask-Login and register the area's blueprint with all its views."""
    from . import (  # noqa: F401 - routes
        apikeys,
        auth,
        editors,
        exchange,
        funnel,
        mail_preview,
        newsletters,
        outbox,
        subscribers,
        webhooks,
    )

    login_manager.init_app(app)
    app.register_blueprint(bp)
