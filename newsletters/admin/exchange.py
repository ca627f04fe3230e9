"""Lists in and out of the browser: the streamed export and the CSV import."""

import io

from flask import Response, render_template, request, stream_with_context
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.exceptions import BadRequest

from .. import db, export_presets, exports, imports, negotiation
from . import bp, editable_newsletter
from .forms import ImportForm


@bp.get("/n/<slug>/export")
def export(slug):
    """Stream the list as a CSV (in a preset's layout) or JSON Lines download; record it."""
    newsletter = editable_newsletter(slug)
    status = request.args.get("status", "confirmed")
    fmt = request.args.get("format", "csv")
    preset = request.args.get("preset", export_presets.DEFAULT)
    if status not in exports.STATUSES:
        raise BadRequest(
            _("status must be one of: %(choices)s.", choices=", ".join(exports.STATUSES))
        )
    if fmt not in exports.FORMATS:
        raise BadRequest(
            _("format must be one of: %(choices)s.", choices=", ".join(sorted(exports.FORMATS)))
        )
    if preset not in export_presets.PRESETS or (fmt != "csv" and preset != "spreadsheet"):
        raise BadRequest(
            _(
                "preset must be one of: %(choices)s, with the CSV format.",
                choices=", ".join(export_presets.PRESETS),
            )
        )
    if fmt == "csv":
        try:
            chunks = export_presets.export(
                db.session(), newsletter, preset, status, current_user, via="admin"
            )
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        filename = export_presets.get(preset).filename(newsletter.slug, status)
    else:
        chunks = exports.export(db.session(), newsletter, status, fmt, current_user, via="admin")
        filename = f"{newsletter.slug}-{status}.{fmt}"
    return Response(
        stream_with_context(chunks),
        mimetype=exports.FORMATS[fmt].split(";")[0],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.route("/n/<slug>/import", methods=["GET", "POST"])
@negotiation.takes_large_uploads
def import_(slug):
    """Take a CSV in the export's format and report rows taken and refused."""
    newsletter = editable_newsletter(slug)
    form = ImportForm()
    report = None
    if form.validate_on_submit():
        upload = io.TextIOWrapper(form.file.data.stream, encoding="utf-8-sig", newline="")
        try:
            report = imports.import_csv(
                db.session(), newsletter, upload, send_confirmation=form.send_confirmation.data
            )
        except imports.ImportRefused as exc:
            form.file.errors.append(str(exc))
        else:
            db.session().commit()
    page = render_template("admin/import.html", newsletter=newsletter, form=form, report=report)
    return page, 400 if form.errors else 200
