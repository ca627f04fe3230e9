"""Editors see each of a newsletter's mails as readers get them, and send themselves a test.

The preview is the very mail a test sends (``messages.sample``): its HTML part in a frame, from
a route of its own under a CSP that lets its inline styles and https images in and nothing
else (no script, no form, a sandbox), and its text part beside it. A test goes through the
outbox to the editor's own address, so it arrives as readers' mails do, over the real
transport; TEST_MAILS_PER_HOUR per editor keeps the button from becoming a way to flood.
"""

from datetime import timedelta
from email.utils import format_datetime

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from .. import db, headers, i18n
from ..db import utcnow
from ..mail import messages, outbox
from ..models import Newsletter, OutboxKind, OutboxMessage
from . import bp, editable_newsletter, local_path

# Test mails an editor may send themselves in an hour, over every newsletter.
TEST_MAILS_PER_HOUR = 10
# The mails, as the editors' area names them.
NAMES = {
    OutboxKind.CONFIRM: _l("Confirmation"),
    OutboxKind.WELCOME: _l("Welcome"),
    OutboxKind.REMINDER: _l("Reminder"),
    OutboxKind.PREFERENCES_LINK: _l("Link to manage subscriptions"),
    OutboxKind.DATA_LINK: _l("Link to download one's data"),
    OutboxKind.WEBHOOK_PAUSED: _l("Webhook paused (to editors)"),
}
# A mail's HTML may style itself and show https images (its logo), nothing more: no script
# (the sandbox without allow-scripts), no form, no plugin, no fetch; a link opens a new tab.
MAIL_POLICY = headers.Policy(
    content_security_policy=(
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
        "sandbox allow-popups allow-popups-to-escape-sandbox"
    ),
    referrer="no-referrer",
    cache_control="no-store",
)


@bp.context_processor
def mail_names() -> dict:
    """Give the area's templates the mails' names (the settings page lists them)."""
    return {"mail_names": NAMES}


@bp.get("/n/<slug>/mails")
def mail_preview(slug):
    """Show one of the newsletter's mails (``kind``) in a language (``lang``): HTML and text."""
    newsletter = editable_newsletter(slug)
    kind = _kind(request.args.get("kind", OutboxKind.CONFIRM))
    language = _language(request.args.get("lang"), newsletter)
    mail = _sample(newsletter, kind, language)
    return render_template(
        "admin/mail_preview.html",
        newsletter=newsletter,
        kind=kind,
        language=language,
        names=NAMES,
        mail=mail,
        text=mail.get_body(("plain",)).get_content(),
        sent_this_hour=_sent_in_the_last_hour(),
        per_hour=TEST_MAILS_PER_HOUR,
    )


@bp.get("/n/<slug>/mails/<kind>.html")
def mail_preview_html(slug, kind):
    """Answer the HTML part of the newsletter's mail ``kind``, for the preview's frame."""
    newsletter = editable_newsletter(slug)
    mail = _sample(newsletter, _kind(kind), _language(request.args.get("lang"), newsletter))
    html = mail.get_body(("html",)).get_content()
    return html, 200, {"Content-Type": "text/html; charset=utf-8"}


headers.declare(mail_preview_html, MAIL_POLICY)


@bp.post("/n/<slug>/mails/test")
def mail_test(slug):
    """Queue a test of the mail ``kind`` in ``lang`` to the editor's own address; go back.

    CSRFProtect checks the token. Back to ``next`` (a path here), else to the preview.
    """
    newsletter = editable_newsletter(slug)
    kind = _kind(request.form.get("kind", ""))
    language = _language(request.form.get("lang"), newsletter)
    session = db.session()
    sent = _sent_in_the_last_hour()
    if sent >= TEST_MAILS_PER_HOUR:
        abort(
            429,
            description=_(
                "You sent yourself %(count)d test mails in the last hour, the most there may "
                "be. Wait a while and try again; the preview shows every mail meanwhile.",
                count=sent,
            ),
        )
    outbox.enqueue(
        session,
        OutboxKind.SAMPLE,
        current_user.email,
        {"of": str(kind), "newsletter_ids": [newsletter.id], "language": language},
    )
    session.commit()
    back = local_path(request.form.get("next")) or url_for(
        ".mail_preview", slug=newsletter.slug, kind=kind, lang=language
    )
    message = _(
        "A test of the mail “%(mail)s” is on its way to %(address)s. It arrives when the "
        "mail worker sends it, usually within a minute; its links open no one's subscription.",
        mail=NAMES[kind],
        address=current_user.email,
    )
    flash(message)
    return redirect(back, 303)


def _kind(asked: str) -> OutboxKind:
    """Return the mail ``asked`` names; 404 with the ones there are if it names none."""
    if asked not in messages.SAMPLES:
        abort(
            404,
            description=_(
                "There is no mail called %(kind)s. The mails are: %(kinds)s.",
                kind=repr(str(asked)[:40]),
                kinds=", ".join(messages.SAMPLES),
            ),
        )
    return OutboxKind(asked)


def _language(asked: str | None, newsletter: Newsletter) -> str:
    """Return the language ``asked`` (default: the newsletter's); 400 if it is not one of ours."""
    if not asked:
        return i18n.supported(newsletter.language) or i18n.DEFAULT_LANGUAGE
    return i18n.known_language(asked)


def _sample(newsletter: Newsletter, kind: OutboxKind, language: str):
    """Build the test of ``kind`` as the worker would, to the editor, without queueing it."""
    sender = messages.sender()
    domain = messages.ascii_domain(sender.addr_spec).rpartition("@")[2]
    return messages.sample(
        kind,
        newsletter,
        sender,
        language,
        recipient=messages.ascii_domain(current_user.email),
        date=format_datetime(utcnow().replace(microsecond=0)),
        message_id=f"<preview@{domain}>",
    )


def _sent_in_the_last_hour() -> int:
    """Return how many test mails the editor queued to themselves in the last hour."""
    return db.session().scalar(
        sa.select(sa.func.count(OutboxMessage.id)).where(
            OutboxMessage.kind == OutboxKind.SAMPLE,
            OutboxMessage.recipient == current_user.email,
            OutboxMessage.created_at >= utcnow() - timedelta(hours=1),
        )
    )
