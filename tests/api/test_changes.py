"""The change feed: every change once, in order, across pages, however late it commits."""

import pytest
import sqlalchemy as sa

from newsletters.models import ConsentEvent, Subscriber, Subscription

from .conftest import bearer, confirm, sign_up

FEED = "/api/v1/newsletters/briefing/changes"


def page(client, key, cursor=None, limit=None):
    query = {k: v for k, v in (("cursor", cursor), ("limit", limit)) if v is not None}
    response = client.get(FEED, headers=bearer(key), query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def walk(client, key, cursor=None, limit=2):
    """Return every change after ``cursor``, page by page, and the cursor to poll with."""
    found = []
    while True:
        answer = page(client, key, cursor, limit)
        found += answer["changes"]
        if not answer["changes"]:
            return found, answer["next_cursor"]
        cursor = answer["next_cursor"]


def test_signup_confirmation_and_unsubscription_come_in_order_across_pages(
    app, client, session, key
):
    sign_up(client, key, "a@example.org")
    sign_up(client, key, "b@example.org")
    confirm(app, client, session, "a@example.org")
    client.delete("/api/v1/newsletters/briefing/subscriptions/b@example.org", headers=bearer(key))
    changes, cursor = walk(client, key, limit=2)
    assert [(c["email"], c["event"]) for c in changes] == [
        ("a@example.org", "subscription.pending"),
        ("b@example.org", "subscription.pending"),
        ("a@example.org", "subscription.confirmed"),
        ("b@example.org", "subscription.unsubscribed"),
    ]
    assert changes[0] | {"at": "", "id": "", "cursor": ""} == {
        "id": "",
        "event": "subscription.pending",
        "newsletter": "briefing",
        "subscription": 1,
        "email": "a@example.org",
        "status": "pending",
        "at": "",
        "cursor": "",
    }
    assert cursor == changes[-1]["cursor"]
    # Polling with it: nothing new, the same cursor back; then only what came since.
    assert page(client, key, cursor) == {"changes": [], "next_cursor": cursor}
    sign_up(client, key, "c@example.org")
    later = page(client, key, cursor)
    assert [c["email"] for c in later["changes"]] == ["c@example.org"]


def test_an_empty_feed_hands_out_a_cursor_to_poll_with(client, key):
    first = page(client, key)
    assert first["changes"] == []
    sign_up(client, key, "a@example.org")
    assert [c["email"] for c in page(client, key, first["next_cursor"])["changes"]] == [
        "a@example.org"
    ]


def test_the_feed_holds_only_its_own_newsletters_changes(client, session, key, make_key):
    from newsletters.models import Newsletter

    session.add(Newsletter(slug="other", name="Other"))
    session.commit()
    admin = make_key("admin@example.org", is_admin=True)
    sign_up(client, admin, "elsewhere@example.org", slug="other")
    sign_up(client, key, "here@example.org")
    changes, _ = walk(client, key)
    assert [c["email"] for c in changes] == ["here@example.org"]


@pytest.mark.parametrize("cursor", ["x", "1", "1.2.3", "-1.5", "99999999999999999999.1"])
def test_a_cursor_not_handed_out_is_400_bad_cursor(client, key, cursor):
    response = client.get(FEED, headers=bearer(key), query_string={"cursor": cursor})
    assert response.status_code == 400
    assert response.get_json()["error"] == "bad_cursor"


def test_a_change_committed_late_is_neither_skipped_nor_repeated(app, client, session, key):
    """A transaction that wrote an event stays open while later ones commit and are paged."""
    if not app.config["DATABASE_URL"].startswith("postgresql"):
        pytest.skip("SQLite commits its writers one after another, in the order of their ids")
    sign_up(client, key, "early@example.org")
    seen, cursor = walk(client, key)
    subscription_id, subscriber_id, newsletter_id = session.execute(
        sa.select(Subscription.id, Subscription.subscriber_id, Subscription.newsletter_id)
        .join(Subscriber)
        .where(Subscriber.email == "early@example.org")
    ).one()
    slow = sa.create_engine(app.config["DATABASE_URL"])
    try:
        with slow.connect() as connection:
            late = connection.begin()
            connection.execute(
                sa.insert(ConsentEvent).values(
                    subscription_id=subscription_id,
                    subscriber_id=subscriber_id,
                    newsletter_id=newsletter_id,
                    status="confirmed",
                    at=sa.func.now(),
                    source="test",
                )
            )
            # Later transactions commit while the first stays open, and the feed is read.
            sign_up(client, key, "b@example.org")
            sign_up(client, key, "c@example.org")
            meanwhile, cursor = walk(client, key, cursor)
            seen += meanwhile
            late.commit()
        after, cursor = walk(client, key, cursor)
        seen += after
    finally:
        slow.dispose()
    ids = [c["id"] for c in seen]
    assert len(ids) == len(set(ids)), "a change was handed out twice"
    events = session.scalars(sa.select(ConsentEvent.id)).all()
    assert sorted(ids) == sorted(f"evt_{i}" for i in events), "a change was skipped"
    assert ("early@example.org", "subscription.confirmed") in [
        (c["email"], c["event"]) for c in seen
    ]
