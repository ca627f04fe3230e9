"""One form for several newsletters: one confirmation mail confirms them all."""

import re

import sqlalchemy as sa

from newsletters.mail import worker
from newsletters.models import Newsletter, OutboxMessage, Status, Subscription


def add_newsletters(session, *slugs):
    for slug in slugs:
        session.add(Newsletter(slug=slug, name=slug.title()))
    session.commit()


def test_index_offers_checkboxes_for_several_newsletters(client, session):
    add_newsletters(session, "alpha", "beta")
    page = client.get("/").get_data(as_text=True)
    assert 'action="/subscribe"' in page
    assert 'name="newsletter" value="alpha"' in page
    assert 'name="newsletter" value="beta"' in page


def test_one_signup_to_several_newsletters_sends_one_mail_that_confirms_all(
    app, client, session, smtp_server
):
    add_newsletters(session, "alpha", "beta", "gamma")
    response = client.post(
        "/subscribe",
        data={"email": "reader@example.com", "newsletter": ["alpha", "gamma"]},
    )
    assert response.status_code == 303
    assert client.get(response.headers["Location"]).status_code == 200
    assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 1

    app.config["MAIL_URL"] = smtp_server.url
    with app.app_context():
        worker.run(once=True)
    [mail] = smtp_server.messages
    text = mail.get_body(("plain",)).get_content()
    assert "Alpha" in text and "Gamma" in text and "Beta" not in text
    path = re.search(r"https://news\.example\.org(/confirm/[\w-]+)", text).group(1)
    assert client.post(path).status_code == 200

    statuses = dict(
        session.execute(
            sa.select(Newsletter.slug, Subscription.status).join(Subscription.newsletter)
        ).all()
    )
    assert statuses == {"alpha": Status.CONFIRMED, "gamma": Status.CONFIRMED}


def test_several_newsletters_as_json(client, session):
    add_newsletters(session, "alpha", "beta")
    response = client.post(
        "/subscribe", json={"email": "reader@example.com", "newsletter": ["alpha", "beta"]}
    )
    assert response.status_code == 200
    assert response.json["title"] == "Successfully subscribed"
    assert session.scalar(sa.select(sa.func.count()).select_from(Subscription)) == 2


def test_several_newsletters_refuses_none_unknown_and_bad_addresses(client, session):
    add_newsletters(session, "alpha")
    none = client.post("/subscribe", data={"email": "reader@example.com"})
    assert none.status_code == 400
    assert "Choose at least one newsletter" in none.get_data(as_text=True)
    unknown = client.post("/subscribe", data={"email": "reader@example.com", "newsletter": "zzz"})
    assert unknown.status_code == 404
    bad = client.post("/subscribe", data={"email": "nope", "newsletter": "alpha"})
    assert bad.status_code == 400
    assert "Please, enter correct email address" in bad.get_data(as_text=True)
    assert session.scalar(sa.select(sa.func.count()).select_from(Subscription)) == 0


def test_one_address_gets_a_bounded_number_of_mails_per_day_across_newsletters(
    client, session, app
):
    slugs = [f"n{i}" for i in range(8)]
    add_newsletters(session, *slugs)
    for slug in slugs:
        client.post(f"/n/{slug}/subscribe", data={"email": "victim@example.com"})
    mails = session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage))
    assert mails == app.config["CONFIRM_MAILS_PER_DAY"] == 5
    # Every signup is still recorded as pending: only the mails are capped.
    assert session.scalar(sa.select(sa.func.count()).select_from(Subscription)) == 8


def test_a_bad_address_shows_the_several_form_again_with_the_ticks_and_the_address(client, session):
    add_newsletters(session, "alpha", "beta", "gamma")
    bad = client.post(
        "/subscribe", data={"email": "reader@example", "newsletter": ["alpha", "gamma"]}
    )
    assert bad.status_code == 400
    page = bad.get_data(as_text=True)
    assert 'value="alpha" checked>' in page and 'value="gamma" checked>' in page
    assert 'value="beta">' in page
    assert 'value="reader@example"' in page
    assert "Please, enter correct email address" in page


def test_none_ticked_shows_the_several_form_again_with_a_message(client, session):
    add_newsletters(session, "alpha", "beta")
    none = client.post("/subscribe", data={"email": "reader@example.com"})
    assert none.status_code == 400
    page = none.get_data(as_text=True)
    assert 'id="title-several"' in page  # the form, not a bare error page
    assert 'value="reader@example.com"' in page
    assert "Choose at least one newsletter." in page
    assert session.scalar(sa.select(sa.func.count()).select_from(Subscription)) == 0


def test_thanks_for_several_newsletters_speaks_of_them_in_the_plural(client, session):
    add_newsletters(session, "alpha", "beta")
    done = client.post(
        "/subscribe",
        data={"email": "reader@example.com", "newsletter": ["alpha", "beta"]},
        follow_redirects=True,
    )
    page = done.get_data(as_text=True)
    assert "signing up for these newsletters" in page and "this newsletter" not in page
    as_json = client.post(
        "/subscribe",
        json={"email": "other@example.com", "newsletters": ["alpha", "beta"]},
    )
    assert "these newsletters" in as_json.json["message"]
    one = client.post(
        "/subscribe",
        data={"email": "third@example.com", "newsletter": "alpha"},
        follow_redirects=True,
    )
    assert "signing up for this newsletter" in one.get_data(as_text=True)
