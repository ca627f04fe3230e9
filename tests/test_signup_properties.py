"""Property: whatever is posted to a signup form, the answer is never a 5xx, and a success
stored exactly the subscription it stands for (none for a honeypot hit), a refusal nothing."""

import json
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from newsletters.models import (
    ConsentEvent,
    Newsletter,
    OutboxMessage,
    Status,
    Subscriber,
    Subscription,
    Token,
)
from newsletters.subscriptions.services import InvalidSignup, clean_name, normalise_address

SIGNUP = "/n/briefing/subscribe"
FIELDS = ("email", "name", "website", "return_url", "newsletter")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
JSON_TYPES = ("application/json", "application/json; charset=utf-8", "application/ld+json")
OTHER_TYPES = ("text/plain", "application/xml", "application/octet-stream", "", "*/*")
TRICKY_TEXT = (
    "",
    " ",
    "\x00",
    "\r\nBcc: victim@example.com",
    "\u2028",
    "\ufffd",
    "\ud800",
    "%00",
    "../admin",
    "'; DROP TABLE subscriber; --",
    "a" * 300,
    "someone@example.com",
    "Someone@Example.COM",
    "someone@exam\x00ple.com",
    "someone@example.com\r\nBcc: victim@example.com",
    "\u0431\u043e\u0440\u0438\u0441@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",
    "x@xn--80ak6aa92e.com",
    "https://evil.example/",
)

texts = st.one_of(
    st.text(max_size=80),
    st.emails(),
    st.sampled_from(TRICKY_TEXT),
    st.text(st.characters(codec="utf-8", exclude_categories=()), max_size=40),
)
# A form cannot carry a lone surrogate (the client could not encode it); JSON can.
form_texts = texts.filter(lambda text: not any("\ud800" <= ch <= "\udfff" for ch in text))
field_names = st.sampled_from(FIELDS) | st.text("abcdefghijklmnopqrstuvwxyz_-", max_size=10)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
# Header values as a server receives them: any Latin-1 character but line breaks.
header_text = st.sampled_from(["\x00", "1.2.3.4\x00", "x" * 600, "::1%" + "x" * 60]) | st.text(
    st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=120
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Accept": st.sampled_from(["application/json", "text/html", "*/*", "x/y;q=nan"])
        | header_text,
        "User-Agent": header_text,
        "X-Forwarded-For": header_text,
        "Origin": st.sampled_from(["https://publisher.example", "null"]) | header_text,
        "Referer": header_text,
    },
)


@dataclass
class Post:
    """One generated signup request; ``fields`` is what the app should read, if it can."""

    kind: str
    body: bytes | str | MultiDict
    content_type: str
    headers: dict
    fields: dict | None

    def send(self, client):
        return client.post(
            SIGNUP, data=self.body, content_type=self.content_type, headers=self.headers
        )


@st.composite
def form_posts(draw):
    pairs = draw(st.lists(st.tuples(field_names, form_texts), max_size=6))
    if draw(st.booleans()):
        pairs.append(("email", draw(st.emails())))
    content_type = draw(st.sampled_from(FORM_TYPES))
    fields = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    return Post("form", MultiDict(pairs), content_type, draw(headers), fields)


@st.composite
def json_posts(draw):
    # Mostly objects with some of the known fields (each likely to be there), sometimes
    # anything at all.
    known = st.fixed_dictionaries({}, optional=dict.fromkeys(FIELDS, json_values))
    body = draw(known | st.dictionaries(texts, json_values, max_size=4) | json_values)
    if isinstance(body, dict) and draw(st.booleans()):
        body["email"] = draw(st.emails())
    content_type = draw(st.sampled_from(JSON_TYPES))
    return Post("json", json.dumps(body), content_type, draw(headers), body)


@st.composite
def raw_posts(draw):
    body = draw(st.binary(max_size=300))
    content_type = draw(st.sampled_from(FORM_TYPES + JSON_TYPES + OTHER_TYPES) | header_text)
    return Post("raw", body, content_type, draw(headers), None)


posts = st.one_of(form_posts(), json_posts(), raw_posts())


def table_counts(session) -> dict[str, int]:
    session.expire_all()
    return {
        model.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(model))
        for model in (Subscription, Subscriber, OutboxMessage, Token, ConsentEvent)
    }


def subscriptions(session) -> dict[str, tuple[Status, str | None]]:
    rows = session.execute(
        sa.select(Subscriber.email, Subscription.status, Subscription.name)
        .join(Subscription.subscriber)
        .join(Subscription.newsletter)
        .where(Newsletter.slug == "briefing")
    )
    return {email: (status, name) for email, status, name in rows}


def expected_signup(app, fields: dict) -> tuple[str, str | None] | None:
    """Return the (address, name) a successful signup of ``fields`` stores; None: nothing."""
    if fields.get("website"):
        return None  # the honeypot: answered as a success, stored nowhere
    with app.app_context():
        try:
            return normalise_address(fields.get("email") or ""), clean_name(fields.get("name"))
        except InvalidSignup as exc:
            pytest.fail(f"a success for a signup the services refuse: {exc.message}")


# The fixtures (one app and database per test, not per example) are shared by the examples on
# purpose: each example starts from what the earlier ones left, as a live service would.
# Behind a trusted proxy, so that X-Forwarded-For (any text here) becomes the client address.
@pytest.mark.settings(TRUSTED_PROXIES=1)
@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(post=posts)
def test_no_signup_post_gets_a_5xx_and_a_success_stores_what_it_claims(
    app, client, newsletter, session, post
):
    counts, before = table_counts(session), subscriptions(session)
    response = post.send(client)
    event(f"{post.kind} {response.status_code}")
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    after = subscriptions(session)
    if not (200 <= response.status_code < 300 or response.status_code == 303):
        assert table_counts(session) == counts, "a refused signup changed the database"
        assert after == before
        return
    if post.fields is None:
        # A raw body that happened to parse: at most one subscription was added.
        assert len(after) - len(before) in (0, 1)
        return
    expected = expected_signup(app, post.fields)
    if expected is None:
        assert table_counts(session) == counts, "a honeypot hit stored something"
        return
    address, name = expected
    assert set(after) == set(before) | {address}
    status, stored_name = after[address]
    assert status in (Status.PENDING, Status.CONFIRMED)
    if status == Status.PENDING:
        assert stored_name == name
