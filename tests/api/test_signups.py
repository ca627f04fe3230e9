"""Signups through the API: the form's rules, the caller's consent evidence, safe retries."""

import threading

import pytest
import sqlalchemy as sa

from newsletters.models import (
    ConsentEvent,
    IdempotentRequest,
    OutboxMessage,
    SignupRequest,
    Subscription,
)
from tests.conftest import process_signups

from .conftest import bearer, confirm, count, sign_up

SIGNUPS = "/api/v1/newsletters/briefing/subscriptions"


def nothing_stored(session):
    return all(
        count(session, model) == 0
        for model in (SignupRequest, Subscription, OutboxMessage, IdempotentRequest)
    )


def test_a_signup_is_pending_with_one_mail_and_the_callers_evidence(client, session, key):
    response = sign_up(
        client,
        key,
        " Reader@Example.ORG ",
        name="Ada",
        consent={
            "at": "2026-11-30T09:15:00Z",
            "page": "https://shop.example.com/checkout",
            "text": "Send me the Morning Briefing.\nUnsubscribe any time.",
        },
    )
    assert response.get_json() | {"message": ""} == {
        "status": "accepted",
        "newsletter": "briefing",
        "email": "reader@example.org",
        "message": "",
    }
    subscription = session.scalar(sa.select(Subscription))
    assert (subscription.status, subscription.source, subscription.name) == (
        "pending",
        "api",
        "Ada",
    )
    evidence = subscription.form_text
    assert "API key" in evidence and "editor@example.org" in evidence
    assert "consent given at (per the caller): 2026-11-30T09:15:00+00:00" in evidence
    assert "on page (per the caller): https://shop.example.com/checkout" in evidence
    assert "Unsubscribe any time." in evidence
    assert session.scalar(sa.select(ConsentEvent.source)) == "api"
    assert count(session, OutboxMessage) == 1


def test_the_answer_is_the_same_whatever_the_address_state(app, client, session, key):
    new = sign_up(client, key, "new@example.org").get_json()
    pending = sign_up(client, key, "new@example.org").get_json()
    confirm(app, client, session, "new@example.org")
    confirmed = sign_up(client, key, "new@example.org").get_json()
    assert new == pending == confirmed
    assert session.scalar(sa.select(Subscription.status)) == "confirmed"
    # The form's throttle holds: one confirmation mail in ten minutes.
    assert count(session, OutboxMessage) == 1


@pytest.mark.parametrize("retry_key", [None, "order-1"])
def test_an_erased_address_is_refused_with_409_and_nothing_is_stored(
    app, runner, client, session, key, retry_key
):
    assert runner.invoke(args=["erase", "gone@example.org", "--yes"]).exit_code == 0
    headers = bearer(key) | ({"Idempotency-Key": retry_key} if retry_key else {})

    response = client.post(SIGNUPS, headers=headers, json={"email": " Gone@Example.org "})

    assert response.status_code == 409
    body = response.get_json()
    assert body["error"] == "erased"
    assert "erased at its owner's request" in body["message"]
    assert "signup form" in body["fields"]["email"]
    assert nothing_stored(session)


@pytest.mark.settings(SIGNUP_PROCESSING="worker")
def test_with_a_worker_the_request_stores_one_row_for_it(app, client, session, key):
    sign_up(client, key, "later@example.org")
    assert (count(session, SignupRequest), count(session, Subscription)) == (1, 0)
    assert process_signups(app) == 1
    assert session.scalar(sa.select(Subscription.source)) == "api"


def test_an_idempotent_retry_gets_the_same_answer_and_does_nothing_again(client, session, key):
    headers = bearer(key) | {"Idempotency-Key": "order-1234"}
    first = client.post(SIGNUPS, headers=headers, json={"email": "a@example.org"})
    again = client.post(SIGNUPS, headers=headers, json={"email": "a@example.org"})
    assert first.status_code == again.status_code == 202
    assert first.get_json() == again.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert count(session, Subscription) == count(session, OutboxMessage) == 1
    assert count(session, ConsentEvent) == 1


def test_the_same_idempotency_key_with_another_request_is_a_conflict(client, session, key):
    headers = bearer(key) | {"Idempotency-Key": "order-1234"}
    assert client.post(SIGNUPS, headers=headers, json={"email": "a@example.org"}).status_code == 202
    response = client.post(SIGNUPS, headers=headers, json={"email": "b@example.org"})
    assert response.status_code == 409
    assert response.get_json()["error"] == "idempotency_conflict"
    assert session.scalars(sa.select(Subscription.id)).all() == [1]


def test_idempotency_keys_are_per_api_key(client, session, key, make_key):
    other = make_key("editor@example.org", name="second")
    for k in (key, other):
        headers = bearer(k) | {"Idempotency-Key": "same"}
        response = client.post(SIGNUPS, headers=headers, json={"email": "a@example.org"})
        assert "Idempotent-Replayed" not in response.headers
    assert count(session, IdempotentRequest) == 2


def test_a_malformed_idempotency_key_is_400(client, session, key):
    headers = bearer(key) | {"Idempotency-Key": "has spaces"}
    response = client.post(SIGNUPS, headers=headers, json={"email": "a@example.org"})
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_idempotency_key"
    assert nothing_stored(session)


def test_idempotent_retries_racing_each_other_sign_up_once(app, live_server, session, key):
    """Ten retries with one key at once, on a real server: one subscription, one answer."""
    import requests

    answers = []

    def post():
        answers.append(
            requests.post(
                live_server + SIGNUPS,
                headers=bearer(key) | {"Idempotency-Key": "race"},
                json={"email": "racer@example.org"},
                timeout=30,
            )
        )

    threads = [threading.Thread(target=post) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {a.status_code for a in answers} == {202}
    assert len({a.text for a in answers}) == 1
    assert count(session, Subscription) == count(session, OutboxMessage) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [
        ("email=a@example.org", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ('{"email": "a@example.org"}', "text/plain", 415, "unsupported_media_type"),
        ('{"email": ', "application/json", 400, "invalid_json"),
        ("", "application/json", 400, "invalid_json"),
        ('["a@example.org"]', "application/json", 400, "invalid_json"),
        (
            '{"email": "a@example.org", "email": "b@example.org"}',
            "application/json",
            400,
            "invalid_json",
        ),
        ('{"email": "\\ud800@example.org"}', "application/json", 400, "invalid_json"),
        (b'{"email": "\xff@example.org"}', "application/json", 400, "invalid_json"),
        ("{}", "application/json", 422, "invalid_fields"),
        ('{"email": 5}', "application/json", 422, "invalid_fields"),
        ('{"email": "not an address"}', "application/json", 422, "invalid_fields"),
        ('{"email": "a@example.org", "extra": 1}', "application/json", 422, "invalid_fields"),
        ('{"email": "a@example.org", "name": "a\\nb"}', "application/json", 422, "invalid_fields"),
        (
            '{"email": "a@example.org", "name": "a\\u0000b"}',
            "application/json",
            422,
            "invalid_fields",
        ),
        (
            '{"email": "a@example.org", "consent": {"at": "yesterday"}}',
            "application/json",
            422,
            "invalid_fields",
        ),
        (
            '{"email": "a@example.org", "consent": {"at": "2999-01-01T00:00:00Z"}}',
            "application/json",
            422,
            "invalid_fields",
        ),
        (
            '{"email": "a@example.org", "consent": {"page": "javascript:x"}}',
            "application/json",
            422,
            "invalid_fields",
        ),
        (
            '{"email": "a@example.org", "consent": {"text": "a\\u0000b"}}',
            "application/json",
            422,
            "invalid_fields",
        ),
    ],
)
def test_a_bad_body_is_refused_and_stores_nothing(
    client, session, key, body, content_type, status, error
):
    headers = bearer(key) | {"Content-Type": content_type, "Idempotency-Key": "k"}
    response = client.post(SIGNUPS, headers=headers, data=body)
    assert response.status_code == status, response.get_data(as_text=True)
    answer = response.get_json()
    assert answer["error"] == error
    assert answer["message"]
    if status == 422:
        assert answer["fields"]
    assert nothing_stored(session)


def test_field_errors_name_the_field(client, key):
    response = client.post(
        SIGNUPS, headers=bearer(key), json={"email": "a@example.org", "name": "x" * 500}
    )
    assert response.status_code == 422
    assert set(response.get_json()["fields"]) == {"name"}
    response = client.post(SIGNUPS, headers=bearer(key), json={"email": "a@", "consent": {"at": 5}})
    assert "consent.at" in response.get_json()["fields"]


@pytest.mark.settings(RATELIMIT_ENABLED=True, API_RATE_LIMIT="3 per minute")
def test_each_key_has_its_own_budget_and_429_says_when_to_retry(client, session, key, make_key):
    other = make_key("other@example.org", "briefing")
    for n in range(3):
        sign_up(client, key, f"r{n}@example.org")
    response = client.get("/api/v1/newsletters", headers=bearer(key))
    assert response.status_code == 429
    assert response.get_json()["error"] == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0
    refused = client.post(SIGNUPS, headers=bearer(key), json={"email": "late@example.org"})
    assert refused.status_code == 429
    assert count(session, Subscription) == 3
    assert client.get("/api/v1/newsletters", headers=bearer(other)).status_code == 200
