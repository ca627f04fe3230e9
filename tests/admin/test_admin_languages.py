"""The editors' area speaks the editor's language: their choice in its menu, else the browser's.

Until the Ukrainian catalogue is written the texts stay English: these tests read the page's
``lang`` and the session, not Ukrainian words.
"""

import re

import pytest

from .conftest import PASSWORD, csrf_token, login

HTML_LANG = re.compile(r'<html lang="([^"]*)">')


def page_language(response) -> str:
    return HTML_LANG.search(response.get_data(as_text=True)).group(1)


def chosen(client) -> str | None:
    with client.session_transaction() as session:
        return session.get("language")


def choose(client, language, next_page="/admin/", token=None):
    """Post the language menu's form as a browser does: the button's value, ``next``, token."""
    data = {"language": language, "next": next_page}
    data["csrf_token"] = token if token is not None else csrf_token(client)
    return client.post("/admin/language", data=data)


@pytest.fixture
def editor(client, make_editor, newsletter):
    login(client, make_editor("ed@example.com", "briefing"))
    return client


def test_every_page_of_the_area_carries_the_menu(editor):
    page = editor.get("/admin/n/briefing/webhooks").get_data(as_text=True)

    menu = page[page.index('action="/admin/language"') :]
    menu = menu[: menu.index("</form>")]
    assert 'name="csrf_token"' in menu
    assert 'name="next" value="/admin/n/briefing/webhooks"' in menu
    assert 'name="language" value="en" lang="en" aria-current="true">English</button>' in menu
    assert 'name="language" value="uk" lang="uk">Українська</button>' in menu


def test_an_editor_who_chooses_ukrainian_gets_the_next_page_in_it(editor):
    assert page_language(editor.get("/admin/")) == "en"

    response = choose(editor, "uk", next_page="/admin/n/briefing/")

    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/n/briefing/"
    assert chosen(editor) == "uk"
    page = editor.get("/admin/n/briefing/")
    assert page.status_code == 200 and page_language(page) == "uk"
    assert 'value="uk" lang="uk" aria-current="true"' in page.get_data(as_text=True)
    # Remembered on every later page, whatever the browser asks for.
    for path in ("/admin/", "/admin/api-keys", "/admin/account/password"):
        later = editor.get(path, headers={"Accept-Language": "en-GB,en"})
        assert page_language(later) == "uk", path


def test_the_choice_outranks_the_browser_and_survives_logging_out(editor):
    choose(editor, "en")
    assert page_language(editor.get("/admin/", headers={"Accept-Language": "uk"})) == "en"

    choose(editor, "uk")
    editor.post("/admin/logout", data={"csrf_token": csrf_token(editor)})

    assert chosen(editor) == "uk"
    assert page_language(editor.get("/admin/login")) == "uk"


def test_the_login_page_has_the_menu_before_anyone_logs_in(client, make_editor, newsletter):
    make_editor("ed@example.com", "briefing")
    page = client.get("/admin/login?next=%2Fadmin%2Fapi-keys").get_data(as_text=True)
    assert 'name="next" value="/admin/login?next=%2Fadmin%2Fapi-keys"' in page

    response = choose(client, "uk", next_page="/admin/login?next=%2Fadmin%2Fapi-keys")

    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/login?next=%2Fadmin%2Fapi-keys"
    assert page_language(client.get("/admin/login")) == "uk"
    assert "/admin/language" in client.get("/admin/login").get_data(as_text=True)
    # Logging in keeps it.
    login(client, "ed@example.com")
    assert page_language(client.get("/admin/")) == "uk"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [("uk", "uk"), ("uk-UA,uk;q=0.9,en;q=0.5", "uk"), ("en-US,en", "en"), ("de", "en"), ("", "en")],
)
def test_without_a_choice_the_browsers_first_language_counts(client, accept, expected):
    response = client.get("/admin/login", headers={"Accept-Language": accept} if accept else {})

    assert page_language(response) == expected
    assert chosen(client) is None


def test_the_browsers_ukrainian_reaches_the_pages_of_a_logged_in_editor(editor):
    page = editor.get("/admin/n/briefing/", headers={"Accept-Language": "uk"})

    assert page_language(page) == "uk"


@pytest.mark.parametrize("language", ["de", "", "UK", "uk-UA", "en;uk", "x" * 200])
def test_an_unknown_language_is_refused_and_changes_nothing(editor, language):
    choose(editor, "uk")

    response = choose(editor, language)

    assert response.status_code == 400
    # Said in the language chosen before: Ukrainian, naming the codes to choose from.
    assert '<html lang="uk">' in response.get_data(as_text=True)
    assert "en, uk" in response.get_data(as_text=True)
    assert chosen(editor) == "uk"


def test_a_choice_without_the_forms_token_is_refused_and_changes_nothing(client):
    client.get("/admin/login")

    response = client.post("/admin/language", data={"language": "uk", "next": "/admin/"})

    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert chosen(client) is None
    forged = choose(client, "uk", token="not-the-token")
    assert forged.status_code == 400 and chosen(client) is None


@pytest.mark.parametrize(
    "elsewhere",
    [
        "https://evil.example/admin/",
        "//evil.example/admin/",
        "/\\evil.example/admin/",
        "\\\\evil.example/admin/",
        "/\t/evil.example/admin/",
        "javascript:alert(1)",
        "evil.example/admin/",
        "",
    ],
)
def test_a_next_page_on_another_site_is_not_followed(client, elsewhere):
    response = choose(client, "uk", next_page=elsewhere)

    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/"
    assert chosen(client) == "uk"


def test_logging_in_follows_only_a_next_page_on_this_site(client, make_editor, newsletter):
    make_editor("ed@example.com", "briefing")
    token = csrf_token(client)
    form = {"email": "ed@example.com", "password": PASSWORD, "csrf_token": token}

    outside = client.post("/admin/login?next=/%5Cevil.example/", data=form)
    assert outside.headers["Location"] == "/admin/"

    inside = client.post("/admin/login?next=/admin/api-keys", data=form)
    assert inside.headers["Location"] == "/admin/api-keys"
