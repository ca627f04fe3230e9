"""Rate limits per IP, shared by every signup entry point, in memory or in Redis."""

import socket
import uuid

import pytest
import sqlalchemy as sa

from newsletters import create_app, db
from newsletters.models import Newsletter, Subscription

from ..conftest import skip_or_fail

# The limit every entry point shares; the tighter one of unverified signups (proof.py,
# tests/subscriptions/test_bot_defence.py) is opened wide so as not to stand in its way.
LIMITED = {
    "RATELIMIT_ENABLED": True,
    "SIGNUP_RATE_LIMIT": "3 per minute",
    "UNVERIFIED_SIGNUP_RATE_LIMIT": "100 per minute",
}


def add_second_newsletter(session):
    session.add(Newsletter(slug="other", name="Other"))
    session.commit()


@pytest.mark.settings(**LIMITED)
def test_fourth_signup_in_a_minute_from_one_ip_gets_429_across_all_entry_points(
    client, newsletter, session
):
    add_second_newsletter(session)
    assert client.post("/n/briefing/subscribe", data={"email": "a@example.com"}).status_code == 303
    assert client.post("/n/other/embed", data={"email": "b@example.com"}).status_code == 200
    several = client.post("/subscribe", data={"email": "c@example.com", "newsletter": "other"})
    assert several.status_code == 303
    refused = client.post(
        "/n/briefing/subscribe",
        json={"email": "d@example.com"},
        headers={"Origin": "https://publisher.example"},
    )
    assert refused.status_code == 429
    assert refused.json["message"].startswith("Too many signups from your network")
    # The widget on another site can read the refusal.
    assert refused.headers["Access-Control-Allow-Origin"] == "*"
    assert "Retry-After" in refused.headers
    emails = session.scalars(sa.select(Subscription.id)).all()
    assert len(emails) == 3


@pytest.mark.settings(**LIMITED)
def test_rate_limit_is_per_ip(client, newsletter):
    for i in range(3):
        client.post("/n/briefing/subscribe", data={"email": f"r{i}@example.com"})
    other_ip = client.post(
        "/n/briefing/subscribe",
        data={"email": "x@example.com"},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    assert other_ip.status_code == 303


@pytest.mark.settings(**LIMITED)
def test_pages_and_links_are_not_signup_limited(client, newsletter):
    for _ in range(10):
        assert client.get("/n/briefing").status_code == 200


@pytest.mark.settings(**LIMITED)
def test_rate_limit_refusal_is_a_readable_page_for_browsers(client, newsletter):
    for i in range(3):
        client.post("/n/briefing/subscribe", data={"email": f"r{i}@example.com"})
    page = client.post("/n/briefing/subscribe", data={"email": "x@example.com"})
    assert page.status_code == 429
    assert "Please wait a minute and try again." in page.get_data(as_text=True)


def redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def test_limits_kept_in_redis_are_shared_by_separate_app_instances(settings, newsletter):
    if not redis_answers():
        skip_or_fail(
            "Redis: nothing answers at 127.0.0.1:6379, so the shared-limit test was skipped"
        )
    shared = (
        settings
        | LIMITED
        | {
            "RATELIMIT_STORAGE_URL": "redis://127.0.0.1:6379",
            "RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}",
        }
    )
    first, second = create_app(shared), create_app(shared)
    try:
        for i in range(3):
            response = first.test_client().post(
                "/n/briefing/subscribe", data={"email": f"r{i}@example.com"}
            )
            assert response.status_code == 303
        # Another worker process of the same deployment: its own app, the same Redis.
        refused = second.test_client().post(
            "/n/briefing/subscribe", data={"email": "x@example.com"}
        )
        assert refused.status_code == 429
    finally:
        for app in (first, second):
            with app.app_context():
                db.engine().dispose()
