"""The worker's signup rounds: requests become subscriptions and mails, once each, whatever ends it.

Requests are stored as a signup's request stores them (``processing.accept``); the workers are
``worker.run`` in the test's process, or real ``newsletters worker`` processes.
"""

import signal
import subprocess
import time
from collections import Counter

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from newsletters import db, wakeup
from newsletters.mail import worker
from newsletters.models import (
    ConsentEvent,
    Newsletter,
    OutboxMessage,
    OutboxState,
    SignupRequest,
    Status,
    Subscriber,
    Subscription,
)
from newsletters.subscriptions import processing

from .conftest import SCRIPT, stopped

EVIDENCE = processing.Evidence(ip=None, user_agent=None, source="form")


def newsletter_ids(session, *slugs) -> list[int]:
    for slug in slugs:
        if not session.scalar(sa.select(Newsletter.id).where(Newsletter.slug == slug)):
            session.add(Newsletter(slug=slug, name=slug.title()))
    session.commit()
    found = dict(session.execute(sa.select(Newsletter.slug, Newsletter.id)).all())
    return [found[slug] for slug in slugs]


def accept(app, requests: list[tuple[list[int], str]]) -> None:
    """Store signup requests of (newsletter ids, address), committed together."""
    with app.app_context():
        for ids, email in requests:
            processing.accept(db.session(), processing.Request.of(ids, email, None, EVIDENCE))
        db.session().commit()


def count(session, model, *where) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def subscriptions(session) -> Counter:
    """Return how many subscriptions each (address, newsletter id) has."""
    rows = session.execute(
        sa.select(Subscriber.email, Subscription.newsletter_id).join(Subscription.subscriber)
    )
    return Counter(tuple(row) for row in rows)


def start_worker(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(SCRIPT), "worker", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_worker_processes_signup_requests_and_sends_their_mails(app, session, smtp_server):
    [briefing] = newsletter_ids(session, "briefing")
    accept(app, [([briefing], f"reader{n}@example.com") for n in range(3)])
    assert count(session, Subscription) == 0  # nothing but the requests yet

    app.config["MAIL_URL"] = smtp_server.url
    lines = []
    with app.app_context():
        assert worker.run(once=True, report=lines.append) == {"sent": 3}
    assert count(session, SignupRequest) == 0
    assert subscriptions(session) == {(f"reader{n}@example.com", briefing): 1 for n in range(3)}
    assert {s.status for s in session.scalars(sa.select(Subscription))} == {Status.PENDING}
    assert sorted(m["To"] for m in smtp_server.messages) == [
        f"reader{n}@example.com" for n in range(3)
    ]
    assert any(line.startswith("signups: 3 requests processed") for line in lines)


@pytest.mark.settings(SIGNUP_BATCH=7)
def test_once_drains_every_request_in_batches_then_every_mail(app, session, smtp_server):
    [briefing] = newsletter_ids(session, "briefing")
    accept(app, [([briefing], f"reader{n}@example.com") for n in range(30)])
    app.config["MAIL_URL"] = smtp_server.url
    lines = []
    with app.app_context():
        assert worker.run(once=True, report=lines.append) == {"sent": 30}
    assert count(session, SignupRequest) == 0
    assert "signups: 30 requests processed" in "\n".join(lines)
    assert "(5 batches)" in "\n".join(lines)
    assert len({m["Message-ID"] for m in smtp_server.messages}) == 30


def deadlock() -> OperationalError:
    """Return the error SQLAlchemy raises for PostgreSQL's deadlock_detected."""

    class Deadlock(Exception):
        sqlstate = "40P01"

    return OperationalError("SELECT … FOR UPDATE", {}, Deadlock("deadlock detected"))


def test_a_deadlock_while_processing_is_rolled_back_and_the_batch_tried_again(
    app, session, smtp_server, monkeypatch
):
    [briefing] = newsletter_ids(session, "briefing")
    accept(app, [([briefing], "reader@example.com")])
    real = processing.process_due
    failures = iter([deadlock(), deadlock()])

    def conflicted(session, limit=None):
        done = real(session, limit)  # the batch's statements ran; its commit will not
        if (error := next(failures, None)) is not None:
            raise error
        return done

    monkeypatch.setattr(processing, "process_due", conflicted)
    app.config["MAIL_URL"] = smtp_server.url
    with app.app_context():
        assert worker.run(once=True) == {"sent": 1}
    # Rolled back twice, then done once: one subscription, one consent event, one mail.
    assert subscriptions(session) == {("reader@example.com", briefing): 1}
    assert count(session, ConsentEvent) == 1
    assert count(session, OutboxMessage) == 1
    assert count(session, SignupRequest) == 0


def test_a_database_error_while_processing_leaves_the_requests_and_the_worker_running(
    app, session, smtp_server, monkeypatch
):
    [briefing] = newsletter_ids(session, "briefing")
    accept(app, [([briefing], "first@example.com")])
    app.config["MAIL_URL"] = smtp_server.url
    with app.app_context():
        assert worker.run(once=True) == {"sent": 1}
    accept(app, [([briefing], "second@example.com")])

    def unavailable(session, limit=None):
        raise OperationalError("SELECT", {}, Exception("server closed the connection"))

    with monkeypatch.context() as patched:
        patched.setattr(processing, "process_due", unavailable)
        lines = []
        with app.app_context():
            assert worker.run(once=True, report=lines.append) == {}
        assert any("database unavailable" in line for line in lines)
    assert count(session, SignupRequest) == 1  # left for the next round
    with app.app_context():
        assert worker.run(once=True) == {"sent": 1}
    assert [m["To"] for m in smtp_server.messages] == ["first@example.com", "second@example.com"]


@pytest.mark.settings(WORKER_POLL_SECONDS=30)
def test_a_running_worker_is_woken_by_a_signup_not_by_its_poll(app, session, smtp_server):
    # On PostgreSQL the request's INSERT notifies (a trigger); in one process (make run on
    # SQLite) the signup's view sets the worker's event, as here.
    [briefing] = newsletter_ids(session, "briefing")
    app.config["MAIL_URL"] = smtp_server.url
    stop = worker.start_in_thread(app, report=lambda line: None)
    try:
        time.sleep(0.5)  # the worker is idle, waiting
        began = time.monotonic()
        accept(app, [([briefing], "reader@example.com")])
        with app.app_context():
            wakeup.notify()
        while not smtp_server.messages and time.monotonic() - began < 10:
            time.sleep(0.01)
        assert smtp_server.messages, "no mail within 10 s"
        assert time.monotonic() - began < 2
    finally:
        stop.set()
        # Let it see the stop now rather than after its poll.
        with app.app_context():
            wakeup.notify()
        if session.get_bind().dialect.name == "postgresql":
            session.execute(sa.select(sa.func.pg_notify(wakeup.CHANNEL, "")))
        stopped(timeout=10)


def test_a_worker_killed_mid_batch_leaves_each_request_to_be_processed_once_by_the_next(
    app, session, smtp_server, closed_smtp_url, worker_env
):
    briefing, weekly = newsletter_ids(session, "briefing", "weekly")
    # Each request signs an address up to both newsletters: one processed twice would show
    # as a second consent event of its subscriptions.
    addresses = [f"reader{n}@example.com" for n in range(600)]
    accept(app, [([briefing, weekly], a) for a in addresses])
    # No mail server: the killed worker spends its time on the signups, not on mail.
    process = start_worker(worker_env(closed_smtp_url, SIGNUP_BATCH=25))
    deadline = time.monotonic() + 60
    while count(session, SignupRequest) == 600 and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)  # the next batch is being processed by now
    process.wait(timeout=10)
    process.stderr.close()
    left = count(session, SignupRequest)
    assert 0 < left < 600, "the worker was not killed while it had requests left"

    app.config["MAIL_URL"] = smtp_server.url
    with app.app_context():
        assert worker.run(once=True) == {"sent": 600}
    assert count(session, SignupRequest) == 0
    expected = {(a, n): 1 for a in addresses for n in (briefing, weekly)}
    assert subscriptions(session) == expected
    assert count(session, ConsentEvent) == 1200  # one per request and newsletter: none twice
    assert count(session, OutboxMessage) == 600
    assert sorted(m["To"] for m in smtp_server.messages) == sorted(addresses)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_four_worker_processes_share_2000_requests_of_500_addresses(
    app, session, smtp_server, worker_env
):
    briefing, weekly = newsletter_ids(session, "briefing", "weekly")
    # Four requests per address, all for the same newsletters, interleaved with the other
    # addresses' so that the workers' batches overlap in addresses.
    chosen = {0: [briefing], 1: [weekly], 2: [briefing, weekly]}
    addresses = [f"reader{n}@example.com" for n in range(500)]
    requests = [(chosen[n % 3], a) for _ in range(4) for n, a in enumerate(addresses)]
    accept(app, requests)
    assert count(session, SignupRequest) == 2000

    env = worker_env(smtp_server.url, SIGNUP_BATCH=50)
    processes = [start_worker(env, "--once") for _ in range(4)]
    results = [process.communicate(timeout=180) for process in processes]
    for process, (_, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr
    # They shared the work: more than one of them processed requests.
    shares = [
        sum(int(line.split()[1]) for line in stderr.splitlines() if line.startswith("signups: "))
        for _, stderr in results
    ]
    assert sum(shares) == 2000 and sum(1 for s in shares if s) > 1, shares

    assert count(session, SignupRequest) == 0
    expected = {(a, n): 1 for i, a in enumerate(addresses) for n in chosen[i % 3]}
    assert subscriptions(session) == expected
    assert count(session, ConsentEvent) == sum(4 * len(chosen[i % 3]) for i in range(500))
    # One mail per address, for all its newsletters: the later requests were throttled.
    rows = session.scalars(sa.select(OutboxMessage)).all()
    assert sorted(row.recipient for row in rows) == sorted(addresses)
    assert {row.state for row in rows} == {OutboxState.SENT}
    assert sorted(m["To"] for m in smtp_server.messages) == sorted(addresses)
    assert len({m["Message-ID"] for m in smtp_server.messages}) == 500
