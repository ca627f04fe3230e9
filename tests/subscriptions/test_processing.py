"""Signup requests processed in batches: what one signup means, done with set-based statements."""

from datetime import timedelta

import pytest
import sqlalchemy as sa

from newsletters import db
from newsletters.db import utcnow
from newsletters.models import (
    ConsentEvent,
    Newsletter,
    OutboxMessage,
    SignupRequest,
    Status,
    Subscriber,
    Subscription,
    Suppression,
    Token,
    TokenPurpose,
)
from newsletters.subscriptions import processing

EVIDENCE = processing.Evidence(
    ip="198.51.100.7", user_agent="Reader/1.0", source="form", form_text="Form"
)


def newsletter_ids(session, *slugs) -> list[int]:
    for slug in slugs:
        if not session.scalar(sa.select(Newsletter.id).where(Newsletter.slug == slug)):
            session.add(Newsletter(slug=slug, name=slug.title()))
    session.commit()
    found = dict(session.execute(sa.select(Newsletter.slug, Newsletter.id)).all())
    return [found[slug] for slug in slugs]


def accept(app, ids, email, name=None, evidence=EVIDENCE):
    with app.app_context():
        processing.accept(db.session(), processing.Request.of(ids, email, name, evidence))
        db.session().commit()


def process(app) -> int:
    with app.app_context():
        done = processing.process_due(db.session())
        db.session().commit()
        return done


def count(session, model, *where) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def test_a_processed_request_is_a_pending_subscription_with_its_evidence_tokens_and_mail(
    app, session
):
    [briefing] = newsletter_ids(session, "briefing")
    accept(app, [briefing], "reader@example.com", "Reader")
    assert count(session, Subscription) == 0  # nothing but the request until processed
    assert process(app) == 1
    subscription = session.scalars(sa.select(Subscription)).one()
    assert subscription.status == Status.PENDING
    assert (subscription.name, subscription.source) == ("Reader", "form")
    assert (subscription.optin_ip, subscription.optin_user_agent) == ("198.51.100.7", "Reader/1.0")
    assert subscription.form_text == "Form" and subscription.optin_at is not None
    assert subscription.unsubscribe_token_id is not None
    confirm = session.scalars(sa.select(Token).where(Token.purpose == TokenPurpose.CONFIRM)).one()
    assert [s.id for s in confirm.subscriptions] == [subscription.id]
    assert confirm.expires_at > utcnow() + timedelta(hours=71)
    [mail] = session.scalars(sa.select(OutboxMessage)).all()
    assert (mail.recipient, mail.payload) == ("reader@example.com", {"token_id": confirm.id})
    [event] = session.scalars(sa.select(ConsentEvent)).all()
    assert (event.status, event.ip, event.source) == (Status.PENDING, "198.51.100.7", "form")
    assert count(session, SignupRequest) == 0


def test_many_requests_for_one_address_in_one_batch_give_one_subscription_and_one_mail(
    app, session
):
    [briefing] = newsletter_ids(session, "briefing")
    for _ in range(60):
        accept(app, [briefing], "reader@example.com")
    assert process(app) == 60
    assert count(session, Subscriber) == 1
    assert count(session, Subscription) == 1
    assert count(session, OutboxMessage) == 1
    assert count(session, ConsentEvent) == 60  # every signup is on record


def test_requests_in_later_batches_obey_the_ten_minute_throttle(app, session):
    [briefing] = newsletter_ids(session, "briefing")
    accept(app, [briefing], "reader@example.com")
    process(app)
    accept(app, [briefing], "reader@example.com")
    process(app)
    assert count(session, OutboxMessage) == 1
    session.execute(
        sa.update(Subscription).values(confirmation_mailed_at=utcnow() - timedelta(minutes=11))
    )
    accept(app, [briefing], "reader@example.com")
    process(app)
    assert count(session, OutboxMessage) == 2


def test_a_confirmed_subscription_stays_confirmed_and_gets_no_mail(app, session):
    [briefing] = newsletter_ids(session, "briefing")
    accept(app, [briefing], "reader@example.com")
    process(app)
    session.execute(sa.update(Subscription).values(status=Status.CONFIRMED))
    session.execute(sa.update(Subscription).values(confirmation_mailed_at=None))
    accept(app, [briefing], "reader@example.com", "Changed Name")
    process(app)
    subscription = session.scalars(sa.select(Subscription)).one()
    assert subscription.status == Status.CONFIRMED and subscription.name is None
    assert count(session, OutboxMessage) == 1


def test_one_request_for_several_newsletters_sends_one_mail_for_all(app, session):
    ids = newsletter_ids(session, "alpha", "beta", "gamma")
    accept(app, ids, "reader@example.com")
    process(app)
    assert count(session, Subscription) == 3
    [mail] = session.scalars(sa.select(OutboxMessage)).all()
    token = session.get(Token, mail.payload["token_id"])
    assert sorted(s.newsletter_id for s in token.subscriptions) == sorted(ids)


def test_a_suppressed_address_is_subscribed_but_not_mailed(app, session):
    [briefing] = newsletter_ids(session, "briefing")
    session.add(Suppression(email="bounced@example.com", newsletter_id=briefing, reason="550"))
    session.commit()
    accept(app, [briefing], "bounced@example.com")
    process(app)
    assert count(session, Subscription) == 1
    assert count(session, OutboxMessage) == 0


@pytest.mark.settings(CONFIRM_MAILS_PER_DAY=2)
def test_the_daily_mail_budget_holds_across_newsletters_and_batches(app, session):
    ids = newsletter_ids(session, "n1", "n2", "n3", "n4")
    accept(app, [ids[0]], "reader@example.com")
    accept(app, [ids[1]], "reader@example.com")
    process(app)
    accept(app, [ids[2]], "reader@example.com")
    process(app)
    accept(app, [ids[3]], "reader@example.com")
    process(app)
    assert count(session, Subscription) == 4
    assert count(session, OutboxMessage) == 2


def test_a_newsletter_deleted_before_processing_is_skipped(app, session):
    alpha, beta = newsletter_ids(session, "alpha", "beta")
    accept(app, [alpha, beta], "reader@example.com")
    session.execute(sa.delete(Newsletter).where(Newsletter.id == beta))
    assert process(app) == 1
    assert [s.newsletter_id for s in session.scalars(sa.select(Subscription))] == [alpha]


def test_signing_up_again_after_leaving_makes_it_pending_with_the_new_evidence(app, session):
    [briefing] = newsletter_ids(session, "briefing")
    accept(app, [briefing], "reader@example.com")
    process(app)
    session.execute(
        sa.update(Subscription).values(
            status=Status.UNSUBSCRIBED,
            unsubscribed_at=utcnow(),
            confirmed_at=utcnow(),
            confirmation_mailed_at=None,
        )
    )
    token_before = session.scalar(sa.select(Subscription.unsubscribe_token_id))
    again = processing.Evidence(ip="203.0.113.9", user_agent="Other/2", source="embed")
    accept(app, [briefing], "reader@example.com", evidence=again)
    process(app)
    subscription = session.scalars(sa.select(Subscription)).one()
    assert subscription.status == Status.PENDING
    assert (subscription.optin_ip, subscription.source) == ("203.0.113.9", "embed")
    assert subscription.unsubscribed_at is None and subscription.confirmed_at is None
    assert subscription.unsubscribe_token_id == token_before  # its old links still work
    assert count(session, OutboxMessage) == 2


def test_a_batch_takes_at_most_its_size_oldest_first(app, session):
    [briefing] = newsletter_ids(session, "briefing")
    for n in range(5):
        accept(app, [briefing], f"reader{n}@example.com")
    with app.app_context():
        assert processing.process_due(db.session(), limit=2) == 2
        db.session().commit()
    emails = set(session.scalars(sa.select(Subscriber.email)))
    assert emails == {"reader0@example.com", "reader1@example.com"}
    assert process(app) == 3
