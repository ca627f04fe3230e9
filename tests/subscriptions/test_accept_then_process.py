"""A signup's request stores one row and answers; the worker makes the subscription after."""

import pytest
import sqlalchemy as sa

from newsletters import db
from newsletters.models import OutboxMessage, SignupRequest, Status, Subscriber, Subscription
from newsletters.subscriptions import processing

pytestmark = pytest.mark.settings(SIGNUP_PROCESSING="worker")


def count(session, model) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def process(app) -> int:
    with app.app_context():
        done = processing.process_due(db.session())
        db.session().commit()
    return done


def statements_of(app, client, email) -> list[str]:
    """Return the SQL statements one signup of ``email`` sends, in order."""
    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    with app.app_context():
        engine = db.engine()
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        response = client.post("/n/briefing/subscribe", data={"email": email})
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 303
    return seen


def test_the_request_stores_the_signup_and_the_worker_makes_the_subscription(
    app, client, newsletter, session
):
    response = client.post(
        "/n/briefing/subscribe", data={"email": "Reader@Example.com", "name": "Reader"}
    )
    assert response.status_code == 303
    [request] = session.scalars(sa.select(SignupRequest)).all()
    assert (request.email, request.name, request.source) == (
        "reader@example.com",
        "Reader",
        "plain",
    )
    assert count(session, Subscription) == 0 and count(session, OutboxMessage) == 0
    assert process(app) == 1
    subscription = session.scalars(sa.select(Subscription)).one()
    assert subscription.status == Status.PENDING and subscription.name == "Reader"
    assert count(session, OutboxMessage) == 1
    assert count(session, SignupRequest) == 0


def test_a_signup_of_a_new_pending_or_confirmed_address_sends_the_same_statements(
    app, client, newsletter, session
):
    client.post("/n/briefing/subscribe", data={"email": "pending@example.com"})
    client.post("/n/briefing/subscribe", data={"email": "confirmed@example.com"})
    process(app)
    session.execute(
        sa.update(Subscription)
        .where(
            Subscription.subscriber_id
            == sa.select(Subscriber.id)
            .where(Subscriber.email == "confirmed@example.com")
            .scalar_subquery()
        )
        .values(status=Status.CONFIRMED)
    )
    # Whatever the address's state, the request does the same thing: nothing in its timing
    # can tell who is subscribed (SPEC: "the same answer … and it takes the same time").
    new = statements_of(app, client, "new@example.com")
    pending = statements_of(app, client, "pending@example.com")
    confirmed = statements_of(app, client, "confirmed@example.com")
    assert new == pending == confirmed
    writes = [s for s in new if not s.lstrip().upper().startswith(("SELECT", "BEGIN"))]
    assert len(writes) == 1 and writes[0].lstrip().upper().startswith("INSERT INTO SIGNUP_REQUEST")


def test_a_refused_signup_stores_no_request(app, client, newsletter, session):
    assert client.post("/n/briefing/subscribe", data={"email": "nope"}).status_code == 400
    bot = client.post(
        "/n/briefing/subscribe", data={"email": "bot@example.com", "website": "http://spam"}
    )
    assert bot.status_code == 303
    assert count(session, SignupRequest) == 0


def test_several_newsletters_at_once_are_one_request_and_one_mail(app, client, session):
    from tests.embed.test_several_newsletters import add_newsletters

    add_newsletters(session, "alpha", "beta")
    client.post("/subscribe", data={"email": "reader@example.com", "newsletter": ["alpha", "beta"]})
    assert count(session, SignupRequest) == 1
    process(app)
    assert count(session, Subscription) == 2 and count(session, OutboxMessage) == 1
