"""Email addresses: validated and normalised by email-validator, its domain work done once.

email-validator spends most of its 70-odd microseconds per address on the domain (IDNA,
Unicode checks), while a list of a hundred thousand addresses has a few thousand domains.
An address whose part before the @ is plain ASCII dot-atom is therefore checked with the same
regular expression email-validator applies first, and its domain by email-validator itself,
once per domain per process: the result is the library's own, at a fraction of the cost
(``tests/test_addresses.py`` compares the two over generated addresses). Every other
address (quoted, internationalised before the @, display names, brackets) takes the full
path. With ``check_deliverability`` (DNS) the full path is always taken.
"""

import re
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import ATEXT

# email-validator's own dot-atom rule for the part before the @ (RFC 5322 3.2.3), one @, and
# an ASCII domain: the addresses whose checks the fast path repeats exactly.
_SIMPLE = re.compile(f"([{ATEXT}]+(?:\\.[{ATEXT}]+)*)@([A-Za-z0-9.-]+)")
# Longer addresses take the full path, whose length checks and wording are the library's.
FAST_PATH_LENGTH = 254


class InvalidAddress(ValueError):
    """The text is not an address mail can be sent to; the message says why, for a reader."""


def normalise(raw: str, *, check_deliverability: bool = False) -> str:
    """Return the normalised, lower-cased form of ``raw``, or raise ``InvalidAddress``."""
    fast = not check_deliverability and len(raw) <= FAST_PATH_LENGTH
    simple = _SIMPLE.fullmatch(raw) if fast else None
    if simple is not None:
        local, domain = simple.groups()
        checked_domain, error = _domain(domain)
        if error:
            raise InvalidAddress(error)
        return f"{local}@{checked_domain}".lower()
    try:
        result = validate_email(raw, check_deliverability=check_deliverability, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None
    return result.normalized.lower()


@lru_cache(maxsize=4096)
def _domain(domain: str) -> tuple[str, str | None]:
    """Return email-validator's normal form of ``domain``, or the error it gives for it."""
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).domain, None
    except EmailNotValidError as exc:
        return "", str(exc)
