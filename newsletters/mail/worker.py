"""The mail worker: claim due outbox rows, render, send outside the claim, mark."""

import logging
import threading
from collections import Counter
from collections.abc import Callable

from flask import Flask, current_app
from jinja2 import TemplateError
from sqlalchemy.exc import OperationalError

from .. import db
from . import outbox, transports
from .messages import Unrenderable, render

log = logging.getLogger(__name__)


def deliver_due(transport, report: Callable[[str], None] = log.info) -> Counter:
    """Send every message due now, one batch at a time; return counts by outcome."""
    session = db.session()
    outcome: Counter = Counter()
    while True:
        batch = outbox.claim_due(session)
        session.commit()
        if not batch:
            return outcome
        for message in batch:
            try:
                mail, links = render(session, message)
            except Unrenderable as exc:
                outbox.mark_failed(session, message, str(exc), permanent=True)
                outcome["failed"] += 1
                report(f"outbox {message.id}: not sendable: {exc}")
            except (ValueError, TemplateError) as exc:
                # Bad data (a newsletter's subject with a line break) or a template bug: this
                # message waits with backoff for a fix, and the ones behind it still go out.
                log.exception("outbox %s: cannot render", message.id)
                error = f"{type(exc).__name__}: {exc}"
                outbox.mark_failed(session, message, error, permanent=False)
                outcome["retry"] += 1
                report(f"outbox {message.id}: cannot render, will retry: {exc}")
            else:
                # End the reading transaction before the network: a slow mail server must
                # not hold database locks (on SQLite, the one write lock) while it talks.
                session.commit()
                try:
                    result = transport.send(mail)
                except transports.PermanentFailure as exc:
                    outbox.mark_failed(session, message, str(exc), permanent=True)
                    outcome["failed"] += 1
                    report(f"outbox {message.id} to {message.recipient}: refused for good: {exc}")
                except transports.TemporaryFailure as exc:
                    outbox.mark_failed(session, message, str(exc), permanent=False)
                    outcome["retry"] += 1
                    report(f"outbox {message.id} to {message.recipient}: will retry: {exc}")
                else:
                    outbox.mark_sent(session, message)
                    outcome["sent"] += 1
                    shown = "".join(
                        f"\n    {name} link: {url}"
                        for name, url in links.items()
                        if transport.shows_links
                    )
                    report(f"{message.kind} mail to {message.recipient} {result}{shown}")
            session.commit()
        if outcome["retry"]:
            # The server is failing; leave the rest of the backlog for the next round.
            return outcome


def run(
    once: bool = False,
    report: Callable[[str], None] = log.info,
    stop: threading.Event | None = None,
) -> Counter:
    """Deliver the outbox: drain it and return (``once``), or poll until ``stop`` is set."""
    stop = stop or threading.Event()
    transport = transports.from_url(current_app.config["MAIL_URL"])
    poll = current_app.config["WORKER_POLL_SECONDS"]
    total: Counter = Counter()
    try:
        while not stop.is_set():
            try:
                total += deliver_due(transport, report)
            except OperationalError as exc:
                db.session().rollback()
                report(f"database unavailable, retrying in {poll}s: {exc.orig}")
            finally:
                transport.close()
            if once:
                break
            stop.wait(poll)
    finally:
        transport.close()
    return total


def start_in_thread(app: Flask, report: Callable[[str], None]) -> threading.Event:
    """Run the worker in a daemon thread of this process (the development server's way)."""
    stop = threading.Event()

    def loop():
        with app.app_context():
            run(report=report, stop=stop)

    threading.Thread(target=loop, name="mail-worker", daemon=True).start()
    return stop
