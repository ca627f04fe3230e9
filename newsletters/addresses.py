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
from flask_babel import gettext

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


def _(text: str) -> str:
    """Mark ``text`` for the catalogue; ``explained`` translates it when it is shown."""
    return text


# email-validator's reasons, in English only, each with the reader's wording the catalogue
# translates: (a pattern of the library's message, ours; a group becomes %(detail)s). The
# common ones; any other keeps the library's own English.
_EXPLAINED = [
    (re.compile(p), message)
    for p, message in (
        (r"An email address must have an @-sign\.", _("An email address must have an @-sign.")),
        (r"There must be something before the @-sign\.", _("Something must come before the @.")),
        (r"There must be something after the @-sign\.", _("Something must come after the @.")),
        (
            r"The part after the @-sign contains invalid characters: (.*)\.",
            _("The part after the @ holds characters an address cannot have: %(detail)s."),
        ),
        (
            r"The email address contains invalid characters before the @-sign: (.*)\.",
            _("The part before the @ holds characters an address cannot have: %(detail)s."),
        ),
        (
            r"The email address contains invalid characters before the @-sign\.",
            _("The part before the @ holds characters an address cannot have."),
        ),
        (
            r"The part after the @-sign is not valid\. It should have a period\.",
            _("The part after the @ needs a dot, as in example.com."),
        ),
        (
            r"The part after the @-sign is not valid\. It is not within a valid top-level domain\.",
            _("The part after the @ does not end in a real domain ending (such as .com or .ua)."),
        ),
        (
            r"The part after the @-sign is a special-use or reserved name .*",
            _("The part after the @ is a reserved name that mail cannot be sent to."),
        ),
        (
            r"An email address cannot have two periods in a row\.",
            _("An address cannot have two dots in a row."),
        ),
        (
            r"An email address cannot (?:start|end) with a period\.",
            _("An address cannot start or end with a dot."),
        ),
        (
            r"An email address cannot have a period immediately (?:before|after) the @-sign\.",
            _("A dot cannot stand right next to the @."),
        ),
        (
            r"There can't be anything after the email address\.",
            _("Nothing may follow the address."),
        ),
        (r"The email address is too long.*", _("That email address is too long.")),
    )
]


def explained(reason: str) -> str:
    """Return email-validator's ``reason`` in the reader's words and language, if it is known."""
    for pattern, message in _EXPLAINED:
        found = pattern.fullmatch(reason)
        if found:
            detail = next((g for g in found.groups() if g), "")
            return gettext(message, detail=detail) if "%(detail)s" in message else gettext(message)
    return reason
