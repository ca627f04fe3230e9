"""Signup address checks: typos, throwaway and role addresses, and DNS asked of a real server.

The DNS tests run a small UDP name server on loopback that answers from a table of zones,
and point a dnspython resolver at it: the module's queries, timeouts and cache are real.
"""

import socket
import threading
import time

import dns.message
import dns.rcode
import dns.resolver
import dns.rrset
import pytest
from flask import Flask

from newsletters.address_checks import (
    FLAGS,
    AddressCheck,
    check,
    forget_dns_answers,
    is_disposable,
    is_role,
    suggest,
)
from newsletters.addresses import InvalidAddress, normalise

ZONES = {
    "has-mx.example.net": {"MX": ["10 mx.has-mx.example.net."]},
    "only-a.example.net": {"A": ["192.0.2.10"]},
    "only-aaaa.example.net": {"AAAA": ["2001:db8::10"]},
    "null-mx.example.net": {"MX": ["0 ."]},
    "no-records.example.net": {},
    "silent.example.net": "SILENT",
    "broken.example.net": "SERVFAIL",
}


class NameServer:
    """Answer DNS queries on a loopback UDP port from ``ZONES``, and note each question.

    A name missing from the table is NXDOMAIN; "SILENT" reads the query and drops it.
    """

    def __init__(self, zones: dict) -> None:
        self.zones = zones
        self.asked: list[tuple[str, str]] = []
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.05)
        self.port = self.socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "NameServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, client = self.socket.recvfrom(4096)
            except TimeoutError:
                continue
            response = self.respond(dns.message.from_wire(wire))
            if response is not None:
                self.socket.sendto(response.to_wire(), client)

    def respond(self, query: dns.message.Message) -> dns.message.Message | None:
        """Return the answer to ``query`` from the zones, or None to stay silent."""
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True)
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.asked.append((name, rdtype))
        zone = self.zones.get(name, "NXDOMAIN")
        if zone == "SILENT":
            return None
        response = dns.message.make_response(query)
        if isinstance(zone, str):
            response.set_rcode(dns.rcode.from_text(zone))
        elif zone.get(rdtype):
            rrset = dns.rrset.from_text(question.name, 300, "IN", rdtype, *zone[rdtype])
            response.answer.append(rrset)
        return response

    def questions_about(self, domain: str) -> list[str]:
        """Return the record types asked for ``domain``, in order."""
        return [rdtype for name, rdtype in self.asked if name == domain]


@pytest.fixture(autouse=True)
def fresh_dns_cache():
    forget_dns_answers()
    yield
    forget_dns_answers()


@pytest.fixture
def server():
    with NameServer(ZONES) as running:
        yield running


@pytest.fixture
def resolver(server):
    resolver = dns.resolver.Resolver(configure=False)
    resolver.port = server.port  # before the nameservers, which take the port when set
    resolver.nameservers = ["127.0.0.1"]
    return resolver


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("gmial.com", "gmail.com"),
        ("gmai.com", "gmail.com"),
        ("hotmial.com", "hotmail.com"),
        ("yaho.com", "yahoo.com"),
        ("outlok.com", "outlook.com"),
        ("ukr.nte", "ukr.net"),
        ("gmail.con", "gmail.com"),
        ("i.au", "i.ua"),
        ("meta.au", "meta.ua"),
        ("gmial.con", "gmail.com"),
        ("example.og", "example.org"),
    ],
)
def test_a_mistyped_domain_gets_the_one_it_was_meant_to_be(typed, meant):
    assert suggest(f"Reader.Name+news@{typed}") == f"Reader.Name+news@{meant}"


@pytest.mark.parametrize(
    "domain",
    [
        "gmail.com",
        "ukr.net",
        "i.ua",
        "example.com",
        "example.org",
        "gmx.de",
        "mail.com",
        "news.example.org",
        "kyivindependent.com",
        "mi.com",  # one slip from me.com, and a company of its own
        "love.com",  # one slip from live.com
        "web.dk",  # one slip from web.de, in another country
        "hotmail.ca",
        "protonmail.ch",
        "gmx.at",
    ],
)
def test_a_correct_or_unrelated_domain_gets_no_suggestion(domain):
    assert suggest(f"reader@{domain}") is None
    assert check(f"reader@{domain}").suggestion is None


def test_a_typo_is_suggested_and_the_address_kept_as_typed():
    result = check("Reader@GMAI.com")
    assert result == AddressCheck("reader@gmai.com", "reader@gmail.com", frozenset())


def test_keeping_a_typo_flags_it_and_keeps_the_address():
    result = check("reader@gmai.com", accept_typo=True)
    assert result == AddressCheck("reader@gmai.com", "reader@gmail.com", frozenset({"typo"}))


def test_accepting_a_typo_flags_nothing_when_there_was_none():
    assert check("reader@gmail.com", accept_typo=True).flags == frozenset()


@pytest.mark.parametrize("domain", ["mailinator.com", "inbox.mailinator.com", "MAILINATOR.com"])
def test_a_disposable_domain_or_one_below_it_is_flagged(domain):
    assert is_disposable(domain)
    assert check(f"reader@{domain}").flags == {"disposable"}


def test_an_ordinary_domain_is_not_disposable():
    assert not is_disposable("ukr.net")
    assert not is_disposable("com")


@pytest.mark.parametrize("local", ["info", "INFO", "info+x", "noreply", "no-reply", "postmaster"])
def test_a_role_address_is_flagged(local):
    assert is_role(local)
    assert check(f"{local}@example.com").flags == {"role"}


@pytest.mark.parametrize("local", ["olena", "informant", "x+info"])
def test_a_personal_address_is_not_a_role(local):
    assert not is_role(local)


@pytest.mark.parametrize(
    "raw",
    [
        "Reader@Example.COM",
        "first.last+tag@Sub.Example.org",
        "o'brien@example.ie",
        "reader@I.UA",
        "José@example.com",
        "reader@bücher.de",
    ],
)
def test_the_address_is_the_one_normalise_gives(raw):
    assert check(raw).address == normalise(raw)


@pytest.mark.parametrize("raw", ["", "reader", "two@@example.com", "reader@host.invalid"])
def test_an_invalid_address_raises_normalises_error(raw):
    with pytest.raises(InvalidAddress) as expected:
        normalise(raw)
    with pytest.raises(InvalidAddress) as raised:
        check(raw)
    assert str(raised.value) == str(expected.value)


def test_dns_is_asked_only_when_wanted(server, resolver):
    check("reader@has-mx.example.net", resolver=resolver)
    assert server.asked == []


def test_a_domain_with_mx_passes_unflagged(server, resolver):
    result = check("reader@has-mx.example.net", dns=True, resolver=resolver)
    assert result.flags == frozenset()
    assert server.questions_about("has-mx.example.net") == ["MX"]


@pytest.mark.parametrize("domain", ["only-a.example.net", "only-aaaa.example.net"])
def test_a_domain_with_an_address_but_no_mx_is_flagged_no_mx(resolver, domain):
    assert check(f"reader@{domain}", dns=True, resolver=resolver).flags == {"no_mx"}


def test_a_domain_that_does_not_exist_is_refused(resolver):
    with pytest.raises(InvalidAddress, match="gone.example.net does not exist"):
        check("reader@gone.example.net", dns=True, resolver=resolver)


@pytest.mark.parametrize("domain", ["null-mx.example.net", "no-records.example.net"])
def test_a_domain_that_takes_no_mail_is_refused(resolver, domain):
    with pytest.raises(InvalidAddress, match=f"{domain} does not accept mail"):
        check(f"reader@{domain}", dns=True, resolver=resolver)


def test_a_silent_server_leaves_the_address_unchecked_within_the_timeout(resolver):
    started = time.monotonic()
    result = check("reader@silent.example.net", dns=True, resolver=resolver, timeout=0.3)
    assert result.flags == {"unchecked"}
    assert time.monotonic() - started < 1.0


def test_a_server_failure_leaves_the_address_unchecked(resolver):
    result = check("reader@broken.example.net", dns=True, resolver=resolver)
    assert result.flags == {"unchecked"}


def test_a_domain_is_asked_once_and_then_answered_from_the_cache(server, resolver):
    for _ in range(3):
        check("reader@only-a.example.net", dns=True, resolver=resolver)
    with pytest.raises(InvalidAddress):
        check("other@gone.example.net", dns=True, resolver=resolver)
    with pytest.raises(InvalidAddress):
        check("other@gone.example.net", dns=True, resolver=resolver)
    assert server.questions_about("only-a.example.net") == ["MX", "A"]
    assert server.questions_about("gone.example.net") == ["MX"]


def test_messages_need_no_babel_in_an_app_without_it(resolver):
    with (
        Flask(__name__).test_request_context(),
        pytest.raises(InvalidAddress, match="does not exist"),
    ):
        check("reader@gone.example.net", dns=True, resolver=resolver)


def test_flags_add_up_and_are_all_named_in_FLAGS(resolver):
    result = check("info@gmai.com", accept_typo=True)
    assert result.flags == {"typo", "role"}
    result = check("info@only-a.example.net", dns=True, resolver=resolver)
    assert result.flags == {"role", "no_mx"}
    assert {"typo", "role", "no_mx", "disposable", "unchecked"} == set(FLAGS)
