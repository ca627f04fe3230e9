"""Managing editors and watching exports (admins only)."""

from collections.abc import Callable

import sqlalchemy as sa
from flask import abort, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString
from flask_login import current_user
from sqlalchemy.orm import Session

from .. import db, editors
from ..models import Editor, ExportRecord, Newsletter
from . import admin_required, bp, done
from .forms import EditorAccessForm, EditorForm


@bp.route("/editors", methods=["GET", "POST"])
@admin_required
def editor_list():
    """List editors with the controls of each, and add one."""
    session = db.session()
    form = EditorForm()
    newsletters = _newsletters(session)
    form.newsletters.choices = [(n.id, n.name) for n in newsletters]
    if form.validate_on_submit():
        chosen = [n for n in newsletters if n.id in form.newsletters.data]
        try:
            editors.create(
                session,
                form.email.data,
                form.password.data,
                is_admin=form.is_admin.data,
                newsletters=chosen,
            )
        except editors.AccountError as exc:
            form.email.errors.append(str(exc))
        else:
            session.commit()
            return done(_("Added %(email)s.", email=form.email.data), ".editor_list")
    return _page(session, newsletters, form, 400 if form.errors else 200)


@bp.post("/editors/<int:editor_id>/access")
@admin_required
def editor_access(editor_id: int):
    """Make an editor an admin or not, and set the newsletters they edit."""
    session = db.session()
    editor = _editor(session, editor_id)
    newsletters = _newsletters(session)
    form = _access_form(editor, newsletters, submitted=True)
    if not form.validate():
        errors = "; ".join(error for field in form.errors.values() for error in field)
        abort(
            400,
            description=_(
                "Nothing was changed for %(email)s: %(errors)s", email=editor.email, errors=errors
            ),
        )
    chosen = [n for n in newsletters if n.id in form.newsletters.data]

    def change(session, editor, by):
        editors.set_admin(session, editor, form.is_admin.data, by=by)
        editors.set_newsletters(session, editor, chosen)

    return _change(session, editor, change, _l("Saved what %(email)s may do."))


@bp.post("/editors/<int:editor_id>/disable")
@admin_required
def editor_disable(editor_id: int):
    """Disable an editor's account: no login, and their sessions end at once."""
    session = db.session()
    return _change(
        session,
        _editor(session, editor_id),
        editors.disable,
        _l("Disabled %(email)s: they cannot log in, and their sessions have ended."),
    )


@bp.post("/editors/<int:editor_id>/enable")
@admin_required
def editor_enable(editor_id: int):
    """Let a disabled editor log in again."""
    session = db.session()
    return _change(
        session,
        _editor(session, editor_id),
        lambda session, editor, by: editors.enable(session, editor),
        _l("Enabled %(email)s: they may log in again."),
    )


@bp.route("/editors/<int:editor_id>/remove", methods=["GET", "POST"])
@admin_required
def editor_remove(editor_id: int):
    """Ask whether to remove an editor's account (GET), and remove it (POST)."""
    session = db.session()
    editor = _editor(session, editor_id)
    if request.method == "GET":
        return render_template("admin/editor_remove.html", editor=editor)
    return _change(session, editor, editors.remove, _l("Removed %(email)s."))


@bp.get("/exports")
@admin_required
def export_log():
    """Show the latest exports: who took which list out, when, and how many rows."""
    records = db.session().scalars(
        sa.select(ExportRecord).order_by(ExportRecord.at.desc(), ExportRecord.id.desc()).limit(200)
    )
    return render_template("admin/exports.html", records=list(records))


def _change(session: Session, editor: Editor, action: Callable, message: LazyString):
    """Apply ``action`` to ``editor`` as the current admin; commit, or show why it was refused.

    ``message`` is what to flash after, with ``%(email)s`` for the editor's address.
    """
    email = editor.email
    try:
        action(session, editor, by=current_user._get_current_object())
    except editors.AccountError as exc:
        session.rollback()
        page = EditorForm(formdata=None)
        return _page(session, _newsletters(session), page, 409, refusal=str(exc))
    session.commit()
    return done(message % {"email": email}, ".editor_list")


def _page(
    session: Session, newsletters: list[Newsletter], form: EditorForm, status: int, refusal=None
):
    """Render the editors' list with each editor's controls, and the form that adds one."""
    form.newsletters.choices = [(n.id, n.name) for n in newsletters]
    people = editors.listing(session)
    access = {editor.id: _access_form(editor, newsletters) for editor in people}
    page = render_template(
        "admin/editors.html", form=form, editors=people, access=access, refusal=refusal
    )
    return page, status


def _access_form(
    editor: Editor, newsletters: list[Newsletter], *, submitted: bool = False
) -> EditorAccessForm:
    """Return the form of ``editor``'s role and newsletters: as posted, or as they are now."""
    # A prefix per editor, so that the many forms on one page have distinct field ids.
    prefix = f"editor-{editor.id}"
    if submitted:
        form = EditorAccessForm(prefix=prefix)
    else:
        data = {"is_admin": editor.is_admin, "newsletters": [n.id for n in editor.newsletters]}
        form = EditorAccessForm(formdata=None, prefix=prefix, data=data)
    form.newsletters.choices = [(n.id, n.name) for n in newsletters]
    return form


def _editor(session: Session, editor_id: int) -> Editor:
    editor = session.get(Editor, editor_id)
    if editor is None:
        abort(
            404, description=_("There is no editor number %(number)s (any more).", number=editor_id)
        )
    return editor


def _newsletters(session: Session) -> list[Newsletter]:
    return list(session.scalars(sa.select(Newsletter).order_by(Newsletter.name)))
