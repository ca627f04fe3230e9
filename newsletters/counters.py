"""Counts per day, newsletter, form and page: form views, and signups a defence stopped.

A view must not slow the page it counts: ``add`` only adds to this process's tally, and the
tally goes to the database (``daily_count``) in one upsert, on a connection of its own, by
the first view or stop at least COUNT_FLUSH_SECONDS after the last write, by the funnel's
page before it reads, and at the process's exit. So a quiet process holds its last counts
until its next view; a process killed outright loses what it had not written. (No timer
thread: a view is the only clock.) Nothing about a visitor
is counted or kept: no address, no cookie, no identifier (docs/privacy.md).
"""

import atexit
import logging
import threading
import time
import weakref
from collections import Counter
from datetime import UTC, date, datetime

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from .models import DailyCount

log = logging.getLogger(__name__)
COUNTS = DailyCount.__table__
VIEW = "view"
STOPPED = "stopped:"


class Tally:
    """One process's counts not yet written, for one app's database."""

    def __init__(self, engine: sa.Engine, every: float):
        self.engine = engine
        self.every = every
        self.counts: Counter = Counter()
        self.lock = threading.Lock()
        self.written = time.monotonic()

    def add(self, key: tuple) -> None:
        with self.lock:
            self.counts[key] += 1
            due = time.monotonic() - self.written >= self.every
        if due:
            self.flush()

    def flush(self) -> None:
        """Write the tally in one statement; on failure keep it for the next try."""
        with self.lock:
            counts, self.counts = self.counts, Counter()
            self.written = time.monotonic()
        if not counts:
            return
        rows = [
            {
                "day": day,
                "newsletter_id": nid,
                "metric": metric,
                "form": form,
                "page": page,
                "count": n,
            }
            for (day, nid, metric, form, page), n in counts.items()
        ]
        try:
            with self.engine.begin() as connection:
                connection.execute(_upsert(connection.dialect.name), rows)
        except SQLAlchemyError as exc:
            log.warning(
                "counts: could not write %d counts, kept for the next try: %s",
                len(rows),
                exc.__class__.__name__,
            )
            with self.lock:
                self.counts.update(counts)


def _upsert(dialect: str):
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(COUNTS)
    return insert.on_conflict_do_update(
        index_elements=["day", "newsletter_id", "metric", "form", "page"],
        set_={"count": COUNTS.c.count + insert.excluded.count},
    )


def init_app(app: Flask) -> None:
    """Give ``app`` its tally, written out at the process's exit too."""
    engine = app.extensions["newsletters.db"].kw["bind"]
    tally = Tally(engine, app.config["COUNT_FLUSH_SECONDS"])
    app.extensions["newsletters.counts"] = tally
    # By a weak reference: a process that makes many apps (the tests) keeps none alive.
    ref = weakref.ref(tally)
    atexit.register(lambda: (t := ref()) is not None and t.flush())


def today() -> date:
    return datetime.now(UTC).date()


def add(newsletter_ids, metric: str, form: str, page: str | None) -> None:
    """Count one ``metric`` (a view, a stop) of ``form`` on ``page`` for each newsletter."""
    tally: Tally = current_app.extensions["newsletters.counts"]
    day = today()
    for newsletter_id in newsletter_ids:
        tally.add((day, newsletter_id, metric, str(form), page or ""))


def view(newsletter_ids, form: str, page: str | None) -> None:
    """Count one view of ``form`` on ``page``."""
    add(newsletter_ids, VIEW, form, page)


def stopped(newsletter_ids, defence: str, form: str, page: str | None) -> None:
    """Count one signup that ``defence`` stopped (proof.py)."""
    add(newsletter_ids, STOPPED + defence, form, page)


def flush() -> None:
    """Write this process's tally now (tests, the CLI)."""
    current_app.extensions["newsletters.counts"].flush()
