"""The ``outbox`` commands: watch the mail queue, and queue given-up mails again."""

import click
import sqlalchemy as sa
from flask.cli import with_appcontext

from .. import db
from ..models import OutboxMessage, OutboxState
from . import outbox


@click.group("outbox", help="Inspect the mail outbox and retry what was given up.")
def outbox_group():
    pass


@outbox_group.command("status")
@with_appcontext
def outbox_status():
    """Show the messages in each state, the oldest due one and the last transport error."""
    session = db.session()
    for state, n in sorted(outbox.counts(session).items()):
        click.echo(f"{state}\t{n}")
    oldest = outbox.oldest_due(session)
    click.echo(f"oldest due\t{oldest.isoformat() if oldest else '-'}")
    status = outbox.last_transport_error(session)
    if status is not None:
        if status.failures:
            state = f"failing: {status.failures} failures in a row"
        else:
            state = f"recovered {status.recovered_at.isoformat()}"
        click.echo(
            f"last transport error\t{status.failed_at.isoformat()} {status.transport}: "
            f"{status.last_error} ({state})"
        )


@outbox_group.command("retry")
@click.option("--id", "ids", type=int, multiple=True, metavar="N", help="A message to retry.")
@click.option("--all-dead", is_flag=True, help="Retry every dead message.")
@click.option(
    "--failed",
    "with_failed",
    is_flag=True,
    help="Failed messages too: every one, or those of --id (lifts their suppressions).",
)
@with_appcontext
def outbox_retry(ids, all_dead, with_failed):
    """Queue dead (and, with --failed, failed) messages again, with their attempts reset."""
    if ids and all_dead:
        raise click.UsageError("give either --id or --all-dead, not both")
    if not (ids or all_dead or with_failed):
        raise click.UsageError("say which messages: --id N (repeatable), --all-dead, --failed")
    if ids:
        states = [OutboxState.DEAD] + ([OutboxState.FAILED] if with_failed else [])
    else:
        states = [OutboxState.DEAD] * all_dead + [OutboxState.FAILED] * with_failed
    session = db.session()
    retried = outbox.retry(session, states, ids)
    session.commit()
    click.echo(f"queued again: {len(retried)} messages")
    missing = sorted(set(ids) - {message.id for message in retried})
    for message_id in missing:
        state = session.scalar(sa.select(OutboxMessage.state).where(OutboxMessage.id == message_id))
        why = "no such message" if state is None else f"it is {state}, not {_names(states)}"
        click.echo(f"message {message_id}: not queued again: {why}", err=True)
    if missing:
        raise SystemExit(1)


def _names(states: list[OutboxState]) -> str:
    return " or ".join(str(state) for state in states)
