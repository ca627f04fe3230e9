"""Security headers on every route: a real CSP, a Referrer-Policy, no caching of secrets.

The walk goes over ``app.url_map`` itself, so a route added later is checked without anyone
remembering to add it here; token routes get the real links a reader was mailed.
"""

from dataclasses import dataclass
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa
from flask import render_template_string
from werkzeug.routing import Rule

from newsletters import apikeys, db, editors
from newsletters.models import Newsletter, Subscriber, Subscription
from newsletters.webhooks import services as webhooks

from .admin.conftest import PASSWORD, login
from .subscriptions.test_links import sign_up, unsubscribe_secret

PUBLISHER = "https://publisher.example"
EDITOR = "boss@example.com"
TOKEN_ROUTES = ("/confirm/", "/unsubscribe/", "/preferences/")
EMBED_ROUTES = ("/n/<slug>/embed",)
# A mail's HTML, for its editors' preview frame: not a page of ours, so a policy of its own
# (admin/mail_preview.py: no script, inline styles, a sandbox), tested in test_mail_design.py.
MAIL_FRAMES = ("/admin/n/<slug>/mails/<kind>.html",)
# The body each POST-only route gets: a valid one where a reader could send it.
POST_BODIES = {
    "/n/<slug>/subscribe": {"email": "post@example.com"},
    "/subscribe": {"email": "several@example.com", "newsletter": "briefing"},
    "/n/<slug>/embed": {"email": "frame@example.com"},
    "/preferences/<token>": {"keep": []},
}


@dataclass(frozen=True)
class Answer:
    rule: Rule
    method: str
    path: str
    response: object


@pytest.fixture
def answers(app, client, newsletter, session) -> list[Answer]:
    """Request every route once (GET where it has one), with real values, as a logged-in admin.

    Admin POSTs carry no CSRF token: refused with a 400, they still must carry the area's
    headers, and they change nothing (so the logout does not log out).
    """
    session.execute(sa.update(Newsletter).values(allowed_origins=PUBLISHER))
    session.commit()
    confirm = sign_up(app, client)
    unsubscribe = unsubscribe_secret(app, session)
    with app.app_context():
        editor = editors.create(db.session(), EDITOR, PASSWORD, is_admin=True, newsletters=[])
        db.session().commit()
        editor_id = editor.id
        key_id = apikeys.create(db.session(), editor, "crm")[0].id
        briefing = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        webhook_id = webhooks.add(db.session(), briefing, "http://127.0.0.1:9/hook")[0].id
        db.session().commit()
    login(client, EDITOR)
    tokens = {"confirm": confirm, "unsubscribe": unsubscribe, "preferences": unsubscribe}
    values = {
        "slug": "briefing",
        "subscription_id": session.scalar(sa.select(Subscription.id)),
        "editor_id": editor_id,
        "key_id": key_id,
        "webhook_id": webhook_id,
        "delivery_id": 1,
        "email": session.scalar(sa.select(Subscriber.email)),
        "filename": "widget.css",
        "embed": "widget",  # an embed's preview (embed.preview)
        "kind": "confirm",  # a mail's preview (admin.mail_preview_html)
        "job_id": 1,  # an import job (none: a 404 still has its headers)
        "action": "unsubscribe",  # a bulk action on a selection
    }

    found = []
    rules = sorted(app.url_map.iter_rules(), key=lambda r: "GET" not in r.methods)
    for rule in rules:
        method = "GET" if "GET" in rule.methods else "POST"
        arguments = dict(values)
        if "token" in rule.arguments:
            arguments["token"] = tokens[rule.rule.strip("/").split("/")[0]]
        unknown = rule.arguments - arguments.keys()
        assert not unknown, f"{rule.rule}: give this test a real value for {unknown}"
        _, path = rule.build(arguments, append_unknown=False)
        body = POST_BODIES.get(rule.rule) if method == "POST" else None
        response = client.open(path, method=method, data=body)
        response.get_data()  # read streamed bodies (a file, an export) to the end, then close
        response.close()
        assert response.status_code < 500, (path, response.status_code)
        if rule.rule not in MAIL_FRAMES:
            found.append(Answer(rule, method, path, response))
    return found


def policy(response) -> dict[str, list[str]]:
    """Return the response's Content-Security-Policy as {directive: [sources]}."""
    directives = [d.split() for d in response.headers["Content-Security-Policy"].split(";")]
    return {d[0]: d[1:] for d in directives if d}


def test_every_route_answers_with_a_csp_that_allows_only_own_scripts_and_styles(answers):
    assert len(answers) >= 30  # every route, each once
    for answer in answers:
        csp = policy(answer.response)
        assert csp["default-src"] == ["'self'"], answer.path
        assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"], answer.path
        for directive in ("script-src", "style-src"):
            assert csp[directive][0] == "'self'", (answer.path, directive)
            assert all(s.startswith("'nonce-") for s in csp[directive][1:]), answer.path
        assert answer.response.headers["X-Content-Type-Options"] == "nosniff"


def test_only_the_iframe_may_be_framed_by_its_newsletters_origins_and_never_the_admin(answers):
    for answer in answers:
        ancestors = policy(answer.response)["frame-ancestors"]
        if answer.path.startswith("/admin"):
            assert ancestors == ["'none'"], answer.path
        elif answer.rule.rule in EMBED_ROUTES:
            assert ancestors == ["'self'", PUBLISHER], answer.path
        else:
            assert ancestors == ["'self'"], answer.path


def test_token_pages_send_no_referrer_and_other_pages_only_their_origin_cross_site(answers):
    token_answers = [a for a in answers if a.path.startswith(TOKEN_ROUTES)]
    assert len(token_answers) >= 6  # GET and POST of each of the three
    for answer in answers:
        expected = "no-referrer" if answer in token_answers else "strict-origin-when-cross-origin"
        assert answer.response.headers["Referrer-Policy"] == expected, answer.path


def test_token_pages_and_the_editors_area_are_never_stored_in_a_cache(answers):
    # The API's answers hold subscribers' addresses: no cache keeps them either.
    private = [
        a for a in answers if a.path.startswith((*TOKEN_ROUTES, "/admin", "/api/v1/newsletters"))
    ]
    assert len(private) > 6
    for answer in private:
        assert answer.response.headers["Cache-Control"] == "no-store", answer.path
    # A proof-of-work challenge is good for one signup: a cache must not hand it to two.
    single_use = [a for a in answers if a.path.endswith("challenge")]
    assert single_use
    for answer in single_use:
        assert "no-store" in answer.response.headers["Cache-Control"], answer.path
    for answer in answers:
        if answer not in private and answer not in single_use:
            assert "no-store" not in answer.response.headers.get("Cache-Control", "")


def test_the_widget_script_and_its_stylesheet_stay_loadable_and_cacheable_by_other_sites(
    answers,
):
    [script] = [a.response for a in answers if a.rule.rule == "/n/<slug>/embed.js"]
    [stylesheet] = [a.response for a in answers if a.path == "/static/widget.css"]
    assert script.headers["Cache-Control"] == "public, max-age=300"
    assert script.mimetype == "text/javascript" and stylesheet.mimetype == "text/css"
    for response in (script, stylesheet):
        assert response.status_code == 200
        assert "Cross-Origin-Resource-Policy" not in response.headers


class InlineCode(HTMLParser):
    """Collect what a page carries inline: style and on* attributes, <script>s and <style>s."""

    def __init__(self):
        super().__init__()
        self.refused: list[str] = []
        self.nonces: list[str | None] = []
        self.stylesheets: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.refused.append(f"<{tag} {name}={value!r}>")
            if name in ("href", "src", "action") and (value or "").startswith("javascript:"):
                self.refused.append(f"<{tag} {name}={value!r}>")
        if tag == "style" or (tag == "script" and "src" not in attributes):
            self.nonces.append(attributes.get("nonce"))
        if tag == "link" and attributes.get("rel") == "stylesheet":
            self.stylesheets.append(attributes["href"])


def test_no_page_carries_inline_code_or_styles_that_its_policy_refuses(answers):
    pages = [a for a in answers if a.response.mimetype == "text/html"]
    assert len(pages) > 20
    pages = [a for a in pages if not 300 <= a.response.status_code < 400]  # bare redirects
    for answer in pages:
        found = InlineCode()
        found.feed(answer.response.get_data(as_text=True))
        assert found.refused == [], answer.path
        nonces = policy(answer.response)["script-src"][1:]
        assert all(f"'nonce-{n}'" in nonces for n in found.nonces), answer.path
        assert found.stylesheets and all(s.startswith("/static/") for s in found.stylesheets)


def test_an_inline_script_with_the_requests_nonce_is_allowed_and_each_request_gets_its_own(
    app, client
):
    app.add_url_rule(
        "/inline-script",
        "inline_script",
        lambda: render_template_string('<script nonce="{{ csp_nonce() }}">go()</script>'),
    )
    seen = set()
    for _ in range(2):
        response = client.get("/inline-script")
        nonce = response.get_data(as_text=True).split('"')[1]
        assert f"'nonce-{nonce}'" in policy(response)["script-src"]
        assert f"'nonce-{nonce}'" in policy(response)["style-src"]
        seen.add(nonce)
    assert len(seen) == 2 and all(len(n) >= 22 for n in seen)
    assert policy(client.get("/healthz"))["script-src"] == ["'self'"]


def test_the_favicon_is_served_where_browsers_look_and_where_pages_point(client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.mimetype in ("image/vnd.microsoft.icon", "image/x-icon")
    assert icon.data[:4] == b"\x00\x00\x01\x00"  # an ICO holding one image
    icon.close()
    page = client.get("/").get_data(as_text=True)
    assert 'rel="icon" href="/static/favicon.svg"' in page
    svg = client.get("/static/favicon.svg")
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    svg.close()
