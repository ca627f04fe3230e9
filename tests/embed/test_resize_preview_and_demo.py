"""The embeds' height, colours and previews, and the demo article of ``make run``.

What a browser does with them (the frame fitting its form, the copy button, signups on the
demo page) is tests/browser/test_embeds_resize_and_demo.py; here, what the server hands out.
"""

import html
import json
import re
import threading
import urllib.error
import urllib.request

import pytest
import sqlalchemy as sa

from newsletters import cli, colors, db, demo, editors
from newsletters.embed.snippets import FRAME_HEIGHT, KINDS, snippets
from newsletters.models import Newsletter
from tests.admin.conftest import PASSWORD, login


def snippets_of(app, slug="briefing"):
    with app.app_context():
        newsletter = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == slug))
        return snippets(newsletter)


def brand(session, slug="briefing", accent="#8a1538"):
    session.execute(
        sa.update(Newsletter).where(Newsletter.slug == slug).values(accent_color=accent)
    )
    session.commit()


def test_iframe_snippet_has_the_forms_height_and_the_optional_resize_script(app, newsletter):
    snippet = snippets_of(app)["iframe"]
    assert f'height="{FRAME_HEIGHT}"' in snippet
    # The script last, async: the frame shows at its own height before the script arrives.
    assert snippet.splitlines()[-1] == (
        '<script src="https://news.example.org/embed/resize.js" async></script>'
    )


def test_plain_form_snippet_brings_the_stylesheet_that_hides_its_label(app, client, newsletter):
    lines = snippets_of(app)["form"].splitlines()
    assert lines[0] == '<link rel="stylesheet" href="https://news.example.org/static/widget.css">'
    assert lines[1].startswith('<form class="signup-form"')
    response = client.get("/static/widget.css")
    stylesheet = response.get_data(as_text=True)
    response.close()
    hidden = stylesheet.split(":where(.signup-form .visually-hidden)")[1].split("}")[0]
    assert "clip: rect(0 0 0 0)" in hidden and "position: absolute" in hidden


def test_resize_script_is_served_cacheable_for_a_day(client):
    response = client.get("/embed/resize.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert response.cache_control.public and response.cache_control.max_age == 86400
    assert not response.cache_control.no_cache
    script = response.get_data(as_text=True)
    # It acts only on messages of its own shape, from the frame whose src has that origin.
    assert '"newsletters:height"' in script and "event.origin" in script
    response.close()


def test_frame_page_posts_its_height_and_wears_the_accent(client, newsletter, session):
    page = client.get("/n/briefing/embed").get_data(as_text=True)
    assert '<script src="/static/frame.js" defer></script>' in page
    assert f"--accent: {colors.DEFAULT_ACCENT}; --on-accent: #ffffff" in page
    brand(session, accent="#ffd500")  # a light accent: dark text reads on it
    page = client.get("/n/briefing/embed").get_data(as_text=True)
    assert "--accent: #ffd500; --on-accent: #1d1d1f" in page
    frame_js = client.get("/static/frame.js")
    assert '"newsletters:height"' in frame_js.get_data(as_text=True)
    frame_js.close()


def test_frame_after_a_signup_shows_only_the_answer(client, newsletter):
    page = client.post("/n/briefing/embed", data={"email": "reader@example.com"})
    text = page.get_data(as_text=True)
    assert "Successfully subscribed" in text
    assert "<form" not in text and "indicates required" not in text


def widget_settings(client, slug="briefing") -> dict:
    script = client.get(f"/n/{slug}/embed.js").get_data(as_text=True)
    return json.loads(re.search(r"var settings = (\{.*?\});\n", script).group(1))


def test_widget_carries_the_accent_and_the_text_that_reads_on_it(client, newsletter, session):
    assert widget_settings(client)["accent"] == {
        "accent": colors.DEFAULT_ACCENT,
        "text": "#ffffff",
        "link": colors.DEFAULT_ACCENT,
        "light": "#ffffff",
        "dark": "#1d1d1f",
    }
    brand(session, accent="#ffd500")
    accent = widget_settings(client)["accent"]
    assert (accent["accent"], accent["text"]) == ("#ffd500", "#1d1d1f")
    # Yellow is no link colour on white (1.4:1): the quiet button's text stays dark.
    assert accent["link"] == "#1d1d1f"


@pytest.mark.parametrize("kind", KINDS)
def test_preview_runs_the_snippet_as_the_editors_copy_it(app, client, newsletter, kind):
    response = client.get(f"/n/briefing/embed/preview/{kind}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert snippets_of(app)[kind] in page
    assert '<script src="/static/frame.js" defer></script>' in page
    policy = response.headers["Content-Security-Policy"]
    assert "worker-src 'self' blob:" in policy and "frame-ancestors 'self'" in policy


def test_preview_of_an_unknown_embed_or_newsletter_is_a_404_that_says_why(client, newsletter):
    response = client.get("/n/briefing/embed/preview/popup")
    assert response.status_code == 404
    assert "try form, iframe or widget" in response.get_data(as_text=True)
    assert client.get("/n/nothing/embed/preview/widget").status_code == 404


def test_settings_page_previews_each_embed_with_its_snippet_and_a_copy_button(
    app, client, newsletter
):
    with app.app_context():
        editors.create(db.session(), "ed@example.com", PASSWORD, is_admin=True)
        db.session().commit()
    login(client, "ed@example.com")
    page = client.get("/admin/n/briefing/settings").get_data(as_text=True)
    shown = snippets_of(app)
    for kind in KINDS:
        assert f'src="/n/briefing/embed/preview/{kind}"' in page
        code = re.search(rf'id="snippet-{kind}"[^>]*><code>(.*?)</code></pre>', page, re.S)
        assert html.unescape(code.group(1)) == shown[kind]
        assert f'data-copy="snippet-{kind}"' in page
    assert '<script src="/embed/resize.js" async></script>' in page
    assert '<script src="/static/embeds.js" defer></script>' in page


def test_demo_newsletters_allow_the_demo_page_and_follow_its_port(app, session):
    with app.app_context():
        demo.add_newsletters(db.session(), 5001)
        db.session().commit()
    rows = {n.slug: n for n in session.scalars(sa.select(Newsletter))}
    assert set(rows) == set(demo.SLUGS)
    for newsletter in rows.values():
        assert newsletter.origins() == ["http://127.0.0.1:5001", "http://localhost:5001"]
        assert newsletter.site_url == "http://127.0.0.1:5001/"
    assert rows["demo-uk"].language == "uk" and rows["demo-explainer"].accent_color == "#8a1538"
    # An editor's own site stays; a newsletter that allows any site is left so.
    session.execute(
        sa.update(Newsletter)
        .where(Newsletter.slug == "demo")
        .values(site_url="https://www.example.com/")
    )
    session.execute(
        sa.update(Newsletter).where(Newsletter.slug == "demo-uk").values(allowed_origins="")
    )
    session.commit()
    with app.app_context():
        demo.allow(db.session(), 8001)
        db.session().commit()
    session.expire_all()
    rows = {n.slug: n for n in session.scalars(sa.select(Newsletter))}
    assert rows["demo-explainer"].origins() == [
        "http://127.0.0.1:5001",
        "http://localhost:5001",
        "http://127.0.0.1:8001",
        "http://localhost:8001",
    ]
    assert rows["demo-explainer"].site_url == "http://127.0.0.1:8001/"
    assert rows["demo"].site_url == "https://www.example.com/"
    assert rows["demo-uk"].origins() == []


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_demo_page_is_served_on_its_own_port_with_the_three_embeds(app, session):
    server = demo.server(app, 0)
    with app.app_context():
        demo.add_newsletters(db.session(), server.server_port)
        db.session().commit()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        status, page = fetch(f"http://127.0.0.1:{server.server_port}/")
        missing, _ = fetch(f"http://127.0.0.1:{server.server_port}/favicon.ico")
    finally:
        server.shutdown()
        thread.join()
    assert status == 200 and missing == 404
    assert "DEMO" in page and "another site than the newsletters app" in page
    assert snippets_of(app, "demo")["iframe"] in page
    assert snippets_of(app, "demo-uk")["form"] in page
    assert snippets_of(app, "demo-explainer")["widget"] in page


def test_make_run_adds_the_demo_newsletters_and_prints_the_demo_pages_address(
    app, session, monkeypatch
):
    served = []
    monkeypatch.setattr(cli, "run_simple", lambda host, port, app, **kw: served.append(port))
    monkeypatch.setattr(cli.worker, "start_in_thread", lambda app, report: None)
    monkeypatch.setattr(demo, "serve", lambda app, port: served.append(port) or f"<{port}>")
    result = app.test_cli_runner().invoke(args=["dev", "--port", "8000"])
    assert result.exit_code == 0, result.output
    assert served == [8001, 8000]
    assert "demo: a publisher's article with the forms embedded: <8001>" in result.output
    origins = {n.slug: n.origins() for n in session.scalars(sa.select(Newsletter))}
    assert origins == dict.fromkeys(demo.SLUGS, demo.origins(8001))
