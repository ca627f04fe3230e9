"""Evidence for editors: a subscription's consent ledger on its page, as JSON and as a receipt."""

import json

import pytest
import sqlalchemy as sa

from newsletters import db, ledger, tokens
from newsletters.models import ConsentEvent, Subscription, Token, TokenPurpose

from .conftest import login

PAGE = "/admin/n/briefing/subscribers/{}"


@pytest.fixture
def confirmed(app, client, session, newsletter):
    """Sign a reader up through the hosted form and confirm by the mailed link; return the id."""
    client.post(
        "/n/briefing/subscribe",
        data={"email": "reader@example.com", "name": "Ada"},
        headers={"User-Agent": "EvidenceBrowser/1.0", "Origin": "https://blog.example.net"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    with app.app_context():
        token = db.session().scalar(sa.select(Token).where(Token.purpose == TokenPurpose.CONFIRM))
        secret = tokens.secret_for(token)
    response = client.post(
        f"/confirm/{secret}",
        headers={"User-Agent": "ConfirmingBrowser/2.0"},
        environ_base={"REMOTE_ADDR": "198.51.100.9"},
    )
    assert response.status_code == 200
    return session.scalar(sa.select(Subscription.id))


@pytest.fixture
def editor(make_editor, client, newsletter):
    login(client, make_editor("editor@example.org", "briefing"))
    return "editor@example.org"


def events_of(session, subscription_id):
    return session.scalars(
        sa.select(ConsentEvent)
        .where(ConsentEvent.subscription_id == subscription_id)
        .order_by(ConsentEvent.id)
    ).all()


def test_the_subscriber_page_shows_each_ledger_row_with_its_form_text_and_hash(
    client, session, confirmed, editor
):
    page = client.get(PAGE.format(confirmed)).get_data(as_text=True)

    signed_up, confirmation = events_of(session, confirmed)
    history = page.split("<h2>History</h2>")[1]
    assert history.index("signed up") < history.index("confirmed")
    for shown in (
        "203.0.113.7",
        "EvidenceBrowser/1.0",
        "198.51.100.9",
        "https://blog.example.net",
        signed_up.text_digest[:12],
        signed_up.hash[:12],
        confirmation.hash[:12],
        "Enter your email to subscribe",  # the form text itself, behind its version
        "The chain holds.",
    ):
        assert shown in history, shown
    assert "Download as JSON" in page and "Consent receipt" in page


def test_the_json_download_holds_the_subscription_and_its_ledger_and_verifies(
    client, session, confirmed, editor
):
    response = client.get(PAGE.format(confirmed) + "/consent.json")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="briefing-subscriber-{confirmed}-consent.json"'
    )
    assert response.headers["Cache-Control"] == "no-store"
    document = json.loads(response.get_data(as_text=True))
    assert document["verified"] is True and document["breaks"] == []
    subscription = document["subscription"]
    assert (subscription["email"], subscription["status"], subscription["newsletter"]) == (
        "reader@example.com",
        "confirmed",
        "briefing",
    )
    assert subscription["origin"] == "https://blog.example.net"
    assert subscription["confirm_ip"] == "198.51.100.9"
    rows = document["ledger"]
    assert [r["action"] for r in rows] == ["signed_up", "confirmed"]
    assert rows[0]["prev_hash"] is None and rows[1]["prev_hash"] == rows[0]["hash"]
    assert rows[0]["form_text_version"] == subscription["form_text_version"]
    assert "Enter your email to subscribe" in rows[0]["form_text"]
    # Anyone holding the download can recompute each row's hash.
    stored = {e.id: e for e in events_of(session, confirmed)}
    for row in rows:
        event = stored[row["id"]]
        columns = {c.name: getattr(event, c.name) for c in ConsentEvent.__table__.c}
        assert ledger.row_hash(columns) == row["hash"]


def test_the_json_download_says_when_the_chain_does_not_hold(
    app, client, session, confirmed, editor
):
    # Only a redaction may touch a row: the triggers refuse this change through the app, so
    # the test writes a row that does not follow its chain through the ledger's own writer.
    with app.app_context():
        subscription = db.session().get(Subscription, confirmed)
        db.session().execute(
            sa.insert(ConsentEvent.__table__).values(
                subscription_id=confirmed,
                subscriber_id=subscription.subscriber_id,
                newsletter_id=subscription.newsletter_id,
                action="edited",
                status="confirmed",
                at=subscription.created_at,
                source="forged",
                salt="0" * 32,
                evidence_digest=ledger.evidence_digest("0" * 32, None, None),
                prev_hash=None,
                hash="f" * 64,
            )
        )
        db.session().commit()

    document = client.get(PAGE.format(confirmed) + "/consent.json").get_json()
    page = client.get(PAGE.format(confirmed)).get_data(as_text=True)

    assert document["verified"] is False
    assert any("does not follow event" in found for found in document["breaks"])
    assert any("does not match its hash" in found for found in document["breaks"])
    assert "The chain does not hold" in page


def test_the_consent_receipt_is_a_printable_page_of_the_whole_evidence(
    client, session, confirmed, editor
):
    response = client.get(PAGE.format(confirmed) + "/receipt")

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    assert "@media print" in page
    events = events_of(session, confirmed)
    for shown in (
        "Consent receipt",
        "Morning Briefing",
        "reader@example.com",
        "203.0.113.7",
        "a form embedded on https://blog.example.net",
        "Enter your email to subscribe",
        events[0].text_digest,
        "by the confirmation link mailed to the address (double opt-in), from IP 198.51.100.9",
        "This chain holds",
        "newsletters consent verify",
        *(event.hash for event in events),
    ):
        assert shown in page, shown


def test_the_evidence_shows_redacted_fields_after_an_unsubscribe_and_a_cut(
    app, client, session, confirmed, editor
):
    with app.app_context():
        ledger.redact(db.session(), [confirmed])
        db.session().commit()

    page = client.get(PAGE.format(confirmed)).get_data(as_text=True)
    receipt = client.get(PAGE.format(confirmed) + "/receipt").get_data(as_text=True)
    document = client.get(PAGE.format(confirmed) + "/consent.json").get_json()

    assert "EvidenceBrowser/1.0" not in page.split("<h2>History</h2>")[1]
    assert "redacted" in page and "redacted" in receipt
    assert document["verified"] is True  # a redaction keeps the chain whole
    assert all(row["ip"] is None and row["redacted_at"] for row in document["ledger"])


def test_only_editors_of_the_newsletter_get_its_evidence(
    client, session, confirmed, make_editor, other_newsletter
):
    login(client, make_editor("outsider@example.org", "other"))

    for suffix in ("", "/consent.json", "/receipt"):
        response = client.get(PAGE.format(confirmed) + suffix)
        assert response.status_code == 403, suffix
        assert b"reader@example.com" not in response.data


def test_evidence_of_a_subscription_of_another_newsletter_is_not_found(
    client, session, confirmed, make_editor, other_newsletter
):
    login(client, make_editor("editor@example.org", "other"))

    for suffix in ("", "/consent.json", "/receipt"):
        response = client.get(PAGE.format(confirmed).replace("briefing", "other") + suffix)
        assert response.status_code == 404, suffix
