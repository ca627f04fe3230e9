"""The address checks' flags and the reader's language in the subscriber list and page."""

import html
import re

import pytest

from newsletters import address_checks, subscribers
from newsletters.models import Status

from .conftest import login
from .test_subscribers import LIST, add, listed, walk

# Each address with the flags its signup's checks stored: none (NULL, as on rows older than
# the checks), one, several, and a hand-edited value that only looks like some of them.
STORED = {
    "old@example.com": None,
    "clean@example.com": "",
    "typo@example.com": "typo",
    "throwaway@example.com": "disposable",
    "info@example.com": "role",
    "nomx@example.com": "no_mx",
    "dns@example.com": "unchecked",
    "info@throwaway.example": "disposable role",
    "sales@typo.example": "typo role unchecked",
    "odd@example.com": "no-mx roles",
}
BADGE = re.compile(r'<span class="badge" data-flag="([^"]+)"[^>]*>([^<]+)</span>')


@pytest.fixture
def editor(make_editor, client, newsletter):
    """Log the test client in as an editor of 'briefing' only."""
    make_editor("editor@example.org", "briefing")
    login(client, "editor@example.org")
    return "editor@example.org"


def flagged_with(flag: str) -> set[str]:
    return {email for email, flags in STORED.items() if flag in (flags or "").split()}


def test_the_labels_name_every_flag_the_address_checks_set():
    assert tuple(subscribers.ADDRESS_FLAGS) == address_checks.FLAGS


@pytest.mark.parametrize("flag", address_checks.FLAGS)
def test_the_list_filtered_by_a_flag_shows_exactly_the_rows_with_it(client, session, editor, flag):
    for email, flags in STORED.items():
        add(session, "briefing", email, address_flags=flags)

    rows, following = listed(client, f"{LIST}?flag={flag}")

    assert {email for _id, email in rows} == flagged_with(flag)
    assert following is None


def test_no_flag_lists_everyone_and_the_select_offers_each_flag(client, session, editor):
    for email, flags in STORED.items():
        add(session, "briefing", email, address_flags=flags)

    everyone, _ = listed(client, LIST)
    page = client.get(LIST).get_data(as_text=True)

    assert {email for _id, email in everyone} == set(STORED)
    options = re.search(r'<select id="flag" name="flag"[^>]*>(.*?)</select>', page, re.S)
    assert re.findall(r'<option value="([^"]*)"[^>]*>([^<]+)</option>', options.group(1)) == [
        ("", "Any address"),
        ("typo", "Typo kept as typed"),
        ("disposable", "Disposable"),
        ("role", "Role address"),
        ("no_mx", "No MX record"),
        ("unchecked", "DNS unchecked"),
    ]


def test_each_row_shows_its_flags_as_labelled_badges_and_its_language(client, session, editor):
    add(session, "briefing", "plain@example.com", language="en")
    add(session, "briefing", "info@mail.example", address_flags="disposable role", language="uk")
    add(session, "briefing", "old@example.com")

    page = client.get(LIST).get_data(as_text=True)
    rows = {
        re.search(r">([^<]+@[^<]+)</a>", row).group(1): row
        for row in re.findall(r"<tr>(.*?)</tr>", page, re.S)
        if "/subscribers/" in row
    }

    assert BADGE.findall(rows["info@mail.example"]) == [
        ("disposable", "Disposable"),
        ("role", "Role address"),
    ]
    assert '<span lang="uk">Українська</span>' in rows["info@mail.example"]
    assert BADGE.findall(rows["plain@example.com"]) == []
    assert "English" in rows["plain@example.com"]
    assert BADGE.findall(rows["old@example.com"]) == [] and "—" in rows["old@example.com"]


def test_the_flag_combines_with_the_status_and_the_address_search(client, session, editor):
    add(session, "briefing", "info@a.example", address_flags="role")
    add(session, "briefing", "info@b.example", Status.PENDING, address_flags="role")
    add(session, "briefing", "admin@a.example", address_flags="role")
    add(session, "briefing", "info@c.example", address_flags="disposable")

    rows, _ = listed(client, f"{LIST}?flag=role&status=confirmed&q=info")

    assert [email for _id, email in rows] == ["info@a.example"]


def test_an_unknown_flag_is_refused_with_the_choices(client, editor):
    for asked in ("spam", "ROLE", "role "):
        response = client.get(LIST, query_string={"flag": asked})
        assert response.status_code == 400
        text = html.unescape(response.get_data(as_text=True))
        assert f"There is no address flag {asked!r}" in text
        assert "typo, disposable, role, no_mx, unchecked" in text


def test_the_pages_of_a_filtered_list_keep_the_filter(client, session, editor):
    flagged = []
    for n in range(130):
        flags = "role" if n % 2 else None
        id_ = add(session, "briefing", f"r{n:03d}@example.com", address_flags=flags)
        if flags:
            flagged.append(id_)

    first, following = listed(client, f"{LIST}?flag=role")
    seen = walk(client, f"{LIST}?flag=role")

    assert len(first) == 50 and "flag=role" in following
    assert [id_ for id_, _email in seen] == sorted(flagged, reverse=True)
    second = client.get(following).get_data(as_text=True)
    newest = re.search(r'<a href="([^"]+)">« Newest</a>', second).group(1)
    assert "flag=role" in html.unescape(newest)


def test_the_subscriber_page_explains_each_flag_and_names_the_language(client, session, editor):
    flagged = add(
        session, "briefing", "info@mail.example", address_flags="typo no_mx", language="uk"
    )
    plain = add(session, "briefing", "ada@example.com")

    page = client.get(f"{LIST}/{flagged}").get_data(as_text=True)
    text = html.unescape(page)

    assert BADGE.findall(page) == [("typo", "Typo kept as typed"), ("no_mx", "No MX record")]
    for flag in ("typo", "no_mx"):
        assert str(subscribers.ADDRESS_FLAGS[flag].explanation) in text
    assert '<span lang="uk">Українська</span>' in page
    plain_page = client.get(f"{LIST}/{plain}").get_data(as_text=True)
    assert BADGE.findall(plain_page) == []
    assert "Nothing found (or signed up before the checks)." in plain_page
