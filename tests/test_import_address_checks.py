"""Address checks on import: the signup's rules, with nobody to ask about a typo.

A typo is kept as typed and flagged ``typo``; disposable and role addresses are flagged, or
refused with the reason in the report where the newsletter refuses them. The same holds for
the service, the ``newsletters import`` command and the editors' import page.
"""

import io

import dns.resolver
import pytest
import sqlalchemy as sa

from newsletters import import_jobs
from newsletters.models import Newsletter, OutboxMessage, Subscriber, Subscription
from tests import test_address_checks as dns_tests
from tests.admin import conftest as admin_tests
from tests.admin.conftest import csrf_token, login
from tests.test_imports import count, refusals, run_import

# Fixtures shared with their own files: editors, the loopback name server.
make_editor = admin_tests.make_editor
server = dns_tests.server
resolver = dns_tests.resolver

TYPO = "reader@gmial.com"
DISPOSABLE_REASON = (
    "This address is from a disposable mail service, which this newsletter does not accept. "
    "Please use an address you keep."
)
ROLE_REASON = (
    "This looks like a shared address (such as info@ or admin@), which this newsletter does "
    "not accept. Please use your own address."
)
FILE = (
    "email,name\n"
    f"{TYPO},Typo\n"
    "x@mailinator.com,Throwaway\n"
    "info@example.com,Desk\n"
    "reader@example.com,Reader\n"
)


def flags(session) -> dict[str, str | None]:
    """Return each listed address with its subscription's ``address_flags``."""
    rows = session.execute(
        sa.select(Subscriber.email, Subscription.address_flags).join(Subscription.subscriber)
    )
    return dict(rows.all())


def refuse(session, *policies: str) -> None:
    """Make 'briefing' refuse the addresses of ``policies`` (disposable_policy, role_policy)."""
    values = dict.fromkeys(policies, "refuse")
    session.execute(sa.update(Newsletter).where(Newsletter.slug == "briefing").values(values))
    session.commit()


def test_a_typo_is_kept_as_typed_and_flagged_as_are_disposable_and_role_addresses(
    app, session, newsletter
):
    report = run_import(app, FILE)

    assert (report.taken, report.refused) == (4, [])
    found = flags(session)
    # gmial.com is a typo of gmail.com and a throwaway service's domain besides.
    assert "typo" in found.pop(TYPO).split()
    assert found == {
        "x@mailinator.com": "disposable",
        "info@example.com": "role",
        "reader@example.com": None,
    }


@pytest.mark.parametrize(
    ("policies", "refused"),
    [
        (
            ("disposable_policy",),
            [(2, TYPO, DISPOSABLE_REASON), (3, "x@mailinator.com", DISPOSABLE_REASON)],
        ),
        (("role_policy",), [(4, "info@example.com", ROLE_REASON)]),
    ],
)
def test_rows_a_newsletter_refuses_are_reported_with_why_and_not_stored(
    app, session, newsletter, policies, refused
):
    refuse(session, *policies)

    report = run_import(app, FILE)

    assert refusals(report) == refused
    assert (report.taken, report.invalid) == (4 - len(refused), len(refused))
    assert set(flags(session)).isdisjoint(email for _line, email, _reason in refused)
    assert count(session, Subscriber) == 4 - len(refused)


def test_send_confirmation_keeps_the_flags_through_the_signup(app, session, newsletter):
    report = run_import(app, FILE, send_confirmation=True)

    assert (report.taken, report.mails_queued) == (4, 4)
    found = flags(session)
    assert "typo" in found[TYPO].split()
    assert (found["x@mailinator.com"], found["info@example.com"]) == ("disposable", "role")
    assert count(session, OutboxMessage) == 4


def test_the_command_flags_rows_and_prints_each_refusal_with_why(
    runner, session, newsletter, tmp_path
):
    refuse(session, "role_policy")
    path = tmp_path / "list.csv"
    path.write_text(FILE, encoding="utf-8")

    result = runner.invoke(args=["import", "briefing", str(path)])

    assert result.exit_code == 0, result.output
    assert result.stdout == "taken 3, already on the list 0, refused 1\n"
    assert result.stderr.splitlines() == [f"line 4: info@example.com: {ROLE_REASON}"]
    found = flags(session)
    assert "typo" in found[TYPO].split()
    assert found["x@mailinator.com"] == "disposable"
    assert "info@example.com" not in found


def test_the_import_page_flags_rows_and_shows_each_refusal_with_why(
    client, session, newsletter, make_editor
):
    refuse(session, "disposable_policy")
    login(client, make_editor("editor@example.org", "briefing"))
    page = "/admin/n/briefing/import"

    response = client.post(
        page,
        data={
            "csrf_token": csrf_token(client, page),
            "file": (io.BytesIO(FILE.encode()), "list.csv"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 303
    with client.application.app_context():
        import_jobs.run_round()
    response = client.get(response.location)

    assert response.status_code == 200
    text = response.get_data(as_text=True)
    for line, email in ((2, TYPO), (3, "x@mailinator.com")):
        assert f"<tr><td>{line}</td><td>{email}</td><td>{DISPOSABLE_REASON}</td></tr>" in text
    assert flags(session) == {"info@example.com": "role", "reader@example.com": None}


@pytest.mark.settings(EMAIL_CHECK_DELIVERABILITY=True)
def test_an_import_asks_no_dns_even_where_signups_do(
    app, session, newsletter, server, resolver, monkeypatch
):
    monkeypatch.setattr(dns.resolver, "default_resolver", resolver)

    report = run_import(app, "email\nreader@gone.example.net\nreader@only-a.example.net\n")

    assert (report.taken, report.refused) == (2, [])
    assert set(flags(session).values()) == {None}
    assert server.asked == []
