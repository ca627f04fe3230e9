"""The mail outbox for admins: what was given up or refused, and a button to try again."""

from flask import abort, render_template, request
from flask_babel import gettext as _
from flask_babel import ngettext

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
            abort(400, description=_("Say which mail to retry: its number is missing."))
        retried = outbox.retry(session, [OutboxState.DEAD, OutboxState.FAILED], [int(message_id)])
        if not retried:
            abort(
                404,
                description=_(
                    "Mail %(number)s is not dead or failed (any more).", number=message_id
                ),
            )
    session.commit()
    # One form for one mail too, as the page has always said it; Ukrainian needs three.
    message = ngettext("Queued again: %(num)d mails.", "Queued again: %(num)d mails.", len(retried))
    return done(message, ".outbox_list")
