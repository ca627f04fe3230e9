"""Webhooks in the editors' area: a newsletter's webhooks, add, remove, resume, delivery log."""

from flask import abort, render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField

from .. import db
from ..webhooks import services, targets
from . import bp, done, editable_newsletter


class WebhookForm(FlaskForm):
    """A new webhook's URL, parsed only: ``services.add`` checks it."""

    url = StringField(
        _l("URL (https://…, told of every subscription change)"),
        render_kw={"maxlength": targets.URL_MAX_LENGTH, "inputmode": "url"},
    )


@bp.route("/n/<slug>/webhooks", methods=["GET", "POST"])
def webhooks(slug):
    """List the newsletter's webhooks, and add one: its secret is shown in this answer only."""
    newsletter = editable_newsletter(slug)
    session = db.session()
    form = WebhookForm()
    if form.validate_on_submit():
        try:
            webhook, secret = services.add(session, newsletter, form.url.data)
        except services.WebhookError as exc:
            session.rollback()
            form.url.errors.append(str(exc))
        else:
            session.commit()
            # Not flashed: a flash message would put the secret into the session cookie.
            return _page(newsletter, WebhookForm(formdata=None), created=webhook, secret=secret)
    return _page(newsletter, form, status=400 if form.errors else 200)


@bp.get("/n/<slug>/webhooks/<int:webhook_id>")
def webhook_log(slug, webhook_id: int):
    """Show a webhook's delivery log, newest first, each with a button to send it again."""
    newsletter = editable_newsletter(slug)
    session = db.session()
    webhook = _webhook(newsletter, webhook_id)
    return render_template(
        "admin/webhook_log.html",
        newsletter=newsletter,
        webhook=webhook,
        deliveries=services.deliveries(session, webhook),
        waiting=services.pending_count(session, webhook),
        limit=services.LOG_LENGTH,
    )


@bp.post("/n/<slug>/webhooks/<int:webhook_id>/remove")
def webhook_remove(slug, webhook_id: int):
    """Remove a webhook, with its delivery log and what still waits."""
    newsletter = editable_newsletter(slug)
    webhook = _webhook(newsletter, webhook_id)
    url = webhook.url
    services.remove(db.session(), webhook)
    db.session().commit()
    return done(_("Removed the webhook to %(url)s.", url=url), ".webhooks", slug=newsletter.slug)


@bp.post("/n/<slug>/webhooks/<int:webhook_id>/resume")
def webhook_resume(slug, webhook_id: int):
    """Resume a paused webhook: its deliveries go on, in order, from where they stopped."""
    newsletter = editable_newsletter(slug)
    webhook = _webhook(newsletter, webhook_id)
    if services.resume(db.session(), webhook):
        db.session().commit()
        message = _("Resumed the webhook to %(url)s.", url=webhook.url)
    else:
        message = _("The webhook to %(url)s was not paused.", url=webhook.url)
    return done(message, ".webhook_log", slug=newsletter.slug, webhook_id=webhook.id)


@bp.post("/n/<slug>/webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/resend")
def webhook_resend(slug, webhook_id: int, delivery_id: int):
    """Queue one delivery again, due now: it goes out before the webhook's later ones."""
    newsletter = editable_newsletter(slug)
    session = db.session()
    webhook = _webhook(newsletter, webhook_id)
    try:
        services.resend(session, webhook, delivery_id)
    except services.WebhookError as exc:
        abort(404, description=f"{exc}.")
    session.commit()
    if webhook.paused_at:
        message = _(
            "Delivery %(number)s is queued again. It waits until the webhook is resumed.",
            number=delivery_id,
        )
    else:
        message = _("Delivery %(number)s is queued again.", number=delivery_id)
    return done(
        message,
        ".webhook_log",
        slug=newsletter.slug,
        webhook_id=webhook.id,
    )


def _webhook(newsletter, webhook_id: int):
    """Return the newsletter's webhook ``webhook_id``, or answer 404."""
    try:
        return services.find(db.session(), webhook_id, newsletter)
    except services.WebhookError:
        abort(
            404,
            description=_(
                "there is no webhook number %(number)s for %(newsletter)s.",
                number=webhook_id,
                newsletter=newsletter.name,
            ),
        )


def _page(newsletter, form: WebhookForm, status: int = 200, **shown):
    session = db.session()
    hooks = services.listing(session, newsletter)
    waiting = {w.id: services.pending_count(session, w) for w in hooks}
    page = render_template(
        "admin/webhooks.html",
        newsletter=newsletter,
        form=form,
        webhooks=hooks,
        waiting=waiting,
        **shown,
    )
    return page, status
