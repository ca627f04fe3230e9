"""The subscriber list, one subscriber's evidence, and unsubscribing or erasing by hand."""

import html
import re

import pytest
import sqlalchemy as sa

from newsletters import db, subscribers, tokens
from newsletters.models import (
    ConsentEvent,
    Newsletter,
    OutboxMessage,
    Status,
    Subscriber,
    Subscription,
    Token,
    TokenPurpose,
)

from .conftest import csrf_token, login

LIST = "/admin/n/briefing/subscribers"
ROW = re.compile(r'href="/admin/n/briefing/subscribers/(\d+)">([^<]+)</a>')
NEXT = re.compile(r'<a rel="next" href="([^"]+)"')


def add(session, slug, email, status=Status.CONFIRMED, **fields) -> int:
    """Add a subscription of ``email`` to the newsletter ``slug``; return its id."""
    newsletter = session.scalar(sa.select(Newsletter).where(Newsletter.slug == slug))
    subscriber = session.scalar(sa.select(Subscriber).where(Subscriber.email == email))
    subscription = Subscription(
        newsletter=newsletter,
        subscriber=subscriber or Subscriber(email=email),
        status=status,
        **fields,
    )
    session.add(subscription)
    session.commit()
    return subscription.id


def listed(client, url) -> tuple[list[tuple[int, str]], str | None]:
    """Return the (id, address) rows of a list page and the URL of the next page."""
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    page = response.get_data(as_text=True)
    rows = [(int(i), email) for i, email in ROW.findall(page)]
    following = NEXT.search(page)
    return rows, html.unescape(following.group(1)) if following else None


def walk(client, url) -> list[tuple[int, str]]:
    """Follow the "Older" links from ``url`` to the last page; return every row seen."""
    seen, pages = [], 0
    while url:
        rows, url = listed(client, url)
        seen += rows
        pages += 1
        assert pages < 20, "the pages do not end"
    return seen


@pytest.fixture
def editor(make_editor, client, newsletter):
    """Log the test client in as an editor of 'briefing' only."""
    make_editor("editor@example.org", "briefing")
    login(client, "editor@example.org")
    return "editor@example.org"


def test_keyset_pages_cover_every_subscription_once_newest_first(client, session, editor):
    statuses = list(Status)
    ids = [add(session, "briefing", f"r{n:03d}@example.com", statuses[n % 3]) for n in range(123)]

    first, _ = listed(client, LIST)
    seen = walk(client, LIST)

    assert len(first) == 50
    assert [i for i, _ in seen] == sorted(ids, reverse=True)
    assert seen[0][1] == "r122@example.com"


def test_status_filter_lists_only_that_status_across_pages(client, session, editor):
    for n in range(130):
        add(
            session,
            "briefing",
            f"r{n:03d}@example.com",
            Status.PENDING if n % 2 else Status.CONFIRMED,
        )

    seen = walk(client, f"{LIST}?status=pending")

    assert [email for _, email in seen] == [f"r{n:03d}@example.com" for n in range(129, 0, -2)]


@pytest.mark.parametrize(
    ("prefix", "successor"),
    [("ann", "ano"), ("a\U0010ffff", "b"), ("\U0010ffff", None), ("a\ud7ff", "a\ue000")],
)
def test_prefix_range_ends_right_after_the_last_string_with_that_prefix(prefix, successor):
    assert subscribers._successor(prefix) == successor


def test_status_filter_and_search_combine_and_carry_over_to_the_next_page(client, session, editor):
    for n in range(60):
        add(session, "briefing", f"keep{n:02d}@example.com", Status.CONFIRMED)
        add(session, "briefing", f"keep-pending{n:02d}@example.com", Status.PENDING)
        add(session, "briefing", f"other{n:02d}@example.com", Status.CONFIRMED)

    seen = walk(client, f"{LIST}?q=keep&status=confirmed")

    assert [e for _, e in seen] == [f"keep{n:02d}@example.com" for n in range(59, -1, -1)]


def test_list_shows_only_this_newsletters_subscriptions(client, session, editor, other_newsletter):
    add(session, "briefing", "mine@example.com")
    add(session, "other", "theirs@example.com")

    assert [e for _, e in walk(client, LIST)] == ["mine@example.com"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "status=active",
            "There is no status &#39;active&#39;: use one of pending, confirmed, unsubscribed",
        ),
        ("after=12abc", "start again from the first page"),
        ("after=12", "start again from the first page"),
        ("after=99999999999999999999999_1", "start again from the first page"),
        ("after=n_99999999999999999999999", "start again from the first page"),
        ("q=" + "a" * 321, "longer than any email address"),
        ("q=ann%00", "may not contain control characters"),
    ],
)
def test_malformed_list_requests_get_a_400_that_says_what_to_do(client, editor, query, message):
    response = client.get(f"{LIST}?{query}")

    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_subscriber_page_shows_the_consent_evidence_and_history_of_a_real_signup(
    app, client, session, editor
):
    client.post(
        "/n/briefing/subscribe",
        data={"email": "Reader@Example.com", "name": "Ada Lovelace"},
        headers={"User-Agent": "EvidenceBrowser/1.0"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    with app.app_context():
        token = db.session().scalar(sa.select(Token).where(Token.purpose == TokenPurpose.CONFIRM))
        secret = tokens.secret_for(token)
    confirmed = client.post(f"/confirm/{secret}", environ_base={"REMOTE_ADDR": "198.51.100.9"})
    assert confirmed.status_code < 400
    subscription_id = session.scalar(sa.select(Subscription.id))

    page = client.get(f"{LIST}/{subscription_id}").get_data(as_text=True)

    for evidence in (
        "reader@example.com",
        "Ada Lovelace",
        "confirmed",
        "203.0.113.7",
        "EvidenceBrowser/1.0",
        "Morning Briefing: Enter your email to subscribe [Subscribe]",
        "198.51.100.9",
    ):
        assert evidence in page
    history = page.split(">History</h2>")[1]
    assert history.index("pending") < history.index("confirmed")


def test_subscription_of_another_newsletter_is_not_found_under_this_one(
    client, session, editor, other_newsletter
):
    theirs = add(session, "other", "theirs@example.com")

    assert client.get(f"{LIST}/{theirs}").status_code == 404
    token = csrf_token(client, LIST + f"/{add(session, 'briefing', 'mine@example.com')}")
    for action in ("unsubscribe", "delete"):
        response = client.post(f"{LIST}/{theirs}/{action}", data={"csrf_token": token})
        assert response.status_code == 404
    assert session.get(Subscription, theirs).status == Status.CONFIRMED


def test_editor_unsubscribes_by_hand_on_the_record(client, session, editor):
    subscription_id = add(session, "briefing", "leaving@example.com")
    page = f"{LIST}/{subscription_id}"

    response = client.post(
        f"{page}/unsubscribe",
        data={"csrf_token": csrf_token(client, page)},
        headers={"User-Agent": "Browser/" + "9" * 600},
    )

    assert response.status_code == 303
    assert response.headers["Location"] == page
    subscription = session.get(Subscription, subscription_id, populate_existing=True)
    assert subscription.status == Status.UNSUBSCRIBED
    assert subscription.unsubscribed_at is not None
    [event] = session.scalars(sa.select(ConsentEvent)).all()
    assert (event.status, event.source) == (Status.UNSUBSCRIBED, "admin")
    assert "editor@example.org" in event.detail
    assert event.user_agent.startswith("Browser/") and len(event.user_agent) == 512
    shown = client.get(page).get_data(as_text=True)
    assert "Unsubscribed leaving@example.com." in shown
    assert "editor@example.org" in shown.split(">History</h2>")[1]


def test_unsubscribing_twice_records_one_change(client, session, editor):
    subscription_id = add(session, "briefing", "leaving@example.com")
    page = f"{LIST}/{subscription_id}"
    token = csrf_token(client, page)

    client.post(f"{page}/unsubscribe", data={"csrf_token": token})
    again = client.post(f"{page}/unsubscribe", data={"csrf_token": token})

    assert again.status_code == 303
    assert len(session.scalars(sa.select(ConsentEvent)).all()) == 1
    assert "was already unsubscribed" in client.get(page).get_data(as_text=True)


def test_delete_removes_the_subscription_and_keeps_its_ledger_and_the_address(
    app, client, session, editor
):
    client.post("/n/briefing/subscribe", data={"email": "gone@example.com"})
    subscription_id = session.scalar(sa.select(Subscription.id))
    page = f"{LIST}/{subscription_id}"

    response = client.post(f"{page}/delete", data={"csrf_token": csrf_token(client, page)})

    assert response.status_code == 303
    assert response.headers["Location"] == LIST
    assert session.scalars(sa.select(Subscription)).all() == []
    # The evidence stays: who agreed to what, and that an editor deleted it.
    assert session.scalars(sa.select(Subscriber.email)).all() == ["gone@example.com"]
    events = session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.id)).all()
    assert [(e.action, e.subscription_id) for e in events] == [
        ("signed_up", subscription_id),
        ("deleted", subscription_id),
    ]
    assert events[-1].source == "admin" and "editor@example.org" in events[-1].detail
    assert client.get(page).status_code == 404
    shown = client.get(LIST).get_data(as_text=True)
    assert "Deleted gone@example.com from Morning Briefing. Its consent history is kept" in shown


def test_delete_keeps_an_address_that_other_newsletters_still_have(
    client, session, editor, other_newsletter
):
    client.post(
        "/subscribe", data={"email": "both@example.com", "newsletter": ["briefing", "other"]}
    )
    mine, theirs = session.scalars(sa.select(Subscription).order_by(Subscription.id)).all()
    assert mine.newsletter.slug == "briefing"
    page = f"{LIST}/{mine.id}"

    client.post(f"{page}/delete", data={"csrf_token": csrf_token(client, page)})

    assert session.scalars(sa.select(Subscription.id)).all() == [theirs.id]
    assert session.scalars(sa.select(Subscriber.email)).all() == ["both@example.com"]
    assert session.scalars(
        sa.select(ConsentEvent.subscription_id).distinct().order_by(ConsentEvent.subscription_id)
    ).all() == [mine.id, theirs.id]
    # The one confirmation mail now asks only for the newsletter that is left.
    [mail] = session.scalars(sa.select(OutboxMessage)).all()
    confirm = session.get(Token, mail.payload["token_id"], populate_existing=True)
    assert [s.id for s in confirm.subscriptions] == [theirs.id]


def test_editor_of_another_newsletter_may_neither_see_nor_change_subscribers(
    client, session, make_editor, newsletter, other_newsletter
):
    subscription_id = add(session, "briefing", "reader@example.com")
    make_editor("outsider@example.org", "other")
    login(client, "outsider@example.org")
    token = csrf_token(client, "/admin/n/other/subscribers/" + str(add(session, "other", "x@y.z")))

    assert client.get(LIST).status_code == 403
    assert client.get(f"{LIST}/{subscription_id}").status_code == 403
    for action in ("unsubscribe", "delete"):
        response = client.post(f"{LIST}/{subscription_id}/{action}", data={"csrf_token": token})
        assert response.status_code == 403
    assert session.get(Subscription, subscription_id).status == Status.CONFIRMED
    assert session.scalars(sa.select(ConsentEvent)).all() == []


def test_without_login_every_subscriber_page_sends_to_the_login(client, session, newsletter):
    subscription_id = add(session, "briefing", "reader@example.com")
    # The form's token of an anonymous visitor, so that the login check is what answers.
    token = csrf_token(client)

    for method, path in (
        ("get", LIST),
        ("get", f"{LIST}/{subscription_id}"),
        ("post", f"{LIST}/{subscription_id}/unsubscribe"),
        ("post", f"{LIST}/{subscription_id}/delete"),
    ):
        response = getattr(client, method)(path, data={"csrf_token": token})
        assert response.status_code in (302, 303), path
        assert response.headers["Location"].startswith("/admin/login"), path
    assert session.get(Subscription, subscription_id).status == Status.CONFIRMED


def test_unsubscribe_or_delete_without_the_csrf_token_is_refused_and_changes_nothing(
    client, session, editor
):
    subscription_id = add(session, "briefing", "reader@example.com")

    for action in ("unsubscribe", "delete"):
        response = client.post(f"{LIST}/{subscription_id}/{action}")
        assert response.status_code == 400
        assert "security token" in response.get_data(as_text=True)
    assert session.get(Subscription, subscription_id).status == Status.CONFIRMED
