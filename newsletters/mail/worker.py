"""The worker: each round, process the waiting signup requests, then deliver the due outbox.

Signups go in batches, a transaction each (``subscriptions.processing``). Mail goes in
batches too: one statement claims a batch, three queries read what its mails need (tokens,
newsletters, suppressions), the mails are built from one prototype per set of newsletters and
sent over one SMTP connection, and one transaction records what became of the whole batch.
A round that found nothing to do waits for a signup's wake-up (``wakeup.Waiter``) or
WORKER_POLL_SECONDS.
"""

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, current_app
from jinja2 import TemplateError
from sqlalchemy.exc import DBAPIError, OperationalError

from .. import db, import_jobs, reader_mails
from ..models import OutboxKind, OutboxMessage, OutboxState
from ..subscriptions import links, processing
from ..webhooks import delivery as webhook_delivery
from . import outbox, transports
from .messages import Mail, Renderer, Unrenderable

log = logging.getLogger(__name__)

# This many temporary failures in a row (4xx replies, dropped connections) say that the server
# is failing rather than one address: the rest of the backlog waits for the next round.
TEMPORARY_FAILURES_IN_A_ROW = 3
# The longest pause between attempts to reach a mail server that cannot be used at all:
# short, so the backlog starts draining soon after the server is back.
TRANSPORT_RETRY_CAP = timedelta(seconds=60)
TRANSPORT_ERROR = "transport error"
# The most mails one claim takes. Each claim takes no more than its connection has carried in
# a row without a failure (1, 1, 2, 4, … up to this): so a relay that fails or stalls, or a
# worker killed mid-batch, holds back no more mails than that worker had just sent fine.
# A batch's statements cost per batch as much as per mail (bench/RESULTS.md: on PostgreSQL
# 315 µs a mail in batches of 100, 178 in batches of 300): 400 make them a small part.
MAX_BATCH = 400
# What a batch sent is recorded at least this often (``_Batch._checkpoint``): a worker killed
# mid-batch sends again, with the same Message-IDs, no more than about a second's mails.
CHECKPOINT_SECONDS = 1.0
# A running worker's time for each part of a round before it turns to the other, so a flood
# of signups cannot hold mail back, nor a backlog of mail the signups. --once drains both.
ROUND_SECONDS = 1.0
# Times a batch of signups is tried again at once after a deadlock or serialization failure
# with another worker, before the round gives up and waits.
CONFLICT_RETRIES = 3


def render(renderer: Renderer, message: OutboxMessage) -> Mail:
    """Build the mail of ``message`` from what ``renderer`` read for its batch."""
    return renderer.render(message)


def process_signups(report: Callable[[str], None] = log.info, budget: float | None = None) -> int:
    """Process waiting signup requests, a batch per transaction, until none waits; return how many.

    With ``budget``, stop after the batch that spends that many seconds. A database error
    rolls the batch back and is raised, but a deadlock or serialization failure with another
    worker first tries that batch again a few times.
    """
    session = db.session()
    began = time.monotonic()
    done = batches = conflicts = 0
    while budget is None or time.monotonic() - began < budget:
        try:
            processed = processing.process_due(session)
            session.commit()
            # Readers' "send me my link" requests, in a transaction of their own: each locks
            # its addresses in one order, so a worker never holds two batches' locks.
            processed += links.process_due(session)
            session.commit()
        except DBAPIError as exc:
            session.rollback()
            if _conflict(exc) and conflicts < CONFLICT_RETRIES:
                conflicts += 1
                continue
            raise
        if not processed:
            break
        done += processed
        batches += 1
    if done:
        report(
            f"signups: {done} requests processed in {time.monotonic() - began:.2f} s "
            f"({batches} batches)"
        )
    return done


def _conflict(exc: DBAPIError) -> bool:
    # PostgreSQL's serialization_failure and deadlock_detected: the same work succeeds again.
    return getattr(exc.orig, "sqlstate", None) in ("40001", "40P01")


class Delivery:
    """Deliver the outbox through one transport, a batch of messages at a time."""

    def __init__(self, transport, report: Callable[[str], None] = log.info):
        self.transport = transport
        self.report = report
        # Mails the open connection carried in a row without a failure: a claim takes no more.
        self.streak = 0
        # Whether the last round stopped at its time budget, with due mail perhaps left.
        self.cut_short = False
        # The round's counts by outcome, its temporary failures in a row, and whether it
        # recorded that the transport works.
        self.outcome: Counter = Counter()
        self.temporary_in_a_row = 0
        self.worked = False

    def close(self) -> None:
        """Close the connection; the next one starts again from batches of one."""
        self.transport.close()
        self.streak = 0

    def deliver_due(self, budget: float | None = None) -> Counter:
        """Send the messages due now, batch after batch; return counts by outcome.

        Outcomes: ``sent``; ``failed`` (refused for good); ``dead`` (given up); ``retry`` (due
        again later, attempt counted); ``transport error`` (the server could not be used: the
        messages went back uncounted, and this round ends). With ``budget``, no batch is
        claimed after that many seconds.
        """
        session = db.session()
        self.outcome: Counter = Counter()
        self.temporary_in_a_row = 0
        self.worked = False
        self.cut_short = False
        prototypes: dict = {}
        began = time.monotonic()
        parked = outbox.park_expired(session)
        session.commit()
        if parked:
            self.outcome["dead"] += parked
            self.report(f"outbox: {parked} messages waited too long and are now dead")
        claim = self._claim(session, self._size(), prototypes)
        while claim is not None:
            going = _Batch(self, claim).send()
            if not going:
                break
            if budget is not None and time.monotonic() - began >= budget:
                self.cut_short = True
                break
            claim = self._claim(session, self._size(), prototypes)
        handled = sum(n for name, n in self.outcome.items() if name != TRANSPORT_ERROR)
        if handled:
            self.report(f"outbox: {handled} mails handled in {time.monotonic() - began:.2f} s")
        return self.outcome

    def _size(self) -> int:
        # No more than the connection carried in a row: 1, 1, 2, 4, … up to MAX_BATCH.
        return max(1, min(MAX_BATCH, self.streak))

    def _claim(self, session, limit: int, prototypes: dict) -> "_Claim | None":
        """Claim a batch and read what its mails need, in one transaction; None if none is due."""
        claimed_at = time.monotonic()
        rows = outbox.claim(session, limit=limit)
        if not rows:
            session.commit()
            return None
        # Read in the claim's transaction: one commit, and SQLite's write lock held once.
        claim = _Claim(
            rows,
            claimed_at,
            Renderer(session, rows, prototypes),
            outbox.suppressed(session, [m.recipient for m in rows]),
        )
        session.commit()
        return claim


@dataclass
class _Claim:
    """A claimed batch: its rows (oldest first), and what was read for its mails."""

    rows: list
    claimed_at: float  # monotonic, taken before the claim: its lease ends no sooner
    renderer: Renderer
    suppressed: set[tuple[str, int]]

    @property
    def held_until(self) -> datetime:
        # One statement leased them all, until the same moment.
        return self.rows[0].locked_until


class _Batch:
    """One claim's messages: sent one after the other, their outcomes recorded together.

    The lease covers the batch's sending time: a mail starts only while at least half the
    lease remains; when less does, what the batch did so far is recorded and the lease of the
    rest renewed, in one transaction (``_checkpoint``). So a send may take half the lease
    (150 s by default, five replies at the 30 s SMTP timeout) before any lease could end.
    A checkpoint also comes every CHECKPOINT_SECONDS, renewing nothing while the lease is young.
    """

    def __init__(self, delivery: Delivery, claim: _Claim):
        self.delivery = delivery
        self.report = delivery.report
        self.outcome = delivery.outcome
        self.renderer = claim.renderer
        self.suppressed = set(claim.suppressed)
        self.rest = list(claim.rows)
        self.held_until: datetime = claim.held_until
        self.half_lease = outbox.lease().total_seconds() / 2
        self.renew_at = claim.claimed_at + self.half_lease
        self.checkpoint_at = time.monotonic() + CHECKPOINT_SECONDS
        self.sent: list[int] = []
        # The confirmation tokens of the mails sent: their signups reached the mail server.
        self.confirmations_sent: list[int] = []
        self.reported: list[str] = []
        self.failures: list[outbox.Failure] = []
        self.refused: list[tuple[str, int, str]] = []
        self.transport_error: str | None = None

    def send(self) -> bool:
        """Send the batch's mails and record what became of them; tell if the round goes on."""
        going = True
        try:
            while self.rest and going:
                now = time.monotonic()
                if now >= self.checkpoint_at or now >= self.renew_at:
                    self._checkpoint(renew=now >= self.renew_at)
                    continue
                going = self._send(self.rest.pop(0))
        finally:
            # However the batch ends (done, the server failing, an interrupt), what was sent
            # is recorded and what was not is given back: nothing waits for the lease.
            self._record(release=self.rest)
        return going

    def _send(self, message: OutboxMessage) -> bool:
        """Build and send one message, noting its outcome; tell whether the round goes on."""
        try:
            mail = render(self.renderer, message)
        except (Unrenderable, ValueError) as exc:
            # What the database holds cannot make this mail (its signup is gone, a newsletter's
            # text cannot be a header): every attempt would fail alike until someone corrects
            # the data, so it is parked at once, with the reason editors are shown.
            reason = str(exc) if isinstance(exc, Unrenderable) else f"{type(exc).__name__}: {exc}"
            log.warning("outbox %s: cannot be built: %s", message.id, reason)
            self._failed(outbox.unbuilt_failure(message, reason))
            self.report(f"outbox {message.id}: cannot be built, not sent: {reason}")
            return self._not_the_servers_fault()
        except TemplateError as exc:
            # A bug in a template, which a deploy fixes: this message waits with backoff for
            # it, and the ones behind it still go out.
            log.exception("outbox %s: cannot render", message.id)
            failure = outbox.failure(message, f"{type(exc).__name__}: {exc}", permanent=False)
            self._failed(failure)
            self.report(f"outbox {message.id}: cannot render, {_next_step(failure)}: {exc}")
            return self._not_the_servers_fault()
        newsletter_ids = self.renderer.newsletter_ids(message)
        if newsletter_ids and all(
            (message.recipient, n) in self.suppressed for n in newsletter_ids
        ):
            # Queued before the server refused this address: asking again would only hurt the
            # sender's reputation.
            error = "address suppressed: refused before"
            self._failed(outbox.failure(message, error, permanent=True))
            self.report(f"outbox {message.id} to {message.recipient}: suppressed, not sent")
            return self._not_the_servers_fault()
        transport = self.delivery.transport
        try:
            result = transport.send(mail)
        except transports.TransportFailure as exc:
            self.rest.insert(0, message)  # given back with the rest, uncounted
            self.transport_error = str(exc)
            self.outcome[TRANSPORT_ERROR] += 1
            self.report(f"outbox {message.id}: put back, will retry when the mail server works")
            return False
        except transports.RecipientRefused as exc:
            self.refused += [(message.recipient, n, str(exc)) for n in newsletter_ids]
            self.suppressed |= {(message.recipient, n) for n in newsletter_ids}
            self._failed(outbox.failure(message, str(exc), permanent=True))
            self.report(f"outbox {message.id} to {message.recipient}: refused for good: {exc}")
            return self._not_the_servers_fault()
        except transports.PermanentFailure as exc:
            self._failed(outbox.failure(message, str(exc), permanent=True))
            self.report(f"outbox {message.id} to {message.recipient}: refused for good: {exc}")
            return self._not_the_servers_fault()
        except transports.TemporaryFailure as exc:
            failure = outbox.failure(message, str(exc), permanent=False)
            self._failed(failure)
            self.report(f"outbox {message.id} to {message.recipient}: {_next_step(failure)}: {exc}")
            self.delivery.streak = 0
            self.delivery.temporary_in_a_row += 1
            if self.delivery.temporary_in_a_row >= TEMPORARY_FAILURES_IN_A_ROW:
                self.report(
                    "outbox: the mail server keeps failing; the rest waits for the next round"
                )
                return False
            return True
        self.sent.append(message.id)
        if message.kind == OutboxKind.CONFIRM and isinstance(message.payload, dict):
            self.confirmations_sent.append(message.payload.get("token_id"))
        self.outcome["sent"] += 1
        self.delivery.streak += 1
        self.delivery.temporary_in_a_row = 0
        shown = "".join(
            f"\n    {name} link: {url}" for name, url in mail.links.items() if transport.shows_links
        )
        self.reported.append(f"{message.kind} mail to {message.recipient} {result}{shown}")
        return True

    def _not_the_servers_fault(self) -> bool:
        self.delivery.temporary_in_a_row = 0
        return True

    def _failed(self, failure: outbox.Failure) -> None:
        self.failures.append(failure)
        self.outcome[_outcome(failure)] += 1

    def _write(self, session) -> None:
        """Record the sends and failures noted since the last write, in the open transaction."""
        if self.reported:
            # One report for the mails sent since the last write (at most a second's): a
            # line each, but one write to the log instead of one per mail.
            self.report("\n".join(self.reported))
            self.reported = []
        outbox.mark_all_sent(session, self.sent)
        outbox.note_confirmations_accepted(session, self.confirmations_sent)
        outbox.mark_all_failed(session, self.failures, self.held_until)
        outbox.suppress_all(session, self.refused)
        if self.sent and not self.delivery.worked:
            outbox.transport_worked(session, self.delivery.transport.describe())
            self.delivery.worked = True
        self.sent, self.failures, self.refused = [], [], []
        self.confirmations_sent = []

    def _checkpoint(self, renew: bool) -> None:
        """Record what the batch did so far, and renew the lease of the rest: one transaction."""
        session = db.session()
        try:
            self._write(session)
            if renew:
                held, self.held_until = outbox.renew(
                    session, [m.id for m in self.rest], self.held_until
                )
            session.commit()
        except BaseException:
            session.rollback()
            raise
        if renew:
            # A mail whose lease ran out meanwhile (the worker stalled) is another's now.
            self.rest = [m for m in self.rest if m.id in set(held)]
            self.renew_at = time.monotonic() + self.half_lease
        self.checkpoint_at = time.monotonic() + CHECKPOINT_SECONDS

    def _record(self, release: list[OutboxMessage]) -> None:
        """Record the batch's outcomes and give back what it did not send: one transaction."""
        session = db.session()
        transport = self.delivery.transport
        try:
            self._write(session)
            outbox.release_all(session, [m.id for m in release], self.held_until)
            status = None
            if self.transport_error is not None:
                status = outbox.transport_failed(
                    session, transport.describe(), self.transport_error
                )
            session.commit()
        except BaseException:
            session.rollback()
            raise
        if status is not None:
            log.error(
                "mail transport %s cannot be used (%d failures in a row): %s; "
                "no mail goes out until it can",
                transport.describe(),
                status.failures,
                self.transport_error,
            )


def _outcome(failure: outbox.Failure) -> str:
    return {OutboxState.FAILED: "failed", OutboxState.DEAD: "dead"}.get(failure.state, "retry")


def _next_step(failure: outbox.Failure) -> str:
    if failure.state == OutboxState.DEAD:
        return "given up (dead)"
    return "will retry"


def run(
    once: bool = False,
    report: Callable[[str], None] = log.info,
    stop: threading.Event | None = None,
) -> Counter:
    """Process signups and deliver the outbox: drain both and return (``once``), or until ``stop``.

    Each round processes the waiting signup requests, delivers the due mail, then the webhooks'
    (``webhooks.delivery.run_round``), then the lists editors uploaded (``import_jobs``); a
    round that found nothing to do waits for a signup's wake-up or WORKER_POLL_SECONDS. A
    database error ends that part of the round (rolled back, tried again next round), never
    the worker. While the mail server cannot be used at all,
    delivery pauses between attempts for a time that doubles from the poll interval up to a
    minute, while signups are still processed.
    Returns the mail's counts by outcome (see ``Delivery.deliver_due``).
    """
    stop = stop or threading.Event()
    app = current_app._get_current_object()
    poll = app.config["WORKER_POLL_SECONDS"]
    delivery = Delivery(transports.from_url(app.config["MAIL_URL"]), report)
    # Imported here: it imports psycopg, which every other command the CLI module serves
    # (an export, an import on SQLite) would otherwise load at start for nothing.
    from .. import wakeup

    waiter = wakeup.Waiter(app)
    # Reminders are due by the hour: a running worker looks once a minute; --once looks now.
    reminders = reader_mails.Reminders(report, interval=0 if once else None)
    budget = None if once else ROUND_SECONDS
    total: Counter = Counter()
    transport_failures = 0
    mail_after = 0.0  # monotonic: no attempt at a mail server that cannot be used before
    try:
        while not stop.is_set():
            busy = False
            try:
                busy = process_signups(report, budget) > 0
            except DBAPIError as exc:
                _database_error(exc, poll, report)
            try:
                busy = reminders.run_round() > 0 or busy
            except DBAPIError as exc:
                _database_error(exc, poll, report)
            if time.monotonic() >= mail_after:
                try:
                    outcome = delivery.deliver_due(budget)
                except DBAPIError as exc:
                    _database_error(exc, poll, report)
                    delivery.close()
                else:
                    total += outcome
                    busy = busy or delivery.cut_short
                    if outcome[TRANSPORT_ERROR]:
                        transport_failures += 1
                        pause = max(poll, _transport_pause(transport_failures))
                        mail_after = time.monotonic() + pause
                    else:
                        transport_failures = 0
            # Webhooks after the mail: a receiver's timeouts must not hold confirmations back.
            try:
                busy = webhook_delivery.run_round(report, budget) or busy
            except DBAPIError as exc:
                _database_error(exc, poll, report)
            # Lists uploaded by editors last: a job runs to its end once started.
            try:
                busy = import_jobs.run_round(report, budget) or busy
            except DBAPIError as exc:
                _database_error(exc, poll, report)
            if once:
                break
            if not busy:
                # A server drops an idle connection anyway; the next mail opens a new one.
                delivery.close()
                waiter.wait(poll)
    finally:
        delivery.close()
        waiter.close()
    return total


def _database_error(exc: DBAPIError, poll: float, report: Callable[[str], None]) -> None:
    db.session().rollback()
    if isinstance(exc, OperationalError) and not _conflict(exc):
        report(f"database unavailable, retrying in {poll}s: {exc.orig}")
    else:
        log.error("database error, retrying in %ss: %s", poll, exc.orig)
        report(f"database error, retrying in {poll}s: {exc.orig}")


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
