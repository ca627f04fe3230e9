"""Webhook deliveries end to end: real signups, a real HTTP receiver, the worker's own rounds."""

import json
import re
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa

from newsletters import changes, db, editors
from newsletters.db import utcnow
from newsletters.mail import outbox, worker
from newsletters.models import Newsletter, OutboxMessage, OutboxState, Source
from newsletters.subscriptions import services as subscriptions
from newsletters.subscriptions.processing import Evidence
from newsletters.webhooks import delivery, services
from tests.subscriptions.test_links import sign_up, unsubscribe_secret
from tests.webhooks.conftest import deliver, deliveries, make_due, webhook

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def lifecycle(app, client, session, email="reader@example.com") -> None:
    """Sign ``email`` up to 'briefing', confirm from the mailed link, then unsubscribe."""
    confirm = sign_up(app, client, email)
    assert client.post(f"/confirm/{confirm}").status_code == 200
    assert client.post(f"/unsubscribe/{unsubscribe_secret(app, session, email)}").status_code == 200


def test_signup_confirm_unsubscribe_post_three_signed_events_in_order(
    app, client, session, hooked, receiver
):
    lifecycle(app, client, session)
    deliver(app)

    assert [r["verified"] for r in receiver.requests] == [True, True, True]
    events = receiver.accepted
    assert [(e["event"], e["status"]) for e in events] == [
        ("subscription.pending", "pending"),
        ("subscription.confirmed", "confirmed"),
        ("subscription.unsubscribed", "unsubscribed"),
    ]
    for event in events:
        assert event["newsletter"] == "briefing"
        assert event["email"] == "reader@example.com"
        assert ISO_UTC.fullmatch(event["at"]), event["at"]
        assert re.fullmatch(r"evt_\d+", event["id"])
    assert len({e["id"] for e in events}) == 3
    first = receiver.requests[0]
    assert first["path"] == "/hook"
    assert first["headers"]["Content-Type"] == "application/json"
    assert first["headers"]["X-Newsletters-Event"] == "subscription.pending"
    # What was signed and sent is the stored text, byte for byte.
    rows = deliveries(session, hooked)
    assert [r.payload.encode() for r in rows] == [r["body"] for r in receiver.requests]
    assert [(r.state, r.attempts, r.last_error) for r in rows] == [(OutboxState.SENT, 1, None)] * 3
    assert all(r.sent_at is not None for r in rows)


def test_the_worker_delivers_webhooks_in_its_rounds_and_mail_never_takes_them(
    app, client, session, hooked, receiver
):
    response = client.post("/n/briefing/subscribe", data={"email": "reader@example.com"})
    assert response.status_code == 303
    counts = Counter()
    deadline = time.monotonic() + 10
    while not receiver.accepted and time.monotonic() < deadline:
        # On PostgreSQL the event may wait for older transactions elsewhere (see ``deliver``).
        with app.app_context():
            counts += worker.run(once=True)
    # The confirmation mail went through the mail part; the event through the webhook part.
    assert counts == {"sent": 1}
    assert [e["event"] for e in receiver.accepted] == ["subscription.pending"]
    with app.app_context():
        # The mail outbox's views count mail only.
        assert outbox.counts(db.session()) == {"sent": 1}


def test_a_change_that_was_rolled_back_is_never_sent(app, session, hooked, receiver):
    with app.app_context():
        s = db.session()
        briefing = s.scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        evidence = Evidence(ip=None, user_agent=None, source=Source.FORM)
        subscriptions.signup(s, [briefing], "gone@example.com", None, evidence)
        s.flush()
        deliver_inside = deliveries(session, hooked)  # another connection sees nothing
        s.rollback()
        subscriptions.signup(s, [briefing], "kept@example.com", None, evidence)
        s.commit()
    assert deliver_inside == []
    deliver(app)
    assert [e["email"] for e in receiver.accepted] == ["kept@example.com"]
    assert len(deliveries(session, hooked)) == 1


def signups(app, *emails) -> None:
    """Sign each address up to 'briefing', a transaction each."""
    with app.app_context():
        s = db.session()
        briefing = s.scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        for email in emails:
            evidence = Evidence(ip=None, user_agent=None, source=Source.FORM)
            subscriptions.signup(s, [briefing], email, None, evidence)
            s.commit()


@pytest.mark.settings(WEBHOOK_TIMEOUT_SECONDS=0.3, WEBHOOK_MAX_FAILURES=10)
def test_a_receiver_that_was_down_gets_every_event_once_and_in_order(
    app, session, hooked, receiver
):
    addresses = [f"reader{i}@example.com" for i in range(5)]
    signups(app, *addresses[:2])
    receiver.stop()  # connection refused
    deliver(app)
    signups(app, addresses[2])
    make_due(session)
    receiver.start()
    receiver.answer = 500
    deliver(app)
    signups(app, addresses[3])
    make_due(session)
    receiver.answer = "hang"
    receiver.hang_seconds = 1.0
    deliver(app)
    head, *rest = deliveries(session, hooked)
    assert head.state == OutboxState.PENDING and head.attempts == 3
    assert "timeout" in head.last_error
    assert all(r.state == OutboxState.PENDING and r.attempts == 0 for r in rest)
    # Only the oldest was tried: each attempt was of the first event.
    assert {json.loads(r["body"])["email"] for r in receiver.requests} == {addresses[0]}

    receiver.answer = "ok"
    signups(app, addresses[4])
    make_due(session)
    deliver(app)
    assert [e["email"] for e in receiver.accepted] == addresses
    assert len({e["id"] for e in receiver.accepted}) == 5
    assert all(r["verified"] for r in receiver.requests)
    assert {r.state for r in deliveries(session, hooked)} == {OutboxState.SENT}


def test_a_failure_waits_with_a_growing_backoff(app, session, hooked, receiver):
    signups(app, "reader@example.com")
    receiver.answer = 503
    deliver(app)
    [first] = deliveries(session, hooked)
    assert first.last_error.startswith("HTTP 503")
    wait = first.next_attempt_at - first.queued_at
    deliver(app)  # not due yet: nothing tried
    assert len(receiver.requests) == 1
    make_due(session)
    deliver(app)
    [second] = deliveries(session, hooked)
    assert second.attempts == 2
    assert second.next_attempt_at - second.queued_at > wait + timedelta(seconds=4)


@pytest.mark.settings(WEBHOOK_MAX_FAILURES=3, MAIL_FROM="news@news.example.org")
def test_a_webhook_that_keeps_failing_is_paused_its_editors_told_and_resume_continues(
    app, session, hooked, receiver, smtp_server
):
    with app.app_context():
        s = db.session()
        briefing = s.scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        editors.create(s, "editor@example.com", "correct horse battery", newsletters=[briefing])
        editors.create(s, "admin@example.com", "correct horse battery", is_admin=True)
        s.commit()
    signups(app, "one@example.com", "two@example.com")
    receiver.answer = 500
    for _ in range(3):
        deliver(app)
        make_due(session)
    paused = webhook(session, hooked)
    assert paused.paused_at is not None
    assert "3 deliveries failed in a row" in paused.paused_reason
    assert "HTTP 500" in paused.paused_reason
    # Paused: not tried again, whatever is due.
    deliver(app)
    assert len(receiver.requests) == 3

    app.config["MAIL_URL"] = smtp_server.url
    with app.app_context():
        worker.run(once=True)
    # The newsletter's editor is told, not the admin (the rest are confirmation mails).
    [mail] = [m for m in smtp_server.messages if m["Subject"].startswith("Webhook")]
    assert mail["To"] == "editor@example.com"
    assert "admin@example.com" not in [m["To"] for m in smtp_server.messages]
    assert mail["Subject"] == "Webhook paused: Morning Briefing"
    text = mail.get_body(("plain",)).get_content()
    assert receiver.url in text
    assert "https://news.example.org/admin/n/briefing/webhooks" in text

    receiver.answer = "ok"
    with app.app_context():
        s = db.session()
        assert services.resume(s, services.find(s, hooked))
        s.commit()
    deliver(app)
    assert [e["email"] for e in receiver.accepted] == ["one@example.com", "two@example.com"]
    assert webhook(session, hooked).paused_at is None


def test_deliveries_wait_for_a_paused_webhook_past_the_mail_outboxs_age_limit(
    app, session, hooked, receiver
):
    signups(app, "reader@example.com")
    receiver.answer = 500
    deliver(app)
    session.execute(sa.update(OutboxMessage).values(queued_at=utcnow() - timedelta(days=30)))
    make_due(session)
    receiver.answer = "ok"
    with app.app_context():
        worker.run(once=True)  # parks the month-old confirmation mail as dead, not the delivery
    [row] = deliveries(session, hooked)
    assert (row.state, row.attempts) == (OutboxState.SENT, 2)
    assert [e["email"] for e in receiver.accepted] == ["reader@example.com"]


def test_a_webhook_added_later_is_told_only_of_later_changes(app, session, newsletter, receiver):
    signups(app, "before@example.com")
    from tests.webhooks.conftest import add_webhook

    # "Later" in the feed's order: on PostgreSQL an event is handed out once every older
    # transaction on the server has ended (a webhook added before that is told of it, so
    # that it never misses one). Wait for that, as time would.
    newsletter_id = session.scalar(sa.select(Newsletter.id).where(Newsletter.slug == newsletter))
    deadline = time.monotonic() + 10
    while not changes.since(session, [newsletter_id], changes.Position(), 10):
        assert time.monotonic() < deadline, "the signup never reached the change feed"
        time.sleep(0.05)
    webhook_id, receiver.secret = add_webhook(app, receiver.url)
    signups(app, "after@example.com")
    deliver(app)
    assert [e["email"] for e in receiver.accepted] == ["after@example.com"]


def test_each_webhook_of_a_newsletter_gets_every_event_signed_with_its_own_secret(
    app, session, hooked, receiver
):
    from tests.webhooks.conftest import Receiver, add_webhook

    other = Receiver()
    other.start()
    try:
        _, other.secret = add_webhook(app, other.url)
        signups(app, "reader@example.com")
        deliver(app)
    finally:
        other.stop()
    assert [e["email"] for e in receiver.accepted] == ["reader@example.com"]
    assert [e["email"] for e in other.accepted] == ["reader@example.com"]
    assert all(r["verified"] for r in receiver.requests + other.requests)
    assert receiver.secret != other.secret


def test_workers_in_parallel_deliver_one_webhooks_events_once_and_in_order(
    app, session, hooked, receiver
):
    addresses = [f"reader{i}@example.com" for i in range(12)]
    signups(app, *addresses)
    failures = []

    def work():
        try:
            with app.app_context():
                deadline = time.monotonic() + 20
                while len(receiver.accepted) < len(addresses) and time.monotonic() < deadline:
                    # Fan-out and delivery both, as each worker's rounds do.
                    delivery.run_round()
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert [e["email"] for e in receiver.accepted] == addresses
    assert len(receiver.requests) == len(addresses)
