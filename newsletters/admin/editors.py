"""Managing editors and watching exports (admins only)."""

import sqlalchemy as sa
from flask import render_template

from .. import db, editors
from ..models import Editor, ExportRecord, Newsletter
from . import admin_required, bp, done
from .forms import EditorForm


@bp.route("/editors", methods=["GET", "POST"])
@admin_required
def editor_list():
    """List editors and add one."""
    session = db.session()
    form = EditorForm()
    newsletters = list(session.scalars(sa.select(Newsletter).order_by(Newsletter.name)))
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
            return done(f"Added {form.email.data}.", ".editor_list")
    people = session.scalars(sa.select(Editor).order_by(Editor.email))
    page = render_template("admin/editors.html", form=form, editors=list(people))
    return page, 400 if form.errors else 200


@bp.get("/exports")
@admin_required
def export_log():
    """Show the latest exports: who took which list out, when, and how many rows."""
    records = db.session().scalars(
        sa.select(ExportRecord).order_by(ExportRecord.at.desc(), ExportRecord.id.desc()).limit(200)
    )
    return render_template("admin/exports.html", records=list(records))
