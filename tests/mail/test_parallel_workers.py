"""Several worker processes on one outbox, and workers killed mid-way: nothing lost, nothing double.

The workers are real ``newsletters worker --once`` processes on the test's database (SQLite
file or PostgreSQL), sending to a real SMTP server on loopback.
"""

import re
import signal
import subprocess
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from newsletters.db import utcnow
from newsletters.mail import worker
from newsletters.models import OutboxMessage, OutboxState

from .conftest import SCRIPT, stopped


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [str(SCRIPT), "worker", "--once"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def outbox_rows(session) -> list[OutboxMessage]:
    session.expire_all()
    return session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)).all()


def sent_as(row: OutboxMessage) -> str:
    """Return the Message-ID that the mail of ``row`` goes out with (MAIL_FROM is @localhost)."""
    return f"<{row.message_id}@localhost>"


def deliver(app, mail_url) -> Counter:
    app.config["MAIL_URL"] = mail_url
    with app.app_context():
        return worker.run(once=True)


def wait_for_lease_to_end(session) -> None:
    session.expire_all()
    until = session.scalar(sa.select(sa.func.max(OutboxMessage.locked_until)))
    if until is not None:
        time.sleep(max(0.0, (until - utcnow()).total_seconds()) + 0.05)


def test_three_worker_processes_send_200_mails_each_exactly_once(
    app, stalling_smtp_server, queue_signups, worker_env, session
):
    queue_signups(200)
    # Every worker holds a mail in flight at the same moment before any is answered: the
    # three really drain the outbox side by side.
    stalling_smtp_server.together = 3
    env = worker_env(stalling_smtp_server.url)
    processes = [start_worker(env) for _ in range(3)]
    results = [process.communicate(timeout=120) for process in processes]

    for process, (_, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr
    sent_by_each = [int(re.search(r"'sent': (\d+)", stderr).group(1)) for _, stderr in results]
    assert all(n > 0 for n in sent_by_each) and sum(sent_by_each) == 200

    ids = [mail["Message-ID"] for mail in stalling_smtp_server.messages]
    assert len(ids) == 200 and len(set(ids)) == 200
    rows = outbox_rows(session)
    assert {sent_as(row) for row in rows} == set(ids)
    assert {(row.state, row.attempts) for row in rows} == {(OutboxState.SENT, 1)}


def test_a_worker_killed_after_claiming_leaves_its_mail_to_another_once_the_lease_ends(
    app, stalling_smtp_server, queue_signups, worker_env, session
):
    queue_signups(3)
    stalling_smtp_server.stall_rcpt.clear()
    process = start_worker(worker_env(stalling_smtp_server.url, OUTBOX_LEASE_SECONDS=2))
    assert stalling_smtp_server.seen_rcpt.wait(30), process.stderr.read()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    process.stdout.close()
    process.stderr.close()
    stalling_smtp_server.stall_rcpt.set()

    [held] = [row for row in outbox_rows(session) if row.locked_until is not None]
    assert (held.state, held.attempts) == (OutboxState.PENDING, 1)
    # While its lease lasts, another worker leaves it alone and sends the rest.
    assert deliver(app, stalling_smtp_server.url) == {"sent": 2}
    assert held.id not in {r.id for r in outbox_rows(session) if r.state == OutboxState.SENT}

    wait_for_lease_to_end(session)
    assert deliver(app, stalling_smtp_server.url) == {"sent": 1}
    rows = outbox_rows(session)
    assert {row.state for row in rows} == {OutboxState.SENT}
    assert {row.id: row.attempts for row in rows}[held.id] == 2
    ids = [mail["Message-ID"] for mail in stalling_smtp_server.messages]
    assert sorted(ids) == sorted(sent_as(row) for row in rows)


def test_a_worker_killed_after_the_server_took_a_mail_sends_at_most_that_one_again(
    app, stalling_smtp_server, queue_signups, worker_env, session
):
    queue_signups(5)
    process = start_worker(worker_env(stalling_smtp_server.url, OUTBOX_LEASE_SECONDS=2))
    stalling_smtp_server.kill = (process.pid, 3)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert len(stalling_smtp_server.messages) == 3

    wait_for_lease_to_end(session)
    assert deliver(app, stalling_smtp_server.url) == {"sent": 3}

    rows = outbox_rows(session)
    assert {row.state for row in rows} == {OutboxState.SENT}
    received = Counter(mail["Message-ID"] for mail in stalling_smtp_server.messages)
    assert set(received) == {sent_as(row) for row in rows}
    # The one mail the server took as the worker died went out twice, as the same mail.
    [(twice, count)] = [(mid, n) for mid, n in received.items() if n > 1]
    assert count == 2
    third = stalling_smtp_server.messages[2]["Message-ID"]
    assert twice == third
    assert {sent_as(row): row.attempts for row in rows}[twice] == 2


@pytest.mark.settings(OUTBOX_LEASE_SECONDS=1)
def test_a_slow_server_lets_no_lease_run_out_under_a_mail_waiting_its_turn(
    app, stalling_smtp_server, queue_signups, session
):
    # Five mails take two seconds at this server, twice the lease: had a worker leased them
    # as one batch, the others' leases would end before their turn and a second worker
    # would send them too.
    queue_signups(5)
    stalling_smtp_server.delay = 0.4
    app.config["MAIL_URL"] = stalling_smtp_server.url
    stops = [worker.start_in_thread(app, report=lambda line: None) for _ in range(2)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(
        row.state != OutboxState.SENT for row in outbox_rows(session)
    ):
        time.sleep(0.1)
    for stop in stops:
        stop.set()
    stopped(timeout=10)

    rows = outbox_rows(session)
    assert {(row.state, row.attempts) for row in rows} == {(OutboxState.SENT, 1)}
    ids = [mail["Message-ID"] for mail in stalling_smtp_server.messages]
    assert sorted(ids) == sorted(sent_as(row) for row in rows)
