"""The preference centre: one address's newsletters behind its unsubscribe link."""

import urllib.parse

import sqlalchemy as sa

from newsletters import exports
from newsletters.models import ConsentEvent, Newsletter, Status, Subscription


def preference_path(app, session, slug):
    newsletter = session.scalar(sa.select(Newsletter).where(Newsletter.slug == slug))
    with app.app_context():
        [row] = list(exports.records(session, newsletter, "all"))
    return urllib.parse.urlsplit(row["unsubscribe_url"]).path.replace(
        "/unsubscribe/", "/preferences/"
    )


def arrange(client, session):
    session.add_all([Newsletter(slug=s, name=s.title()) for s in ("alpha", "beta", "gamma")])
    session.commit()
    for slug in ("alpha", "beta", "gamma"):
        client.post(f"/n/{slug}/subscribe", data={"email": "reader@example.com"})
    client.post("/n/alpha/subscribe", data={"email": "someone.else@example.com"})


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
    text = page.get_data(as_text=True)
    assert all(name in text for name in ("Alpha", "Beta", "Gamma"))
    assert "someone.else" not in text
    assert set(statuses(session).values()) == {Status.PENDING}


def test_unticked_newsletters_are_unsubscribed_and_recorded(app, client, session):
    arrange(client, session)
    path = preference_path(app, session, "beta")
    ids = dict(
        session.execute(
            sa.select(Newsletter.slug, Subscription.id).join(Subscription.newsletter)
        ).all()
    )
    response = client.post(path, data={"keep": [str(ids["beta"])]})
    assert response.status_code == 200
    assert statuses(session) == {
        "alpha": Status.UNSUBSCRIBED,
        "beta": Status.PENDING,
        "gamma": Status.UNSUBSCRIBED,
    }
    assert statuses(session, "someone.else@example.com") == {"alpha": Status.PENDING}
    sources = session.scalars(
        sa.select(ConsentEvent.source).where(ConsentEvent.status == Status.UNSUBSCRIBED)
    ).all()
    assert sources == ["preferences", "preferences"]


def test_a_bad_preference_link_answers_404(client, newsletter):
    assert client.get("/preferences/not-a-real-token").status_code == 404
    assert client.post("/preferences/not-a-real-token", data={}).status_code == 404
