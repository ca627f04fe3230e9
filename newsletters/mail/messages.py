"""Render outbox rows into mails: text and HTML templates, headers, no text a signer typed."""

from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from email_validator import EmailNotValidError, validate_email
from flask import current_app, render_template
from sqlalchemy.orm import Session

from .. import catalogue, tokens
from ..db import utcnow
from ..links import external_url
from ..models import Newsletter, OutboxMessage, Token
from ..text import has_control_characters

# The newsletter's texts that go into a header of its confirmation mail.
HEADER_TEXTS = ("name", "sender_name", "confirm_subject")


class Unrenderable(Exception):
    """The outbox row cannot be built into a mail: what it refers to is gone, or is bad."""


def render(session: Session, message: OutboxMessage) -> tuple[EmailMessage, dict[str, str]]:
    """Build the mail for ``message`` and return it with the links it carries."""
    if message.kind != "confirm":
        raise Unrenderable(f"unknown outbox message kind {message.kind!r}")
    token = session.get(Token, message.payload.get("token_id"))
    if token is None or not token.subscriptions:
        raise Unrenderable("the confirmation token of this mail no longer exists")
    secret = tokens.secret_for(token)
    if secret is None:
        raise Unrenderable(
            "the secret key that made this mail's link is no longer in SECRET_KEY_FALLBACKS"
        )
    newsletters = [s.newsletter for s in token.subscriptions]
    _check_header_texts(newsletters)
    confirm_url = external_url("subscriptions.confirm", token=secret)
    names = ", ".join(n.name for n in newsletters)
    subject = (len(newsletters) == 1 and newsletters[0].confirm_subject) or (
        f"Confirm your subscription to {names}"
    )
    context = {
        "newsletters": newsletters,
        "confirm_url": confirm_url,
        "ttl_hours": current_app.config["CONFIRM_TTL_HOURS"],
        "intro": (len(newsletters) == 1 and newsletters[0].confirm_body) or None,
    }
    sender = len(newsletters) == 1 and newsletters[0].sender_name
    mail = _envelope(message, subject, sender or None)
    mail.set_content(render_template("mail/confirm.txt", **context))
    mail.add_alternative(render_template("mail/confirm.html", **context), subtype="html")
    return mail, {"confirm": confirm_url}


def newsletter_ids(session: Session, message: OutboxMessage) -> list[int]:
    """Return the newsletters ``message`` is about; none if that can no longer be known."""
    if message.kind != "confirm":
        return []
    token = session.get(Token, message.payload.get("token_id"))
    return [] if token is None else [s.newsletter_id for s in token.subscriptions]


def message_id(message: OutboxMessage) -> str:
    """Return the Message-ID of ``message``: its stored unique part at MAIL_FROM's domain.

    Built with the mail, so the settings of the worker that sends it decide the domain, as
    they decide the From; the unique part was fixed at enqueue, so a mail sent again after
    a crash carries the same Message-ID. Rows queued before this stored a whole Message-ID,
    which is kept as it is.
    """
    if "@" in message.message_id:
        return message.message_id
    domain = ascii_domain(sender().addr_spec).rpartition("@")[2]
    return f"<{message.message_id}@{domain}>"


def sender() -> Address:
    """Return MAIL_FROM as an address: ``news@example.org`` or ``News <news@example.org>``."""
    # The config checked at start-up that it is one address.
    [address] = policy.default.header_factory("From", current_app.config["MAIL_FROM"]).addresses
    return address


def _check_header_texts(newsletters: list[Newsletter]) -> None:
    """Refuse texts that cannot be a header, saved before the catalogue refused them."""
    for newsletter in newsletters:
        for field in HEADER_TEXTS:
            if has_control_characters(getattr(newsletter, field) or ""):
                raise Unrenderable(
                    f"the {catalogue.TEXTS[field].label.lower()} of the newsletter "
                    f"{newsletter.slug!r} holds a line break or another control character; "
                    "correct it in the newsletter's settings"
                )


def _envelope(message: OutboxMessage, subject: str, sender_name: str | None) -> EmailMessage:
    mail = EmailMessage()
    address = sender()
    mail["From"] = Address(
        display_name=sender_name or address.display_name,
        username=address.username,
        domain=address.domain,
    )
    mail["To"] = ascii_domain(message.recipient)
    mail["Subject"] = subject
    mail["Date"] = format_datetime(utcnow())
    mail["Message-ID"] = message_id(message)
    mail["Auto-Submitted"] = "auto-generated"
    return mail


def ascii_domain(address: str) -> str:
    """Return ``address`` with its domain in IDNA form, which every mail server accepts.

    The IDNA 2008 form, as email-validator computed it at signup: Python's own "idna" codec
    is IDNA 2003, which maps ß to ss and would send straße.de's mail to strasse.de, another
    domain with another owner.
    """
    local, _, _domain = address.rpartition("@")
    try:
        checked = validate_email(address, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        return address
    return f"{local}@{checked.ascii_domain}"
