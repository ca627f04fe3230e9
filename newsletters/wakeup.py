"""Wake the worker when a signup is accepted, instead of letting it wait for its next poll.

On PostgreSQL a trigger on ``signup_request`` sends ``NOTIFY newsletters_signups`` when the
request's INSERT commits (migration 0011), and the worker LISTENs on a connection of its own.
In one process (``make run``'s in-process worker) an event does the same for SQLite. Any
other worker polls every WORKER_POLL_SECONDS, so a lost notification costs a poll, never a
signup.
"""

import logging
import threading

import psycopg
import sqlalchemy as sa
from flask import Flask, current_app

log = logging.getLogger(__name__)

CHANNEL = "newsletters_signups"


def notify() -> None:
    """Tell a worker in this process that a signup request was committed just now."""
    event = current_app.extensions.get("newsletters.wakeup")
    if event is not None:
        event.set()


class Waiter:
    """Wait for a wake-up or the poll interval, whichever comes first."""

    def __init__(self, app: Flask):
        self.event = app.extensions.setdefault("newsletters.wakeup", threading.Event())
        self.connection = None
        url = sa.engine.make_url(app.config["DATABASE_URL"])
        if url.get_backend_name() == "postgresql":
            self.conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        else:
            self.conninfo = None

    def wait(self, timeout: float) -> None:
        """Return when woken, or after ``timeout`` seconds."""
        if self.conninfo is None:
            self.event.wait(timeout)
            self.event.clear()
            return
        try:
            if self.connection is None or self.connection.closed:
                self.connection = psycopg.connect(self.conninfo, autocommit=True)
                self.connection.execute(f"LISTEN {CHANNEL}")
            for _ in self.connection.notifies(timeout=timeout, stop_after=1):
                pass
            # Several commits may have notified meanwhile: one round handles them all.
            for _ in self.connection.notifies(timeout=0):
                pass
        except psycopg.Error as exc:
            # The database is restarting: wait out the poll, then listen anew.
            log.warning("cannot listen for signups (%s); polling instead", exc)
            self.close()
            self.event.wait(timeout)

    def close(self) -> None:
        """Stop listening."""
        if self.connection is not None:
            try:
                self.connection.close()
            finally:
                self.connection = None
