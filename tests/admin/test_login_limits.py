"""Login limits per account: guesses at one password spread over many addresses meet them."""

import time

import pytest

from newsletters.limits import TOO_MANY_LOGINS_FOR_ACCOUNT

from .conftest import PASSWORD, csrf_token

PER_ACCOUNT = {"RATELIMIT_ENABLED": True, "LOGIN_ACCOUNT_RATE_LIMIT": "5 per minute"}


def attempt(client, email, password, ip):
    """Post the login form from ``ip``; return the response."""
    token = csrf_token(client)
    return client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": ip},
    )


@pytest.mark.settings(**PER_ACCOUNT)
def test_login_is_throttled_per_account_across_addresses(client, make_editor):
    make_editor("editor@example.com")
    codes = [
        attempt(client, "editor@example.com", f"guess {i}", f"203.0.113.{i}").status_code
        for i in range(30)
    ]
    assert codes[:5] == [400] * 5
    assert codes[5:] == [429] * 25

    refused = attempt(client, "editor@example.com", PASSWORD, "198.51.100.1")
    assert refused.status_code == 429
    assert TOO_MANY_LOGINS_FOR_ACCOUNT in refused.get_data(as_text=True)
    assert "Retry-After" in refused.headers


@pytest.mark.settings(**PER_ACCOUNT)
def test_login_account_limit_ignores_case_and_spaces_in_the_address(client, make_editor):
    make_editor("editor@example.com")
    spellings = ["editor@example.com", "Editor@Example.com", " EDITOR@example.com "]
    for i in range(5):
        attempt(client, spellings[i % 3], "wrong", f"203.0.113.{i}")
    assert attempt(client, "editor@EXAMPLE.com", "wrong", "203.0.113.99").status_code == 429


@pytest.mark.settings(**PER_ACCOUNT)
def test_login_account_limit_leaves_other_accounts_alone(client, make_editor):
    make_editor("editor@example.com")
    make_editor("colleague@example.com")
    for i in range(6):
        attempt(client, "editor@example.com", "wrong", f"203.0.113.{i}")
    assert attempt(client, "colleague@example.com", PASSWORD, "203.0.113.7").status_code == 303


@pytest.mark.settings(RATELIMIT_ENABLED=True, LOGIN_ACCOUNT_RATE_LIMIT="2 per 2 seconds")
def test_login_account_limit_lifts_after_its_window_for_the_right_person(client, make_editor):
    make_editor("editor@example.com")
    for i in range(2):
        assert attempt(client, "editor@example.com", "wrong", f"203.0.113.{i}").status_code == 400
    assert attempt(client, "editor@example.com", PASSWORD, "198.51.100.1").status_code == 429
    time.sleep(2.1)
    assert attempt(client, "editor@example.com", PASSWORD, "198.51.100.1").status_code == 303


@pytest.mark.settings(RATELIMIT_ENABLED=True, LOGIN_ACCOUNT_RATE_LIMIT="50 per minute")
def test_login_keeps_its_per_ip_limit_beside_the_account_one(client, make_editor):
    make_editor("editor@example.com")
    codes = [
        attempt(client, f"nobody{i}@example.com", "wrong", "203.0.113.5").status_code
        for i in range(11)
    ]
    assert codes == [400] * 10 + [429]


@pytest.mark.settings(**PER_ACCOUNT)
def test_login_account_limit_counts_every_spelling_of_an_international_address(client, make_editor):
    # Spelled as the login looks it up: the punycode domain is the same account.
    make_editor("editor@bücher.example.com")
    spellings = ["editor@bücher.example.com", "editor@xn--bcher-kva.example.com"]
    for i in range(5):
        assert attempt(client, spellings[i % 2], "wrong", f"203.0.113.{i}").status_code == 400
    refused = attempt(client, "Editor@BÜCHER.example.com", PASSWORD, "203.0.113.99")
    assert refused.status_code == 429
