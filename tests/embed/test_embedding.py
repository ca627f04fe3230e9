"""Forms on other sites: iframe page, widget script, cross-origin posts, CORS, return URLs."""

from html.parser import HTMLParser

import pytest
import sqlalchemy as sa

from newsletters import db
from newsletters.embed.snippets import snippets
from newsletters.models import Newsletter, OutboxMessage, Subscription
from tests.conftest import set_texts

PUBLISHER = "https://publisher.example"


def restrict(session, slug, origins):
    session.execute(
        sa.update(Newsletter).where(Newsletter.slug == slug).values(allowed_origins=origins)
    )
    session.commit()


def count(session, model):
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def frame_ancestors(response) -> str:
    """Return the frame-ancestors directive of the response's Content-Security-Policy."""
    directives = response.headers["Content-Security-Policy"].split("; ")
    [directive] = [d for d in directives if d.startswith("frame-ancestors ")]
    return directive


def test_iframe_page_is_the_compact_form_frameable_anywhere_by_default(client, newsletter):
    response = client.get("/n/briefing/embed")
    assert response.status_code == 200
    assert frame_ancestors(response) == "frame-ancestors *"
    page = response.get_data(as_text=True)
    assert 'placeholder="Enter your email to subscribe"' in page
    assert "* indicates required" in page
    assert 'name="website"' in page  # the honeypot


def test_iframe_page_may_only_be_framed_by_allowed_origins(client, newsletter, session):
    restrict(session, "briefing", f"{PUBLISHER} https://other.example")
    csp = frame_ancestors(client.get("/n/briefing/embed"))
    assert csp == f"frame-ancestors 'self' {PUBLISHER} https://other.example"


def test_other_pages_cannot_be_framed(client, newsletter):
    for path in ("/", "/n/briefing", "/n/briefing/thanks"):
        assert frame_ancestors(client.get(path)) == "frame-ancestors 'self'"


def test_iframe_signup_answers_inline_with_success_or_error(client, newsletter, session):
    bad = client.post("/n/briefing/embed", data={"email": "nope"})
    assert bad.status_code == 400
    assert "Please, enter correct email address" in bad.get_data(as_text=True)
    good = client.post("/n/briefing/embed", data={"email": "reader@example.com"})
    assert good.status_code == 200
    page = good.get_data(as_text=True)
    assert "Successfully subscribed" in page
    assert "We&#39;ve sent you a confirmation email." in page
    [subscription] = session.scalars(sa.select(Subscription)).all()
    assert str(subscription.source) == "iframe"


def test_widget_script_carries_the_texts_and_posts_to_base_url(client, newsletter):
    response = client.get("/n/briefing/embed.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    script = response.get_data(as_text=True)
    assert "document.currentScript" in script
    assert '"action": "https://news.example.org/n/briefing/subscribe"' in script
    assert "Please, enter correct email address" in script
    assert "aria-live" in script


def test_widget_script_escapes_editor_texts(client, newsletter, session):
    set_texts(session, placeholder="</script><script>alert(1)</script>")
    script = client.get("/n/briefing/embed.js").get_data(as_text=True)
    assert "</script>" not in script


def test_plain_cross_origin_form_lands_on_the_thank_you_page(client, newsletter):
    response = client.post(
        "/n/briefing/subscribe",
        data={"email": "reader@example.com", "return_url": f"{PUBLISHER}/article?x=1"},
        headers={"Origin": PUBLISHER},
    )
    # No allowed origins: any page may post, but nobody is sent back anywhere.
    assert response.status_code == 303
    assert response.headers["Location"] == "/n/briefing/thanks"


def test_return_url_on_an_allowed_origin_brings_the_reader_back(client, newsletter, session):
    restrict(session, "briefing", PUBLISHER)
    response = client.post(
        "/n/briefing/subscribe",
        data={"email": "reader@example.com", "return_url": f"{PUBLISHER}/article?x=1"},
        headers={"Origin": PUBLISHER},
    )
    assert response.headers["Location"] == f"{PUBLISHER}/article?x=1"


@pytest.mark.parametrize(
    "return_url",
    [
        "https://evil.example/",
        "//evil.example/",
        "javascript:alert(1)",
        "https://publisher.example.evil.example/",
        "https://publisher.example@evil.example/",
        "http://publisher.example/",
    ],
)
def test_return_url_is_never_an_open_redirect(client, newsletter, session, return_url):
    restrict(session, "briefing", PUBLISHER)
    response = client.post(
        "/n/briefing/subscribe", data={"email": "reader@example.com", "return_url": return_url}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/n/briefing/thanks"


def test_signup_from_a_page_that_is_not_allowed_is_refused(client, newsletter, session):
    restrict(session, "briefing", PUBLISHER)
    response = client.post(
        "/n/briefing/subscribe",
        data={"email": "reader@example.com"},
        headers={"Origin": "https://evil.example", "Accept": "application/json"},
    )
    assert response.status_code == 403
    assert "may not be used on https://evil.example" in response.json["message"]
    assert count(session, Subscription) == 0


def test_cors_allows_any_page_without_credentials_when_unrestricted(client, newsletter):
    response = client.post(
        "/n/briefing/subscribe",
        data={"email": "reader@example.com"},
        headers={"Origin": PUBLISHER, "Accept": "application/json"},
    )
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_cors_names_the_exact_allowed_origin_and_never_reflects_others(client, newsletter, session):
    restrict(session, "briefing", PUBLISHER)
    allowed = client.post(
        "/n/briefing/subscribe",
        data={"email": "reader@example.com"},
        headers={"Origin": PUBLISHER, "Accept": "application/json"},
    )
    assert allowed.headers["Access-Control-Allow-Origin"] == PUBLISHER
    assert "Origin" in allowed.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    refused = client.post(
        "/n/briefing/subscribe",
        data={"email": "reader@example.com"},
        headers={"Origin": "https://evil.example", "Accept": "application/json"},
    )
    assert refused.status_code == 403
    # Only the refusal is readable there, so that the widget can say why.
    assert refused.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in refused.headers


def test_cors_preflight_for_json_signups(client, newsletter):
    response = client.options(
        "/n/briefing/subscribe",
        headers={
            "Origin": PUBLISHER,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]


def test_errors_of_a_cross_origin_signup_are_readable_by_the_widget(client, newsletter):
    response = client.post(
        "/n/briefing/subscribe",
        data={"email": "nope"},
        headers={"Origin": PUBLISHER, "Accept": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.json["message"] == "Please, enter correct email address"


def test_filled_honeypot_gets_the_normal_answer_and_stores_nothing(client, newsletter, session):
    for post in (
        lambda: client.post(
            "/n/briefing/subscribe",
            data={"email": "bot@example.com", "website": "http://spam.example"},
        ),
        lambda: client.post(
            "/n/briefing/subscribe",
            json={"email": "bot@example.com", "website": "http://spam.example"},
        ),
        lambda: client.post("/n/briefing/embed", data={"email": "bot@example.com", "website": "x"}),
        lambda: client.post(
            "/subscribe",
            data={"email": "bot@example.com", "newsletter": "briefing", "website": "x"},
        ),
    ):
        response = post()
        assert response.status_code in (200, 303)
    assert count(session, Subscription) == 0
    assert count(session, OutboxMessage) == 0


class Elements(HTMLParser):
    """Collect each start tag with its attributes, and the text right after it."""

    def __init__(self, markup: str):
        super().__init__()
        self.tags: list[tuple[str, dict, list[str]]] = []
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs), []))

    def handle_data(self, data):
        if self.tags and data.strip():
            self.tags[-1][2].append(data.strip())

    def named(self, tag: str) -> list[dict]:
        return [attrs for name, attrs, _ in self.tags if name == tag]


def test_iframe_snippet_is_valid_html_that_a_strict_host_policy_does_not_refuse(
    app, client, newsletter
):
    with app.app_context():
        newsletter_row = db.session().scalar(sa.select(Newsletter))
        snippet = snippets(newsletter_row)["iframe"]
    found = Elements(snippet)
    [frame] = found.named("iframe")
    assert frame["src"] == "https://news.example.org/n/briefing/embed"
    assert frame["title"] == "Morning Briefing signup"
    assert frame["loading"] == "lazy"
    # HTML wants a number of CSS pixels in width and height: no "100%".
    assert frame["width"].isdigit() and frame["height"].isdigit()
    # Nothing inline a host page's CSP refuses (style-src without 'unsafe-inline'), nothing
    # obsolete: the borderless look comes from the product's stylesheet.
    assert not {"style", "frameborder"} & frame.keys()
    [link] = found.named("link")
    assert link["rel"] == "stylesheet"
    assert link["href"] == "https://news.example.org/static/widget.css"
    stylesheet = client.get("/static/widget.css")
    assert stylesheet.status_code == 200 and stylesheet.mimetype == "text/css"
    assert "border: 0" in stylesheet.get_data(as_text=True).split(".nl-frame")[1]
    stylesheet.close()


@pytest.mark.parametrize("path", ["/", "/n/briefing", "/n/briefing/embed"])
def test_every_signup_form_marks_its_email_field_with_the_asterisk_its_note_speaks_of(
    client, newsletter, session, path
):
    session.add(Newsletter(slug="weekly", name="Weekly"))  # the index offers both, in one form
    session.commit()
    page = client.get(path).get_data(as_text=True)
    assert "* indicates required" in page
    tags = Elements(page).tags
    emails = [i for i, (tag, attrs, _) in enumerate(tags) if attrs.get("type") == "email"]
    assert len(emails) == 1
    for i in emails:
        assert "required" in tags[i][1]
        tag, attrs, text = tags[i + 1]  # the mark stands right after the field
        assert (tag, attrs.get("aria-hidden"), text) == ("span", "true", ["*"])


@pytest.mark.parametrize("path", ["/", "/n/briefing", "/n/briefing/embed"])
def test_honeypot_is_hidden_by_its_attribute_not_by_a_stylesheet(client, newsletter, path):
    tags = Elements(client.get(path).get_data(as_text=True)).tags
    traps = [i for i, (_, attrs, _) in enumerate(tags) if attrs.get("name") == "website"]
    assert traps
    for i in traps:
        assert tags[i][1]["tabindex"] == "-1" and tags[i][1]["autocomplete"] == "off"
        wrapper = next(attrs for tag, attrs, _ in reversed(tags[:i]) if tag == "div")
        assert "hidden" in wrapper and wrapper["aria-hidden"] == "true"


@pytest.mark.settings(RATELIMIT_ENABLED=True, SIGNUP_RATE_LIMIT="2 per minute")
def test_a_rate_limited_iframe_signup_is_answered_inside_the_frame(client, newsletter, session):
    session.execute(sa.update(Newsletter).values(allowed_origins="https://publisher.example"))
    session.commit()
    for n in range(2):
        client.post("/n/briefing/embed", data={"email": f"r{n}@example.com"})

    refused = client.post("/n/briefing/embed", data={"email": "third@example.com"})

    assert refused.status_code == 429
    # The publisher's page may frame the refusal, so the reader reads it (not "refused to
    # connect").
    assert frame_ancestors(refused) == "frame-ancestors 'self' https://publisher.example"
