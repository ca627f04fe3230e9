"""The subscriber list's order (newest signup first), its count, and search on both databases."""

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from newsletters import subscribers
from newsletters.models import Status, Subscriber, Subscription

from . import test_subscribers
from .test_subscribers import LIST, add, walk

editor = test_subscribers.editor  # a fixture

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def emails(client, url) -> list[str]:
    return [email for _, email in walk(client, url)]


def test_pages_are_newest_signup_first_whatever_the_order_rows_were_added(client, session, editor):
    # Imported lists bring old signups after new ones: ids say nothing of signup order.
    hours = [(n * 37) % 121 for n in range(121)]
    for n, hour in enumerate(hours):
        add(session, "briefing", f"r{n:03d}@example.com", optin_at=T0 + timedelta(hours=hour))
    # Two at the same instant: the later id first. Two with no known signup time: last.
    tie_first = add(session, "briefing", "tie-a@example.com", optin_at=T0 + timedelta(hours=60))
    tie_second = add(session, "briefing", "tie-b@example.com", optin_at=T0 + timedelta(hours=60))
    add(session, "briefing", "undated-a@example.com")
    add(session, "briefing", "undated-b@example.com")

    seen = walk(client, LIST)

    rows = session.execute(
        sa.select(Subscription.id, Subscription.optin_at).order_by(
            Subscription.optin_at.desc().nulls_last(), Subscription.id.desc()
        )
    ).all()
    assert [i for i, _ in seen] == [i for i, _ in rows]
    assert len(seen) == 125 and len(set(seen)) == 125
    assert seen[0][1] == f"r{hours.index(120):03d}@example.com"
    assert [e for _, e in seen[-2:]] == ["undated-b@example.com", "undated-a@example.com"]
    ids = [i for i, _ in seen]
    assert ids.index(tie_second) < ids.index(tie_first)


def test_status_badges_show_the_word_as_well_as_the_colour(client, session, editor):
    add(session, "briefing", "p@example.com", Status.PENDING)
    add(session, "briefing", "u@example.com", Status.UNSUBSCRIBED)

    page = client.get(LIST).get_data(as_text=True)

    assert '<span class="status-badge" data-status="pending">Pending</span>' in page
    assert '<span class="status-badge" data-status="unsubscribed">Unsubscribed</span>' in page


@pytest.fixture
def people(session, editor):
    """Add subscriptions whose addresses and names the searches below tell apart."""
    for n, (email, name) in enumerate(
        [
            ("anna@example.com", "Anna Smith"),
            ("annabel@example.org", None),
            ("joanna@example.net", "Joanna Lovelace"),
            ("bob@mail.example.net", "Bob"),
            ("carla@example.community", None),
            ("dev@exampleacom.org", "Ömer Dev"),
            ("a_b@example.com", None),
            ("a%c@example.com", None),
        ]
    ):
        add(session, "briefing", email, name=name, optin_at=T0 + timedelta(days=n))


@pytest.mark.parametrize(
    ("query", "found"),
    [
        # Any part of the address.
        ("example.net", ["bob@mail.example.net", "joanna@example.net"]),
        ("nna@", ["joanna@example.net", "anna@example.com"]),
        ("NNA@", ["joanna@example.net", "anna@example.com"]),
        # A domain: @ and what follows; the dot is a dot, not "any character".
        (
            "@example.com",
            ["a%c@example.com", "a_b@example.com", "carla@example.community", "anna@example.com"],
        ),
        ("@example.org", ["annabel@example.org"]),
        # A name, whatever its case, and beyond ASCII.
        ("lovelace", ["joanna@example.net"]),
        ("anna smith", ["anna@example.com"]),
        ("ömer", ["dev@exampleacom.org"]),
        # LIKE's wildcards are plain characters.
        ("a%c", ["a%c@example.com"]),
        ("a_b@", ["a_b@example.com"]),
        ("zzz", []),
    ],
)
def test_search_finds_any_part_of_an_address_or_a_name(client, people, query, found):
    assert emails(client, f"{LIST}?q={query.replace('%', '%25')}") == found


def test_short_search_finds_addresses_that_start_with_it_and_says_so(client, people):
    response = client.get(f"{LIST}?q=AN")
    page = response.get_data(as_text=True)

    assert emails(client, f"{LIST}?q=AN") == ["annabel@example.org", "anna@example.com"]
    assert "type at least 3 characters to search anywhere" in page
    assert "type at least 3" not in client.get(f"{LIST}?q=ann").get_data(as_text=True)


def test_the_help_says_what_can_be_searched_not_how_the_database_works(client, editor):
    page = client.get(LIST).get_data(as_text=True)

    assert "Any part of an address or a name" in page
    assert "<code>@example.com</code> for everyone at that domain" in page
    help_text = page.split('id="q-help">')[1].split("</p>")[0]
    assert "index" not in help_text and "database" not in help_text


@pytest.mark.parametrize(
    ("window", "dense"), [(2_000, 10_000), (1, 10_000), (1, 2)], ids=["window", "index", "walk"]
)
def test_search_finds_the_same_rows_in_the_same_order_whichever_way_it_goes(
    client, session, editor, monkeypatch, window, dense
):
    # The newest rows first; else the search's index when it finds few; else the whole list.
    monkeypatch.setattr(subscribers, "WINDOW", window)
    monkeypatch.setattr(subscribers, "DENSE", dense)
    for n in range(60):
        at = T0 + timedelta(minutes=(n * 7) % 60)
        add(session, "briefing", f"keep{n:02d}@example.com", optin_at=at)
        add(session, "briefing", f"other{n:02d}@example.com", name="Keeper" if n == 5 else None)
    expected = [
        f"keep{n:02d}@example.com" for n in sorted(range(60), key=lambda n: -((n * 7) % 60))
    ]

    assert emails(client, f"{LIST}?q=keep") == expected + ["other05@example.com"]
    assert emails(client, f"{LIST}?q=ke") == expected


def test_search_follows_changes_to_the_list(client, session, editor):
    subscription_id = add(session, "briefing", "reader@example.com", name="Ada")
    assert emails(client, f"{LIST}?q=ada") == ["reader@example.com"]

    subscription = session.get(Subscription, subscription_id)
    subscription.name = "Grace"
    session.commit()
    assert emails(client, f"{LIST}?q=ada") == []
    assert emails(client, f"{LIST}?q=grace") == ["reader@example.com"]

    session.execute(sa.delete(Subscription).where(Subscription.id == subscription_id))
    session.commit()
    assert emails(client, f"{LIST}?q=grace") == []
    add(session, "briefing", "reader@example.com", name="Again")
    assert emails(client, f"{LIST}?q=reader@") == ["reader@example.com"]


def test_search_of_this_newsletter_leaves_out_another_ones(
    client, session, editor, other_newsletter
):
    add(session, "briefing", "mine@example.com")
    add(session, "other", "theirs@example.com")

    assert emails(client, f"{LIST}?q=example") == ["mine@example.com"]


def total_of(client, url) -> str:
    page = client.get(url).get_data(as_text=True)
    return page.split('<p class="list-total" id="list-total"><b>')[1].split("</b>")[0]


def test_a_short_list_is_counted_exactly(client, session, editor):
    for n in range(3):
        add(session, "briefing", f"r{n}@example.com", Status.PENDING if n else Status.CONFIRMED)

    assert total_of(client, LIST) == "3 subscriptions."
    assert total_of(client, f"{LIST}?status=pending") == "2 subscriptions match."
    assert total_of(client, f"{LIST}?q=r0@") == "1 subscription matches."
    assert total_of(client, f"{LIST}?q=nobody") == "0 subscriptions match."


def test_a_long_list_is_estimated_or_counted_once_and_says_which(
    app, client, session, editor, monkeypatch
):
    monkeypatch.setattr(subscribers, "DENSE", 2)
    session.execute(
        sa.insert(Subscriber), [{"email": f"r{n}@example.com", "created_at": T0} for n in range(5)]
    )
    for subscriber_id in session.scalars(sa.select(Subscriber.id)):
        add(session, "briefing", f"r{subscriber_id - 1}@example.com")
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("ANALYZE subscription"))
        assert total_of(client, LIST) == "About 5 subscriptions (estimated)."
        # The statistics' guess for a search, or, when they guess fewer than were found,
        # no more than that the search found more.
        searched = total_of(client, f"{LIST}?q=example")
        assert searched.startswith("About ") or searched == "More than 2 subscriptions match."
        return
    assert total_of(client, LIST) == "5 subscriptions, counted just now."
    assert total_of(client, f"{LIST}?q=example") == "More than 2 subscriptions match."
    # Of a search's many matches, those of one status are counted as far as DENSE.
    assert total_of(client, f"{LIST}?q=example&status=pending") == "0 subscriptions match."
    # The count is kept a while: a new row shows in the list before it does in the count.
    add(session, "briefing", "late@example.com")
    assert total_of(client, LIST) == "5 subscriptions, counted just now."
    kept = app.extensions["subscriber_counts"]
    [(key, (value, at))] = kept.items()
    kept[key] = (value, at - timedelta(minutes=3))
    assert total_of(client, LIST) == "5 subscriptions, counted 3 minutes ago."
    kept[key] = (value, at - timedelta(minutes=6))
    assert total_of(client, LIST) == "6 subscriptions, counted just now."


@pytest.mark.parametrize("window", [5_000, 1], ids=["window", "flagged-index"])
def test_a_flag_alone_or_with_a_search_is_found_in_the_newest_rows_or_past_them(
    client, session, editor, monkeypatch, window
):
    monkeypatch.setattr(subscribers, "WINDOW", window)
    for n in range(60):
        flags = "role" if n % 20 == 0 else ("disposable role" if n == 45 else None)
        add(
            session,
            "briefing",
            f"{'keep' if n % 2 else 'other'}{n:02d}@example.com",
            optin_at=T0 + timedelta(minutes=n),
            address_flags=flags,
        )

    assert emails(client, f"{LIST}?flag=role") == [
        "keep45@example.com",
        "other40@example.com",
        "other20@example.com",
        "other00@example.com",
    ]
    assert emails(client, f"{LIST}?flag=role&q=keep") == ["keep45@example.com"]
    assert emails(client, f"{LIST}?flag=disposable&q=ke") == ["keep45@example.com"]
