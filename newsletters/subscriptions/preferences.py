"""The reader's preference centre: every newsletter of one address, behind its own link."""

from flask import Blueprint, render_template, request

from .. import db, headers
from ..models import Status
from . import services
from .entry import client_ip, client_user_agent

bp = Blueprint("preferences", __name__)


@bp.get("/preferences/<token>")
@headers.secret_link
def page(token):
    """Show every newsletter of the address that owns this unsubscribe link; change nothing."""
    subscription = services.unsubscribe_target(db.session(), token)
    return _render(subscription, token, saved=False)


@bp.post("/preferences/<token>")
@headers.secret_link
def save(token):
    """Unsubscribe the address from every newsletter whose box was left unticked."""
    session = db.session()
    subscription = services.unsubscribe_target(session, token)
    keep = set(request.form.getlist("keep"))
    for other in subscription.subscriber.subscriptions:
        if str(other.id) not in keep:
            services.leave(
                session,
                other,
                ip=client_ip(),
                user_agent=client_user_agent(),
                source="preferences",
            )
    session.commit()
    return _render(subscription, token, saved=True)


def _render(subscription, token: str, saved: bool):
    subscriptions = sorted(subscription.subscriber.subscriptions, key=lambda s: s.newsletter.name)
    return render_template(
        "subscriptions/preferences.html",
        subscriber=subscription.subscriber,
        subscriptions=subscriptions,
        secret=token,
        saved=saved,
        unsubscribed=Status.UNSUBSCRIBED,
    )
