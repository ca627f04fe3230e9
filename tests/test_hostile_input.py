"""Malformed and malicious requests: each gets a clear 4xx and leaves the database as it was.

The battery runs against a database that already holds one pending signup, so "nothing
changed" is a real check; its confirmation and unsubscribe links are the ones a reader got.
"""

import html
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from newsletters import db, editors, exports
from newsletters.mail import worker
from newsletters.models import (
    ConsentEvent,
    Newsletter,
    OutboxMessage,
    Subscriber,
    Subscription,
    Token,
)

from .subscriptions.test_links import mailed_secrets, unsubscribe_secret

COUNTED = (Subscription, Subscriber, OutboxMessage, Token, ConsentEvent)
BAD_ADDRESS = "Please, enter correct email address"
BAD_LINK = "link is not valid"
NOT_FOUND = "There is no newsletter called"
TOO_LARGE = "The request is too large"
NOT_ALLOWED = "method is not allowed"
SEND_FORM_OR_JSON = "Send the signup as a form"
NOT_A_STRING = "must be a string"
NOT_JSON = "JSON object"
TWICE = "was sent more than once"
CSRF = "security token"
EDITOR = "editor@example.com"
PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Links:
    """The secrets of the links mailed and exported for the signup already in the database."""

    confirm: str
    unsubscribe: str


@dataclass(frozen=True)
class Case:
    """One hostile request: what is sent, the status expected, and words of the message."""

    method: str
    path: str | Callable[[Links], str]
    status: int
    says: str
    send: dict = field(default_factory=dict)

    def url(self, links: Links) -> str:
        return self.path(links) if callable(self.path) else self.path


def form(**fields) -> dict:
    return {"data": fields}


def json_body(value) -> dict:
    return {"json": value}


def raw(body: str | bytes, content_type: str) -> dict:
    return {"data": body, "content_type": content_type}


def signup(email="someone@example.com", **fields) -> dict:
    return {"email": email, **fields}


def nested(depth: int) -> str:
    return '{"email": "someone@example.com", "name": ' + "[" * depth + "]" * depth + "}"


SIGNUP = "/n/briefing/subscribe"
SEVERAL = "/subscribe"
INJECTIONS = {
    "crlf_bcc": "someone@example.com\r\nBcc: victim@example.com",
    "lf_bcc": "someone@example.com\nBcc: victim@example.com",
    "cr_to": "someone@example.com\rTo: victim@example.com",
    "percent_encoded_crlf": "someone@example.com%0D%0ABcc:victim@example.com",
    "comma_list": "someone@example.com, victim@example.com",
    "display_name": "Someone <someone@example.com>",
    "quoted_bcc": '"Bcc: victim@example.com"@example.com',
    "angle_bcc": "someone@example.com>\nBcc: <victim@example.com",
}
NAME_INJECTIONS = {
    "crlf_bcc": "Someone\r\nBcc: victim@example.com",
    "lf_to": "Someone\nTo: victim@example.com",
    "unicode_line_separator": "Someone\u2028Bcc: victim@example.com",
    "next_line": "Someone\x85Bcc: victim@example.com",
}
THOUSAND_NEWSLETTERS = [("email", "someone@example.com")] + [
    ("newsletter", f"n{i}") for i in range(1000)
]

CASES: dict[str, Case] = {
    # Header injection through the address: never valid, whatever the framing.
    **{
        f"form_email_{name}": Case("POST", SIGNUP, 400, BAD_ADDRESS, form(email=value))
        for name, value in INJECTIONS.items()
    },
    **{
        f"json_email_{name}": Case("POST", SIGNUP, 400, BAD_ADDRESS, json_body(signup(value)))
        for name, value in INJECTIONS.items()
    },
    # ...and through the name, which no mail carries, but which must not carry breaks.
    **{
        f"form_name_{name}": Case("POST", SIGNUP, 400, "line breaks", form(**signup(name=value)))
        for name, value in NAME_INJECTIONS.items()
    },
    "json_name_crlf_bcc": Case(
        "POST", SIGNUP, 400, "line breaks", json_body(signup(name=NAME_INJECTIONS["crlf_bcc"]))
    ),
    "embed_email_crlf_bcc": Case(
        "POST", "/n/briefing/embed", 400, BAD_ADDRESS, form(email=INJECTIONS["crlf_bcc"])
    ),
    "several_email_crlf_bcc": Case(
        "POST", SEVERAL, 400, BAD_ADDRESS, form(email=INJECTIONS["crlf_bcc"], newsletter="briefing")
    ),
    # Bodies over MAX_CONTENT_LENGTH (64 KB in the tests), and fields over their own limits.
    "form_body_over_limit": Case("POST", SIGNUP, 413, TOO_LARGE, form(**signup(name="x" * 70_000))),
    "json_body_over_limit": Case(
        "POST", SIGNUP, 413, TOO_LARGE, json_body(signup(name="x" * 70_000))
    ),
    "multipart_body_over_limit": Case(
        "POST",
        SIGNUP,
        413,
        TOO_LARGE,
        {"data": signup(name="x" * 70_000), "content_type": "multipart/form-data"},
    ),
    "json_nested_over_limit": Case(
        "POST", SIGNUP, 413, TOO_LARGE, raw(nested(40_000), "application/json")
    ),
    "form_email_too_long": Case(
        "POST", SIGNUP, 400, "too long", form(email="a" * 250 + "@example.com")
    ),
    "json_email_too_long": Case(
        "POST", SIGNUP, 400, "too long", json_body(signup("a" * 250 + "@example.com"))
    ),
    "form_name_too_long": Case("POST", SIGNUP, 400, "too long", form(**signup(name="n" * 201))),
    "json_name_too_long": Case("POST", SIGNUP, 400, "too long", json_body(signup(name="n" * 201))),
    # NUL bytes, which PostgreSQL refuses in any text.
    "form_email_nul": Case("POST", SIGNUP, 400, BAD_ADDRESS, form(email="some\x00one@example.com")),
    "json_email_nul": Case(
        "POST", SIGNUP, 400, BAD_ADDRESS, json_body(signup("someone@exam\x00ple.com"))
    ),
    "form_name_nul": Case(
        "POST", SIGNUP, 400, "control characters", form(**signup(name="Some\x00one"))
    ),
    "json_name_nul": Case(
        "POST", SIGNUP, 400, "control characters", json_body(signup(name="\x00"))
    ),
    "slug_nul_signup": Case("POST", "/n/brief%00ing/subscribe", 404, NOT_FOUND, form(**signup())),
    "slug_nul_page": Case("GET", "/n/brief%00ing", 404, NOT_FOUND),
    "slug_nul_embed": Case("GET", "/n/brief%00ing/embed", 404, NOT_FOUND),
    "slug_nul_embed_signup": Case("POST", "/n/brief%00ing/embed", 404, NOT_FOUND, form(**signup())),
    "slug_nul_widget": Case("GET", "/n/brief%00ing/embed.js", 404, NOT_FOUND),
    "slug_nul_thanks": Case("GET", "/n/brief%00ing/thanks", 404, NOT_FOUND),
    "slug_nul_several": Case(
        "POST", SEVERAL, 404, NOT_FOUND, json_body(signup(newsletter="brief\x00ing"))
    ),
    # Broken JSON.
    "json_truncated": Case(
        "POST", SIGNUP, 400, NOT_JSON, raw('{"email": "someone@example.com"', "application/json")
    ),
    "json_empty_body": Case("POST", SIGNUP, 400, NOT_JSON, raw("", "application/json")),
    "json_single_quotes": Case(
        "POST", SIGNUP, 400, NOT_JSON, raw("{'email': 'someone@example.com'}", "application/json")
    ),
    "json_not_utf8": Case(
        "POST", SIGNUP, 400, NOT_JSON, raw(b'{"email": "\xffone@example.com"}', "application/json")
    ),
    "json_nested_too_deep": Case(
        "POST", SIGNUP, 400, "nested too deeply", raw(nested(20_000), "application/json")
    ),
    "json_number_too_long": Case(
        "POST", SIGNUP, 400, NOT_JSON, raw('{"email": 1' + "0" * 5000 + "}", "application/json")
    ),
    "json_lone_surrogate_name": Case(
        "POST",
        SIGNUP,
        400,
        "lone surrogate",
        raw('{"email": "someone@example.com", "name": "\\ud800"}', "application/json"),
    ),
    "json_lone_surrogate_newsletter": Case(
        "POST",
        SEVERAL,
        400,
        "lone surrogate",
        raw('{"email": "someone@example.com", "newsletter": "\\udfff"}', "application/json"),
    ),
    "json_repeated_email_key": Case(
        "POST",
        SIGNUP,
        400,
        TWICE,
        raw('{"email": "someone@example.com", "email": "victim@example.com"}', "application/json"),
    ),
    # JSON of the wrong shape or types.
    "json_array_body": Case("POST", SIGNUP, 400, NOT_JSON, json_body(["someone@example.com"])),
    "json_string_body": Case("POST", SIGNUP, 400, NOT_JSON, json_body("someone@example.com")),
    "json_null_body": Case("POST", SIGNUP, 400, NOT_JSON, raw("null", "application/json")),
    "json_email_number": Case("POST", SIGNUP, 400, NOT_A_STRING, json_body({"email": 42})),
    "json_email_float_overflow": Case(
        "POST", SIGNUP, 400, NOT_A_STRING, raw('{"email": 1e999}', "application/json")
    ),
    "json_email_true": Case("POST", SIGNUP, 400, NOT_A_STRING, json_body({"email": True})),
    "json_email_null": Case(
        "POST", SIGNUP, 400, "Enter an email address", json_body({"email": None})
    ),
    "json_email_object": Case("POST", SIGNUP, 400, NOT_A_STRING, json_body({"email": {"$ne": ""}})),
    "json_email_array": Case(
        "POST", SIGNUP, 400, NOT_A_STRING, json_body({"email": ["someone@example.com"]})
    ),
    "json_name_object": Case(
        "POST", SIGNUP, 400, NOT_A_STRING, json_body(signup(name={"first": "Some"}))
    ),
    "json_name_number": Case("POST", SIGNUP, 400, NOT_A_STRING, json_body(signup(name=7))),
    "json_website_array": Case("POST", SIGNUP, 400, NOT_A_STRING, json_body(signup(website=[1]))),
    "json_return_url_number": Case(
        "POST", SIGNUP, 400, NOT_A_STRING, json_body(signup(return_url=1))
    ),
    "json_newsletter_object": Case(
        "POST", SEVERAL, 400, "list of newsletter names", json_body(signup(newsletter={"a": 1}))
    ),
    "json_newsletter_nested_list": Case(
        "POST",
        SEVERAL,
        400,
        "list of newsletter names",
        json_body(signup(newsletters=[["briefing"]])),
    ),
    "json_newsletter_null": Case(
        "POST", SEVERAL, 400, "list of newsletter names", json_body(signup(newsletter=None))
    ),
    # Forms that say two things at once, or are not text.
    "form_repeated_email": Case(
        "POST",
        SIGNUP,
        400,
        TWICE,
        {"data": MultiDict([("email", "someone@example.com"), ("email", "victim@example.com")])},
    ),
    "form_repeated_name": Case(
        "POST",
        SIGNUP,
        400,
        TWICE,
        {"data": MultiDict([("email", "someone@example.com"), ("name", "A"), ("name", "B")])},
    ),
    "several_repeated_email": Case(
        "POST",
        SEVERAL,
        400,
        TWICE,
        {
            "data": MultiDict(
                [("newsletter", "briefing"), ("email", "a@example.com"), ("email", "b@example.com")]
            )
        },
    ),
    "multipart_not_utf8": Case(
        "POST",
        SIGNUP,
        400,
        "not valid UTF-8",
        raw(
            b'--xx\r\nContent-Disposition: form-data; name="email"\r\n\r\n'
            b"\xff\xfeone@example.com\r\n--xx--\r\n",
            "multipart/form-data; boundary=xx",
        ),
    ),
    "form_percent_escapes_not_utf8": Case(
        "POST",
        SIGNUP,
        400,
        "not valid UTF-8",
        raw("email=%ff%fe%80@example.org", "application/x-www-form-urlencoded"),
    ),
    "form_percent_escapes_overlong_slash": Case(
        "POST",
        SIGNUP,
        400,
        "not valid UTF-8",
        raw("email=a%c0%afb@example.org", "application/x-www-form-urlencoded"),
    ),
    "form_percent_escapes_not_utf8_iframe": Case(
        "POST",
        "/n/briefing/embed",
        400,
        "not valid UTF-8",
        raw("email=%ff@example.org", "application/x-www-form-urlencoded"),
    ),
    "form_percent_escapes_not_utf8_several": Case(
        "POST",
        SEVERAL,
        400,
        "not valid UTF-8",
        raw("newsletter=briefing&email=%ff@example.org", "application/x-www-form-urlencoded"),
    ),
    "form_raw_bytes_not_utf8": Case(
        "POST",
        SIGNUP,
        400,
        "not valid UTF-8",
        raw(b"email=\xffone@example.org", "application/x-www-form-urlencoded"),
    ),
    "form_empty": Case(
        "POST", SIGNUP, 400, "Enter an email address", raw("", "application/x-www-form-urlencoded")
    ),
    "form_return_url_crlf": Case(
        "POST",
        SIGNUP,
        400,
        "return_url",
        form(**signup(return_url="https://news.example.org/\r\nSet-Cookie: session=x")),
    ),
    # Content types that are neither form nor JSON.
    "text_plain": Case(
        "POST", SIGNUP, 415, SEND_FORM_OR_JSON, raw("email=someone@example.com", "text/plain")
    ),
    "application_xml": Case(
        "POST",
        SIGNUP,
        415,
        SEND_FORM_OR_JSON,
        raw("<email>someone@example.com</email>", "application/xml"),
    ),
    "no_content_type": Case(
        "POST", SIGNUP, 415, SEND_FORM_OR_JSON, {"data": b"email=someone@example.com"}
    ),
    "embed_text_plain": Case(
        "POST",
        "/n/briefing/embed",
        415,
        SEND_FORM_OR_JSON,
        raw("someone@example.com", "text/plain"),
    ),
    "several_text_plain": Case(
        "POST", SEVERAL, 415, SEND_FORM_OR_JSON, raw("newsletter=briefing", "text/plain")
    ),
    # Paths that try to climb out, or name no newsletter.
    "dot_dot_to_admin": Case("GET", "/n/../admin", 404, "not found"),
    "encoded_dot_dot": Case("POST", "/n/%2e%2e/subscribe", 404, NOT_FOUND, form(**signup())),
    "encoded_slash_in_slug": Case(
        "POST", "/n/brief%2fing/subscribe", 404, "not found", form(**signup())
    ),
    "encoded_slash_to_admin": Case(
        "POST", "/n/..%2fadmin/subscribe", 404, "not found", form(**signup())
    ),
    "very_long_slug": Case("POST", f"/n/{'a' * 5000}/subscribe", 404, NOT_FOUND, form(**signup())),
    "unicode_slug": Case("POST", "/n/br%C3%AFefing/subscribe", 404, NOT_FOUND, form(**signup())),
    "fullwidth_slug": Case(
        "POST",
        "/n/\uff42\uff52\uff49\uff45\uff46\uff49\uff4e\uff47/subscribe",
        404,
        NOT_FOUND,
        form(**signup()),
    ),
    "sql_in_slug": Case(
        "POST", "/n/briefing'%20OR%20'1'='1/subscribe", 404, NOT_FOUND, form(**signup())
    ),
    "unknown_newsletter_form": Case(
        "POST", "/n/nosuch/subscribe", 404, NOT_FOUND, form(**signup())
    ),
    "unknown_newsletter_json": Case(
        "POST", "/n/nosuch/subscribe", 404, NOT_FOUND, json_body(signup())
    ),
    "unknown_newsletter_page": Case("GET", "/n/nosuch", 404, NOT_FOUND),
    "unknown_newsletter_several": Case(
        "POST", SEVERAL, 404, NOT_FOUND, form(**signup(newsletter="nosuch"))
    ),
    "several_without_newsletter": Case(
        "POST", SEVERAL, 400, "Choose at least one newsletter", form(**signup())
    ),
    "several_1000_newsletter_fields": Case(
        "POST", SEVERAL, 400, "at most 50", {"data": MultiDict(THOUSAND_NEWSLETTERS)}
    ),
    # A multipart form has a part limit of its own (Flask's MAX_FORM_PARTS, 1000).
    "several_1000_newsletter_parts": Case(
        "POST",
        SEVERAL,
        413,
        TOO_LARGE,
        {"data": MultiDict(THOUSAND_NEWSLETTERS), "content_type": "multipart/form-data"},
    ),
    "several_1000_newsletters_json": Case(
        "POST",
        SEVERAL,
        400,
        "at most 50",
        json_body(signup(newsletters=[f"n{i}" for i in range(1000)])),
    ),
    "several_60_newsletter_fields": Case(
        "POST",
        SEVERAL,
        400,
        "at most 50",
        {
            "data": MultiDict(
                [("email", "someone@example.com")] + [("newsletter", f"n{i}") for i in range(60)]
            )
        },
    ),
    # Methods that no public route takes.
    "put_signup": Case("PUT", SIGNUP, 405, NOT_ALLOWED, json_body(signup())),
    "delete_signup": Case("DELETE", SIGNUP, 405, NOT_ALLOWED),
    "patch_several": Case("PATCH", SEVERAL, 405, NOT_ALLOWED, json_body(signup())),
    "delete_confirm": Case("DELETE", lambda t: f"/confirm/{t.confirm}", 405, NOT_ALLOWED),
    "put_unsubscribe": Case("PUT", lambda t: f"/unsubscribe/{t.unsubscribe}", 405, NOT_ALLOWED),
    # Links of the other purpose: a confirmation secret never unsubscribes, and the reverse.
    "confirm_secret_on_unsubscribe_get": Case(
        "GET", lambda t: f"/unsubscribe/{t.confirm}", 404, BAD_LINK
    ),
    "confirm_secret_on_unsubscribe_post": Case(
        "POST", lambda t: f"/unsubscribe/{t.confirm}", 404, BAD_LINK
    ),
    "confirm_secret_on_one_click": Case(
        "POST",
        lambda t: f"/unsubscribe/{t.confirm}",
        404,
        BAD_LINK,
        form(**{"List-Unsubscribe": "One-Click"}),
    ),
    "unsubscribe_secret_on_confirm_get": Case(
        "GET", lambda t: f"/confirm/{t.unsubscribe}", 404, BAD_LINK
    ),
    "unsubscribe_secret_on_confirm_post": Case(
        "POST", lambda t: f"/confirm/{t.unsubscribe}", 404, BAD_LINK
    ),
    # (A confirmation link opens the preference centre, as its mail says; not the download.)
    "confirm_secret_on_data_download": Case(
        "GET", lambda t: f"/preferences/data/{t.confirm}", 404, "not valid"
    ),
    "dot_dot_before_token": Case("POST", lambda t: f"/confirm/..%2F{t.confirm}", 404, "not found"),
    # The editors' area without its CSRF token.
    "admin_login_without_csrf": Case(
        "POST", "/admin/login", 400, CSRF, form(email=EDITOR, password=PASSWORD)
    ),
    "admin_login_with_forged_csrf": Case(
        "POST",
        "/admin/login",
        400,
        CSRF,
        form(email=EDITOR, password=PASSWORD, csrf_token="forged." + "A" * 40),
    ),
}

FORGERIES: dict[str, Callable[[str], str]] = {
    "forged": lambda real: secrets.token_urlsafe(32),
    "truncated": lambda real: real[:-1],
    "half": lambda real: real[: len(real) // 2],
    "oversize": lambda real: real + "A" * 5000,
    "non_ascii": lambda real: real[:-1] + "%C3%A9",
    "nul": lambda real: real[:20] + "%00" + real[20:],
}
for forgery, make in FORGERIES.items():
    for route in ("confirm", "unsubscribe"):
        for method in ("GET", "POST"):
            CASES[f"{forgery}_{route}_token_{method.lower()}"] = Case(
                method,
                lambda t, route=route, make=make: f"/{route}/{make(getattr(t, route))}",
                404,
                BAD_LINK,
            )


def counts(session) -> dict[str, int]:
    """Return the number of rows of each table that a signup or link could change."""
    session.expire_all()
    return {
        model.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(model))
        for model in COUNTED
    }


def snapshot(session) -> list[tuple]:
    """Return every subscription's state, to see that no field changed either."""
    session.expire_all()
    return session.execute(
        sa.select(
            Subscription.id,
            Subscription.status,
            Subscription.name,
            Subscription.optin_at,
            Subscription.confirmed_at,
            Subscription.unsubscribed_at,
            Subscription.confirmation_mailed_at,
        ).order_by(Subscription.id)
    ).all()


def readable_message(response) -> str:
    """Return what a person reads in the answer: JSON's message and field errors, or the page."""
    if response.is_json:
        data = response.get_json()
        assert isinstance(data.get("message"), str) and data["message"], data
        return " ".join([data["message"], *data.get("fields", {}).values()])
    page = response.get_data(as_text=True)
    page = re.sub(r"<(style|script)\b.*?</\1>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


@pytest.fixture
def links(app, client, newsletter, session) -> Links:
    """Sign a reader up; return the secrets of the link mailed and the one exported."""
    response = client.post(SIGNUP, data={"email": "reader@example.com", "name": "Reader"})
    assert response.status_code == 303
    [confirm] = mailed_secrets(app)
    with app.app_context():
        editors.create(db.session(), EDITOR, PASSWORD, is_admin=True, newsletters=[])
        db.session().commit()
    return Links(confirm=confirm, unsubscribe=unsubscribe_secret(app, session))


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_hostile_request_gets_a_clear_4xx_and_changes_nothing(client, session, links, case):
    before, state = counts(session), snapshot(session)
    response = client.open(case.url(links), method=case.method, **case.send)
    assert response.status_code == case.status, response.get_data(as_text=True)[:2000]
    message = readable_message(response)
    assert case.says.lower() in message.lower(), message
    assert "Something went wrong on our side" not in message
    assert counts(session) == before
    assert snapshot(session) == state


def test_the_battery_is_large_enough():
    assert len(CASES) >= 40


def test_json_clients_get_json_errors_and_browsers_get_pages(client, links):
    as_json = client.post(
        SIGNUP, data="<x/>", content_type="application/xml", headers={"Accept": "application/json"}
    )
    assert as_json.status_code == 415
    assert SEND_FORM_OR_JSON in as_json.json["message"]
    as_page = client.post(
        SIGNUP, data="<x/>", content_type="application/xml", headers={"Accept": "text/html"}
    )
    assert as_page.status_code == 415 and as_page.mimetype == "text/html"
    assert SEND_FORM_OR_JSON in readable_message(as_page)


def test_405_says_which_methods_are_allowed(client, links):
    response = client.put(SIGNUP)
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]


def test_a_used_confirmation_link_changes_nothing_and_says_already_subscribed(
    client, session, links
):
    assert client.post(f"/confirm/{links.confirm}").status_code == 200
    before, state = counts(session), snapshot(session)
    again = client.post(f"/confirm/{links.confirm}", headers={"Accept": "application/json"})
    assert again.status_code == 200
    assert again.json["message"].startswith("You are already subscribed to ")
    assert (counts(session), snapshot(session)) == (before, state)


def test_a_name_that_looks_like_a_header_never_reaches_the_mail(app, client, newsletter):
    response = client.post(
        SIGNUP, data={"email": "someone@example.com", "name": "Bcc: victim@example.com"}
    )
    assert response.status_code == 303
    with app.app_context():
        worker.run(once=True)
    [path] = Path(urlsplit(app.config["MAIL_URL"]).path).glob("*.eml")
    mail = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert mail["To"] == "someone@example.com"
    assert mail["Bcc"] is None and mail["Cc"] is None
    assert b"victim" not in path.read_bytes()


@pytest.mark.parametrize(
    "return_url",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "javascript:alert(1)",
        "https://news.example.org.evil.example/",
        "https://news.example.org@evil.example/",
        "https://evil.example\\@news.example.org/",
        "data:text/html,<script>alert(1)</script>",
    ],
    ids=[
        "other_site",
        "scheme_relative",
        "backslash",
        "javascript",
        "suffix_domain",
        "userinfo",
        "backslash_userinfo",
        "data_url",
    ],
)
def test_return_url_never_sends_the_reader_to_another_site(client, newsletter, return_url):
    response = client.post(SIGNUP, data={"email": "someone@example.com", "return_url": return_url})
    assert response.status_code == 303
    location = response.headers["Location"]
    # As a browser reads it: no backslash (which it would take for a slash), our host or none.
    assert "\\" not in location, location
    assert urlsplit(location).hostname in (None, "news.example.org"), location


def test_return_url_to_an_allowed_origin_is_followed(client, newsletter, session):
    briefing = session.scalar(sa.select(Newsletter).where(Newsletter.slug == newsletter))
    briefing.allowed_origins = "https://publisher.example"
    session.commit()
    response = client.post(
        SIGNUP,
        data={"email": "someone@example.com", "return_url": "https://publisher.example/thanks"},
    )
    assert response.headers["Location"] == "https://publisher.example/thanks"


def login_form(client, **request) -> dict:
    page = client.get("/admin/login", **request).get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    return {"email": EDITOR, "password": PASSWORD, "csrf_token": token}


@pytest.mark.parametrize(
    "next_page",
    [
        "https://evil.example/",
        "//evil.example/",
        "///evil.example/",
        "/\\evil.example/",
        "\\\\evil.example/",
        "/\t/evil.example/",
        "https:evil.example",
        "javascript:alert(1)",
        "http://localhost/admin/",
    ],
    ids=[
        "other_site",
        "scheme_relative",
        "triple_slash",
        "backslash",
        "double_backslash",
        "tab",
        "scheme_without_slashes",
        "javascript",
        "absolute_own_host",
    ],
)
def test_login_next_never_leaves_the_site(client, links, next_page):
    response = client.post(
        "/admin/login", query_string={"next": next_page}, data=login_form(client)
    )
    assert response.status_code == 303
    location = response.headers["Location"]
    parts = urlsplit(location)
    assert location.startswith("/") and not location.startswith("//"), location
    assert not parts.netloc and "\\" not in location, location


def test_login_next_to_a_page_of_the_site_is_followed(client, links):
    response = client.post(
        "/admin/login", query_string={"next": "/admin/n/briefing/"}, data=login_form(client)
    )
    assert response.headers["Location"] == "/admin/n/briefing/"


@pytest.mark.parametrize(
    "path",
    [
        "/admin/newsletters/new",
        "/admin/logout",
        "/admin/n/briefing/subscribers/1/unsubscribe",
        "/admin/n/briefing/subscribers/1/delete",
    ],
    ids=["new_newsletter", "logout", "unsubscribe_subscriber", "delete_subscriber"],
)
def test_admin_actions_without_csrf_token_are_refused_and_change_nothing(
    client, session, links, path
):
    assert client.post("/admin/login", data=login_form(client)).status_code == 303
    before, state = counts(session), snapshot(session)
    newsletters = session.scalars(sa.select(Newsletter.slug)).all()
    response = client.post(path, data={"slug": "hijacked", "name": "Hijacked"})
    assert response.status_code == 400
    assert CSRF in readable_message(response)
    assert (counts(session), snapshot(session)) == (before, state)
    assert session.scalars(sa.select(Newsletter.slug)).all() == newsletters
    assert client.get("/admin/").status_code == 200  # still logged in


def test_spoofed_host_header_never_reaches_links_in_mails_or_exports(app, client, newsletter):
    evil = {"base_url": "http://evil.example"}  # the Host header, and cookies kept for it
    response = client.post(SIGNUP, data={"email": "someone@example.com"}, **evil)
    assert response.status_code == 303
    with app.app_context():
        worker.run(once=True)
    [path] = Path(urlsplit(app.config["MAIL_URL"]).path).glob("*.eml")
    mail = path.read_text()
    assert "https://news.example.org/confirm/" in mail
    assert "evil.example" not in mail
    with app.app_context():
        editors.create(db.session(), EDITOR, PASSWORD, is_admin=True, newsletters=[])
        db.session().commit()
    login = client.post("/admin/login", data=login_form(client, **evil), **evil)
    assert login.status_code == 303
    export = client.get("/admin/n/briefing/export?status=all&format=csv", **evil)
    assert export.status_code == 200
    text = export.get_data(as_text=True)
    assert "https://news.example.org/unsubscribe/" in text
    assert "evil.example" not in text
    with app.test_request_context(SIGNUP, **evil):
        briefing = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == newsletter))
        [row] = exports.records(db.session(), briefing, "all")
    assert row["unsubscribe_url"].startswith("https://news.example.org/unsubscribe/")


def test_spoofed_x_forwarded_for_without_a_trusted_proxy_is_ignored(client, newsletter, session):
    response = client.post(
        SIGNUP,
        data={"email": "someone@example.com"},
        headers={"X-Forwarded-For": "192.0.2.66, 198.51.100.1"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    assert response.status_code == 303
    assert session.scalars(sa.select(Subscription.optin_ip)).one() == "203.0.113.7"


@pytest.mark.settings(TRUSTED_PROXIES=1)
@pytest.mark.parametrize(
    "forwarded", ["not-an-address", "1.2.3.4\x00", "a" * 100, "::1%" + "x" * 60]
)
def test_garbage_x_forwarded_for_behind_a_proxy_is_stored_as_unknown(
    client, newsletter, session, forwarded
):
    response = client.post(
        SIGNUP, data={"email": "someone@example.com"}, headers={"X-Forwarded-For": forwarded}
    )
    assert response.status_code == 303
    assert session.scalars(sa.select(Subscription.optin_ip)).one() is None


def test_control_characters_in_the_user_agent_are_dropped(client, newsletter, session):
    response = client.post(
        SIGNUP,
        data={"email": "someone@example.com"},
        headers={"User-Agent": "Reader/1.0\x00\x1b[31m" + "x" * 600},
    )
    assert response.status_code == 303
    agent = session.scalars(sa.select(Subscription.optin_user_agent)).one()
    assert agent.startswith("Reader/1.0[31m") and len(agent) == 512


def test_nul_in_query_strings_is_no_error(client, newsletter):
    assert client.get("/thanks?n=brief%00ing").status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/admin/n/brief%00ing/", "/admin/n/brief%00ing/subscribers", "/admin/n/brief%00ing/settings"],
    ids=["dashboard", "subscribers", "settings"],
)
def test_nul_in_the_admin_area_is_a_4xx(client, links, path):
    assert client.post("/admin/login", data=login_form(client)).status_code == 303
    response = client.get(path)
    assert 400 <= response.status_code < 500
    assert "Something went wrong on our side" not in readable_message(response)


def test_nul_in_the_login_address_is_a_4xx(client, links):
    response = client.post("/admin/login", data=login_form(client) | {"email": "edi\x00tor@x.org"})
    assert 400 <= response.status_code < 500
    assert "Something went wrong on our side" not in readable_message(response)
