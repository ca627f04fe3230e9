"""Acting on a selection in the subscriber list: export, unsubscribe and delete, and bad input."""

import csv
import io
import re
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from newsletters import changes, exports
from newsletters.models import (
    ConsentEvent,
    ExportRecord,
    Newsletter,
    Status,
    Subscriber,
    Subscription,
)

from . import test_subscribers
from .conftest import login
from .test_subscribers import LIST, add

# Fixture: the editor of 'briefing', logged in.
editor = test_subscribers.editor

SELECTION = f"{LIST}/selection"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client, path=LIST) -> str:
    """Return the CSRF token of the forms on ``path``, as a browser would read it."""
    return TOKEN.search(client.get(path).get_data(as_text=True)).group(1)


@pytest.fixture
def three(session, editor):
    """Add three subscriptions to 'briefing'; return their ids, oldest first."""
    return [add(session, "briefing", f"r{n}@example.com", name=f"Reader {n}") for n in range(3)]


def select(client, action, ids, **extra):
    """Post the list's selection form: ``ids`` ticked, the button ``action`` pressed."""
    data = {"csrf_token": csrf_token(client, LIST), "action": action, "id": [str(i) for i in ids]}
    return client.post(SELECTION, data=data | extra)


def test_the_list_has_a_labelled_box_per_row_and_one_for_the_page(client, three):
    page = client.get(LIST).get_data(as_text=True)

    for n, subscription_id in enumerate(three):
        box = f'name="id" value="{subscription_id}" id="pick-{subscription_id}"'
        assert f'<input type="checkbox" {box} aria-label="Select r{n}@example.com">' in page
    assert 'id="select-page"' in page and 'aria-label="Select all on this page"' in page
    assert 'class="scroll table-scroll" tabindex="0" role="region" aria-label=' in page


def test_export_of_a_selection_is_the_exports_csv_of_those_rows(client, session, three):
    response = select(client, "export", three[:2])

    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "briefing-selection.csv" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert tuple(rows[0]) == exports.COLUMNS
    assert sorted(row[0] for row in rows[1:]) == ["r0@example.com", "r1@example.com"]
    # Each row as the whole list's export has it.
    whole = client.get("/admin/n/briefing/export?status=all").get_data(as_text=True)
    assert sorted(rows[1:]) == sorted(
        r for r in csv.reader(io.StringIO(whole)) if r[0] in {"r0@example.com", "r1@example.com"}
    )
    [entry] = session.scalars(sa.select(ExportRecord).where(ExportRecord.status == "selection"))
    assert (entry.via, entry.status, entry.format, entry.rows) == ("admin", "selection", "csv", 2)


def test_unsubscribe_asks_first_then_unsubscribes_each_on_the_record(client, session, three):
    add(session, "briefing", "gone@example.com", Status.UNSUBSCRIBED)
    gone = session.scalar(sa.select(Subscription.id).where(Subscription.name.is_(None)))
    chosen = [three[0], three[2], gone]

    asked = select(client, "unsubscribe", chosen)

    assert asked.status_code == 200
    page = asked.get_data(as_text=True)
    assert "Unsubscribe 3 subscribers?" in page
    for email in ("r0@example.com", "r2@example.com", "gone@example.com"):
        assert email in page
    assert session.scalars(sa.select(ConsentEvent)).all() == []  # nothing done yet
    back = f"{LIST}?status=confirmed"

    done = client.post(
        f"{SELECTION}/unsubscribe",
        data={"csrf_token": csrf_token(client, LIST), "id": chosen, "back": back},
    )

    assert done.status_code == 303 and done.headers["Location"] == back
    statuses = dict(session.execute(sa.select(Subscription.id, Subscription.status)).all())
    assert statuses == {
        three[0]: Status.UNSUBSCRIBED,
        three[1]: Status.CONFIRMED,
        three[2]: Status.UNSUBSCRIBED,
        gone: Status.UNSUBSCRIBED,
    }
    events = session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.id)).all()
    assert sorted(e.subscription_id for e in events) == [three[0], three[2]]
    assert all(e.action == "edited" and "editor@example.org" in e.detail for e in events)
    assert all(e.source == "admin" for e in events)
    # The change feed, and so the webhooks, hear of each change.
    newsletter_id = session.scalar(sa.select(Newsletter.id))
    feed = changes.since(session, [newsletter_id], changes.Position(), 10)
    assert sorted((c.email, c.status) for c in feed) == [
        ("r0@example.com", "unsubscribed"),
        ("r2@example.com", "unsubscribed"),
    ]
    shown = client.get(back).get_data(as_text=True)
    assert "Unsubscribed 2 subscribers. 1 was already unsubscribed." in shown


def test_delete_asks_first_then_deletes_each_keeping_the_evidence(client, session, three):
    asked = select(client, "delete", three[1:])

    assert "Delete 2 subscribers?" in asked.get_data(as_text=True)
    assert len(session.scalars(sa.select(Subscription)).all()) == 3

    done = client.post(
        f"{SELECTION}/delete", data={"csrf_token": csrf_token(client, LIST), "id": three[1:]}
    )

    assert done.status_code == 303 and done.headers["Location"] == LIST
    assert session.scalars(sa.select(Subscription.id)).all() == [three[0]]
    # Not an erasure: the addresses and the ledger stay, and it names the editor.
    assert len(session.scalars(sa.select(Subscriber)).all()) == 3
    events = session.scalars(sa.select(ConsentEvent)).all()
    assert sorted((e.subscription_id, e.action) for e in events) == [
        (three[1], "deleted"),
        (three[2], "deleted"),
    ]
    assert all("editor@example.org" in e.detail for e in events)
    feed = changes.since(
        session, [session.scalar(sa.select(Newsletter.id))], changes.Position(), 10
    )
    assert sorted(c.action for c in feed) == ["deleted", "deleted"]
    assert "Deleted 2 subscribers from Morning Briefing." in client.get(LIST).get_data(as_text=True)


@pytest.mark.parametrize(
    ("action", "ids", "message"),
    [
        ("unsubscribe", [], "No subscriber was selected"),
        ("export", [], "No subscriber was selected"),
        ("delete", ["12abc"], "not known by that number"),
        ("delete", ["-1"], "not known by that number"),
        ("erase", ["1"], "There is no action &#39;erase&#39;"),
        ("", ["1"], "There is no action"),
        ("delete", ["999999"], "1 of the selected subscribers is not on Morning Briefing"),
    ],
)
def test_a_bad_selection_gets_a_400_that_says_what_to_do(
    client, session, three, action, ids, message
):
    response = select(client, action, ids)

    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert len(session.scalars(sa.select(Subscription)).all()) == 3


def test_a_selection_with_another_newsletters_subscriber_changes_nothing(
    client, session, three, other_newsletter
):
    theirs = add(session, "other", "theirs@example.com")

    for path, data in (
        (SELECTION, {"action": "delete"}),
        (f"{SELECTION}/delete", {}),
        (f"{SELECTION}/unsubscribe", {}),
        (SELECTION, {"action": "export"}),
    ):
        data |= {"csrf_token": csrf_token(client, LIST), "id": [three[0], theirs]}
        response = client.post(path, data=data)
        assert response.status_code == 400, path
        assert "1 of the selected subscribers is not on Morning Briefing" in response.get_data(
            as_text=True
        )
    assert len(session.scalars(sa.select(Subscription)).all()) == 4
    assert session.scalars(sa.select(ConsentEvent)).all() == []


def test_too_many_at_once_is_refused(client, three, monkeypatch):
    from newsletters.admin import subscribers as view

    monkeypatch.setattr(view, "SELECTION_MAX", 2)

    response = select(client, "export", three)

    assert response.status_code == 400
    assert "At most 2 subscribers can be acted on at once" in response.get_data(as_text=True)


def test_without_the_csrf_token_or_as_someone_else_nothing_is_done(
    client, session, make_editor, three, other_newsletter
):
    for path in (f"{SELECTION}/delete", SELECTION):
        response = client.post(path, data={"id": three, "action": "delete"})
        assert response.status_code == 400
        assert "security token" in response.get_data(as_text=True)
    client.post("/admin/logout", data={"csrf_token": csrf_token(client, LIST)})
    make_editor("outsider@example.org", "other")
    login(client, "outsider@example.org")
    token = csrf_token(client, "/admin/n/other/subscribers")
    response = client.post(f"{SELECTION}/delete", data={"id": three, "csrf_token": token})
    assert response.status_code == 403
    assert len(session.scalars(sa.select(Subscription)).all()) == 3
