"""Where webhooks may go: http(s) only, public addresses only (checked where it connects), no
redirects followed. The resolver is replaced, so that no test needs outside DNS."""

import ipaddress
import socket

import pytest
import sqlalchemy as sa

from newsletters import db
from newsletters.models import Newsletter, OutboxState
from newsletters.webhooks import services, targets
from tests.webhooks.conftest import Receiver, add_webhook, deliver, deliveries
from tests.webhooks.test_delivery import signups

PUBLIC = "93.184.215.14"


class FakeDNS:
    """A resolver answering ``names`` (name -> addresses) and noting each question."""

    def __init__(self, **names: list[str]):
        self.names = {name.replace("_", "."): found for name, found in names.items()}
        self.asked: list[str] = []

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        self.asked.append(host)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port, 0, 0) if ":" in a else (a, port),
            )
            for a in self.names[host]
        ]


@pytest.fixture
def dns(monkeypatch):
    """Replace the resolver; the test fills in its names."""
    fake = FakeDNS()
    monkeypatch.setattr(targets, "resolve", fake)
    return fake


def add(app, url):
    """Try to add a webhook of 'briefing' to ``url``; return the refusal, or None."""
    try:
        add_webhook(app, url)
    except services.WebhookError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("192.168.1.20", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "private"),  # reserved; Python counts it private too
        ("0.0.0.0", "private"),  # noqa: S104 - an address to refuse
        ("100.64.0.1", "non-public"),
        (PUBLIC, None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_forbidden_names_each_kind_of_address_a_webhook_may_not_reach(address, kind):
    assert targets.forbidden(ipaddress.ip_address(address)) == kind


@pytest.mark.settings(WEBHOOK_ALLOW_PRIVATE=False)
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::ffff:127.0.0.1]/hook",
    ],
)
def test_an_internal_address_is_refused_when_the_webhook_is_added(app, newsletter, session, url):
    refusal = add(app, url)
    assert refusal.startswith("refused: ") and "webhooks may only go to public addresses" in refusal
    assert session.scalar(sa.text("select count(*) from webhook")) == 0


@pytest.mark.settings(WEBHOOK_ALLOW_PRIVATE=False)
def test_a_public_name_resolving_to_an_internal_address_is_refused_when_added(app, newsletter, dns):
    dns.names |= {
        "hooks.example.com": ["10.0.0.1"],
        "mixed.example.com": [PUBLIC, "127.0.0.1"],
        "fine.example.com": [PUBLIC],
    }
    assert "hooks.example.com resolves to 10.0.0.1, a private address" in add(
        app, "https://hooks.example.com/in"
    )
    # Every address is checked, not only the first.
    assert "127.0.0.1, a loopback address" in add(app, "https://mixed.example.com/in")
    assert "cannot resolve nowhere.example.com" in add(app, "https://nowhere.example.com/in")
    assert add(app, "https://fine.example.com/in") is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/hook", "only http:// and https://"),
        ("file:///etc/passwd", "only http:// and https://"),
        ("javascript:alert(1)", "only http:// and https://"),
        ("gopher://127.0.0.1:6379/_INFO", "only http:// and https://"),
        ("example.com/hook", "only http:// and https://"),
        ("http:///hook", "names no host"),
        ("http://user:secret@example.com/hook", "user name or password"),
        ("http://example.com:99999/hook", "not a URL"),
        ("http://example.com/a b", "space or a control character"),
        ("", "give the URL"),
    ],
)
def test_only_http_and_https_urls_are_accepted(app, newsletter, url, why):
    # Private addresses are allowed in tests: these are refused for what they are.
    assert why in add(app, url)


@pytest.mark.settings(WEBHOOK_ALLOW_PRIVATE=False)
def test_a_name_that_resolves_elsewhere_at_delivery_is_refused_there_dns_rebinding(
    app, newsletter, session, receiver, dns
):
    dns.names["hooks.example.com"] = [PUBLIC]
    webhook_id, receiver.secret = add_webhook(app, f"http://hooks.example.com:{receiver.port}/hook")
    # Now the name points at the receiver on loopback, as a rebinding resolver would.
    dns.names["hooks.example.com"] = ["127.0.0.1"]
    signups(app, "reader@example.com")
    deliver(app)
    assert receiver.requests == []
    [row] = deliveries(session, webhook_id)
    assert row.state == OutboxState.PENDING and row.attempts == 1
    assert "refused: hooks.example.com resolves to 127.0.0.1, a loopback address" in row.last_error


def test_the_connection_goes_to_the_checked_address_with_the_name_in_the_host_header(
    app, newsletter, session, receiver, dns
):
    # No DNS knows this name: only a connection to the address checked can reach the receiver.
    dns.names["hooks.example.test"] = ["127.0.0.1"]
    url = f"http://hooks.example.test:{receiver.port}/hook?source=newsletters"
    webhook_id, receiver.secret = add_webhook(app, url)
    signups(app, "reader@example.com")
    deliver(app)
    [request] = receiver.requests
    assert request["host"] == f"hooks.example.test:{receiver.port}"
    assert request["path"] == "/hook?source=newsletters"
    assert request["verified"]
    assert dns.asked == ["hooks.example.test", "hooks.example.test"]  # at add, at delivery


def test_a_redirect_is_not_followed(app, newsletter, session, receiver):
    elsewhere = Receiver()
    elsewhere.start()
    try:
        webhook_id, receiver.secret = add_webhook(app, receiver.url)
        receiver.answer = "redirect"
        receiver.location = elsewhere.url
        signups(app, "reader@example.com")
        deliver(app)
    finally:
        elsewhere.stop()
    assert len(receiver.requests) == 1
    assert elsewhere.requests == []
    [row] = deliveries(session, webhook_id)
    assert row.state == OutboxState.PENDING
    assert row.last_error == (
        f"HTTP 302 Found: a redirect (to {elsewhere.url}), not followed: "
        "give the webhook its final URL"
    )


def test_the_secret_is_long_and_different_for_each_webhook(app, newsletter, dns):
    dns.names["example.org"] = [PUBLIC]
    with app.app_context():
        session = db.session()
        briefing = session.scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        secrets = {services.add(session, briefing, "https://example.org/h")[1] for _ in range(3)}
        session.rollback()
    assert len(secrets) == 3
    assert all(s.startswith("whsec_") and len(s) >= 40 for s in secrets)
