"""The ``webhook`` commands: add (the secret printed once), list, remove, resume, deliveries."""

from datetime import datetime

import click
from flask.cli import with_appcontext

from .. import catalogue, db
from . import services

webhook_group = click.Group("webhook", help="Add, list and remove webhooks.")


def _newsletter(session, slug: str):
    newsletter = catalogue.find(session, slug)
    if newsletter is None:
        raise click.ClickException(f"there is no newsletter called {slug!r}")
    return newsletter


def _webhook(session, webhook_id: int):
    try:
        return services.find(session, webhook_id)
    except services.WebhookError as exc:
        raise click.ClickException(f"{exc} (see 'newsletters webhook list')") from None


@webhook_group.command("add")
@click.argument("slug")
@click.argument("url")
@with_appcontext
def webhook_add(slug, url):
    """Tell URL of every subscription change of SLUG; print the signing secret once."""
    session = db.session()
    newsletter = _newsletter(session, slug)
    try:
        webhook, secret = services.add(session, newsletter, url)
    except services.WebhookError as exc:
        session.rollback()
        raise click.ClickException(str(exc)) from None
    session.commit()
    # The secret alone on stdout, so that a script can take it; the rest on stderr.
    click.echo(secret)
    click.echo(
        f"webhook {webhook.id} of {newsletter.slug} to {webhook.url}: copy the secret now, it "
        "is not shown again; each POST carries X-Newsletters-Signature: sha256=<hex "
        "HMAC-SHA256 of the body with it>",
        err=True,
    )


@webhook_group.command("list")
@click.argument("slug", required=False)
@with_appcontext
def webhook_list(slug):
    """List the webhooks, of SLUG or of every newsletter: id, newsletter, URL, state."""
    session = db.session()
    newsletter = _newsletter(session, slug) if slug else None
    for webhook in services.listing(session, newsletter):
        waiting = services.pending_count(session, webhook)
        if webhook.paused_at:
            state = f"paused {_when(webhook.paused_at)}: {webhook.paused_reason}"
        else:
            state = "active"
        click.echo(
            "\t".join(
                (
                    str(webhook.id),
                    webhook.newsletter.slug,
                    webhook.url,
                    f"{waiting} waiting",
                    state,
                )
            )
        )


@webhook_group.command("remove")
@click.argument("webhook_id", type=int)
@with_appcontext
def webhook_remove(webhook_id):
    """Remove the webhook WEBHOOK_ID, with its delivery log and what still waits."""
    session = db.session()
    webhook = _webhook(session, webhook_id)
    url = webhook.url
    services.remove(session, webhook)
    session.commit()
    click.echo(f"removed webhook {webhook_id} to {url}")


@webhook_group.command("resume")
@click.argument("webhook_id", type=int)
@with_appcontext
def webhook_resume(webhook_id):
    """Resume the paused webhook WEBHOOK_ID: its deliveries go on from where they stopped."""
    session = db.session()
    webhook = _webhook(session, webhook_id)
    if not services.resume(session, webhook):
        raise click.ClickException(f"webhook {webhook_id} is not paused")
    session.commit()
    click.echo(f"resumed webhook {webhook_id}: {services.pending_count(session, webhook)} waiting")


@webhook_group.command("deliveries")
@click.argument("webhook_id", type=int)
@click.option("--limit", type=click.IntRange(1, 10_000), default=services.LOG_LENGTH)
@with_appcontext
def webhook_deliveries(webhook_id, limit):
    """Show the delivery log of WEBHOOK_ID, newest first: id, event, state, attempts, error."""
    session = db.session()
    webhook = _webhook(session, webhook_id)
    for delivery in services.deliveries(session, webhook, limit):
        click.echo(
            "\t".join(
                (
                    str(delivery.id),
                    delivery.message_id,
                    str(delivery.state),
                    f"{delivery.attempts} attempts",
                    f"sent {_when(delivery.sent_at)}" if delivery.sent_at else "not sent",
                    delivery.last_error or "",
                )
            )
        )


def _when(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S} UTC"
