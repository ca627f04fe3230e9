"""Mails after a signup: the welcome after confirmation, the one reminder before it, over SMTP."""

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from newsletters import catalogue, db, editors, reader_mails, tokens
from newsletters.db import utcnow
from newsletters.mail import worker
from newsletters.models import (
    TEXT_KEYS,
    Newsletter,
    OutboxKind,
    OutboxMessage,
    Status,
    Subscriber,
    Subscription,
    Token,
    TokenPurpose,
)
from tests.admin.conftest import PASSWORD, csrf_token, login
from tests.conftest import set_texts

CONFIRM_LINK = re.compile(r"https://news\.example\.org/confirm/[A-Za-z0-9_-]{43}")
PREFERENCES_LINK = re.compile(r"https://news\.example\.org/preferences/[A-Za-z0-9_-]{43}")
READER = "reader@example.com"
# What the signer types besides the address: none of it may reach a mail.
TYPED_NAME = "Mallory Typed-This"


def sign_up(client, email=READER, **fields):
    response = client.post("/n/briefing/subscribe", data={"email": email, **fields})
    assert response.status_code == 303


def deliver(app, smtp_server) -> dict:
    """Run the worker once through the real SMTP server; return its counts by outcome."""
    app.config["MAIL_URL"] = smtp_server.url
    with app.app_context():
        return dict(worker.run(once=True, report=lambda line: None))


def set_newsletter(session, **settings) -> None:
    texts = {key: settings.pop(key) for key in TEXT_KEYS if key in settings}
    if settings:
        session.execute(sa.update(Newsletter).values(**settings))
    set_texts(session, **texts)


def subscription_of(session, email=READER) -> Subscription:
    session.expire_all()
    return session.scalar(sa.select(Subscription).join(Subscriber).where(Subscriber.email == email))


def text_of(mail) -> str:
    return mail.get_body(("plain",)).get_content().replace("\r\n", "\n")


def confirm_link(smtp_server) -> str:
    [link] = CONFIRM_LINK.findall(text_of(smtp_server.messages[0]))
    return link


def confirm(client, link: str) -> None:
    assert client.post(urlsplit(link).path).status_code == 200


def hours_pass(session, hours: float) -> None:
    """Move signups, their mails and the addresses' mail budgets ``hours`` into the past."""
    back = timedelta(hours=hours)
    session.expire_all()
    for subscription in session.scalars(sa.select(Subscription)):
        for column in ("optin_at", "confirmation_mailed_at"):
            if getattr(subscription, column) is not None:
                setattr(subscription, column, getattr(subscription, column) - back)
    for subscriber in session.scalars(sa.select(Subscriber)):
        if subscriber.mail_window_start is not None:
            subscriber.mail_window_start -= back
    session.commit()


def kinds(session) -> list[str]:
    session.expire_all()
    return session.scalars(sa.select(OutboxMessage.kind).order_by(OutboxMessage.id)).all()


# The welcome mail


def test_welcome_mail_after_confirmation_carries_the_receipt_and_a_preferences_link(
    app, client, newsletter, smtp_server, session
):
    set_newsletter(session, welcome_enabled=True)
    sign_up(client, name=TYPED_NAME)
    assert deliver(app, smtp_server) == {"sent": 1}
    confirm(client, confirm_link(smtp_server))
    assert deliver(app, smtp_server) == {"sent": 1}

    welcome = smtp_server.messages[1]
    assert smtp_server.envelopes[1].rcpt_tos == [READER]
    assert welcome["Subject"] == "Welcome to Morning Briefing"
    text, html = text_of(welcome), welcome.get_body(("html",)).get_content()
    subscription = subscription_of(session)
    assert "welcome to Morning Briefing: your subscription is confirmed" in text
    assert "Newsletter: Morning Briefing" in text
    assert f"Signed up: {subscription.optin_at:%Y-%m-%dT%H:%M:%SZ}" in text
    assert f"Confirmed: {subscription.confirmed_at:%Y-%m-%dT%H:%M:%SZ}" in text
    assert f"Form text version: {subscription.text_digest[:12]}" in text
    assert "Source: plain" in text
    [link] = PREFERENCES_LINK.findall(text)
    assert f'href="{link}"' in html
    # Nothing the signer typed: not the name, nor the address in the text.
    assert TYPED_NAME not in welcome.as_string()
    assert READER not in text and READER not in html
    with app.app_context():
        unsubscribe = session.get(Token, subscription.unsubscribe_token_id)
        assert link.endswith(tokens.secret_for(unsubscribe))
    assert client.get(urlsplit(link).path).status_code == 200


def test_no_welcome_mail_unless_the_newsletter_turns_it_on(
    app, client, newsletter, smtp_server, session
):
    sign_up(client)
    deliver(app, smtp_server)
    confirm(client, confirm_link(smtp_server))
    assert deliver(app, smtp_server) == {}
    assert kinds(session) == [OutboxKind.CONFIRM]


def test_welcome_mail_uses_the_editors_subject_and_text(
    app, client, newsletter, smtp_server, session
):
    set_newsletter(
        session,
        welcome_enabled=True,
        welcome_subject="You are in",
        welcome_body="Thanks for joining.\n\nFirst issue on Monday.",
    )
    sign_up(client)
    deliver(app, smtp_server)
    confirm(client, confirm_link(smtp_server))
    deliver(app, smtp_server)
    welcome = smtp_server.messages[1]
    assert welcome["Subject"] == "You are in"
    assert text_of(welcome).startswith("Thanks for joining.\n\nFirst issue on Monday.")
    assert "<p>First issue on Monday.</p>" in welcome.get_body(("html",)).get_content()


def test_a_welcome_mail_does_not_count_against_the_daily_mail_budget(
    app, client, newsletter, smtp_server, session
):
    set_newsletter(session, welcome_enabled=True)
    sign_up(client)
    deliver(app, smtp_server)
    used = subscription_of(session).subscriber.mails_in_window
    confirm(client, confirm_link(smtp_server))
    assert subscription_of(session).subscriber.mails_in_window == used
    assert kinds(session) == [OutboxKind.CONFIRM, OutboxKind.WELCOME]


def test_a_double_click_on_the_confirm_button_queues_one_welcome(
    app, client, newsletter, smtp_server, session
):
    set_newsletter(session, welcome_enabled=True)
    sign_up(client)
    deliver(app, smtp_server)
    link = confirm_link(smtp_server)
    confirm(client, link)
    client.post(urlsplit(link).path)
    assert kinds(session) == [OutboxKind.CONFIRM, OutboxKind.WELCOME]


# The reminder


@pytest.fixture
def reminding(session, newsletter):
    """Make 'briefing' remind an unconfirmed signup after 24 hours."""
    set_newsletter(session, reminder_hours=24)
    return 24


def test_one_reminder_goes_after_reminder_hours_with_the_same_link_and_never_again(
    app, client, reminding, smtp_server, session
):
    sign_up(client)
    assert deliver(app, smtp_server) == {"sent": 1}
    hours_pass(session, 23)
    assert deliver(app, smtp_server) == {}  # not due yet
    hours_pass(session, 2)
    assert deliver(app, smtp_server) == {"sent": 1}

    reminder = smtp_server.messages[1]
    assert smtp_server.envelopes[1].rcpt_tos == [READER]
    assert reminder["Subject"] == "Reminder: confirm your subscription to Morning Briefing"
    assert "This is the only reminder we send." in text_of(reminder)
    link = confirm_link(smtp_server)
    assert CONFIRM_LINK.findall(text_of(reminder)) == [link]
    subscription = subscription_of(session)
    assert subscription.reminded_at is not None
    assert subscription.subscriber.mails_in_window == 1  # the reminder, in a new day's budget

    hours_pass(session, 24)
    assert deliver(app, smtp_server) == {}
    assert len(smtp_server.messages) == 2
    # The reminder's link confirms.
    confirm(client, link)
    assert subscription_of(session).status == Status.CONFIRMED


def test_no_reminder_after_the_reader_confirmed(app, client, reminding, smtp_server, session):
    sign_up(client)
    deliver(app, smtp_server)
    confirm(client, confirm_link(smtp_server))
    hours_pass(session, 25)
    assert deliver(app, smtp_server) == {}
    assert kinds(session) == [OutboxKind.CONFIRM]


def test_no_reminder_after_the_reader_unsubscribed(app, client, reminding, smtp_server, session):
    sign_up(client)
    deliver(app, smtp_server)
    with app.app_context():
        secret = tokens.secret_for(subscription_of(session).unsubscribe_token)
    left = client.post(f"/unsubscribe/{secret}", data={"List-Unsubscribe": "One-Click"})
    assert left.status_code == 200
    hours_pass(session, 25)
    assert deliver(app, smtp_server) == {}
    assert kinds(session) == [OutboxKind.CONFIRM]


def test_no_reminder_once_the_confirmation_link_expired(
    app, client, reminding, smtp_server, session
):
    sign_up(client)
    deliver(app, smtp_server)
    hours_pass(session, 25)
    session.execute(
        sa.update(Token)
        .where(Token.purpose == TokenPurpose.CONFIRM)
        .values(expires_at=utcnow() - timedelta(minutes=1))
    )
    assert deliver(app, smtp_server) == {}
    assert kinds(session) == [OutboxKind.CONFIRM]


def test_no_reminder_unless_the_newsletter_asks_for_one(
    app, client, newsletter, smtp_server, session
):
    sign_up(client)
    deliver(app, smtp_server)
    hours_pass(session, 71)
    assert deliver(app, smtp_server) == {}
    assert kinds(session) == [OutboxKind.CONFIRM]
    assert subscription_of(session).reminded_at is None


@pytest.mark.settings(CONFIRM_MAILS_PER_DAY=1)
def test_a_reminder_counts_against_the_address_budget_and_is_not_tried_again(
    app, client, reminding, smtp_server, session
):
    sign_up(client)
    deliver(app, smtp_server)
    hours_pass(session, 25)
    # The address used its day's mail (say, another newsletter's confirmation) just now.
    session.execute(sa.update(Subscriber).values(mail_window_start=utcnow(), mails_in_window=1))
    assert deliver(app, smtp_server) == {}
    assert subscription_of(session).reminded_at is not None
    hours_pass(session, 24)  # a new day: still no second attempt
    assert deliver(app, smtp_server) == {}
    assert kinds(session) == [OutboxKind.CONFIRM]


def test_a_signup_to_several_newsletters_gets_one_reminder_naming_those_due(
    app, client, reminding, smtp_server, session
):
    session.add(Newsletter(slug="evening", name="Evening Digest", reminder_hours=24))
    session.add(Newsletter(slug="weekly", name="Weekly"))  # no reminders
    session.commit()
    response = client.post(
        "/subscribe", data={"email": READER, "newsletter": ["briefing", "evening", "weekly"]}
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    deliver(app, smtp_server)
    hours_pass(session, 25)
    assert deliver(app, smtp_server) == {"sent": 1}
    reminder = smtp_server.messages[1]
    # Longer than a header line: folded, so compared as a mail client shows it.
    assert reminder["Subject"].strip() == (
        "Reminder: confirm your subscription to Morning Briefing, Evening Digest"
    )
    assert "Weekly" not in text_of(reminder)


def test_the_reminder_uses_the_editors_subject_and_text(
    app, client, reminding, smtp_server, session
):
    set_newsletter(session, reminder_subject="Still there?", reminder_body="One click left.")
    sign_up(client)
    deliver(app, smtp_server)
    hours_pass(session, 25)
    deliver(app, smtp_server)
    reminder = smtp_server.messages[1]
    assert reminder["Subject"] == "Still there?"
    assert text_of(reminder).startswith("One click left.\n")
    assert CONFIRM_LINK.search(text_of(reminder))


def test_a_running_worker_looks_for_reminders_once_per_interval(app, client, reminding, session):
    sign_up(client, "first@example.com")
    hours_pass(session, 25)
    with app.app_context():
        rounds = reader_mails.Reminders(report=lambda line: None)
        assert rounds.run_round() == 1
        sign_up(client, "second@example.com")
        hours_pass(session, 25)
        assert rounds.run_round() == 0  # within the minute: not looked at
        rounds.next_at = float("-inf")  # the minute has passed
        assert rounds.run_round() == 1


def test_two_workers_cannot_both_queue_a_reminder(app, client, reminding, session):
    if not app.config["DATABASE_URL"].startswith("postgresql"):
        pytest.skip("SQLite's writers take turns; the race needs PostgreSQL's row locks")
    sign_up(client)
    hours_pass(session, 25)
    with app.app_context():
        first, second = db.session(), Session(db.engine())
        try:
            assert reader_mails.queue_reminders(first, utcnow()).queued == 1
            # The first worker holds the address: the second skips it rather than wait.
            assert reader_mails.queue_reminders(second, utcnow()).queued == 0
            first.commit()
            second.rollback()
            assert reader_mails.queue_reminders(second, utcnow()).queued == 0
            second.commit()
        finally:
            second.close()
    assert kinds(session) == [OutboxKind.CONFIRM, OutboxKind.REMINDER]


# The settings, in the editors' form


@pytest.fixture
def admin(app, client):
    """Return the test client, logged in as an admin."""
    with app.app_context():
        editors.create(db.session(), "boss@example.com", PASSWORD, is_admin=True, newsletters=[])
        db.session().commit()
    login(client, "boss@example.com")
    return client


def settings_form(client, **fields) -> dict:
    token = csrf_token(client, "/admin/n/briefing/settings")
    return {"slug": "briefing", "name": "Morning Briefing", "csrf_token": token} | fields


def saved(session) -> Newsletter:
    session.expire_all()
    return session.scalar(sa.select(Newsletter))


def test_the_settings_form_turns_the_mails_after_confirmation_on_and_off(
    admin, newsletter, session
):
    page = admin.get("/admin/n/briefing/settings").get_data(as_text=True)
    assert "Mails after confirmation" in page
    response = admin.post(
        "/admin/n/briefing/settings",
        data=settings_form(
            admin,
            welcome_enabled="y",
            welcome_subject="Welcome aboard",
            welcome_body="Hello!\r\n\r\nGlad you came.",
            reminder_hours=" 36 ",
            reminder_subject="Still interested?",
            reminder_body="Confirm below.",
        ),
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    newsletter = saved(session)
    assert newsletter.welcome_enabled is True
    assert newsletter.own_text("welcome_subject") == "Welcome aboard"
    assert newsletter.own_text("welcome_body") == "Hello!\n\nGlad you came."
    assert newsletter.reminder_hours == 36
    assert newsletter.own_text("reminder_subject") == "Still interested?"
    assert newsletter.own_text("reminder_body") == "Confirm below."
    page = admin.get("/admin/n/briefing/settings").get_data(as_text=True)
    assert 'value="36"' in page

    # As a browser sends the form with the box unticked and the fields emptied.
    emptied = dict.fromkeys(["welcome_subject", "welcome_body", "reminder_hours"], "")
    response = admin.post("/admin/n/briefing/settings", data=settings_form(admin, **emptied))
    assert response.status_code == 303
    newsletter = saved(session)
    assert newsletter.welcome_enabled is False
    assert newsletter.reminder_hours is None
    assert newsletter.own_text("welcome_subject") is None


@pytest.mark.parametrize("hours", ["0", "-3", "1.5", "soon", "72", "100000", "٣"])
def test_reminder_hours_outside_the_links_life_are_refused_and_nothing_is_saved(
    admin, newsletter, session, hours
):
    response = admin.post(
        "/admin/n/briefing/settings",
        data=settings_form(admin, reminder_hours=hours, welcome_enabled="y"),
    )
    assert response.status_code == 400
    assert "Reminder: give a whole number of hours from 1 to 71" in response.get_data(as_text=True)
    newsletter = saved(session)
    assert newsletter.reminder_hours is None
    assert newsletter.welcome_enabled is False


@pytest.mark.parametrize("field", ["welcome_subject", "reminder_subject"])
@pytest.mark.parametrize(
    "text", ["Welcome\r\nBcc: victim@example.com", "Welcome\nnow", "A\u2028B", "A\x00"]
)
def test_a_line_break_in_a_subject_is_refused_and_nothing_is_saved(
    admin, newsletter, session, field, text
):
    response = admin.post(
        "/admin/n/briefing/settings", data=settings_form(admin, **{field: text}, reminder_hours="5")
    )
    assert response.status_code == 400
    label = catalogue.TEXTS[field].label
    page = response.get_data(as_text=True)
    assert f"{label} may not contain line breaks or control characters." in page
    newsletter = saved(session)
    assert newsletter.own_text(field) is None
    assert newsletter.reminder_hours is None
