"""Bearer keys: who may call, which newsletters each key reaches, what a read-only key may do."""

import sqlalchemy as sa

from newsletters import apikeys, db, editors
from newsletters.models import ApiKey, Editor, Newsletter, SignupRequest, Subscription

from .conftest import bearer, count, sign_up


def test_a_request_without_a_key_gets_401_with_a_bearer_challenge(client, newsletter):
    response = client.get("/api/v1/newsletters")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["error"] == "unauthorized"


def test_an_unknown_key_or_another_scheme_gets_401(client, key):
    for header in ("Bearer nlk_not-a-key", "Basic " + key, "Bearer ", key):
        response = client.get("/api/v1/newsletters", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.get_json()["error"] == "unauthorized"


def test_a_revoked_key_is_refused_from_its_next_request(app, client, key, session):
    assert client.get("/api/v1/newsletters", headers=bearer(key)).status_code == 200
    with app.app_context():
        api_key = db.session().scalar(sa.select(ApiKey))
        apikeys.revoke(db.session(), api_key)
        db.session().commit()
    response = client.post(
        "/api/v1/newsletters/briefing/subscriptions",
        headers=bearer(key),
        json={"email": "a@example.org"},
    )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert count(session, SignupRequest) == count(session, Subscription) == 0


def test_a_disabled_editors_key_is_refused(app, client, key, make_key):
    admin = make_key("admin@example.org", is_admin=True)
    with app.app_context():
        session = db.session()
        editor = session.scalar(sa.select(Editor).where(Editor.email == "editor@example.org"))
        by = session.scalar(sa.select(Editor).where(Editor.email == "admin@example.org"))
        editors.disable(session, editor, by=by)
        session.commit()
    assert client.get("/api/v1/newsletters", headers=bearer(key)).status_code == 401
    assert client.get("/api/v1/newsletters", headers=bearer(admin)).status_code == 200


def test_keys_reach_their_editors_newsletters_only(client, session, newsletter, make_key):
    session.add(Newsletter(slug="other", name="Other News"))
    session.commit()
    mine = make_key("one@example.org", "briefing")
    theirs = make_key("two@example.org", "other")
    admin = make_key("admin@example.org", is_admin=True)

    def slugs(key):
        response = client.get("/api/v1/newsletters", headers=bearer(key))
        return [n["slug"] for n in response.get_json()["newsletters"]]

    assert slugs(mine) == ["briefing"]
    assert slugs(theirs) == ["other"]
    assert sorted(slugs(admin)) == ["briefing", "other"]

    sign_up(client, mine, "reader@example.org")
    for path in (
        "/api/v1/newsletters/briefing/subscriptions",
        "/api/v1/newsletters/briefing/subscriptions/reader@example.org",
        "/api/v1/newsletters/briefing/changes",
        "/api/v1/newsletters/briefing/export",
    ):
        response = client.get(path, headers=bearer(theirs))
        assert response.status_code == 403, path
        assert response.get_json()["error"] == "forbidden"
        assert client.get(path, headers=bearer(admin)).status_code == 200, path
    refused = client.post(
        "/api/v1/newsletters/briefing/subscriptions",
        headers=bearer(theirs),
        json={"email": "x@example.org"},
    )
    assert refused.status_code == 403
    gone = client.delete(
        "/api/v1/newsletters/briefing/subscriptions/reader@example.org", headers=bearer(theirs)
    )
    assert gone.status_code == 403
    assert [s.status for s in session.scalars(sa.select(Subscription))] == ["pending"]


def test_an_unknown_newsletter_is_404(client, key):
    response = client.get("/api/v1/newsletters/nope/subscriptions", headers=bearer(key))
    assert response.status_code == 404
    assert response.get_json()["error"] == "newsletter_not_found"


def test_a_read_only_key_reads_and_may_not_write(client, session, key, make_key):
    reader = make_key("editor@example.org", read_only=True, name="read only")
    sign_up(client, key, "reader@example.org")
    assert (
        client.get("/api/v1/newsletters/briefing/subscriptions", headers=bearer(reader)).status_code
        == 200
    )
    assert (
        client.get("/api/v1/newsletters/briefing/changes", headers=bearer(reader)).status_code
        == 200
    )
    writes = [
        client.post(
            "/api/v1/newsletters/briefing/subscriptions",
            headers=bearer(reader),
            json={"email": "new@example.org"},
        ),
        client.delete(
            "/api/v1/newsletters/briefing/subscriptions/reader@example.org", headers=bearer(reader)
        ),
        client.post(
            "/api/v1/newsletters/briefing/subscriptions/reader@example.org/unsubscribe",
            headers=bearer(reader),
        ),
    ]
    for response in writes:
        assert response.status_code == 403
        assert response.get_json()["error"] == "read_only_key"
    assert count(session, Subscription) == 1
    assert session.scalar(sa.select(Subscription.status)) == "pending"


def test_the_openapi_document_and_its_page_need_no_key(client):
    document = client.get("/api/v1/openapi.json")
    assert document.status_code == 200
    spec = document.get_json()
    assert spec["openapi"] == "3.1.0"
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key.",
    }
    assert "/api/v1/newsletters/{slug}/changes" in spec["paths"]
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "POST /api/v1/newsletters/{slug}/subscriptions" in text
    assert "<script" not in text


def test_every_api_endpoint_spends_the_keys_budget(app):
    from newsletters import limits

    endpoints = [e for e in app.view_functions if e.startswith("api.")]
    assert endpoints
    for endpoint in endpoints:
        view = app.view_functions[endpoint]
        assert getattr(view, limits.MARK, None) == limits.API, endpoint


def test_an_unknown_path_or_method_under_the_api_answers_in_the_apis_shape(client, key):
    unknown = client.get("/api/v1/no-such-thing", headers=bearer(key))
    assert unknown.status_code == 404
    assert unknown.get_json()["error"] == "not_found"
    assert unknown.headers["Cache-Control"] == "no-store"
    wrong = client.put("/api/v1/newsletters/briefing/subscriptions", headers=bearer(key))
    assert wrong.status_code == 405
    assert wrong.get_json()["error"] == "method_not_allowed"
    assert "GET" in wrong.headers["Allow"]
