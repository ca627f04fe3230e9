"""The mail worker: claim one due outbox row at a time, render, send outside the claim, mark."""

import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from flask import Flask, current_app
from jinja2 import TemplateError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from .. import db
from ..models import OutboxMessage, OutboxState
from . import messages, outbox, suppressions, transports
from .messages import Unrenderable, render

log = logging.getLogger(__name__)

# This many temporary failures in a row (4xx replies, dropped connections) say that the server
# is failing rather than one address: the rest of the backlog waits for the next round.
TEMPORARY_FAILURES_IN_A_ROW = 3
# The longest pause between attempts to reach a mail server that cannot be used at all:
# short, so the backlog starts draining soon after the server is back.
TRANSPORT_RETRY_CAP = timedelta(seconds=60)
TRANSPORT_ERROR = "transport error"


def deliver_due(transport, report: Callable[[str], None] = log.info) -> Counter:
    """Send every message due now, one at a time; return counts by outcome.

    Outcomes: ``sent``; ``failed`` (refused for good); ``dead`` (given up); ``retry`` (due
    again later, attempt counted); ``transport error`` (the server could not be used: the
    message went back uncounted, and this round ends).
    """
    session = db.session()
    outcome: Counter = Counter()
    parked = outbox.park_expired(session)
    session.commit()
    if parked:
        outcome["dead"] += parked
        report(f"outbox: {parked} messages waited too long and are now dead")
    temporary_in_a_row = 0
    while True:
        # One message per claim, so each lease covers one send, which the SMTP timeout bounds:
        # it cannot run out while earlier messages of a batch go out, and a killed worker
        # strands one row, not a batch, until its lease ends. Renewing a batch's leases would
        # cost the same write per message, with more ways to get it wrong.
        claimed = outbox.claim_due(session, limit=1)
        session.commit()
        if not claimed:
            return outcome
        [message] = claimed
        try:
            result, server_failed = _deliver(session, transport, message, report)
        except transports.TransportFailure as exc:
            outbox.release(session, message)
            status = outbox.transport_failed(session, transport.describe(), str(exc))
            session.commit()
            log.error(
                "mail transport %s cannot be used (%d failures in a row): %s; "
                "no mail goes out until it can",
                transport.describe(),
                status.failures,
                exc,
            )
            report(f"outbox {message.id}: put back, will retry when the mail server works")
            outcome[TRANSPORT_ERROR] += 1
            return outcome
        session.commit()
        if result == "sent" and not outcome["sent"]:
            outbox.transport_worked(session, transport.describe())
            session.commit()
        outcome[result] += 1
        temporary_in_a_row = temporary_in_a_row + 1 if server_failed else 0
        if temporary_in_a_row >= TEMPORARY_FAILURES_IN_A_ROW:
            report("outbox: the mail server keeps failing; the rest waits for the next round")
            return outcome


def _deliver(
    session: Session, transport, message: OutboxMessage, report: Callable[[str], None]
) -> tuple[str, bool]:
    """Render and send one claimed message and mark it.

    Return the outcome's name, and whether the server failed for a reason that may not be
    this message's (a temporary failure).
    """
    try:
        mail, links = render(session, message)
    except (Unrenderable, ValueError) as exc:
        # What the database holds cannot make this mail (its signup is gone, a newsletter's
        # text cannot be a header): every attempt would fail alike until someone corrects
        # the data, so it is parked at once, with the reason editors are shown.
        reason = str(exc) if isinstance(exc, Unrenderable) else f"{type(exc).__name__}: {exc}"
        log.warning("outbox %s: cannot be built: %s", message.id, reason)
        outbox.mark_unbuilt(session, message, reason)
        report(f"outbox {message.id}: cannot be built, not sent: {reason}")
        return "failed", False
    except TemplateError as exc:
        # A bug in a template, which a deploy fixes: this message waits with backoff for
        # it, and the ones behind it still go out.
        log.exception("outbox %s: cannot render", message.id)
        outbox.mark_failed(session, message, f"{type(exc).__name__}: {exc}", permanent=False)
        report(f"outbox {message.id}: cannot render, {_next_step(message)}: {exc}")
        return _retry_or_dead(message), False
    newsletter_ids = messages.newsletter_ids(session, message)
    if newsletter_ids and set(newsletter_ids) <= suppressions.suppressed(
        session, message.recipient, newsletter_ids
    ):
        # Queued before the server refused this address: asking again would only hurt the
        # sender's reputation.
        outbox.mark_failed(session, message, "address suppressed: refused before", permanent=True)
        report(f"outbox {message.id} to {message.recipient}: suppressed, not sent")
        return "failed", False
    # End the reading transaction before the network: a slow mail server must not hold
    # database locks (on SQLite, the one write lock) while it talks.
    session.commit()
    try:
        result = transport.send(mail)
    except transports.RecipientRefused as exc:
        suppressions.suppress(session, message.recipient, newsletter_ids, str(exc))
        outbox.mark_failed(session, message, str(exc), permanent=True)
        report(f"outbox {message.id} to {message.recipient}: refused for good: {exc}")
        return "failed", False
    except transports.PermanentFailure as exc:
        outbox.mark_failed(session, message, str(exc), permanent=True)
        report(f"outbox {message.id} to {message.recipient}: refused for good: {exc}")
        return "failed", False
    except transports.TemporaryFailure as exc:
        outbox.mark_failed(session, message, str(exc), permanent=False)
        report(f"outbox {message.id} to {message.recipient}: {_next_step(message)}: {exc}")
        return _retry_or_dead(message), True
    outbox.mark_sent(session, message)
    shown = "".join(
        f"\n    {name} link: {url}" for name, url in links.items() if transport.shows_links
    )
    report(f"{message.kind} mail to {message.recipient} {result}{shown}")
    return "sent", False


def _retry_or_dead(message: OutboxMessage) -> str:
    return "dead" if message.state == OutboxState.DEAD else "retry"


def _next_step(message: OutboxMessage) -> str:
    if message.state == OutboxState.DEAD:
        return "given up (dead)"
    return "will retry"


def run(
    once: bool = False,
    report: Callable[[str], None] = log.info,
    stop: threading.Event | None = None,
) -> Counter:
    """Deliver the outbox: drain it and return (``once``), or poll until ``stop`` is set.

    While the mail server cannot be used at all, the pause between rounds doubles from the
    poll interval up to a minute, instead of knocking every poll.
    """
    stop = stop or threading.Event()
    transport = transports.from_url(current_app.config["MAIL_URL"])
    poll = current_app.config["WORKER_POLL_SECONDS"]
    total: Counter = Counter()
    transport_failures = 0
    try:
        while not stop.is_set():
            pause = poll
            try:
                outcome = deliver_due(transport, report)
            except OperationalError as exc:
                db.session().rollback()
                report(f"database unavailable, retrying in {poll}s: {exc.orig}")
            else:
                total += outcome
                if outcome[TRANSPORT_ERROR]:
                    transport_failures += 1
                    pause = max(poll, _transport_pause(transport_failures))
                else:
                    transport_failures = 0
            finally:
                transport.close()
            if once:
                break
            stop.wait(pause)
    finally:
        transport.close()
    return total


def _transport_pause(failures: int) -> float:
    return min(outbox.backoff(failures), TRANSPORT_RETRY_CAP).total_seconds()


def start_in_thread(app: Flask, report: Callable[[str], None]) -> threading.Event:
    """Run the worker in a daemon thread of this process (the development server's way)."""
    stop = threading.Event()

    def loop():
        with app.app_context():
            run(report=report, stop=stop)

    threading.Thread(target=loop, name="mail-worker", daemon=True).start()
    return stop
