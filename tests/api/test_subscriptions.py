"""Reading and unsubscribing through the API: keyset pages, one address, the export."""

import json

import pytest
import sqlalchemy as sa

from newsletters.models import ConsentEvent, ExportRecord, Subscription

from .conftest import bearer, confirm, sign_up

LIST = "/api/v1/newsletters/briefing/subscriptions"


def pages(client, key, **params):
    """Return every page of the list, following next_cursor from the start."""
    found, cursor = [], None
    while True:
        query = params | ({"cursor": cursor} if cursor else {})
        response = client.get(LIST, headers=bearer(key), query_string=query)
        assert response.status_code == 200, response.get_data(as_text=True)
        page = response.get_json()
        found.append([s["email"] for s in page["subscriptions"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def test_pages_walk_the_list_oldest_first_without_gaps_or_repeats(client, key):
    for n in range(7):
        sign_up(client, key, f"r{n}@example.org")
    assert pages(client, key, limit=3) == [
        ["r0@example.org", "r1@example.org", "r2@example.org"],
        ["r3@example.org", "r4@example.org", "r5@example.org"],
        ["r6@example.org"],
    ]
    assert pages(client, key) == [[f"r{n}@example.org" for n in range(7)]]


@pytest.mark.settings(API_PAGE_SIZE=2)
def test_a_page_holds_at_most_api_page_size(client, key):
    for n in range(3):
        sign_up(client, key, f"r{n}@example.org")
    assert [len(p) for p in pages(client, key, limit=100)] == [2, 1]


def test_status_filters_and_the_fields_are_the_exports(app, client, session, key):
    sign_up(client, key, "pending@example.org")
    sign_up(client, key, "sure@example.org")
    confirm(app, client, session, "sure@example.org")
    assert pages(client, key, status="confirmed") == [["sure@example.org"]]
    assert pages(client, key, status="pending") == [["pending@example.org"]]
    one = client.get(LIST, headers=bearer(key), query_string={"status": "confirmed"}).get_json()
    subscription = one["subscriptions"][0]
    assert set(subscription) == {
        "id", "email", "name", "status", "optin_at", "optin_ip", "confirmed_at", "confirm_ip",
        "unsubscribed_at", "source", "unsubscribe_url", "address_flags", "language",
        "page", "utm_source", "utm_medium", "utm_campaign", "verification",
    }  # fmt: skip
    assert subscription["confirmed_at"].endswith("Z")
    assert subscription["unsubscribed_at"] is None
    assert subscription["unsubscribe_url"].startswith("https://news.example.org/unsubscribe/")
    # The link works.
    assert (
        client.post(
            subscription["unsubscribe_url"].removeprefix("https://news.example.org")
        ).status_code
        == 200
    )


@pytest.mark.parametrize("query", [{"cursor": "abc"}, {"cursor": "-1"}, {"cursor": "9" * 40}])
def test_a_cursor_not_handed_out_is_400_bad_cursor(client, key, query):
    response = client.get(LIST, headers=bearer(key), query_string=query)
    assert response.status_code == 400
    assert response.get_json()["error"] == "bad_cursor"


@pytest.mark.parametrize("query", [{"status": "gone"}, {"limit": "0"}, {"limit": "many"}])
def test_a_bad_parameter_is_400_naming_it(client, key, query):
    response = client.get(LIST, headers=bearer(key), query_string=query)
    assert response.status_code == 400
    answer = response.get_json()
    assert answer["error"] == "invalid_parameter"
    assert set(answer["fields"]) == set(query)


def test_one_subscription_by_address(client, key):
    sign_up(client, key, "reader@example.org", name="Ada")
    response = client.get(f"{LIST}/Reader@Example.org", headers=bearer(key))
    assert response.status_code == 200
    assert (response.get_json()["email"], response.get_json()["name"]) == (
        "reader@example.org",
        "Ada",
    )
    for unknown in ("nobody@example.org", "not an address"):
        response = client.get(f"{LIST}/{unknown}", headers=bearer(key))
        assert response.status_code == 404
        assert response.get_json()["error"] == "subscription_not_found"


@pytest.mark.parametrize("how", ["delete", "post"])
def test_unsubscribing_records_the_keys_editor_and_is_harmless_twice(client, session, key, how):
    sign_up(client, key, "reader@example.org")

    def unsubscribe():
        if how == "delete":
            return client.delete(f"{LIST}/reader@example.org", headers=bearer(key))
        return client.post(f"{LIST}/reader@example.org/unsubscribe", headers=bearer(key))

    first = unsubscribe()
    assert first.status_code == 200
    assert first.get_json()["status"] == "unsubscribed"
    again = unsubscribe()
    assert again.status_code == 200
    assert again.get_json()["unsubscribed_at"] == first.get_json()["unsubscribed_at"]
    events = session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.id)).all()
    assert [(e.action, e.status) for e in events] == [
        ("signed_up", "pending"),
        ("edited", "unsubscribed"),
    ]
    assert events[-1].source == "api"
    assert events[-1].detail.startswith("by editor editor@example.org through API key")
    assert events[-1].detail.endswith("(tests)")
    missing = client.delete(f"{LIST}/nobody@example.org", headers=bearer(key))
    assert missing.status_code == 404


def test_the_export_streams_json_lines_and_is_recorded_as_the_keys_editors(
    app, client, session, key
):
    sign_up(client, key, "pending@example.org")
    sign_up(client, key, "sure@example.org")
    confirm(app, client, session, "sure@example.org")
    response = client.get("/api/v1/newsletters/briefing/export", headers=bearer(key))
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    rows = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert [r["email"] for r in rows] == ["sure@example.org"]
    assert list(rows[0]) == [
        "email", "name", "status", "optin_at", "optin_ip", "confirmed_at", "confirm_ip",
        "unsubscribed_at", "source", "unsubscribe_url",
        "form_text_version", "source_origin", "confirmation_evidence",
        "address_flags", "language",
        "page", "utm_source", "utm_medium", "utm_campaign", "verification",
    ]  # fmt: skip
    everyone = client.get("/api/v1/newsletters/briefing/export?status=all", headers=bearer(key))
    assert len(everyone.get_data(as_text=True).splitlines()) == 2
    records = session.scalars(sa.select(ExportRecord).order_by(ExportRecord.id)).all()
    assert [(r.via, r.status, r.format, r.rows) for r in records] == [
        ("api", "confirmed", "jsonl", 1),
        ("api", "all", "jsonl", 2),
    ]
    assert records[0].editor.email == "editor@example.org"
    bad = client.get("/api/v1/newsletters/briefing/export?status=nope", headers=bearer(key))
    assert bad.status_code == 400
    assert session.scalar(sa.select(sa.func.count()).select_from(ExportRecord)) == 2


def test_unknown_subscriptions_are_not_created_by_reads(client, session, key):
    client.get(f"{LIST}/someone@example.org", headers=bearer(key))
    assert session.scalar(sa.select(sa.func.count()).select_from(Subscription)) == 0


def test_subscriptions_carry_the_address_flags_as_a_list_and_the_language(client, session, key):
    for email in ("flagged@example.org", "plain@example.org"):
        sign_up(client, key, email)
    # As the signup's address checks and language choice store them (or an older row).
    for email, flags, language in [
        ("flagged@example.org", "typo role", "uk"),
        ("plain@example.org", None, None),
    ]:
        session.execute(
            sa.update(Subscription)
            .where(Subscription.subscriber.has(email=email))
            .values(address_flags=flags, language=language)
        )
    session.commit()

    listed = client.get(LIST, headers=bearer(key)).get_json()["subscriptions"]
    assert [(s["email"], s["address_flags"], s["language"]) for s in listed] == [
        ("flagged@example.org", ["typo", "role"], "uk"),
        ("plain@example.org", [], None),
    ]
    one = client.get(f"{LIST}/flagged@example.org", headers=bearer(key)).get_json()
    assert (one["address_flags"], one["language"]) == (["typo", "role"], "uk")
    gone = client.delete(f"{LIST}/flagged@example.org", headers=bearer(key)).get_json()
    assert (gone["address_flags"], gone["language"]) == (["typo", "role"], "uk")
