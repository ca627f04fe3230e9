"""The ``webhook`` commands: the secret printed once, list, deliveries, resume, remove."""

import sqlalchemy as sa

from newsletters.models import OutboxMessage, Webhook
from tests.webhooks.conftest import deliver, webhook
from tests.webhooks.test_delivery import signups


def test_add_prints_the_secret_once_and_list_never_shows_it(runner, newsletter, session, receiver):
    result = runner.invoke(args=["webhook", "add", "briefing", receiver.url])
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert secret.startswith("whsec_")
    assert "copy the secret now" in result.stderr
    [stored] = session.scalars(sa.select(Webhook)).all()
    assert stored.secret == secret and stored.url == receiver.url

    listed = runner.invoke(args=["webhook", "list"])
    assert listed.exit_code == 0
    assert listed.stdout.split("\t")[:3] == [str(stored.id), "briefing", receiver.url]
    assert "active" in listed.stdout
    assert secret not in listed.output
    assert runner.invoke(args=["webhook", "list", "briefing"]).stdout == listed.stdout


def test_add_refuses_an_unknown_newsletter_and_a_bad_url_clearly(runner, newsletter, session):
    unknown = runner.invoke(args=["webhook", "add", "nope", "https://example.org/h"])
    assert unknown.exit_code == 1
    assert "there is no newsletter called 'nope'" in unknown.output
    bad = runner.invoke(args=["webhook", "add", "briefing", "ftp://example.org/h"])
    assert bad.exit_code == 1
    assert "only http:// and https:// URLs are allowed" in bad.output
    assert session.scalar(sa.select(sa.func.count()).select_from(Webhook)) == 0


def test_deliveries_resume_and_remove(app, runner, hooked, receiver, session):
    signups(app, "reader@example.com")
    receiver.answer = 500
    deliver(app)
    log = runner.invoke(args=["webhook", "deliveries", str(hooked)])
    assert log.exit_code == 0
    [line] = log.stdout.splitlines()
    assert "\tpending\t1 attempts\tnot sent\tHTTP 500" in line

    not_paused = runner.invoke(args=["webhook", "resume", str(hooked)])
    assert not_paused.exit_code == 1 and "is not paused" in not_paused.output
    session.execute(sa.update(Webhook).values(paused_at=sa.func.current_timestamp()))
    resumed = runner.invoke(args=["webhook", "resume", str(hooked)])
    assert resumed.exit_code == 0 and "1 waiting" in resumed.stdout
    assert webhook(session, hooked).paused_at is None

    removed = runner.invoke(args=["webhook", "remove", str(hooked)])
    assert removed.exit_code == 0 and receiver.url in removed.stdout
    assert (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.webhook_id.is_not(None))
        )
        == 0
    )
    again = runner.invoke(args=["webhook", "remove", str(hooked)])
    assert again.exit_code == 1 and f"there is no webhook number {hooked}" in again.output
