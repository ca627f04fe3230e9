"""The preference centre behind an unsubscribe link: one address's newsletters, and only its."""

import urllib.parse

import sqlalchemy as sa

from newsletters import exports
from newsletters.models import ConsentEvent, Newsletter, Status, Subscription


def preference_path(app, session, slug):
    newsletter = session.scalar(sa.select(Newsletter).where(Newsletter.slug == slug))
    with app.app_context():
        [row] = [
            r
            for r in exports.records(session, newsletter, "all")
            if r["email"] == "reader@example.com"
        ]
    return urllib.parse.urlsplit(row["unsubscribe_url"]).path.replace(
        "/unsubscribe/", "/preferences/"
    )


def arrange(client, session):
    session.add_all([Newsletter(slug=s, name=s.title()) for s in ("alpha", "beta", "gamma")])
    session.commit()
    for slug in ("alpha", "beta", "gamma"):
        client.post(f"/n/{slug}/subscribe", data={"email": "reader@example.com"})
    client.post("/n/alpha/subscribe", data={"email": "someone.else@example.com"})


def newsletter_ids(session):
    return dict(session.execute(sa.select(Newsletter.slug, Newsletter.id)).all())


def statuses(session, email="reader@example.com"):
    rows = session.execute(
        sa.select(Newsletter.slug, Subscription.status)
        .join(Subscription.newsletter)
        .join(Subscription.subscriber)
        .where(sa.literal_column("subscriber.email") == email)
    )
    return dict(rows.all())


def test_the_preference_page_lists_every_newsletter_of_the_address_and_changes_nothing(
    app, client, session
):
    arrange(client, session)
    page = client.get(preference_path(app, session, "beta"))
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    text = page.get_data(as_text=True)
    assert all(name in text for name in ("Alpha", "Beta", "Gamma"))
    assert "someone.else" not in text
    assert set(statuses(session).values()) == {Status.PENDING}


def test_unticked_newsletters_are_unsubscribed_and_recorded(app, client, session):
    arrange(client, session)
    path = preference_path(app, session, "beta")
    ids = newsletter_ids(session)
    response = client.post(path, data={"action": "save", "newsletter": [str(ids["beta"])]})
    assert response.status_code == 200
    assert "Saved." in response.get_data(as_text=True)
    assert statuses(session) == {
        "alpha": Status.UNSUBSCRIBED,
        "beta": Status.CONFIRMED,  # left ticked: the link proves the inbox
        "gamma": Status.UNSUBSCRIBED,
    }
    assert statuses(session, "someone.else@example.com") == {"alpha": Status.PENDING}
    sources = session.scalars(
        sa.select(ConsentEvent.source).where(ConsentEvent.status == Status.UNSUBSCRIBED)
    ).all()
    assert sources == ["preferences", "preferences"]


def test_a_bad_preference_link_answers_404_and_offers_a_new_link(client, newsletter):
    page = client.get("/preferences/not-a-real-token")
    assert page.status_code == 404
    assert 'href="/preferences"' in page.get_data(as_text=True)
    assert client.post("/preferences/not-a-real-token", data={}).status_code == 404


def test_the_unsubscribe_page_links_to_the_preference_centre(app, client, session):
    arrange(client, session)
    path = preference_path(app, session, "beta")
    page = client.get(path.replace("/preferences/", "/unsubscribe/")).get_data(as_text=True)
    assert f'href="{path}"' in page
