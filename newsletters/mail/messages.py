"""Render outbox rows into mails: text and HTML templates, headers, no text a signer typed."""

from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from email_validator import EmailNotValidError, validate_email
from flask import current_app, render_template
from sqlalchemy.orm import Session

from .. import tokens
from ..db import utcnow
from ..links import external_url
from ..models import OutboxMessage, Token


class Unrenderable(Exception):
    """The outbox row refers to something that no longer exists; it cannot be sent."""


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


def _envelope(message: OutboxMessage, subject: str, sender_name: str | None) -> EmailMessage:
    mail = EmailMessage()
    mail_from = current_app.config["MAIL_FROM"]
    mail["From"] = (
        Address(display_name=sender_name, addr_spec=mail_from) if sender_name else mail_from
    )
    mail["To"] = ascii_domain(message.recipient)
    mail["Subject"] = subject
    mail["Date"] = format_datetime(utcnow())
    mail["Message-ID"] = message.message_id
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
