"""One origin check for every signup entry point: a newsletter's allow-list holds everywhere."""

import pytest
import sqlalchemy as sa

from newsletters.models import OutboxMessage, Subscription
from tests.embed.test_embedding import PUBLISHER, count, restrict

# Every public way to sign up, as (path, extra form fields).
ENTRY_POINTS = {
    "hosted form": ("/n/briefing/subscribe", {}),
    "iframe": ("/n/briefing/embed", {}),
    "several at once": ("/subscribe", {"newsletter": "briefing"}),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
@pytest.mark.parametrize("origin", ["https://evil.example.net", "null", "not a url"])
def test_every_entry_point_refuses_a_page_the_newsletter_does_not_allow(
    client, newsletter, session, entry, origin
):
    restrict(session, "briefing", PUBLISHER)
    path, fields = entry
    response = client.post(
        path, data={"email": "reader@example.com", **fields}, headers={"Origin": origin}
    )
    assert response.status_code == 403
    assert "This signup form may not be used on" in response.get_data(as_text=True)
    assert count(session, Subscription) == 0
    assert count(session, OutboxMessage) == 0


@pytest.mark.parametrize("entry", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_every_entry_point_takes_a_signup_from_an_allowed_page_or_from_no_page(
    client, newsletter, session, entry
):
    restrict(session, "briefing", PUBLISHER)
    path, fields = entry
    allowed = client.post(
        path, data={"email": "a@example.com", **fields}, headers={"Origin": PUBLISHER}
    )
    own = client.post(
        path,
        data={"email": "b@example.com", **fields},
        headers={"Origin": "https://news.example.org"},
    )
    no_page = client.post(path, data={"email": "c@example.com", **fields})
    assert [r.status_code for r in (allowed, own, no_page)] in ([303] * 3, [200] * 3)
    assert count(session, Subscription) == 3


def test_an_opaque_origin_names_no_site_and_is_refused_with_a_readable_reason(
    client, newsletter, session
):
    restrict(session, "briefing", PUBLISHER)
    response = client.post(
        "/n/briefing/subscribe",
        data={"email": "reader@example.com"},
        headers={"Origin": "null", "Accept": "application/json"},
    )
    assert response.status_code == 403
    assert "Origin: null" in response.json["message"]


def test_an_opaque_origin_may_sign_up_where_any_page_may_embed(client, newsletter, session):
    response = client.post(
        "/n/briefing/subscribe", data={"email": "reader@example.com"}, headers={"Origin": "null"}
    )
    assert response.status_code == 303
    assert count(session, Subscription) == 1


def test_a_widget_on_a_page_that_is_not_allowed_can_read_why(client, newsletter, session):
    restrict(session, "briefing", PUBLISHER)
    evil = "https://evil.example.net"
    preflight = client.options(
        "/n/briefing/subscribe",
        headers={"Origin": evil, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    refused = client.post(
        "/n/briefing/subscribe",
        data={"email": "reader@example.com"},
        headers={"Origin": evil, "Accept": "application/json"},
    )
    assert refused.status_code == 403
    assert refused.headers["Access-Control-Allow-Origin"] == "*"
    assert refused.json["message"].startswith(f"This signup form may not be used on {evil}.")
    several = client.post(
        "/subscribe",
        data={"email": "reader@example.com", "newsletter": "briefing"},
        headers={"Origin": evil, "Accept": "application/json"},
    )
    assert several.status_code == 403
    assert several.headers["Access-Control-Allow-Origin"] == "*"
    assert session.scalar(sa.select(sa.func.count()).select_from(Subscription)) == 0
