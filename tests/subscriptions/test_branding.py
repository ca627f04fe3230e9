"""A newsletter's branding: its accent colour, logo and site on its pages, checked when saved."""

import re

import pytest
import sqlalchemy as sa

from newsletters import catalogue, colors, db, editors
from newsletters.models import Newsletter
from tests.admin.conftest import PASSWORD, login
from tests.test_catalogue import settings_form

BRANDED = {
    "accent_color": "#FF6600",
    "logo_url": "https://www.example.com/logo.svg",
    "site_url": "https://www.example.com/",
}


@pytest.fixture
def admin(app, client, newsletter):
    """Return the test client, logged in as an admin, with the newsletter "briefing"."""
    with app.app_context():
        editors.create(db.session(), "boss@example.com", PASSWORD, is_admin=True, newsletters=[])
        db.session().commit()
    login(client, "boss@example.com")
    return client


def saved(session) -> Newsletter:
    session.expire_all()
    return session.scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))


def test_an_editor_sets_the_accent_logo_and_site_on_the_settings_page(admin, session):
    answer = admin.post("/admin/n/briefing/settings", data=settings_form(admin) | BRANDED)
    assert answer.status_code == 303
    newsletter = saved(session)
    assert (newsletter.accent_color, newsletter.logo_url, newsletter.site_url) == (
        "#ff6600",
        "https://www.example.com/logo.svg",
        "https://www.example.com/",
    )
    # Emptied, each is gone again.
    emptied = {"accent_color": "", "logo_url": "", "site_url": ""}
    admin.post("/admin/n/briefing/settings", data=settings_form(admin) | emptied)
    newsletter = saved(session)
    assert (newsletter.accent_color, newsletter.logo_url, newsletter.site_url) == (None,) * 3


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("accent_color", "orange", "Accent colour: give it as #rrggbb"),
        ("accent_color", "#ff66001", "Accent colour: give it as #rrggbb"),
        ("accent_color", "#ff6600;}body{", "Accent colour: give it as #rrggbb"),
        ("logo_url", "http://www.example.com/logo.png", "Logo: give the https:// address"),
        ("logo_url", "javascript:alert(1)", "Logo: give the https:// address"),
        ("logo_url", "https://user:pw@example.com/l.png", "Logo: give the https:// address"),
        ("logo_url", "https://example.com/a b.png", "Logo: give the https:// address"),
        ("site_url", "ftp://example.com/", "Site: give your site&#39;s address"),
        ("site_url", "www.example.com", "Site: give your site&#39;s address"),
        ("site_url", "https://example.com:port/", "Site: give your site&#39;s address"),
    ],
)
def test_a_bad_brand_setting_is_refused_with_its_rule_and_nothing_changes(
    admin, session, field, value, message
):
    answer = admin.post(
        "/admin/n/briefing/settings",
        data=settings_form(admin) | BRANDED | {field: value, "name": "Renamed"},
    )
    assert answer.status_code == 400
    assert message in answer.get_data(as_text=True)
    newsletter = saved(session)
    assert newsletter.name == "Morning Briefing"
    assert (newsletter.accent_color, newsletter.logo_url, newsletter.site_url) == (None,) * 3


def test_a_short_colour_is_written_out_and_plain_http_is_taken_on_this_machine(app):
    with app.app_context():
        assert catalogue.check_accent_color(" #F60 ") == "#ff6600"
        assert catalogue.check_logo_url("http://127.0.0.1:5000/static/logo.svg")
        assert catalogue.check_site_url("http://news.example.org/")  # a site may be http


def brand(session, **fields):
    newsletter = saved(session)
    for name, value in fields.items():
        setattr(newsletter, name, value)
    session.commit()


def test_the_hosted_and_thank_you_pages_wear_the_accent_and_logo(client, newsletter, session):
    brand(session, **{k: v.lower() for k, v in BRANDED.items()})
    for path in ("/n/briefing", "/n/briefing/thanks"):
        page = client.get(path).get_data(as_text=True)
        style = re.search(r'<style nonce="[^"]+">(.*?)</style>', page).group(1)
        # Dark text reads on orange; white would not (WCAG AA: 4.5:1).
        assert "--accent: #ff6600; --on-accent: #1d1d1f;" in style
        assert '<img src="https://www.example.com/logo.svg" alt="Morning Briefing"' in page
        assert '<a href="https://www.example.com/"><img' in page


def test_an_unbranded_newsletter_keeps_the_products_look(client, newsletter):
    page = client.get("/n/briefing").get_data(as_text=True)
    assert "<style nonce" not in page and "<img" not in page


def test_the_thank_you_page_says_whose_mail_to_look_for_and_leads_back_to_the_site(
    app, client, newsletter, session
):
    app.config["MAIL_FROM"] = "News Desk <news@example.org>"
    page = client.get("/n/briefing/thanks").get_data(as_text=True)
    assert (
        "Check your inbox for a mail from <strong>Morning Briefing &lt;news@example.org&gt;"
        "</strong> and press the button in it." in page
    )
    assert "Back to" not in page  # no site set: no way back to offer
    brand(session, site_url="https://www.example.com/news")
    page = client.get("/n/briefing/thanks").get_data(as_text=True)
    assert '<a class="button" href="https://www.example.com/news">Back to example.com</a>' in page


def test_after_several_the_thank_you_page_leads_back_only_to_the_one_site_they_name(
    app, client, newsletter, session
):
    session.add(Newsletter(slug="weekly", name="Weekly", site_url="https://www.example.com/"))
    session.commit()
    brand(session, site_url="https://other.example.net/")
    page = client.get("/thanks?n=briefing&n=weekly").get_data(as_text=True)
    assert "Back to" not in page  # two sites: which one would be "back"?
    assert "<strong>newsletters@localhost</strong>" in page
    brand(session, site_url="https://www.example.com/")
    page = client.get("/thanks?n=briefing&n=weekly").get_data(as_text=True)
    assert "Back to example.com" in page


def test_the_text_on_an_accent_always_reads_at_wcag_aa():
    for accent in ("#0b57d0", "#ff6600", "#ffff00", "#000000", "#777777", "#1a7f37"):
        assert colors.contrast(colors.text_on(accent), accent) >= 4.5
    assert colors.text_on("#ffff00") == colors.DARK_TEXT
    assert colors.text_on("#0b57d0") == colors.LIGHT_TEXT
    assert colors.link_on_white("#ffcc00") == colors.DARK_TEXT  # too light for a link
    assert round(colors.contrast("#ffffff", "#000000"), 1) == 21.0


def test_a_colour_written_past_the_checks_cannot_put_css_into_a_page(app, client, newsletter):
    with app.app_context():
        db.session().execute(
            sa.update(Newsletter).values(accent_color="red;}*{")
        )  # not through the catalogue
        db.session().commit()
    page = client.get("/n/briefing").get_data(as_text=True)
    assert "red;}" not in page and f"--accent: {colors.DEFAULT_ACCENT}" in page


def test_the_cli_sets_the_branding_by_the_same_rules(runner, newsletter, session):
    result = runner.invoke(args=["newsletter", "brand", "briefing", "--accent", "#F60"])
    assert result.exit_code == 0, result.output
    assert "accent_color\t#ff6600" in result.output
    refused = runner.invoke(args=["newsletter", "brand", "briefing", "--logo", "http://x.org/l"])
    assert refused.exit_code == 2
    assert "Logo: give the https:// address" in refused.output
    newsletter = saved(session)
    assert (newsletter.accent_color, newsletter.logo_url) == ("#ff6600", None)
