"""Forms on other sites: iframe page, widget script, cross-origin posts, CORS, return URLs."""

import pytest
import sqlalchemy as sa

from newsletters.models import Newsletter, OutboxMessage, Subscription

PUBLISHER = "https://publisher.example"


def restrict(session, slug, origins):
    session.execute(
        sa.update(Newsletter).where(Newsletter.slug == slug).values(allowed_origins=origins)
    )
    session.commit()


def count(session, model):
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def test_iframe_page_is_the_compact_form_frameable_anywhere_by_default(client, newsletter):
    response = client.get("/n/briefing/embed")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == "frame-ancestors *"
    page = response.get_data(as_text=True)
    assert 'placeholder="Enter your email to subscribe"' in page
    assert "* indicates required" in page
    assert 'name="website"' in page  # the honeypot


def test_iframe_page_may_only_be_framed_by_allowed_origins(client, newsletter, session):
    restrict(session, "briefing", f"{PUBLISHER} https://other.example")
    csp = client.get("/n/briefing/embed").headers["Content-Security-Policy"]
    assert csp == f"frame-ancestors 'self' {PUBLISHER} https://other.example"


def test_other_pages_cannot_be_framed(client, newsletter):
    for path in ("/", "/n/briefing", "/n/briefing/thanks"):
        assert client.get(path).headers["Content-Security-Policy"] == "frame-ancestors 'self'"


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
    assert str(subscription.source) == "embed"


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
    session.execute(sa.update(Newsletter).values(placeholder="</script><script>alert(1)</script>"))
    session.commit()
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
    assert "Access-Control-Allow-Origin" not in refused.headers


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
