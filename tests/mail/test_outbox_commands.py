"""`newsletters outbox status` and `outbox retry`: watching the queue and reviving given-up mail."""

import re
import subprocess
from datetime import timedelta

import pytest
import sqlalchemy as sa

from newsletters.db import utcnow
from newsletters.mail import worker
from newsletters.models import Newsletter, OutboxMessage, OutboxState, Suppression

from .conftest import SCRIPT


def sign_up(client, email):
    assert client.post("/n/briefing/subscribe", data={"email": email}).status_code == 303


def deliver(app, mail_url):
    app.config["MAIL_URL"] = mail_url
    with app.app_context():
        return worker.run(once=True)


def rows_by_recipient(session) -> dict[str, OutboxMessage]:
    session.expire_all()
    return {row.recipient: row for row in session.scalars(sa.select(OutboxMessage))}


@pytest.fixture
def dead_and_failed(app, client, newsletter, smtp_server, session):
    """Leave one dead (after its one allowed attempt), one failed and one sent mail."""
    app.config["OUTBOX_MAX_ATTEMPTS"] = 1
    sign_up(client, "dead@example.com")
    smtp_server.rcpt_reply = "451 4.3.0 try again later"
    assert deliver(app, smtp_server.url) == {"dead": 1}
    sign_up(client, "refused@example.com")
    smtp_server.rcpt_reply = "550 5.1.1 no such user"
    assert deliver(app, smtp_server.url) == {"failed": 1}
    sign_up(client, "fine@example.com")
    smtp_server.rcpt_reply = None
    assert deliver(app, smtp_server.url) == {"sent": 1}
    smtp_server.messages.clear()
    return rows_by_recipient(session)


def test_status_shows_the_count_of_each_state_the_oldest_due_and_the_transport_error(
    app, client, runner, dead_and_failed, closed_smtp_url
):
    sign_up(client, "waiting@example.com")
    assert deliver(app, closed_smtp_url) == {"transport error": 1}
    result = runner.invoke(args=["outbox", "status"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:4] == ["dead\t1", "failed\t1", "pending\t1", "sent\t1"]
    assert re.fullmatch(r"oldest due\t\d{4}-\d\d-\d\dT[\d:.]+\+00:00", lines[4])
    assert lines[5].startswith("last transport error\t")
    assert closed_smtp_url.removeprefix("smtp://") in lines[5]
    assert "ConnectionRefusedError" in lines[5] and "1 failures in a row" in lines[5]


def test_retry_all_dead_queues_them_again_with_attempts_reset_and_they_go_out(
    app, runner, dead_and_failed, smtp_server, session
):
    before = utcnow()
    result = runner.invoke(args=["outbox", "retry", "--all-dead"])
    assert result.exit_code == 0, result.output
    assert result.output == "queued again: 1 messages\n"
    rows = rows_by_recipient(session)
    dead = rows["dead@example.com"]
    assert (dead.state, dead.attempts, dead.locked_until) == (OutboxState.PENDING, 0, None)
    assert before <= dead.queued_at and dead.next_attempt_at <= utcnow()
    assert rows["refused@example.com"].state == OutboxState.FAILED

    assert deliver(app, smtp_server.url) == {"sent": 1}
    assert [mail["To"] for mail in smtp_server.messages] == ["dead@example.com"]
    assert smtp_server.messages[0]["Message-ID"] == f"<{dead.message_id}@localhost>"


def test_retry_of_a_failed_mail_needs_the_failed_flag_and_lifts_its_suppression(
    app, runner, client, dead_and_failed, smtp_server, session
):
    refused = dead_and_failed["refused@example.com"]
    assert session.scalar(sa.select(Suppression.email)) == "refused@example.com"

    without = runner.invoke(args=["outbox", "retry", "--id", str(refused.id)])
    assert without.exit_code == 1
    assert f"message {refused.id}: not queued again: it is failed, not dead" in without.output
    assert rows_by_recipient(session)["refused@example.com"].state == OutboxState.FAILED

    result = runner.invoke(args=["outbox", "retry", "--id", str(refused.id), "--failed"])
    assert result.exit_code == 0, result.output
    row = rows_by_recipient(session)["refused@example.com"]
    assert (row.state, row.attempts) == (OutboxState.PENDING, 0)
    assert session.scalars(sa.select(Suppression)).all() == []
    assert deliver(app, smtp_server.url) == {"sent": 1}


def test_retry_failed_alone_takes_every_failed_mail_and_no_dead_one(
    runner, dead_and_failed, session
):
    result = runner.invoke(args=["outbox", "retry", "--failed"])
    assert result.exit_code == 0, result.output
    rows = rows_by_recipient(session)
    assert rows["refused@example.com"].state == OutboxState.PENDING
    assert rows["dead@example.com"].state == OutboxState.DEAD


def test_retry_says_what_it_could_not_do(runner, dead_and_failed):
    sent = dead_and_failed["fine@example.com"]
    result = runner.invoke(args=["outbox", "retry", "--id", str(sent.id), "--id", "999999"])
    assert result.exit_code == 1
    assert "queued again: 0 messages" in result.output
    assert f"message {sent.id}: not queued again: it is sent, not dead" in result.output
    assert "message 999999: not queued again: no such message" in result.output

    nothing = runner.invoke(args=["outbox", "retry"])
    assert nothing.exit_code == 2 and "--all-dead" in nothing.output
    both = runner.invoke(args=["outbox", "retry", "--id", "1", "--all-dead"])
    assert both.exit_code == 2


@pytest.mark.settings(OUTBOX_MAX_AGE_HOURS=1)
def test_a_retried_old_mail_gets_a_fresh_age_and_is_not_given_up_at_once(
    app, client, newsletter, runner, smtp_server, session
):
    sign_up(client, "old@example.com")
    session.execute(sa.update(OutboxMessage).values(queued_at=utcnow() - timedelta(hours=3)))
    smtp_server.rcpt_reply = "451 4.3.0 try again later"
    assert deliver(app, smtp_server.url) == {"dead": 1}
    assert runner.invoke(args=["outbox", "retry", "--all-dead"]).exit_code == 0
    smtp_server.rcpt_reply = None
    assert deliver(app, smtp_server.url) == {"sent": 1}


def test_the_outbox_commands_work_from_the_console_script(worker_env, tmp_path):
    # The group moved out of cli.py: it must still be registered where operators find it.
    retry = subprocess.run(
        [str(SCRIPT), "outbox", "retry", "--all-dead"],
        env=worker_env(f"file://{tmp_path / 'mail'}"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (retry.returncode, retry.stdout) == (0, "queued again: 0 messages\n"), retry.stderr


def test_deleting_a_newsletter_takes_its_suppressions_along(
    app, dead_and_failed, session, newsletter
):
    session.execute(sa.delete(Newsletter).where(Newsletter.slug == newsletter))
    assert session.scalars(sa.select(Suppression)).all() == []
