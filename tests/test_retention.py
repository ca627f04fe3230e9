"""Retention: `newsletters purge` removes stale signups, cuts old evidence, and records its run."""

import os
import subprocess
import sysconfig
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletters import create_app, db, ledger, retention
from newsletters.config import ConfigError
from newsletters.db import utcnow
from newsletters.models import (
    ConsentEvent,
    PurgeRun,
    SpentChallenge,
    Status,
    Subscriber,
    Subscription,
    Token,
)

from .test_cli import confirm_token_of, subscription_of

SCRIPT = Path(sysconfig.get_path("scripts")) / "newsletters"
SUMMARY = "purged {} pending signups, {} expired tokens and 0 API answers kept for retries\n"


def sign_up(client, email, ip="192.0.2.7", user_agent="TestBrowser/1.0"):
    response = client.post(
        "/n/briefing/subscribe",
        data={"email": email},
        environ_base={"REMOTE_ADDR": ip},
        headers={"User-Agent": user_agent},
    )
    assert response.status_code == 303


def confirm(app, client, session, email, ip="192.0.2.8"):
    from newsletters import tokens

    with app.app_context():
        secret = tokens.secret_for(confirm_token_of(session, email))
    response = client.post(f"/confirm/{secret}", environ_base={"REMOTE_ADDR": ip})
    assert response.status_code == 200


def age(session, email, hours) -> None:
    """Make ``email``'s signup ``hours`` old, its confirmation link (72 hours) with it."""
    then = utcnow() - timedelta(hours=hours)
    subscription, token = subscription_of(session, email), confirm_token_of(session, email)
    subscription.optin_at = then
    token.created_at = then
    token.expires_at = then + timedelta(hours=72)
    session.commit()


def events_of(session, subscription_id) -> list[ConsentEvent]:
    session.expire_all()
    return session.scalars(
        sa.select(ConsentEvent)
        .where(ConsentEvent.subscription_id == subscription_id)
        .order_by(ConsentEvent.id)
    ).all()


def purge_as_of(app, now) -> dict:
    """Run the purge as if it were ``now``, committed, as the command does."""
    with app.app_context():
        summary = retention.purge(db.session(), now)
        db.session().commit()
    return summary


def test_a_stale_pending_signup_leaves_an_expired_ledger_row_before_it_goes(
    app, client, runner, newsletter, session
):
    sign_up(client, "old@example.com")
    old = subscription_of(session, "old@example.com")
    old_id, unsubscribe_id = old.id, old.unsubscribe_token_id
    age(session, "old@example.com", hours=73)

    result = runner.invoke(args=["purge"])
    assert result.exit_code == 0, result.output
    assert result.output == SUMMARY.format(1, 1)

    assert subscription_of(session, "old@example.com") is None
    assert session.get(Token, unsubscribe_id) is None
    signed_up, expired = events_of(session, old_id)
    assert signed_up.action == ledger.Action.SIGNED_UP
    assert signed_up.ip == "192.0.2.7"  # the ledger keeps its evidence
    assert expired.action == ledger.Action.EXPIRED
    assert expired.status == Status.UNSUBSCRIBED
    assert (expired.source, expired.ip, expired.user_agent) == ("purge", None, None)
    with app.app_context():
        assert ledger.verify(db.session()) == (2, [])


def test_each_purge_is_recorded_with_what_it_did(app, client, runner, newsletter, session):
    sign_up(client, "old@example.com")
    age(session, "old@example.com", hours=73)
    before = utcnow()
    runner.invoke(args=["purge"])
    runner.invoke(args=["purge"])
    session.expire_all()
    first, second = session.scalars(sa.select(PurgeRun).order_by(PurgeRun.id)).all()
    assert before <= first.at <= second.at <= utcnow()
    settings = {"pending_days": None, "evidence_days": None}
    assert first.summary == {
        "pending_signups": 1,
        "expired_tokens": 1,
        "api_answers": 0,
        "spent_challenges": 0,
        "settings": settings,
    }
    assert second.summary == {
        "pending_signups": 0,
        "expired_tokens": 0,
        "api_answers": 0,
        "spent_challenges": 0,
        "settings": settings,
    }


@pytest.mark.settings(RETENTION_PENDING_DAYS=30)
def test_retention_pending_days_keeps_unconfirmed_signups_that_many_days(
    app, client, runner, newsletter, session
):
    sign_up(client, "week@example.com")
    sign_up(client, "month@example.com")
    age(session, "week@example.com", hours=7 * 24)
    age(session, "month@example.com", hours=31 * 24)
    result = runner.invoke(args=["purge"])
    assert result.output == SUMMARY.format(1, 2)
    assert subscription_of(session, "month@example.com") is None
    assert subscription_of(session, "week@example.com").status == Status.PENDING


def test_the_purge_never_removes_a_ledger_row_or_a_confirmed_subscription(
    app, client, runner, newsletter, session
):
    sign_up(client, "kept@example.com")
    confirm(app, client, session, "kept@example.com")
    sign_up(client, "old@example.com")
    age(session, "old@example.com", hours=100)
    session.expire_all()
    before = session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))
    purge_as_of(app, utcnow() + timedelta(days=400))
    after = session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))
    assert after == before + 1  # the expired row
    assert subscription_of(session, "kept@example.com").status == Status.CONFIRMED


def test_old_evidence_is_kept_whole_unless_retention_evidence_days_is_set(
    app, client, newsletter, session
):
    sign_up(client, "reader@example.com")
    confirm(app, client, session, "reader@example.com")
    summary = purge_as_of(app, utcnow() + timedelta(days=3650))
    assert "events_cut" not in summary
    subscription = subscription_of(session, "reader@example.com")
    assert subscription.optin_ip == "192.0.2.7"
    assert subscription.optin_user_agent == "TestBrowser/1.0"
    assert {e.ip for e in events_of(session, subscription.id)} == {"192.0.2.7", "192.0.2.8"}


@pytest.mark.settings(RETENTION_EVIDENCE_DAYS=90)
def test_evidence_older_than_retention_evidence_days_is_cut_to_its_network(
    app, client, newsletter, session
):
    sign_up(client, "four@example.com")
    confirm(app, client, session, "four@example.com")
    sign_up(client, "six@example.com", ip="2001:db8:1234:5678::1", user_agent="Other/2.0")
    confirm(app, client, session, "six@example.com", ip="2001:db8:1234:5678::2")
    subscription = subscription_of(session, "four@example.com")

    # Nothing is 90 days old yet.
    assert purge_as_of(app, utcnow())["events_cut"] == 0
    assert subscription_of(session, "four@example.com").optin_ip == "192.0.2.7"

    later = utcnow() + timedelta(days=91)
    summary = purge_as_of(app, later)
    assert summary["events_cut"] == 4  # two signups, two confirmations
    assert summary["subscriptions_cut"] == 2
    four, six = (
        subscription_of(session, "four@example.com"),
        subscription_of(session, "six@example.com"),
    )
    assert (four.optin_ip, four.optin_user_agent, four.confirm_ip) == (
        "192.0.2.0/24",
        None,
        "192.0.2.0/24",
    )
    assert four.status == Status.CONFIRMED and four.optin_at is not None
    assert (six.optin_ip, six.optin_user_agent, six.confirm_ip) == (
        "2001:db8:1234::/48",
        None,
        "2001:db8:1234::/48",
    )
    events = events_of(session, subscription.id)
    assert [(e.ip, e.user_agent) for e in events] == [("192.0.2.0/24", None)] * 2
    assert all(e.redacted_at is not None for e in events)
    with app.app_context():
        assert ledger.verify(db.session())[1] == []

    # Again: what was cut stays as it is, and nothing more is counted.
    again = purge_as_of(app, later)
    assert (again["events_cut"], again["subscriptions_cut"]) == (0, 0)
    assert subscription_of(session, "four@example.com").optin_ip == "192.0.2.0/24"


@pytest.mark.settings(RETENTION_EVIDENCE_DAYS=90)
def test_the_purge_says_what_it_cut(app, client, runner, newsletter, session):
    sign_up(client, "reader@example.com")
    result = runner.invoke(args=["purge"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "purged 0 pending signups, 0 expired tokens and 0 API answers kept for retries; cut the "
        "IP addresses and user agents of 0 consent events and 0 subscriptions\n"
    )
    session.expire_all()
    [run] = session.scalars(sa.select(PurgeRun)).all()
    assert run.summary["events_cut"] == 0
    assert run.summary["settings"] == {"pending_days": None, "evidence_days": 90}


@pytest.fixture
def environment(monkeypatch, tmp_path):
    """Clear every NEWSLETTERS_* variable, point the database at ``tmp_path``; return setenv."""
    for name in list(os.environ):
        if name.startswith("NEWSLETTERS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NEWSLETTERS_DATABASE_URL", f"sqlite:///{tmp_path / 'retention.db'}")
    monkeypatch.setenv("NEWSLETTERS_MAIL_URL", f"file://{tmp_path / 'mail'}")
    monkeypatch.setenv("NEWSLETTERS_SECRET_KEY", "dev")
    return monkeypatch.setenv


@pytest.mark.parametrize("name", ["RETENTION_PENDING_DAYS", "RETENTION_EVIDENCE_DAYS"])
def test_retention_settings_are_read_from_the_environment(environment, name):
    environment(f"NEWSLETTERS_{name}", "30")
    app = create_app()
    assert app.config[name] == 30
    with app.app_context():
        db.engine().dispose()


@pytest.mark.parametrize("name", ["RETENTION_PENDING_DAYS", "RETENTION_EVIDENCE_DAYS"])
@pytest.mark.parametrize("value", ["0", "-5", "2.5", "soon", "true", "[30]"])
def test_a_retention_setting_must_be_a_number_of_days(environment, name, value):
    environment(f"NEWSLETTERS_{name}", value)
    with pytest.raises(ConfigError, match=f"NEWSLETTERS_{name} must be a number of days"):
        create_app()


def test_the_command_reports_a_bad_retention_setting_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")}
    env |= {
        "NEWSLETTERS_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "NEWSLETTERS_SECRET_KEY": "test-secret",
        "NEWSLETTERS_RETENTION_EVIDENCE_DAYS": "ninety",
    }
    result = subprocess.run(
        [str(SCRIPT), "purge"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert result.stderr == (
        "Error: NEWSLETTERS_RETENTION_EVIDENCE_DAYS must be a number of days (1 or more), "
        "or unset for off; got 'ninety'\n"
    )


def test_an_address_that_never_confirmed_anything_goes_with_its_last_stale_signup(
    app, client, newsletter, session
):
    sign_up(client, "never@example.com")
    sign_up(client, "kept@example.com")
    confirm(app, client, session, "kept@example.com")
    with app.app_context():
        from newsletters.subscriptions import services

        s = db.session()
        subscription = s.scalar(
            sa.select(Subscription).join(Subscriber).where(Subscriber.email == "kept@example.com")
        )
        services.leave(s, subscription, ledger.Evidence(ip=None, user_agent=None, source="t"))
        s.commit()
    sign_up(client, "kept@example.com")  # pending again, after a confirmation and a leave
    for email in ("never@example.com", "kept@example.com"):
        age(session, email, hours=100)
    assert purge_as_of(app, utcnow())["pending_signups"] == 2
    session.expire_all()
    addresses = set(session.scalars(sa.select(Subscriber.email)))
    # The one that agreed once is kept: its evidence is found by it. The other is gone, its
    # ledger rows stay, without it.
    assert addresses == {"kept@example.com"}
    assert {e.action for e in session.scalars(sa.select(ConsentEvent))} >= {"expired", "confirmed"}
    with app.app_context():
        assert ledger.verify(db.session())[1] == []


def test_the_purge_forgets_spent_challenges_once_they_have_expired(app, runner, session):
    now = utcnow()
    session.add_all(
        [
            SpentChallenge(signature="old", expires_at=now - timedelta(minutes=1)),
            SpentChallenge(signature="live", expires_at=now + timedelta(minutes=20)),
        ]
    )
    session.commit()
    result = runner.invoke(args=["purge"])
    assert "forgot 1 expired proof-of-work challenges" in result.output
    assert session.scalars(sa.select(SpentChallenge.signature)).all() == ["live"]
