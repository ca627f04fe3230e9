"""Signup address checks: a likely typo, a throwaway or role address, a domain without mail.

``check()`` normalises the address (``addresses.normalise``), then says what a signup form
may ask the reader about (a typo's suggestion) and what the service may weigh (``FLAGS``).

Typo suggestions are a small Damerau–Levenshtein check over ``data/common_domains.txt``
rather than a package: the Python port of mailcheck.js (pymailcheck) was last released in
2021, its defaults (mailcheck.js's) hold no Ukrainian provider (ukr.net, i.ua, meta.ua) and
no .ua ending, and it allows two edits for any domain, short ones included. Here a
provider's name of up to four letters is matched only exactly (one slip from aol, live or
meta is usually another real domain), a longer name allows one edit, eight letters or more
two; the ending may be mistyped once (``data/tld_typos.txt``, or au for ua); and a
suggestion is made only when exactly one provider is nearest.

The DNS check asks for MX, then A and AAAA, within one ``timeout`` for all three, and keeps
each domain's outcome for the process. It never calls email-validator's deliverability
check, whose timeouts are hard to tell from a domain that does not exist.
"""

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.resources import files

import dns.exception
import dns.name
import dns.resolver
import idna
from disposable_email_domains import blocklist
from flask import current_app, has_app_context
from flask_babel import gettext

from newsletters.addresses import InvalidAddress, normalise

FLAGS = ("typo", "disposable", "role", "no_mx", "unchecked")
# DNS outcomes besides the flags "no_mx" and "unchecked".
_ACCEPTS_MAIL, _MISSING, _REFUSES_MAIL = "mx", "missing", "refuses"
KEPT_SECONDS = 600.0
# A failed lookup is kept briefly: during a resolver outage a burst of signups for one domain
# should not each wait for the timeout, yet the domain is asked again soon.
UNCHECKED_KEPT_SECONDS = 30.0


@dataclass(frozen=True)
class AddressCheck:
    """Hold a normalised address, a typo's suggestion for it, and the ``FLAGS`` that apply."""

    address: str
    suggestion: str | None
    flags: frozenset[str]


def check(
    raw: str, *, accept_typo: bool = False, dns: bool = False, resolver=None, timeout: float = 2.0
) -> AddressCheck:
    """Return the checks of ``raw``, or raise ``InvalidAddress`` for one mail cannot reach."""
    address = normalise(raw)
    local, _at, domain = address.rpartition("@")
    suggestion = suggest(address)
    flags = set()
    if suggestion and accept_typo:
        flags.add("typo")
    if is_disposable(domain):
        flags.add("disposable")
    if is_role(local):
        flags.add("role")
    if dns:
        outcome = _dns_outcome(domain, resolver, timeout)
        # Literal messages inside _() so that pybabel extracts them (babel.cfg).
        if outcome == _MISSING:
            raise InvalidAddress(
                _(
                    "The domain %(domain)s does not exist: check the part after the @.",
                    domain=domain,
                )
            )
        if outcome == _REFUSES_MAIL:
            raise InvalidAddress(
                _("The domain %(domain)s does not accept mail: use another address.", domain=domain)
            )
        if outcome in FLAGS:
            flags.add(outcome)
    return AddressCheck(address, suggestion, frozenset(flags))


def stored(flags) -> str | None:
    """Return ``flags`` as a subscription keeps them: space-separated, in ``FLAGS``' order."""
    return " ".join(flag for flag in FLAGS if flag in flags) or None


def _(message: str, **variables: str) -> str:
    """Return ``message`` in the reader's language once the app has set up Flask-Babel."""
    # flask_babel.gettext raises KeyError in an app context without Babel; outside any
    # context it returns the message untranslated, as this does.
    if has_app_context() and "babel" in current_app.extensions:
        return gettext(message, **variables)
    return message % variables


def suggest(address: str) -> str | None:
    """Return ``address`` with its domain's likely typo corrected, or None if it looks right."""
    local, at, domain = address.rpartition("@")
    corrected = _corrected_domain(domain.lower()) if at else None
    return f"{local}@{corrected}" if corrected else None


@lru_cache(maxsize=4096)
def _corrected_domain(domain: str) -> str | None:
    """Return the domain ``domain`` was probably meant to be, or None."""
    if domain in _shipped("common_domains.txt"):
        return None
    name, dot, ending = domain.rpartition(".")
    if not dot:
        return None
    ending = _tld_typos().get(ending, ending)
    fixed = f"{name}.{ending}"
    if fixed in _shipped("common_domains.txt"):
        return fixed
    return _nearest_common(name, ending) or (fixed if fixed != domain else None)


def _nearest_common(name: str, ending: str) -> str | None:
    """Return the one common domain nearest to ``name.ending`` within its budget, or None."""
    scored = []
    for common in _shipped("common_domains.txt"):
        common_name, _dot, common_ending = common.rpartition(".")
        budget = 0 if len(common_name) <= 4 else 1 if len(common_name) <= 7 else 2
        if abs(len(name) - len(common_name)) > budget:
            continue
        name_edits = _edits(name, common_name)
        ending_edits = 0 if ending == common_ending else 1
        if ending_edits and not _ending_slip(ending, common_ending):
            continue
        if name_edits <= budget and name_edits + ending_edits <= max(budget, 1):
            scored.append((name_edits + ending_edits, common))
    fewest = min((edits for edits, _common in scored), default=None)
    best = [common for edits, common in scored if edits == fewest]
    return best[0] if len(best) == 1 else None


def _ending_slip(typed: str, meant: str) -> bool:
    """Return whether ``typed`` is one slip from the ending ``meant`` (au for ua, co for com)."""
    if len(typed) == len(meant) == 2:
        # One substitution in a country code gives another country (de, dk): only a swap counts.
        return typed == meant[::-1]
    return _edits(typed, meant) == 1


def _edits(a: str, b: str) -> int:
    """Return the Damerau–Levenshtein distance of ``a`` and ``b`` (a swap of two counts one)."""
    before, previous = [], list(range(len(b) + 1))
    for i, char in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            edits = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char != other))
            if i > 1 and j > 1 and char == b[j - 2] and a[i - 2] == other:
                edits = min(edits, before[j - 2] + 1)
            current.append(edits)
        before, previous = previous, current
    return previous[-1]


def is_disposable(domain: str) -> bool:
    """Return whether ``domain`` or a domain above it is on the disposable-address list."""
    labels = _ascii(domain.lower().rstrip(".")).split(".")
    return any(".".join(labels[i:]) in blocklist for i in range(len(labels) - 1))


def is_role(local_part: str) -> bool:
    """Return whether ``local_part`` names a role (info, noreply) rather than a person."""
    return local_part.lower().partition("+")[0] in _shipped("role_local_parts.txt")


def _dns_outcome(domain: str, resolver, timeout: float) -> str:
    """Return what DNS says of mail to ``domain``, from the cache when it was asked lately."""
    outcome = _answers.get(domain)
    if outcome is None:
        outcome = _look_up(domain, resolver, timeout)
        seconds = UNCHECKED_KEPT_SECONDS if outcome == "unchecked" else KEPT_SECONDS
        _answers.put(domain, outcome, seconds)
    return outcome


def forget_dns_answers() -> None:
    """Forget every DNS outcome kept so far (for tests, or after the resolver changed)."""
    _answers.clear()


def _look_up(domain: str, resolver, timeout: float) -> str:
    """Ask DNS for the MX, then the A and AAAA records of ``domain``; return the outcome."""
    deadline = time.monotonic() + timeout
    try:
        if resolver is None:
            resolver = dns.resolver.get_default_resolver()
        name = dns.name.from_text(_ascii(domain))
        exchanges = _records(resolver, name, "MX", deadline)
        if exchanges:
            null = all(record.exchange == dns.name.root for record in exchanges)
            return _REFUSES_MAIL if null else _ACCEPTS_MAIL  # null MX: RFC 7505
        for rdtype in ("A", "AAAA"):
            if _records(resolver, name, rdtype, deadline):
                return "no_mx"
        return _REFUSES_MAIL
    except dns.resolver.NXDOMAIN:
        return _MISSING
    except Exception:  # a timeout, SERVFAIL, no resolver: the domain could not be checked
        return "unchecked"


def _records(resolver, name: dns.name.Name, rdtype: str, deadline: float):
    """Return the records of ``rdtype`` for ``name`` (None if it has none) before ``deadline``."""
    lifetime = deadline - time.monotonic()
    if lifetime <= 0:
        raise dns.exception.Timeout
    answer = resolver.resolve(
        name, rdtype, lifetime=lifetime, search=False, raise_on_no_answer=False
    )
    return answer.rrset


class _Answers:
    """Keep DNS outcomes per domain for a while, at most ``size`` of them, across threads."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._kept: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, domain: str) -> str | None:
        """Return the outcome kept for ``domain`` if it has not expired."""
        with self._lock:
            expires, outcome = self._kept.get(domain, (0.0, None))
            return outcome if expires > time.monotonic() else None

    def put(self, domain: str, outcome: str, seconds: float) -> None:
        """Keep ``outcome`` for ``domain`` for ``seconds``, dropping the oldest when full."""
        with self._lock:
            self._kept.pop(domain, None)
            self._kept[domain] = (time.monotonic() + seconds, outcome)
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)

    def clear(self) -> None:
        """Forget every outcome."""
        with self._lock:
            self._kept.clear()


_answers = _Answers(size=10_000)


def _ascii(domain: str) -> str:
    """Return ``domain`` in its IDNA (ASCII) form, as DNS and the disposable list spell it."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except UnicodeError:
        return domain


@cache
def _shipped(name: str) -> frozenset[str]:
    """Return the lines of ``data/name``, without comments (``#``) and blank lines."""
    text = files("newsletters").joinpath("data", name).read_text(encoding="utf-8")
    lines = (line.partition("#")[0].strip() for line in text.splitlines())
    return frozenset(line for line in lines if line)


@cache
def _tld_typos() -> dict[str, str]:
    """Return each mistyped ending (con) with the ending meant (com)."""
    return dict(line.split() for line in _shipped("tld_typos.txt"))
