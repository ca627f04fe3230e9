"""Address checks at signup: every entry point refuses, asks and flags an address alike.

The hosted form, the iframe, the widget's JSON, the several-at-once form, the API and the
importer all check an address with ``services.check_signup``; each test posts as that entry
point's own client does (the pages' forms are sent back as a browser would send them). The
DNS tests make the loopback name server of tests/test_address_checks.py the resolver every
signup asks by default: its answers, timeouts and the module's cache are real.
"""

import time
from dataclasses import dataclass, field
from html.parser import HTMLParser

import dns.resolver
import pytest
import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from newsletters import address_checks
from newsletters.models import (
    Newsletter,
    OutboxMessage,
    SignupRequest,
    Subscriber,
    Subscription,
)
from tests import test_address_checks as dns_tests
from tests.api import conftest as api_tests
from tests.api.conftest import bearer

# Fixtures shared with their own files: the API's keys, the loopback name server.
make_key = api_tests.make_key
server = dns_tests.server
resolver = dns_tests.resolver

TYPO, MEANT = "reader@gmial.com", "reader@gmail.com"
DISPOSABLE, ROLE = "x@mailinator.com", "info@example.com"
DID_YOU_MEAN = f"Did you mean {MEANT}?"
REFUSALS = {
    "disposable": (DISPOSABLE, "disposable mail service"),
    "role": (ROLE, "shared address (such as info@ or admin@)"),
}
API_SIGNUPS = "/api/v1/newsletters/briefing/subscriptions"


@dataclass
class Form:
    """A form of a page: where it posts, its classes, and what a browser would send."""

    action: str
    classes: str
    fields: list[tuple[str, str]] = field(default_factory=list)

    def value(self, name: str) -> str | None:
        values = self.values(name)
        assert len(values) <= 1, (name, values)
        return values[0] if values else None

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name]

    def with_value(self, name: str, value: str) -> MultiDict:
        """Return the fields as sent after the reader typed ``value`` into ``name``."""
        return MultiDict([(k, value if k == name else v) for k, v in self.fields])


class Forms(HTMLParser):
    """Collect a page's forms, each with its named inputs (unticked boxes left out)."""

    def __init__(self, markup: str):
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._open = False
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append(Form(attrs.get("action") or "", attrs.get("class") or ""))
            self._open = True
        elif tag == "input" and self._open and attrs.get("name"):
            if attrs.get("type") == "checkbox" and "checked" not in attrs:
                return
            self.forms[-1].fields.append((attrs["name"], attrs.get("value") or ""))

    def handle_endtag(self, tag):
        if tag == "form":
            self._open = False


# The pages with a form: where the reader posts, and the answer to a signup taken.
PAGES = {
    "hosted": ("/n/briefing/subscribe", 303),
    "iframe": ("/n/briefing/embed", 200),
    "several": ("/subscribe", 303),
}
TICKED = ["briefing", "weekly"]


@pytest.fixture
def newsletters(session):
    """Add 'briefing', 'weekly' and 'monthly' (the several-at-once form ticks two)."""
    for slug in ("briefing", "weekly", "monthly"):
        session.add(Newsletter(slug=slug, name=slug.title()))
    session.commit()
    return "briefing"


@pytest.fixture
def key(make_key, newsletters):
    """Return a read-write API key of an editor of 'briefing'."""
    return make_key("editor@example.org", "briefing")


def post_page(client, page: str, email: str, **fields):
    """Post ``email`` to ``page``'s form as the reader would; several tick two newsletters."""
    data = MultiDict({"email": email, "lang": "en", "website": ""} | fields)
    if page == "several":
        for slug in TICKED:
            data.add("newsletter", slug)
    return client.post(PAGES[page][0], data=data)


def page_forms(response, page: str) -> tuple[Form, Form | None]:
    """Return the answer's signup form of ``page`` and its one-click fix, if it has one."""
    action = PAGES[page][0]
    forms = [f for f in Forms(response.get_data(as_text=True)).forms if f.action == action]
    [signup] = [f for f in forms if "signup-form" in f.classes]
    fixes = [f for f in forms if "suggestion-fix" in f.classes]
    assert len(fixes) <= 1
    return signup, (fixes[0] if fixes else None)


def count(session, model) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def assert_nothing_stored(session):
    for model in (SignupRequest, Subscriber, Subscription, OutboxMessage):
        assert count(session, model) == 0, model.__name__


def flags_by_newsletter(session, email: str) -> dict[str, str | None]:
    """Return the ``address_flags`` of ``email``'s subscriptions, by newsletter."""
    rows = session.execute(
        sa.select(Newsletter.slug, Subscription.address_flags)
        .join(Subscription.newsletter)
        .join(Subscription.subscriber)
        .where(Subscriber.email == email)
    )
    return dict(rows.all())


def flags_of(session, email: str) -> set[str] | None:
    """Return the flags of ``email``'s one subscription, or None if it has none."""
    [flags] = flags_by_newsletter(session, email).values()
    return None if flags is None else set(flags.split())


# A typo: refused with the suggestion, then kept as typed, or fixed in one click.


@pytest.mark.parametrize("page", PAGES)
def test_a_likely_typo_is_refused_with_the_suggestion_and_a_way_to_keep_it(
    client, session, newsletters, page
):
    response = post_page(client, page, TYPO)

    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert DID_YOU_MEAN in text
    assert f"Press Subscribe again to keep {TYPO} as you typed it." in text
    signup, fix = page_forms(response, page)
    assert (signup.value("email"), signup.value("accept_as_typed")) == (TYPO, TYPO)
    assert (fix.value("email"), fix.value("accept_as_typed")) == (MEANT, None)
    if page == "several":
        assert signup.values("newsletter") == fix.values("newsletter") == TICKED
    assert_nothing_stored(session)


@pytest.mark.parametrize("page", PAGES)
def test_pressing_the_button_again_keeps_the_typo_as_typed_and_flags_it(
    client, session, newsletters, page
):
    signup, _fix = page_forms(post_page(client, page, TYPO), page)

    response = client.post(signup.action, data=MultiDict(signup.fields))

    assert response.status_code == PAGES[page][1], response.get_data(as_text=True)
    flags = flags_by_newsletter(session, TYPO)
    assert set(flags) == (set(TICKED) if page == "several" else {"briefing"})
    # gmial.com is also a throwaway service's domain: "typo" is one of the flags.
    assert all("typo" in stored.split() for stored in flags.values())
    assert count(session, OutboxMessage) == 1


@pytest.mark.parametrize("page", PAGES)
def test_the_one_click_fix_signs_up_the_suggested_address_unflagged(
    client, session, newsletters, page
):
    _signup, fix = page_forms(post_page(client, page, TYPO), page)

    response = client.post(fix.action, data=MultiDict(fix.fields))

    assert response.status_code == PAGES[page][1], response.get_data(as_text=True)
    flags = flags_by_newsletter(session, MEANT)
    assert set(flags) == (set(TICKED) if page == "several" else {"briefing"})
    assert set(flags.values()) == {None}
    assert count(session, Subscriber) == 1


@pytest.mark.parametrize("page", PAGES)
def test_an_edited_address_no_longer_matches_the_kept_one_and_is_checked_afresh(
    client, session, newsletters, page
):
    signup, _fix = page_forms(post_page(client, page, TYPO), page)

    other_typo = client.post(signup.action, data=signup.with_value("email", "reader@hotmial.com"))

    assert other_typo.status_code == 400
    assert "Did you mean reader@hotmail.com?" in other_typo.get_data(as_text=True)
    again, _fix = page_forms(other_typo, page)
    assert again.value("accept_as_typed") == "reader@hotmial.com"
    assert_nothing_stored(session)

    fixed = client.post(signup.action, data=signup.with_value("email", "reader@example.com"))

    assert fixed.status_code == PAGES[page][1]
    assert set(flags_by_newsletter(session, "reader@example.com").values()) == {None}
    assert count(session, Subscriber) == 1


def test_keeping_the_address_as_typed_ignores_case_and_spaces(client, session, newsletters):
    response = post_page(client, "hosted", " Reader@Gmial.com ", accept_as_typed="reader@GMIAL.com")

    assert response.status_code == 303
    assert "typo" in flags_of(session, TYPO)


JSON_POSTS = {
    "json body": lambda client, body: client.post("/n/briefing/subscribe", json=body),
    "form asking for json": lambda client, body: client.post(
        "/n/briefing/subscribe", data=body, headers={"Accept": "application/json"}
    ),
    "several as json": lambda client, body: client.post(
        "/subscribe", json=body | {"newsletter": TICKED}
    ),
}


@pytest.mark.parametrize("post", JSON_POSTS)
def test_a_typo_in_json_is_refused_with_the_suggestion_and_a_message(
    client, session, newsletters, post
):
    response = JSON_POSTS[post](client, {"email": TYPO})

    assert response.status_code == 400
    body = response.get_json()
    assert (body["error"], body["suggestion"], body["message"]) == ("invalid", MEANT, DID_YOU_MEAN)
    assert body["fields"] == {"email": DID_YOU_MEAN}
    assert_nothing_stored(session)


@pytest.mark.parametrize(
    ("post", "kept"),
    [
        ("json body", True),
        ("json body", TYPO),
        ("json body", "READER@gmial.com"),
        ("form asking for json", "true"),
        ("form asking for json", TYPO),
        ("several as json", True),
    ],
)
def test_json_sent_again_with_accept_as_typed_keeps_the_typo_and_flags_it(
    client, session, newsletters, post, kept
):
    response = JSON_POSTS[post](client, {"email": TYPO, "accept_as_typed": kept})

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "ok"
    flags = flags_by_newsletter(session, TYPO)
    assert flags and all("typo" in stored.split() for stored in flags.values())


@pytest.mark.parametrize("kept", [False, "other@gmial.com", ""])
def test_json_accept_as_typed_of_another_address_or_false_keeps_nothing(
    client, session, newsletters, kept
):
    response = client.post("/n/briefing/subscribe", json={"email": TYPO, "accept_as_typed": kept})

    assert response.status_code == 400
    assert response.get_json()["suggestion"] == MEANT
    assert_nothing_stored(session)


def test_the_api_refuses_a_typo_with_422_and_the_suggestion(client, session, key):
    response = client.post(API_SIGNUPS, headers=bearer(key), json={"email": TYPO})

    assert response.status_code == 422
    body = response.get_json()
    assert (body["error"], body["suggestion"], body["message"]) == (
        "invalid_fields",
        MEANT,
        DID_YOU_MEAN,
    )
    assert body["fields"] == {"email": DID_YOU_MEAN}
    assert_nothing_stored(session)


def test_the_api_keeps_a_typo_sent_with_accept_as_typed_and_flags_it(client, session, key):
    response = client.post(
        API_SIGNUPS, headers=bearer(key), json={"email": TYPO, "accept_as_typed": True}
    )

    assert response.status_code == 202, response.get_json()
    assert response.get_json()["email"] == TYPO
    assert "typo" in flags_of(session, TYPO)


# Disposable and role addresses: flagged by default, refused where a newsletter says so.


def sign_up(entry: str, client, key, email: str, **fields):
    """Sign ``email`` up through ``entry``; return the response."""
    if entry in PAGES:
        return post_page(client, entry, email, **fields)
    if entry == "json":
        return client.post("/n/briefing/subscribe", json={"email": email} | fields)
    if entry == "api":
        body = {"email": email} | ({"accept_as_typed": True} if fields else {})
        return client.post(API_SIGNUPS, headers=bearer(key), json=body)
    raise AssertionError(entry)


SIGNED_UP = {"hosted": 303, "iframe": 200, "several": 303, "json": 200, "api": 202}
REFUSED = {"hosted": 400, "iframe": 400, "several": 400, "json": 400, "api": 422}


@pytest.mark.parametrize("entry", SIGNED_UP)
@pytest.mark.parametrize("reason", REFUSALS)
def test_disposable_and_role_addresses_are_taken_and_flagged_by_default(
    client, session, key, entry, reason
):
    email, _message = REFUSALS[reason]

    response = sign_up(entry, client, key, email)

    assert response.status_code == SIGNED_UP[entry], response.get_data(as_text=True)
    flags = flags_by_newsletter(session, email)
    assert set(flags) == (set(TICKED) if entry == "several" else {"briefing"})
    assert set(flags.values()) == {reason}


def refuse(session, reason: str, slug: str = "briefing") -> None:
    """Make the newsletter ``slug`` refuse ``reason``'s addresses."""
    policy = {"disposable": "disposable_policy", "role": "role_policy"}[reason]
    session.execute(sa.update(Newsletter).where(Newsletter.slug == slug).values({policy: "refuse"}))
    session.commit()


@pytest.mark.parametrize("entry", SIGNED_UP)
@pytest.mark.parametrize("reason", REFUSALS)
def test_a_newsletter_that_refuses_them_refuses_them_saying_why_and_stores_nothing(
    client, session, key, entry, reason
):
    email, message = REFUSALS[reason]
    # Of several newsletters, one that refuses the address refuses the signup.
    refuse(session, reason)

    response = sign_up(entry, client, key, email)

    assert response.status_code == REFUSED[entry]
    if entry in PAGES:
        assert message in response.get_data(as_text=True)
        signup, fix = page_forms(response, entry)
        assert (signup.value("email"), signup.value("accept_as_typed"), fix) == (email, None, None)
    else:
        body = response.get_json()
        assert message in body["message"] and message in body["fields"]["email"]
        assert "suggestion" not in body
    assert_nothing_stored(session)


@pytest.mark.parametrize("entry", SIGNED_UP)
def test_keeping_an_address_as_typed_does_not_get_past_a_refusal(client, session, key, entry):
    # gmial.com is a typo and a throwaway service: kept as typed, it is still disposable.
    refuse(session, "disposable")

    response = sign_up(entry, client, key, TYPO, accept_as_typed=TYPO if entry in PAGES else True)

    assert response.status_code == REFUSED[entry]
    assert "disposable mail service" in response.get_data(as_text=True)
    assert_nothing_stored(session)


def test_another_newsletter_s_refusal_does_not_refuse_a_signup_to_this_one(
    client, session, newsletters
):
    refuse(session, "disposable", slug="monthly")
    refuse(session, "role", slug="monthly")

    for email in (DISPOSABLE, ROLE):
        assert post_page(client, "several", email).status_code == 303
    assert count(session, Subscription) == 4


# The DNS check, asked of a real name server on loopback.


@pytest.fixture
def dns_server(server, resolver, monkeypatch):
    """Make the loopback name server the one every signup's check asks; yield it."""
    monkeypatch.setattr(dns.resolver, "default_resolver", resolver)
    address_checks.forget_dns_answers()
    yield server
    address_checks.forget_dns_answers()


@pytest.mark.settings(EMAIL_CHECK_DELIVERABILITY=True)
def test_a_domain_with_mx_is_taken_unflagged(client, session, newsletters, dns_server):
    response = post_page(client, "hosted", "reader@has-mx.example.net")

    assert response.status_code == 303
    assert flags_of(session, "reader@has-mx.example.net") is None
    assert dns_server.questions_about("has-mx.example.net") == ["MX"]


@pytest.mark.settings(EMAIL_CHECK_DELIVERABILITY=True)
def test_a_domain_with_only_an_address_record_is_taken_and_flagged_no_mx(
    client, session, newsletters, dns_server
):
    response = post_page(client, "hosted", "reader@only-a.example.net")

    assert response.status_code == 303
    assert flags_of(session, "reader@only-a.example.net") == {"no_mx"}
    assert dns_server.questions_about("only-a.example.net") == ["MX", "A"]


@pytest.mark.settings(EMAIL_CHECK_DELIVERABILITY=True)
@pytest.mark.parametrize(
    "entry",
    [pytest.param(entry) for entry in SIGNED_UP],
)
@pytest.mark.parametrize(
    ("domain", "why"),
    [("gone.example.net", "does not exist"), ("null-mx.example.net", "does not accept mail")],
)
def test_a_domain_without_mail_is_refused_naming_it_and_nothing_is_stored(
    client, session, key, dns_server, entry, domain, why
):
    response = sign_up(entry, client, key, f"reader@{domain}")

    assert response.status_code == REFUSED[entry]
    said = f"The domain {domain} {why}"
    if entry in PAGES:
        assert said in response.get_data(as_text=True)
    else:
        assert said in response.get_json()["fields"]["email"]
    assert_nothing_stored(session)


@pytest.mark.settings(EMAIL_CHECK_DELIVERABILITY=True, EMAIL_DNS_TIMEOUT_SECONDS=0.3)
def test_a_silent_name_server_leaves_the_address_taken_and_flagged_unchecked(
    client, session, newsletters, dns_server
):
    started = time.monotonic()
    response = post_page(client, "hosted", "reader@silent.example.net")

    assert response.status_code == 303
    assert time.monotonic() - started < 2.0
    assert flags_of(session, "reader@silent.example.net") == {"unchecked"}
    assert dns_server.questions_about("silent.example.net")


def test_without_the_setting_no_dns_is_asked(client, session, newsletters, dns_server):
    assert post_page(client, "hosted", "reader@gone.example.net").status_code == 303
    assert flags_of(session, "reader@gone.example.net") is None
    assert dns_server.asked == []


# One address, the same flags, whichever way it came in.


def import_file(runner, tmp_path, email: str):
    """Import a one-row file of ``email`` into 'briefing' with the CLI."""
    path = tmp_path / "list.csv"
    path.write_text(f"email\n{email}\n", encoding="utf-8")
    result = runner.invoke(args=["import", "briefing", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("taken 1,"), result.output


@pytest.mark.parametrize("entry", [*SIGNED_UP, "import"])
@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("info@gmial.com", "typo disposable role"),
        (TYPO, "typo disposable"),
        (DISPOSABLE, "disposable"),
        (ROLE, "role"),
        ("reader@example.com", None),
    ],
)
def test_an_address_gets_the_same_flags_through_every_entry_point(
    client, runner, session, key, tmp_path, entry, email, expected
):
    if entry == "import":
        import_file(runner, tmp_path, email)
    else:
        kept = email if entry in PAGES else True
        response = sign_up(entry, client, key, email, accept_as_typed=kept)
        assert response.status_code == SIGNED_UP[entry], response.get_data(as_text=True)

    flags = flags_by_newsletter(session, email)
    assert set(flags) == (set(TICKED) if entry == "several" else {"briefing"})
    assert set(flags.values()) == {expected}
    assert expected == address_checks.stored(address_checks.check(email, accept_typo=True).flags)
