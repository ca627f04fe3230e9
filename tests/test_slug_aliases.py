"""A changed slug keeps working: pages move (308), forms embedded with it still take signups."""

import pytest
import sqlalchemy as sa

from newsletters import db, editors
from newsletters.models import Newsletter, OutboxMessage, SlugAlias, Subscriber, Subscription
from tests.admin.conftest import PASSWORD, csrf_token, login

PUBLISHER = "https://publisher.example"


@pytest.fixture
def admin(app, client):
    """Return the test client, logged in as an admin."""
    with app.app_context():
        editors.create(db.session(), "boss@example.com", PASSWORD, is_admin=True, newsletters=[])
        db.session().commit()
    login(client, "boss@example.com")
    return client


def change_slug(client, old, new, **fields):
    form = {"slug": new, "name": "Morning Briefing", "is_public": "y"} | fields
    form["csrf_token"] = csrf_token(client, f"/admin/n/{old}/settings")
    return client.post(f"/admin/n/{old}/settings", data=form)


@pytest.fixture
def renamed(admin, newsletter):
    """Rename 'briefing' to 'morning' through the settings page, as an editor would."""
    response = change_slug(admin, "briefing", "morning")
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/n/morning/settings"
    return "morning"


def subscriptions_of(session) -> list[tuple[str, str]]:
    session.expire_all()
    return session.execute(
        sa.select(Subscriber.email, Newsletter.slug)
        .join(Subscription.subscriber)
        .join(Subscription.newsletter)
        .order_by(Subscriber.email, Newsletter.slug)
    ).all()


@pytest.mark.parametrize(
    ("path", "moved_to"),
    [
        ("/n/briefing", "/n/morning"),
        ("/n/briefing/embed", "/n/morning/embed"),
        ("/n/briefing/embed.js", "/n/morning/embed.js"),
        ("/n/briefing/thanks", "/n/morning/thanks"),
        ("/n/briefing/embed?lang=uk&x=%C3%A9", "/n/morning/embed?lang=uk&x=%C3%A9"),
    ],
)
def test_a_get_of_an_old_slug_moves_for_good_to_the_same_page_under_the_current_one(
    client, renamed, path, moved_to
):
    response = client.get(path)
    assert response.status_code == 308
    assert response.headers["Location"] == moved_to
    assert client.get(moved_to).status_code == 200


def test_a_form_embedded_with_the_old_slug_still_takes_signups_without_a_redirect(
    client, renamed, session
):
    posted = client.post("/n/briefing/subscribe", data={"email": "form@example.com"})
    assert posted.status_code == 303
    as_json = client.post(
        "/n/briefing/subscribe",
        json={"email": "widget@example.com"},
        headers={"Origin": PUBLISHER},
    )
    assert as_json.status_code == 200
    assert as_json.get_json()["title"] == "Successfully subscribed"
    assert as_json.headers["Access-Control-Allow-Origin"] == "*"
    framed = client.post("/n/briefing/embed", data={"email": "frame@example.com"})
    assert framed.status_code == 200
    assert subscriptions_of(session) == [
        ("form@example.com", "morning"),
        ("frame@example.com", "morning"),
        ("widget@example.com", "morning"),
    ]
    assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 3


def test_an_old_slug_keeps_the_newsletters_own_embedding_rules(client, renamed, session):
    session.execute(sa.update(Newsletter).values(allowed_origins=PUBLISHER))
    session.commit()
    refused = client.post(
        "/n/briefing/subscribe",
        data={"email": "a@example.com"},
        headers={"Origin": "https://elsewhere.example"},
    )
    assert refused.status_code == 403
    allowed = client.post(
        "/n/briefing/subscribe",
        json={"email": "a@example.com"},
        headers={"Origin": PUBLISHER},
    )
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == PUBLISHER


def test_one_form_for_several_newsletters_takes_an_old_slug_too(client, renamed, session):
    session.add(Newsletter(slug="other", name="Other News"))
    session.commit()
    response = client.post(
        "/subscribe",
        data={"email": "a@example.com", "newsletter": ["briefing", "other", "morning"]},
    )
    assert response.status_code == 303
    # The old and the current slug of one newsletter are one choice: one subscription.
    assert subscriptions_of(session) == [("a@example.com", "morning"), ("a@example.com", "other")]


def test_the_settings_page_lists_the_old_slugs_that_keep_working(admin, renamed):
    assert change_slug(admin, "morning", "daily").status_code == 303
    page = admin.get("/admin/n/daily/settings").get_data(as_text=True)
    assert "Old slugs keep working: briefing, morning." in page


def test_renaming_back_to_an_old_slug_makes_it_current_again_and_keeps_the_other(
    admin, client, renamed, session
):
    assert change_slug(admin, "morning", "briefing").status_code == 303
    assert session.scalars(sa.select(SlugAlias.slug)).all() == ["morning"]
    assert client.get("/n/briefing").status_code == 200
    moved = client.get("/n/morning")
    assert (moved.status_code, moved.headers["Location"]) == (308, "/n/briefing")


def test_a_slug_may_not_take_another_newsletters_old_slug(admin, renamed, runner, session):
    session.add(Newsletter(slug="other", name="Other News"))
    session.commit()
    refused = change_slug(admin, "other", "briefing", name="Other News")
    assert refused.status_code == 400
    assert "The slug &#39;briefing&#39; is taken" in refused.get_data(as_text=True)
    created = runner.invoke(args=["newsletter", "create", "briefing", "--name", "Again"])
    assert created.exit_code != 0 and "The slug 'briefing' is taken" in created.output
    session.expire_all()
    assert sorted(session.scalars(sa.select(Newsletter.slug))) == ["morning", "other"]


def test_a_slug_nobody_ever_had_is_still_unknown(client, renamed):
    for path in ("/n/nobody", "/n/nobody/embed.js"):
        assert client.get(path).status_code == 404
    assert client.post("/n/nobody/subscribe", data={"email": "a@example.com"}).status_code == 404
