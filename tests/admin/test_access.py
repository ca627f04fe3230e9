"""Who may enter the editors' area and what each may see: login, roles, CSRF, sessions."""

import logging
import re

import pytest
import sqlalchemy as sa

from newsletters.models import ConsentEvent, ExportRecord, Newsletter, Subscription

from .conftest import PASSWORD, csrf_token, login


def admin_rules(app):
    return [r for r in app.url_map.iter_rules() if r.rule.startswith("/admin")]


def url_for_rule(rule, slug, subscription_id, editor_id=1):
    values = {
        "slug": slug,
        "subscription_id": subscription_id,
        "editor_id": editor_id,
        "key_id": 1,
        "webhook_id": 1,
        "delivery_id": 1,
        "kind": "confirm",
        "job_id": 1,
        "action": "unsubscribe",
    }
    return re.sub(
        r"<(?:[^>]*:)?(\w+)>", lambda placeholder: str(values[placeholder.group(1)]), rule.rule
    )


@pytest.fixture
def subscribed(client, newsletter, session):
    client.post("/n/briefing/subscribe", data={"email": "secret.reader@example.com"})
    return session.scalar(sa.select(Subscription.id))


def test_every_admin_page_but_login_needs_a_login(app, client, newsletter, subscribed):
    for rule in admin_rules(app):
        if rule.endpoint == "admin.login":
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(url_for_rule(rule, "briefing", subscribed), method=method)
            # A POST without a session fails CSRF first (400); a GET is sent to log in.
            assert response.status_code in (302, 400), (rule.rule, method)
            if response.status_code == 302:
                assert response.headers["Location"].startswith("/admin/login")


def test_an_editor_gets_403_or_404_on_every_route_of_another_newsletter(
    app, client, newsletter, other_newsletter, make_editor, subscribed, session
):
    login(client, make_editor("editor@example.com", "other"))
    token = csrf_token(client, "/admin/account/password")
    before = session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))
    tried = 0
    for rule in admin_rules(app):
        if "<slug>" not in rule.rule:
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(
                url_for_rule(rule, "briefing", subscribed),
                method=method,
                data={"csrf_token": token} if method == "POST" else None,
                query_string={"status": "all", "format": "csv"} if method == "GET" else None,
            )
            tried += 1
            assert response.status_code in (403, 404), (rule.rule, method, response.status_code)
            assert b"secret.reader" not in response.data
    assert tried >= 4
    # Nothing changed on the other newsletter.
    assert session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) == before
    assert session.scalar(sa.select(sa.func.count()).select_from(Subscription)) == 1


def test_an_editor_opening_another_newsletter_is_refused_and_logged(
    client, newsletter, other_newsletter, make_editor, caplog
):
    login(client, make_editor("editor@example.com", "other"))

    with caplog.at_level(logging.WARNING, logger="newsletters.admin"):
        response = client.get("/admin/n/briefing/subscribers")

    assert response.status_code == 403
    [record] = [r for r in caplog.records if r.name == "newsletters.admin"]
    assert record.levelno == logging.WARNING
    assert (record.editor, record.endpoint, record.newsletter) == (
        "editor@example.com",
        "admin.subscribers",
        "briefing",
    )
    assert isinstance(record.editor_id, int)
    message = record.getMessage()
    assert "editor@example.com" in message and "'/admin/n/briefing/subscribers'" in message
    assert "briefing" in message and "You are not an editor of this newsletter." in message


def test_every_403_of_the_editors_area_is_logged(
    app, client, newsletter, other_newsletter, make_editor, subscribed, caplog
):
    login(client, make_editor("editor@example.com", "other"))
    token = csrf_token(client, "/admin/account/password")
    refused = 0
    caplog.set_level(logging.WARNING, logger="newsletters.admin")
    for rule in admin_rules(app):
        if rule.endpoint in ("admin.login", "admin.logout"):
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            caplog.clear()
            response = client.open(
                url_for_rule(rule, "briefing", subscribed),
                method=method,
                data={"csrf_token": token} if method == "POST" else None,
            )
            denials = [r for r in caplog.records if r.name == "newsletters.admin"]
            if response.status_code != 403:
                assert denials == [], (method, rule.rule)
                continue
            refused += 1
            [record] = denials
            assert (record.editor, record.endpoint) == ("editor@example.com", rule.endpoint)
            assert record.newsletter == ("briefing" if "<slug>" in rule.rule else None)
    # Every newsletter route of 'briefing' and every admin-only page was tried.
    assert refused >= 10


def test_an_editor_sees_only_their_newsletters_and_no_admin_pages(
    client, newsletter, other_newsletter, make_editor
):
    login(client, make_editor("editor@example.com", "other"))
    page = client.get("/admin/").get_data(as_text=True)
    assert "Other News" in page and "Morning Briefing" not in page
    for path in ("/admin/editors", "/admin/exports", "/admin/newsletters/new"):
        assert client.get(path).status_code == 403


def test_an_admin_sees_every_newsletter(client, newsletter, other_newsletter, make_editor):
    login(client, make_editor("boss@example.com", is_admin=True))
    page = client.get("/admin/").get_data(as_text=True)
    assert "Other News" in page and "Morning Briefing" in page
    assert client.get("/admin/editors").status_code == 200


def test_wrong_password_and_unknown_address_get_the_same_answer(client, make_editor):
    make_editor("editor@example.com")
    answers = []
    for email, password in (
        ("editor@example.com", "wrong password!"),
        ("nobody@example.com", PASSWORD),
    ):
        response = client.post(
            "/admin/login",
            data={"email": email, "password": password, "csrf_token": csrf_token(client)},
        )
        answers.append(
            (response.status_code, "Wrong email or password." in response.get_data(as_text=True))
        )
    assert answers == [(400, True), (400, True)]


def test_a_post_without_the_csrf_token_is_refused(client, make_editor, newsletter, session):
    make_editor("boss@example.com", is_admin=True)
    refused = client.post("/admin/login", data={"email": "boss@example.com", "password": PASSWORD})
    assert refused.status_code == 400
    assert "security token" in refused.get_data(as_text=True)
    login(client, "boss@example.com")
    changed = client.post(
        "/admin/n/briefing/settings", data={"slug": "briefing", "name": "Hijacked"}
    )
    assert changed.status_code == 400
    assert session.scalar(sa.select(Newsletter.name)) == "Morning Briefing"


def test_admin_pages_refuse_every_frame_and_cookies_are_httponly_and_lax(client, make_editor):
    make_editor("boss@example.com", is_admin=True)
    csp = client.get("/admin/login").headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp.split("; ")
    response = login(client, "boss@example.com")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # development: plain http


@pytest.mark.settings(ENV="production", SESSION_COOKIE_SECURE=True)
def test_session_cookie_is_secure_in_production(client, make_editor):
    make_editor("boss@example.com", is_admin=True)
    assert "Secure" in login(client, "boss@example.com").headers["Set-Cookie"]


@pytest.mark.settings(RATELIMIT_ENABLED=True)
def test_the_login_is_rate_limited(client, make_editor):
    make_editor("editor@example.com")
    codes = []
    for _ in range(12):
        codes.append(
            client.post(
                "/admin/login",
                data={
                    "email": "editor@example.com",
                    "password": "guessing wrong",
                    "csrf_token": csrf_token(client),
                },
            ).status_code
        )
    assert codes[:10] == [400] * 10
    assert codes[10:] == [429, 429]


def test_changing_the_password_ends_the_other_sessions(app, make_editor):
    make_editor("editor@example.com")
    laptop, phone = app.test_client(), app.test_client()
    login(laptop, "editor@example.com")
    login(phone, "editor@example.com")
    new_password = "a brand new passphrase"
    response = laptop.post(
        "/admin/account/password",
        data={
            "current": PASSWORD,
            "new": new_password,
            "csrf_token": csrf_token(laptop, "/admin/account/password"),
        },
    )
    assert response.status_code == 303
    assert laptop.get("/admin/").status_code == 200
    assert phone.get("/admin/").status_code == 302
    login(phone, "editor@example.com", new_password)


def test_a_login_only_redirects_to_pages_of_this_site(client, make_editor):
    make_editor("editor@example.com")
    for target, expected in (
        ("/admin/exports", "/admin/exports"),
        ("https://evil.example/", "/admin/"),
        ("//evil.example/", "/admin/"),
    ):
        client.post("/admin/logout", data={"csrf_token": csrf_token(client, "/admin/login")})
        response = client.post(
            f"/admin/login?next={target}",
            data={
                "email": "editor@example.com",
                "password": PASSWORD,
                "csrf_token": csrf_token(client),
            },
        )
        assert response.headers["Location"] == expected


def test_export_from_the_browser_streams_spec_columns_and_is_logged(
    client, newsletter, make_editor, session
):
    client.post("/n/briefing/subscribe", data={"email": "reader@example.com", "name": "=cmd()"})
    session.execute(sa.update(Subscription).values(status="confirmed"))
    session.commit()
    login(client, make_editor("editor@example.com", "briefing"))
    response = client.get("/admin/n/briefing/export?status=confirmed&format=csv")
    assert response.status_code == 200
    assert response.is_streamed
    assert (
        response.headers["Content-Disposition"] == 'attachment; filename="briefing-confirmed.csv"'
    )
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0] == (
        "email,name,status,optin_at,optin_ip,confirmed_at,confirm_ip,unsubscribed_at,"
        "source,unsubscribe_url,form_text_version,source_origin,confirmation_evidence,"
        "address_flags,language,page,utm_source,utm_medium,utm_campaign,verification"
    )
    assert lines[1].startswith("reader@example.com,'=cmd(),confirmed,")
    [record] = session.scalars(sa.select(ExportRecord)).all()
    assert (record.via, record.status, record.format, record.rows) == (
        "admin",
        "confirmed",
        "csv",
        1,
    )
    assert record.editor.email == "editor@example.com"


def test_export_refuses_an_unknown_status_or_format(client, newsletter, make_editor, session):
    login(client, make_editor("editor@example.com", "briefing"))
    bad = client.get("/admin/n/briefing/export?status=everyone")
    assert bad.status_code == 400 and "status must be one of" in bad.get_data(as_text=True)
    assert client.get("/admin/n/briefing/export?format=xlsx").status_code == 400
    assert session.scalar(sa.select(sa.func.count()).select_from(ExportRecord)) == 0


def test_admins_see_the_export_log(client, newsletter, make_editor):
    login(client, make_editor("boss@example.com", is_admin=True))
    client.get("/admin/n/briefing/export?format=jsonl").get_data()
    page = client.get("/admin/exports").get_data(as_text=True)
    assert "boss@example.com" in page and "jsonl" in page


def test_an_admin_adds_an_editor_who_can_then_log_in(client, newsletter, make_editor, session):
    login(client, make_editor("boss@example.com", is_admin=True))
    newsletter_id = session.scalar(sa.select(Newsletter.id))
    response = client.post(
        "/admin/editors",
        data={
            "email": "new.editor@example.com",
            "password": "long enough password",
            "newsletters": [str(newsletter_id)],
            "csrf_token": csrf_token(client, "/admin/editors"),
        },
    )
    assert response.status_code == 303
    other = client.application.test_client()
    login(other, "new.editor@example.com", "long enough password")
    assert "Morning Briefing" in other.get("/admin/").get_data(as_text=True)


def test_newsletter_settings_save_texts_and_refuse_bad_origins(
    client, newsletter, make_editor, session
):
    login(client, make_editor("editor@example.com", "briefing"))
    page = client.get("/admin/n/briefing/settings").get_data(as_text=True)
    assert "/n/briefing/embed.js" in page and "&lt;iframe" in page
    token = csrf_token(client, "/admin/n/briefing/settings")
    form = {"slug": "briefing", "name": "Morning Briefing", "csrf_token": token, "is_public": "y"}
    bad = client.post("/admin/n/briefing/settings", data=form | {"allowed_origins": "not a url"})
    assert bad.status_code == 400
    assert "is not an origin" in bad.get_data(as_text=True)
    good = client.post(
        "/admin/n/briefing/settings",
        data=form
        | {"allowed_origins": "https://Publisher.example/\nhttps://b.example", "button": "Join"},
    )
    assert good.status_code == 303
    saved = session.scalar(sa.select(Newsletter))
    assert saved.allowed_origins == "https://publisher.example https://b.example"
    assert saved.own_text("button") == "Join" and saved.own_text("placeholder") is None
    assert re.search(r">Join</button>", client.get("/n/briefing").get_data(as_text=True))
