"""Imports from the editors' area as jobs: the upload queues one, the worker runs it.

The upload is checked at once for what can be seen cheaply (UTF-8 throughout, the header row)
and kept as a queued ``ImportJob``; the worker claims a job and runs ``imports.import_csv`` on
it: the CLI's rules, and its one transaction for the list's rows. The job is marked done in
that same transaction, so the list and the report are committed together or not at all.

A claim is a conditional UPDATE of one job, queued or running with a heartbeat older than
STALE_AFTER (its worker died): of two workers, one UPDATE matches and the other finds the row
changed. Each claim counts an attempt, and the attempt is a fence: only the import holding the
latest attempt may finish the job, so a worker that was thought dead and comes back rolls its
import back rather than commit the list twice.

While the import's transaction is open, the counts and the heartbeat go on a connection of
their own, committed at once, for the progress page — on PostgreSQL. On SQLite every
transaction of this app begins IMMEDIATE (``db.create_engine``): the import holds the one write
lock from its first statement to its commit, so no other connection can write the counts, nor
even read the page, meanwhile. There a job goes from running to done in one step, and needs no
heartbeat: no worker can claim anything while the lock is held.
"""

import codecs
import io
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, undefer

from . import db, imports
from .db import utcnow
from .models import Editor, ImportJob, Newsletter

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
# A running job whose heartbeat is older than this lost its worker: another takes it again.
STALE_AFTER = timedelta(minutes=3)
# How often a running import renews its heartbeat, whatever it is doing (waiting for another
# import's turn, say): well inside STALE_AFTER.
HEARTBEAT_SECONDS = 20.0
# The counts are written no more often than this: the page polls about as often.
PROGRESS_SECONDS = 0.5
# A job whose worker died this many times is not taken again: something in it stops workers.
MAX_ATTEMPTS = 3
# Refused rows kept in the report, as the page shows them; the CLI import lists them all.
SHOWN_REFUSED = 1000
# Codes of the failures the import itself does not word (the page words them for the reader);
# any other error is an ``imports.ImportRefused`` message, shown as it is.
BROKEN = "broken"
ABANDONED = "abandoned"
_CHUNK = 1 << 20


def queue(
    session: Session,
    newsletter: Newsletter,
    editor: Editor | None,
    filename: str,
    content: bytes,
    send_confirmation: bool,
) -> ImportJob:
    """Check ``content`` as far as can be done at once, then add it as a queued job; flush.

    Raises ``imports.ImportRefused`` (nothing queued) if the file is not UTF-8 text or its
    header row would be refused.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for start in range(0, len(content), _CHUNK):
            decoder.decode(content[start : start + _CHUNK])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise imports.ImportRefused(
            "The file is not UTF-8 text. Save it as “CSV UTF-8” and import it again."
        ) from None
    imports.check_header(_lines(content))
    job = ImportJob(
        newsletter_id=newsletter.id,
        editor_id=editor.id if editor is not None else None,
        filename=filename[:255],
        state=QUEUED,
        content=content,
        size=len(content),
        lines=content.count(b"\n") + (not content.endswith(b"\n")),
        send_confirmation=send_confirmation,
    )
    session.add(job)
    session.flush()
    return job


def recent(session: Session, newsletter: Newsletter, limit: int = 10) -> list[ImportJob]:
    """Return ``newsletter``'s latest jobs, newest first."""
    return list(
        session.scalars(
            sa.select(ImportJob)
            .where(ImportJob.newsletter_id == newsletter.id)
            .order_by(ImportJob.id.desc())
            .limit(limit)
        )
    )


def find(session: Session, newsletter: Newsletter, job_id: int) -> ImportJob | None:
    """Return the job ``job_id`` if it is ``newsletter``'s, else None."""
    return session.scalar(
        sa.select(ImportJob).where(ImportJob.id == job_id, ImportJob.newsletter_id == newsletter.id)
    )


def _takeable(stale_before):
    return sa.or_(
        ImportJob.state == QUEUED,
        sa.and_(
            ImportJob.state == RUNNING,
            ImportJob.heartbeat_at < stale_before,
            ImportJob.attempts < MAX_ATTEMPTS,
        ),
    )


def claim(session: Session) -> tuple[int, int] | None:
    """Take the oldest job to run, in a transaction of its own; return (id, attempt) or None.

    Jobs whose worker died MAX_ATTEMPTS times are failed here instead of being taken again.
    """
    now = utcnow()
    stale_before = now - STALE_AFTER
    candidates = session.execute(
        sa.select(ImportJob.id, ImportJob.attempts)
        .where(
            sa.or_(
                ImportJob.state == QUEUED,
                sa.and_(ImportJob.state == RUNNING, ImportJob.heartbeat_at < stale_before),
            )
        )
        .order_by(ImportJob.id)
        .limit(5)
    ).all()
    abandoned = [job_id for job_id, attempts in candidates if attempts >= MAX_ATTEMPTS]
    if abandoned:
        session.execute(
            sa.update(ImportJob)
            .where(
                ImportJob.id.in_(abandoned),
                ImportJob.state == RUNNING,
                ImportJob.heartbeat_at < stale_before,
            )
            .values(state=FAILED, error=ABANDONED, content=None, finished_at=now)
            .execution_options(synchronize_session=False)
        )
    candidates = [job_id for job_id, attempts in candidates if attempts < MAX_ATTEMPTS]
    for job_id in candidates:
        attempt = session.scalar(
            sa.update(ImportJob)
            .where(ImportJob.id == job_id, _takeable(stale_before))
            .values(
                state=RUNNING,
                attempts=ImportJob.attempts + 1,
                started_at=now,
                heartbeat_at=now,
                rows_done=0,
                refused=0,
            )
            .returning(ImportJob.attempts)
            .execution_options(synchronize_session=False)
        )
        if attempt is not None:
            session.commit()
            return job_id, attempt
    session.commit()
    return None


def run_round(report: Callable[[str], None] = log.info, budget: float | None = None) -> bool:
    """Run the jobs waiting, one after the other; tell whether any ran.

    The worker's import part of each round. With ``budget``, no job starts after that many
    seconds (a job, once started, runs to its end). A database error is raised, the open
    transaction rolled back; the job is taken again once its heartbeat is stale.
    """
    session = db.session()
    began = time.monotonic()
    ran = False
    while budget is None or time.monotonic() - began < budget:
        claimed = claim(session)
        if claimed is None:
            break
        run(session, *claimed, report=report)
        ran = True
    return ran


def run(
    session: Session, job_id: int, attempt: int, report: Callable[[str], None] = log.info
) -> str | None:
    """Import job ``job_id`` as claimed by ``attempt`` and record how it ended; return its state.

    None means another worker took the job meanwhile (this import was rolled back), or its
    newsletter was deleted, and the job with it.
    """
    job = session.get(ImportJob, job_id, options=[undefer(ImportJob.content)])
    if job is None:
        session.rollback()
        return None
    result = imports.ImportReport()
    pulse = _Pulse(db.engine(), job_id, attempt, result)
    try:
        with pulse:
            imports.import_csv(
                session,
                job.newsletter,
                _lines(job.content),
                send_confirmation=job.send_confirmation,
                progress=pulse.advance,
                report=result,
            )
        state = DONE
        outcome = {"report": _summary(result), "rows_done": pulse.rows, "refused": result.invalid}
    except imports.ImportRefused as exc:
        session.rollback()
        state, outcome = FAILED, {"error": str(exc), "refused": 0}
    except DBAPIError:
        session.rollback()
        raise
    except Exception:
        session.rollback()
        log.exception("import job %s: the import broke", job_id)
        state, outcome = FAILED, {"error": BROKEN, "refused": 0}
    if not _finish(session, job_id, attempt, state, outcome):
        session.rollback()
        report(f"import job {job_id}: taken by another worker meanwhile; this run rolled back")
        return None
    session.commit()
    if state == DONE:
        report(
            f"import job {job_id}: taken {result.taken}, already on the list {result.already}, "
            f"refused {result.invalid}"
        )
    else:
        report(f"import job {job_id}: failed: {outcome['error']}")
    return state


def _finish(session: Session, job_id: int, attempt: int, state: str, outcome: dict) -> bool:
    """Mark the job ended in the open transaction, if ``attempt`` still holds it; tell if so."""
    ended = session.scalar(
        sa.update(ImportJob)
        .where(ImportJob.id == job_id, ImportJob.attempts == attempt, ImportJob.state == RUNNING)
        .values(state=state, content=None, finished_at=utcnow(), **outcome)
        .returning(ImportJob.id)
        .execution_options(synchronize_session=False)
    )
    return ended is not None


def _lines(content: bytes) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(content), encoding="utf-8-sig", newline="")


def _summary(result: imports.ImportReport) -> dict:
    """Return the report as the job keeps it (JSON): the counts, and the refused rows shown."""
    return {
        "taken": result.taken,
        "already": result.already,
        "invalid": result.invalid,
        "mails_queued": result.mails_queued,
        "ignored_columns": result.ignored_columns,
        "refused": [[row.line, row.email, row.reason] for row in result.refused[:SHOWN_REFUSED]],
        "refused_total": len(result.refused),
    }


class _Pulse:
    """A running job's counts and heartbeat, written on a connection of their own.

    The counts are written as the import reports lines read, at most every PROGRESS_SECONDS;
    a thread renews the heartbeat every HEARTBEAT_SECONDS meanwhile. Not on SQLite, where the
    import's transaction holds the only write lock (see the module's docstring).
    """

    def __init__(self, engine: sa.Engine, job_id: int, attempt: int, report: imports.ImportReport):
        self.engine = engine
        self.live = engine.dialect.name != "sqlite"
        self.job = sa.update(ImportJob.__table__).where(
            ImportJob.__table__.c.id == job_id, ImportJob.__table__.c.attempts == attempt
        )
        self.report = report
        self.rows = 0
        self.written_at = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"import-{job_id}", daemon=True)

    def __enter__(self) -> "_Pulse":
        if self.live:
            self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()

    def advance(self, lines: int) -> None:
        """Count ``lines`` more lines read; write the counts if the last write is old enough."""
        self.rows += lines
        if self.live and time.monotonic() - self.written_at >= PROGRESS_SECONDS:
            self.write()

    def write(self) -> None:
        """Commit the counts so far and a fresh heartbeat."""
        self.written_at = time.monotonic()
        with self.engine.begin() as connection:
            connection.execute(
                self.job.values(rows_done=self.rows, refused=self.refused, heartbeat_at=utcnow())
            )

    @property
    def refused(self) -> int:
        return self.report.invalid

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                self.write()
            except DBAPIError as exc:
                log.warning("import heartbeat not written: %s", exc.orig)
