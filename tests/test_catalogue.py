"""Newsletter management has one home and one set of rules, for the admin form and the CLI."""

import pytest
import sqlalchemy as sa

from newsletters import catalogue, db, editors
from newsletters.models import TEXT_KEYS, Newsletter, NewsletterText, SlugAlias, Status
from tests.admin.conftest import PASSWORD, csrf_token, login

BAD_SLUGS = ["Bad Slug!", "Briefing", "-briefing", "brief/ing", "briefing\n", "b" * 65, ""]
# A line break or another control character, in each one-line text a newsletter has.
ONE_LINE_TEXTS = ["name", "sender_name", "confirm_subject", "button", "success_title"]
BREAKS = ["Morning\r\nBcc: victim@example.com", "Morning\nBriefing", "Morning\x00", "A\u2028B"]


def newsletters_in(session) -> list[tuple[str, str]]:
    session.expire_all()
    return session.execute(sa.select(Newsletter.slug, Newsletter.name)).all()


@pytest.fixture
def admin(app, client):
    """Return the test client, logged in as an admin."""
    with app.app_context():
        editors.create(db.session(), "boss@example.com", PASSWORD, is_admin=True, newsletters=[])
        db.session().commit()
    login(client, "boss@example.com")
    return client


def new_newsletter_form(client, **fields) -> dict:
    token = csrf_token(client, "/admin/newsletters/new")
    return {"slug": "news", "name": "News", "is_public": "y", "csrf_token": token} | fields


def settings_form(client, slug="briefing", **fields) -> dict:
    token = csrf_token(client, f"/admin/n/{slug}/settings")
    return {"slug": slug, "name": "Morning Briefing", "csrf_token": token} | fields


@pytest.mark.parametrize("slug", BAD_SLUGS)
def test_the_admin_form_and_the_cli_refuse_the_same_slugs_with_the_same_rule(
    admin, runner, session, slug
):
    page = admin.post("/admin/newsletters/new", data=new_newsletter_form(admin, slug=slug))
    assert page.status_code == 400
    assert "Use lower-case letters, digits and hyphens" in page.get_data(as_text=True)
    result = runner.invoke(args=["newsletter", "create", "--name", "News", "--", slug])
    assert result.exit_code != 0
    assert "Use lower-case letters, digits and hyphens" in result.output
    assert newsletters_in(session) == []


@pytest.mark.parametrize("name", ["", "   ", "n" * 201])
def test_the_admin_form_and_the_cli_refuse_the_same_names(admin, runner, session, name):
    page = admin.post("/admin/newsletters/new", data=new_newsletter_form(admin, name=name))
    assert page.status_code == 400
    assert "Name: give 1 to 200 characters." in page.get_data(as_text=True)
    result = runner.invoke(args=["newsletter", "create", "news", "--name", name])
    assert result.exit_code != 0
    assert "Name: give 1 to 200 characters." in result.output
    assert newsletters_in(session) == []


@pytest.mark.parametrize("field", ONE_LINE_TEXTS)
def test_a_line_break_in_a_one_line_setting_is_refused_with_a_400_and_a_field_message(
    admin, newsletter, session, field
):
    label = catalogue.TEXTS[field].label
    for text in BREAKS:
        response = admin.post(
            "/admin/n/briefing/settings", data=settings_form(admin) | {field: text}
        )
        assert response.status_code == 400, text
        page = response.get_data(as_text=True)
        assert f"{label} may not contain line breaks or control characters." in page
    session.expire_all()
    saved = session.scalar(sa.select(Newsletter))
    assert saved.name == "Morning Briefing"
    kept = saved.own_text(field) if field in TEXT_KEYS else getattr(saved, field)
    assert kept in (None, "Morning Briefing")


def test_the_cli_refuses_a_line_break_in_a_name_and_creates_nothing(runner, session):
    result = runner.invoke(
        args=["newsletter", "create", "news", "--name", "News\r\nBcc: victim@example.com"]
    )
    assert result.exit_code == 2
    assert "Invalid value for --name: Name may not contain line breaks" in result.output
    assert "Traceback" not in result.output
    assert newsletters_in(session) == []


def test_texts_of_several_lines_keep_their_line_breaks_but_no_other_control_characters(
    admin, newsletter, session
):
    body = "Welcome!\r\n\r\nOne click left."
    saved = admin.post(
        "/admin/n/briefing/settings", data=settings_form(admin) | {"confirm_body": body}
    )
    assert saved.status_code == 303
    session.expire_all()
    assert session.scalar(
        sa.select(NewsletterText.value).where(NewsletterText.key == "confirm_body")
    ) == ("Welcome!\n\nOne click left.")
    refused = admin.post(
        "/admin/n/briefing/settings", data=settings_form(admin) | {"description": "a\x00b"}
    )
    assert refused.status_code == 400
    assert "Description may not contain control characters." in refused.get_data(as_text=True)


def test_the_service_flushes_but_leaves_the_commit_to_its_caller(app, session):
    with app.app_context():
        created = catalogue.create(db.session(), "news", " News ", sender_name="")
        assert created.id is not None  # flushed
        assert (created.name, created.own_text("sender_name"), created.description) == (
            "News",
            None,
            "",
        )
        db.session().rollback()
    assert newsletters_in(session) == []


def test_a_slug_change_keeps_the_old_slug_as_an_alias_and_changing_back_drops_it(app, session):
    with app.app_context():
        s = db.session()
        news = catalogue.create(s, "news", "News")
        catalogue.update(s, news, slug="daily")
        catalogue.update(s, news, slug="morning")
        assert catalogue.aliases(s, news) == ["news", "daily"]
        assert catalogue.lookup(s, "daily") is news and catalogue.find(s, "daily") is None
        catalogue.update(s, news, slug="news")
        assert catalogue.aliases(s, news) == ["daily", "morning"]
        s.commit()
    assert session.scalars(sa.select(SlugAlias.slug).order_by(SlugAlias.slug)).all() == [
        "daily",
        "morning",
    ]


def test_a_slug_may_not_be_another_newsletters_slug_or_old_slug(app, runner, session):
    with app.app_context():
        s = db.session()
        news = catalogue.create(s, "news", "News")
        catalogue.create(s, "other", "Other")
        catalogue.update(s, news, slug="daily")
        s.commit()
        other = catalogue.find(s, "other")
        for taken in ("daily", "news"):
            with pytest.raises(catalogue.CatalogueError) as refused:
                catalogue.update(s, other, slug=taken)
            assert refused.value.field == "slug"
            assert f"The slug {taken!r} is taken" in refused.value.message
        s.rollback()
    result = runner.invoke(args=["newsletter", "create", "news", "--name", "Again"])
    assert result.exit_code != 0 and "The slug 'news' is taken" in result.output
    assert sorted(newsletters_in(session)) == [("daily", "News"), ("other", "Other")]


def test_counts_by_status_include_zeros_for_every_newsletter_asked(app, client, newsletter):
    assert client.post("/n/briefing/subscribe", data={"email": "a@example.com"}).status_code == 303
    with app.app_context():
        s = db.session()
        other = catalogue.create(s, "other", "Other")
        briefing = catalogue.find(s, "briefing")
        counts = catalogue.counts(s, [briefing.id, other.id])
    assert counts[briefing.id] == {Status.PENDING: 1, Status.CONFIRMED: 0, Status.UNSUBSCRIBED: 0}
    assert counts[other.id] == dict.fromkeys(Status, 0)


def test_the_cli_sets_origins_through_the_same_rules(runner, newsletter, session):
    bad = runner.invoke(args=["newsletter", "origins", "briefing", "not-a-url"])
    assert bad.exit_code == 2 and "is not an origin" in bad.output
    good = runner.invoke(args=["newsletter", "origins", "briefing", "https://A.example/"])
    assert good.exit_code == 0, good.output
    assert session.scalar(sa.select(Newsletter.allowed_origins)) == "https://a.example"
