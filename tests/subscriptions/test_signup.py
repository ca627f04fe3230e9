"""Signing up: forms and JSON, validation, identical answers, throttles, evidence."""

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from newsletters.models import (
    ConsentEvent,
    Newsletter,
    OutboxMessage,
    Status,
    Subscriber,
    Subscription,
)


def subscriptions(session):
    return session.scalars(sa.select(Subscription)).all()


def outbox_rows(session):
    return session.scalars(sa.select(OutboxMessage)).all()


def test_index_offers_one_form_with_a_box_to_tick_for_each_public_newsletter(
    client, newsletter, session
):
    session.add(Newsletter(slug="weekly", name="Weekly", description="Every Friday."))
    session.add(Newsletter(slug="hidden", name="Hidden", is_public=False))
    session.commit()
    page = client.get("/").get_data(as_text=True)
    assert page.count('type="email"') == 1
    assert page.count('action="/subscribe"') == 1
    boxes = re.findall(r'<input type="checkbox" name="newsletter" value="([^"]+)"', page)
    assert boxes == ["briefing", "weekly"]
    assert "Morning Briefing" in page and "Every Friday." in page and "Hidden" not in page
    assert 'placeholder="Enter your email to subscribe"' in page
    assert ">Subscribe</button>" in page
    assert "* indicates required" in page
    # Each newsletter's own page is a link away.
    assert 'href="/n/briefing"' in page and 'href="/n/weekly"' in page


def test_index_ticks_the_only_newsletter_there_is(client, newsletter):
    page = client.get("/").get_data(as_text=True)
    assert 'value="briefing" checked' in page


def test_form_signup_redirects_to_the_thank_you_page(client, newsletter, session):
    response = client.post("/n/briefing/subscribe", data={"email": "reader@example.com"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/n/briefing/thanks"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Successfully subscribed" in page
    assert (
        "Thank you for signing up for this newsletter. We&#39;ve sent you a confirmation email."
        in page
    )
    [subscription] = subscriptions(session)
    assert subscription.status == Status.PENDING
    assert subscription.subscriber.email == "reader@example.com"
    [mail] = outbox_rows(session)
    assert mail.recipient == "reader@example.com"


def test_json_signup_answers_with_json(client, newsletter, session):
    response = client.post("/n/briefing/subscribe", json={"email": "reader@example.com"})
    assert response.status_code == 200
    assert response.json == {
        "status": "ok",
        "title": "Successfully subscribed",
        "message": "Thank you for signing up for this newsletter. "
        "We've sent you a confirmation email.",
    }
    assert len(subscriptions(session)) == 1


def test_form_post_asking_for_json_gets_json(client, newsletter):
    response = client.post(
        "/n/briefing/subscribe",
        data={"email": "reader@example.com"},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200
    assert response.json["status"] == "ok"


def test_answer_is_the_same_for_new_pending_confirmed_and_unsubscribed_addresses(
    client, newsletter, session
):
    answers = []
    for state in ("new", "pending", "confirmed", "unsubscribed"):
        if state == "confirmed":
            session.execute(sa.update(Subscription).values(status=Status.CONFIRMED))
            session.commit()
        if state == "unsubscribed":
            session.execute(sa.update(Subscription).values(status=Status.UNSUBSCRIBED))
            session.commit()
        json = client.post("/n/briefing/subscribe", json={"email": "same@example.com"})
        form = client.post("/n/briefing/subscribe", data={"email": "same@example.com"})
        answers.append((json.status_code, json.get_data(), form.status_code, form.headers))
    first = answers[0]
    for other in answers[1:]:
        assert other[0] == first[0] and other[1] == first[1]
        assert other[2] == first[2] and other[3]["Location"] == first[3]["Location"]


def test_invalid_address_rerenders_the_form_with_the_spec_message_and_stores_nothing(
    client, newsletter, session
):
    response = client.post("/n/briefing/subscribe", data={"email": "not-an-address"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Please, enter correct email address" in page
    assert 'value="not-an-address"' in page
    assert subscriptions(session) == []
    assert outbox_rows(session) == []


def test_invalid_address_in_json_gets_a_400_with_the_message(client, newsletter, session):
    response = client.post("/n/briefing/subscribe", json={"email": "a@b"})
    assert response.status_code == 400
    assert response.json["message"] == "Please, enter correct email address"
    assert "email" in response.json["fields"]
    assert subscriptions(session) == []


def test_empty_address_is_refused(client, newsletter, session):
    response = client.post("/n/briefing/subscribe", data={"email": "  "})
    assert response.status_code == 400
    assert subscriptions(session) == []


def test_internationalised_addresses_and_idna_domains_are_accepted(client, newsletter, session):
    for address in ("jörg@bücher.example", "用户@例子.广告", "reader@xn--bcher-kva.example"):
        response = client.post("/n/briefing/subscribe", json={"email": address})
        assert response.status_code == 200, (address, response.json)
    emails = set(session.scalars(sa.select(Subscriber.email)))
    assert "jörg@bücher.example" in emails
    assert "用户@例子.广告" in emails
    # The punycode form is normalised to the same Unicode domain.
    assert "reader@bücher.example" in emails


def test_case_variants_of_one_address_are_one_subscription(client, newsletter, session):
    for address in ("Reader@Example.com", "reader@EXAMPLE.COM", " reader@example.com "):
        client.post("/n/briefing/subscribe", data={"email": address})
    [subscription] = subscriptions(session)
    assert subscription.subscriber.email == "reader@example.com"


def test_overlong_address_and_name_are_refused(client, newsletter, session):
    long_address = "a" * 250 + "@example.com"
    assert client.post("/n/briefing/subscribe", json={"email": long_address}).status_code == 400
    response = client.post(
        "/n/briefing/subscribe", json={"email": "reader@example.com", "name": "n" * 201}
    )
    assert response.status_code == 400
    assert "too long" in response.json["message"]
    assert subscriptions(session) == []


def test_name_with_line_breaks_is_refused(client, newsletter, session):
    response = client.post(
        "/n/briefing/subscribe",
        data={"email": "reader@example.com", "name": "Eve\r\nBcc: victim@example.com"},
    )
    assert response.status_code == 400
    assert "line breaks" in response.get_data(as_text=True)
    assert subscriptions(session) == []


def test_unknown_newsletter_answers_404(client, newsletter):
    response = client.post("/n/nope/subscribe", data={"email": "reader@example.com"})
    assert response.status_code == 404
    assert "There is no newsletter called" in response.get_data(as_text=True)
    assert client.get("/n/nope").status_code == 404


def test_wrong_content_type_answers_415_with_what_to_send(client, newsletter, session):
    response = client.post(
        "/n/briefing/subscribe", data="email=reader@example.com", content_type="text/plain"
    )
    assert response.status_code == 415
    assert "application/x-www-form-urlencoded" in response.get_data(as_text=True)
    assert subscriptions(session) == []


def test_broken_json_and_wrong_types_answer_400(client, newsletter, session):
    broken = client.post(
        "/n/briefing/subscribe", data='{"email": ', content_type="application/json"
    )
    assert broken.status_code == 400
    assert "JSON object" in broken.json["message"]
    array = client.post("/n/briefing/subscribe", json={"email": ["a@example.com"]})
    assert array.status_code == 400
    assert "must be a string" in array.json["message"]
    assert client.post("/n/briefing/subscribe", json=["a@example.com"]).status_code == 400
    assert subscriptions(session) == []


def test_one_confirmation_mail_per_address_and_newsletter_in_ten_minutes(
    client, newsletter, session
):
    for _ in range(5):
        client.post("/n/briefing/subscribe", data={"email": "reader@example.com"})
    assert len(outbox_rows(session)) == 1
    # Eleven minutes later, a new signup earns a new mail.
    subscription = subscriptions(session)[0]
    subscription.confirmation_mailed_at -= timedelta(minutes=11)
    session.commit()
    client.post("/n/briefing/subscribe", data={"email": "reader@example.com"})
    assert len(outbox_rows(session)) == 2


def test_confirmed_address_signing_up_again_gets_no_mail(client, newsletter, session):
    client.post("/n/briefing/subscribe", data={"email": "reader@example.com"})
    session.execute(sa.update(Subscription).values(status=Status.CONFIRMED))
    session.execute(sa.update(Subscription).values(confirmation_mailed_at=None))
    session.commit()
    client.post("/n/briefing/subscribe", data={"email": "reader@example.com"})
    assert len(outbox_rows(session)) == 1
    assert subscriptions(session)[0].status == Status.CONFIRMED


def test_consent_evidence_is_stored_with_the_subscription(client, newsletter, session):
    client.post(
        "/n/briefing/subscribe",
        data={"email": "reader@example.com", "name": "Ada"},
        headers={"User-Agent": "Browser/1.0"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    [subscription] = subscriptions(session)
    assert subscription.optin_ip == "203.0.113.7"
    assert subscription.optin_user_agent == "Browser/1.0"
    assert str(subscription.source) == "plain"
    assert "Enter your email to subscribe" in subscription.form_text
    assert subscription.optin_at is not None
    assert subscription.name == "Ada"
    [event] = session.scalars(sa.select(ConsentEvent)).all()
    assert (event.status, event.ip) == (Status.PENDING, "203.0.113.7")


def test_x_forwarded_for_is_ignored_without_a_trusted_proxy(client, newsletter, session):
    client.post(
        "/n/briefing/subscribe",
        data={"email": "reader@example.com"},
        headers={"X-Forwarded-For": "198.51.100.1"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    assert subscriptions(session)[0].optin_ip == "203.0.113.7"


@pytest.mark.settings(TRUSTED_PROXIES=1)
def test_x_forwarded_for_is_used_behind_a_trusted_proxy(client, newsletter, session):
    client.post(
        "/n/briefing/subscribe",
        data={"email": "reader@example.com"},
        headers={"X-Forwarded-For": "198.51.100.1"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    assert subscriptions(session)[0].optin_ip == "198.51.100.1"
