"""The mail outbox for admins: what was given up or refused, and a button to try again."""

from flask import abort, render_template, request

from .. import db
from ..mail import outbox
from ..models import OutboxState
from . import admin_required, bp, done


@bp.get("/outbox")
@admin_required
def outbox_list():
    """Show the counts, the last transport error, dead and failed mails, and unbuilt ones."""
    session = db.session()
    return render_template(
        "admin/outbox.html",
        counts=outbox.counts(session),
        oldest_due=outbox.oldest_due(session),
        transport=outbox.last_transport_error(session),
        messages=outbox.undeliverable(session),
        unbuilt=outbox.unbuilt(session),
        states=list(OutboxState),
    )


@bp.post("/outbox/retry")
@admin_required
def outbox_retry():
    """Queue one dead or failed mail again (field ``id``), or every dead one (``all_dead``)."""
    session = db.session()
    if request.form.get("all_dead"):
        retried = outbox.retry(session, [OutboxState.DEAD])
    else:
        message_id = request.form.get("id", "")
        if not message_id.isdigit():
            abort(400, description="Say which mail to retry: its number is missing.")
        retried = outbox.retry(session, [OutboxState.DEAD, OutboxState.FAILED], [int(message_id)])
        if not retried:
            abort(404, description=f"Mail {message_id} is not dead or failed (any more).")
    session.commit()
    return done(f"Queued again: {len(retried)} mails.", ".outbox_list")
