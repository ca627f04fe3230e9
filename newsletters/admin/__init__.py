"""The editors' area: login, newsletters, subscribers, dashboards, exports and imports."""

from functools import wraps

import sqlalchemy as sa
from flask import Blueprint, Flask, abort, flash, redirect, request, url_for
from flask_login import LoginManager, current_user

from .. import db
from ..models import Editor, Newsletter

bp = Blueprint("admin", __name__, url_prefix="/admin")
login_manager = LoginManager()
login_manager.login_view = "admin.login"
login_manager.login_message = "Log in to see this page."
login_manager.session_protection = "basic"


@login_manager.user_loader
def load_editor(identity: str) -> Editor | None:
    """Return the editor of a session, unless their password changed since it began."""
    editor_id, _, version = identity.partition(":")
    if not editor_id.isdigit() or not version.isdigit():
        return None
    editor = db.session().get(Editor, int(editor_id))
    if editor is None or editor.session_version != int(version):
        return None
    return editor


@bp.before_request
def require_login():
    """Send anyone not logged in to the login page; the login page itself is open."""
    if request.endpoint in ("admin.login",) or current_user.is_authenticated:
        return None
    return login_manager.unauthorized()


@bp.after_request
def forbid_framing(response):
    """Keep the editors' area out of every frame (clickjacking)."""
    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    response.headers["Cache-Control"] = "no-store"
    return response


def admin_required(view):
    """Let only admins through; others get a 403 page."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_admin:
            abort(403, description="Only admins may do this.")
        return view(*args, **kwargs)

    return wrapped


def editable_newsletter(slug: str) -> Newsletter:
    """Return the newsletter ``slug`` if the current editor may edit it: else 404 or 403."""
    newsletter = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == slug))
    if newsletter is None:
        abort(404, description=f"There is no newsletter called {slug!r}.")
    if not current_user.may_edit(newsletter):
        abort(403, description="You are not an editor of this newsletter.")
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


def init_app(app: Flask) -> None:
    """Set up Flask-Login and register the area's blueprint with all its views."""
    from . import auth, editors, exchange, newsletters, outbox, subscribers  # noqa: F401 - routes

    login_manager.init_app(app)
    app.register_blueprint(bp)
