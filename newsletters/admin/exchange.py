"""Lists in and out of the browser: the streamed export, and the CSV import as a job."""

from flask import Response, abort, redirect, render_template, request, stream_with_context, url_for
from flask_babel import gettext as _
from flask_babel import lazy_pgettext as _lp
from flask_login import current_user
from werkzeug.exceptions import BadRequest

from .. import db, export_presets, exports, import_jobs, imports, negotiation, wakeup
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


# An import's state as a word, on its page and in the list of recent ones.
STATES = {
    import_jobs.QUEUED: _lp("import", "waiting to start"),
    import_jobs.RUNNING: _lp("import", "running"),
    import_jobs.DONE: _lp("import", "done"),
    import_jobs.FAILED: _lp("import", "failed"),
}


@bp.route("/n/<slug>/import", methods=["GET", "POST"])
@negotiation.takes_large_uploads
def import_(slug):
    """Take a CSV in the export's format as a job for the worker; list the recent ones."""
    newsletter = editable_newsletter(slug)
    form = ImportForm()
    session = db.session()
    if form.validate_on_submit():
        upload = form.file.data
        try:
            job = import_jobs.queue(
                session,
                newsletter,
                current_user,
                upload.filename or "",
                upload.read(),
                form.send_confirmation.data,
            )
        except imports.ImportRefused as exc:
            form.file.errors.append(str(exc))
        else:
            session.commit()
            wakeup.notify()
            return redirect(url_for("admin.import_job", slug=slug, job_id=job.id), 303)
    page = render_template(
        "admin/import.html",
        newsletter=newsletter,
        form=form,
        jobs=import_jobs.recent(session, newsletter),
        states=STATES,
    )
    return page, 400 if form.errors else 200


@bp.get("/n/<slug>/imports/<int:job_id>")
def import_job(slug, job_id):
    """Show an import's progress, then its report; the page polls ``import_job_status``."""
    newsletter = editable_newsletter(slug)
    job = _job(newsletter, job_id)
    return render_template(
        "admin/import_job.html",
        newsletter=newsletter,
        job=job,
        states=STATES,
        error=_failure(job),
    )


@bp.get("/n/<slug>/imports/<int:job_id>.json")
def import_job_status(slug, job_id):
    """Return an import's state and counts as JSON, for its progress page."""
    job = _job(editable_newsletter(slug), job_id)
    return {
        "state": job.state,
        "ended": job.state in (import_jobs.DONE, import_jobs.FAILED),
        "lines": job.lines,
        "rows_done": job.rows_done,
        "refused": job.refused,
    }


def _job(newsletter, job_id):
    job = import_jobs.find(db.session(), newsletter, job_id)
    if job is None:
        abort(404, description=_("This newsletter has no import %(id)s.", id=job_id))
    return job


def _failure(job) -> str | None:
    """Return why ``job`` failed, in the editor's language where the import did not word it."""
    if job.error == import_jobs.BROKEN:
        return _(
            "The import stopped on an unexpected error; nothing was imported. Try again, and "
            "if it happens again, tell whoever runs this site."
        )
    if job.error == import_jobs.ABANDONED:
        return _(
            "The import was started %(num)s times and stopped each time; nothing was imported. "
            "Try a smaller file, or the command line import.",
            num=job.attempts,
        )
    return job.error
