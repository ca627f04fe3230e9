"""Render outbox rows into mails: text and HTML templates, headers, no text a signer typed.

The worker renders a batch at a time (``Renderer``): it reads the batch's tokens and
newsletters in two queries, and builds each set of newsletters' mail once, with placeholders
where each mail differs (its link, its recipient, date and Message-ID); each mail is then
that prototype's bytes with its own values put in. The prototype is only used where that
gives the very bytes building the mail from scratch would (``_Prototype``); the other mails
are built from scratch.
"""

import functools
import io
import re
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.generator import BytesGenerator
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import urlsplit

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from flask import current_app, render_template
from flask_babel import force_locale, gettext
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from .. import catalogue, colors, i18n, reader_mails, tokens
from ..db import utcnow
from ..links import external_url
from ..models import Newsletter, OutboxKind, OutboxMessage, Subscription, Token, token_subscription
from ..text import has_control_characters

# The newsletter's texts (per language) that go into a header of a mail.
HEADER_TEXTS = ("sender_name", "confirm_subject", "welcome_subject", "reminder_subject")
# RFC 5322's recommended line length, which the email package folds headers at: a header
# line within it goes out exactly as written.
HEADER_LINE = 78
# An ASCII dot-atom address (no quotes, no spaces) and a Message-ID made of such parts: the
# email package writes either into its header as it is.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
PLAIN_ADDRESS = re.compile(rf"{_DOT_ATOM}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
MESSAGE_ID = re.compile(rf"<{_DOT_ATOM}@{_DOT_ATOM}>")
# Stand-ins for a date (the same length as any other of format_datetime's UTC dates) and
# for the other per-mail values; random ones per prototype, so no text can hold them.
DATE_STANDIN = format_datetime(datetime(2000, 1, 1, tzinfo=UTC))
# A logo's width in every mail, in CSS pixels: its height follows its own proportions.
LOGO_WIDTH = 120
# The mail's card in dark mode (templates/mail/_layout.html): links must read on it too.
DARK_CARD = "#1f1f1f"
DARK_TEXT = "#e8eaed"


class Unrenderable(Exception):
    """The outbox row cannot be built into a mail: what it refers to is gone, or is bad."""


@dataclass(slots=True)
class Mail:
    """A built mail: its envelope and its bytes as SMTP carries them (CRLF line ends)."""

    sender: str
    recipient: str
    message_id: str
    data: bytes
    # Whether its addresses need the server's SMTPUTF8 (RFC 6531): a non-ASCII local part.
    smtputf8: bool
    links: dict[str, str] = field(default_factory=dict)

    def as_text(self) -> str:
        """Return the mail as text with newline line ends, for files and the console."""
        return self.data.decode("utf-8", "replace").replace("\r\n", "\n")


class Renderer:
    """Build the mails of one batch of outbox rows, from what it reads for all of them at once."""

    def __init__(
        self,
        session: Session,
        rows: list[OutboxMessage],
        prototypes: dict | None = None,
    ):
        # token id -> (purpose, salt, key id, digest), the newsletters it confirms, and the
        # language its reader signed up in
        self.tokens, self.newsletters_of, self.language_of = _tokens(
            session, [_token_id(row) for row in rows]
        )
        wanted = sorted(
            {n for listed in self.newsletters_of.values() for n in listed}
            | {n for row in rows for n in _payload_newsletters(row)}
        )
        # Plain rows, read for each batch: a newsletter edited meanwhile is seen at once.
        query = _queries(session.get_bind().dialect.name)[1]
        self.newsletters = catalogue.detached(
            session.connection(), session.execute(query, {"ids": wanted}).all()
        )
        self.derive = tokens.deriver()
        self.sender = sender()
        self.envelope_sender = self.sender.addr_spec
        self.dates: tuple[int, str] = (0, "")
        # newsletter ids -> prototype, for this batch
        self.by_newsletters: dict[tuple[int, ...], _Prototype] = {}
        self.domain = ascii_domain(self.sender.addr_spec).rpartition("@")[2]
        # Shared by the batches of one round (``prototypes``): a prototype is kept for as long
        # as its newsletters' texts are what this batch read.
        self.prototypes: dict[tuple, _Prototype] = {} if prototypes is None else prototypes

    def newsletter_ids(self, message: OutboxMessage) -> list[int]:
        """Return the newsletters ``message`` is about; none if that can no longer be known."""
        if message.kind != OutboxKind.CONFIRM:
            return []
        return list(self.newsletters_of.get(_token_id(message), []))

    def render(self, message: OutboxMessage) -> Mail:
        """Build the mail for ``message``; raise ``Unrenderable`` if it cannot be built."""
        if message.kind == OutboxKind.WEBHOOK_PAUSED:
            return self._webhook_paused(message)
        if message.kind == OutboxKind.SAMPLE:
            return self._sample(message)
        if message.kind in NOTICES:
            return self._notice(message)
        if message.kind != OutboxKind.CONFIRM:
            raise Unrenderable(f"unknown outbox message kind {message.kind!r}")
        token_id = _token_id(message)
        newsletter_ids = tuple(self.newsletters_of.get(token_id, ()))
        if not newsletter_ids:
            raise Unrenderable("the confirmation token of this mail no longer exists")
        secret = self.derive(*self.tokens[token_id])
        if secret is None:
            raise Unrenderable(
                "the secret key that made this mail's link is no longer in SECRET_KEY_FALLBACKS"
            )
        language = self.language(message, [self.newsletters[n] for n in newsletter_ids])
        prototype = self._prototype(newsletter_ids, language)
        recipient = ascii_domain(message.recipient)
        headers = {
            "recipient": recipient,
            "date": self._date(),
            "message_id": message_id(message, self.domain),
        }
        links = {"confirm": prototype.confirm_url.replace(prototype.secret, secret)}
        international = not (self.envelope_sender + recipient).isascii()
        if not international and prototype.fits(headers):
            data = prototype.fill({"secret": secret, **headers})
        else:
            mail = compose(prototype.newsletters, self.sender, secret, language, **headers)
            data = wire(mail, utf8=international)
        return Mail(
            sender=self.envelope_sender,
            recipient=recipient,
            message_id=headers["message_id"],
            data=data,
            smtputf8=international,
            links=links,
        )

    def language(self, message: OutboxMessage, newsletters: list[Newsletter]) -> str:
        """Return the language of ``message``'s reader: as queued, signed up, or the list's."""
        return (
            i18n.supported((message.payload or {}).get("language"))
            or self.language_of.get(_token_id(message))
            or i18n.supported(newsletters[0].language if newsletters else None)
            or i18n.DEFAULT_LANGUAGE
        )

    def _webhook_paused(self, message: OutboxMessage) -> Mail:
        """Build the mail telling an editor that a webhook was paused (webhooks.delivery)."""
        headers = self._headers(message)
        mail = webhook_paused(message.payload or {}, self.sender, **headers)
        return self._finish(mail, headers["recipient"])

    def _notice(self, message: OutboxMessage) -> Mail:
        """Build one of the readers' other mails (``NOTICES``): a text with one link."""
        payload = message.payload or {}
        token_id = _token_id(message)
        if token_id not in self.tokens:
            raise Unrenderable("the token of this mail's link no longer exists")
        secret = self.derive(*self.tokens[token_id])
        if secret is None:
            raise Unrenderable(
                "the secret key that made this mail's link is no longer in SECRET_KEY_FALLBACKS"
            )
        ids = payload.get("newsletter_ids") or self.newsletters_of.get(token_id) or []
        newsletters = [self.newsletters[n] for n in ids if n in self.newsletters]
        if payload.get("newsletter_ids") and not newsletters:
            raise Unrenderable("the newsletter of this mail no longer exists")
        kind = OutboxKind(message.kind)
        link = external_url(NOTICES[kind][0], token=secret)
        headers = self._headers(message)
        mail = notice(
            kind,
            newsletters,
            self.sender,
            link,
            self.language(message, newsletters),
            payload.get("receipt"),
            **headers,
        )
        return self._finish(mail, headers["recipient"], links={"link": link})

    def _sample(self, message: OutboxMessage) -> Mail:
        """Build an editor's test of a newsletter's mail (``sample``), to the editor."""
        payload = message.payload or {}
        kind = payload.get("of")
        ids = _payload_newsletters(message)
        newsletters = [self.newsletters[n] for n in ids if n in self.newsletters]
        if kind not in SAMPLES:
            raise Unrenderable(f"a test mail of an unknown kind: {kind!r}")
        if not newsletters:
            raise Unrenderable("the newsletter of this test mail no longer exists")
        headers = self._headers(message)
        mail = sample(
            OutboxKind(kind),
            newsletters[0],
            self.sender,
            self.language(message, newsletters),
            **headers,
        )
        return self._finish(mail, headers["recipient"])

    def _headers(self, message: OutboxMessage) -> dict[str, str]:
        """Return the headers that differ from mail to mail: recipient, date, Message-ID."""
        return {
            "recipient": ascii_domain(message.recipient),
            "date": self._date(),
            "message_id": message_id(message, self.domain),
        }

    def _finish(self, mail: EmailMessage, recipient: str, **extra) -> Mail:
        """Return ``mail`` built, to ``recipient``: its envelope and its bytes."""
        international = not (self.envelope_sender + recipient).isascii()
        return Mail(
            sender=self.envelope_sender,
            recipient=recipient,
            message_id=mail["Message-ID"],
            data=wire(mail, utf8=international),
            smtputf8=international,
            **extra,
        )

    def _prototype(self, newsletter_ids: tuple[int, ...], language: str) -> "_Prototype":
        # Built once per set of newsletters, language and round, as long as their texts stay
        # the same. One that cannot be built (a text that cannot be a header, a template bug)
        # is tried again for each of its mails, which then fail alike: rare enough to forget.
        found = self.by_newsletters.get((newsletter_ids, language))
        if found is None:
            newsletters = [self.newsletters[n] for n in newsletter_ids]
            key = (language, *(_mail_texts(n) for n in newsletters))
            if key not in self.prototypes:
                self.prototypes[key] = _Prototype(newsletters, self.sender, language)
            found = self.by_newsletters[(newsletter_ids, language)] = self.prototypes[key]
        return found

    def _date(self) -> str:
        # A Date header per second is all anyone reads: formatted once a second.
        now = utcnow()
        second = int(now.timestamp())
        if self.dates[0] != second:
            self.dates = (second, format_datetime(now.replace(microsecond=0)))
        return self.dates[1]


class _Prototype:
    """One set of newsletters' mail, built with stand-ins for what differs from mail to mail.

    Each mail's bytes are the prototype's with its own values in place of the stand-ins. That
    gives exactly what building the mail from scratch gives as long as nothing the email
    package decides depends on those values. The link's secret has a fixed length and only
    characters that 7bit, 8bit and quoted-printable bodies write as they are, so the choice
    of encoding and where quoted-printable breaks its lines (``=`` CRLF, even inside the
    secret) come out the same; checked: each occurrence of the secret in the text is found,
    whole or broken, in the bytes (base64, which a text of long lines in other scripts gets,
    hides it: such a set's mails are built from scratch). The per-mail headers stay short
    enough not to be folded (``fits``); a mail whose headers do not is built from scratch.
    """

    def __init__(self, newsletters: list[Newsletter], sender: Address, language: str):
        _check_header_texts(newsletters)
        self.newsletters = newsletters
        # Link secrets are 43 characters of the URL-safe base64 alphabet: so is this one.
        self.secret = secrets.token_urlsafe(32)
        standin = secrets.token_hex(16)
        headers = {
            "recipient": f"{standin}@to.invalid",
            "date": DATE_STANDIN,
            "message_id": f"<{standin}@id.invalid>",
        }
        self.confirm_url = confirm_url(self.secret)
        mail = compose(newsletters, sender, self.secret, language, **headers)
        data = wire(mail, utf8=False)
        texts = "".join(part.get_content() for part in mail.iter_parts())
        # (name, bytes found) for each stand-in: the secret may be broken by soft line breaks.
        soft_break = rb"(?:=\r\n)?"
        patterns = {
            "secret": soft_break.join(re.escape(bytes([c])) for c in self.secret.encode()),
            **{name: re.escape(value.encode()) for name, value in headers.items()},
        }
        found = list(
            re.finditer(
                b"|".join(b"(?P<%s>%s)" % (n.encode(), p) for n, p in patterns.items()), data
            )
        )
        expected = Counter({"secret": texts.count(self.secret), **dict.fromkeys(headers, 1)})
        # Literal bytes, and (name, where soft line breaks split it) for each value.
        self.segments: list[bytes | tuple[str, tuple[int, ...]]] | None = None
        if Counter(match.lastgroup for match in found) == expected:
            self.segments, done = [], 0
            for match in found:
                self.segments.append(data[done : match.start()])
                self.segments.append((match.lastgroup, _split_points(match.group())))
                done = match.end()
            self.segments.append(data[done:])
            self.slots = [i for i, part in enumerate(self.segments) if isinstance(part, tuple)]

    def fits(self, headers: dict[str, str]) -> bool:
        """Tell whether ``headers`` put into the prototype give what composing them gives."""
        return (
            self.segments is not None
            and PLAIN_ADDRESS.fullmatch(headers["recipient"]) is not None
            and len("To: " + headers["recipient"]) <= HEADER_LINE
            and len(headers["date"]) == len(DATE_STANDIN)
            and MESSAGE_ID.fullmatch(headers["message_id"]) is not None
            and len("Message-ID: " + headers["message_id"]) <= HEADER_LINE
        )

    def fill(self, values: dict[str, str]) -> bytes:
        """Return the prototype's bytes with ``values`` in place of its stand-ins."""
        parts = list(self.segments)
        for at in self.slots:
            name, breaks = parts[at]
            value = values[name].encode()
            if breaks:
                starts = (0, *breaks)
                value = b"=\r\n".join(
                    value[a:b] for a, b in zip(starts, (*breaks, None), strict=True)
                )
            parts[at] = value
        return b"".join(parts)


def _split_points(found: bytes) -> tuple[int, ...]:
    """Return where soft line breaks split a value as found in the bytes (value offsets)."""
    points, offset = [], 0
    for part in found.split(b"=\r\n")[:-1]:
        offset += len(part)
        points.append(offset)
    return tuple(points)


def compose(
    newsletters: list[Newsletter],
    sender_address: Address,
    secret: str,
    language: str = i18n.DEFAULT_LANGUAGE,
    *,
    recipient: str,
    date: str,
    message_id: str,
) -> EmailMessage:
    """Build the confirmation mail of ``newsletters`` in ``language``, as an ``EmailMessage``.

    Its two links carry the same secret: the confirmation, and the preference centre, which
    a confirmation link opens for as long as it is valid.
    """
    with force_locale(language):
        names = ", ".join(n.name for n in newsletters)
        own = len(newsletters) == 1 and newsletters[0].text("confirm_subject")
        subject = own or gettext("Confirm your subscription to %(names)s", names=names)
        context = {
            "newsletters": newsletters,
            "confirm_url": confirm_url(secret),
            "preferences_url": external_url("preferences.page", token=secret),
            "ttl_hours": current_app.config["CONFIRM_TTL_HOURS"],
            "intro": (len(newsletters) == 1 and newsletters[0].text("confirm_body")) or None,
            "language": language,
            "subject": subject,
            "brand": brand(newsletters),
        }
        mail = _headed(
            from_address(newsletters, sender_address), subject, recipient, date, message_id
        )
        _add_parts(mail, "mail/confirm", context)
    return mail


def notice(
    kind: OutboxKind,
    newsletters: list[Newsletter],
    sender_address: Address,
    link: str,
    language: str = i18n.DEFAULT_LANGUAGE,
    receipt: dict | None = None,
    *,
    recipient: str,
    date: str,
    message_id: str,
) -> EmailMessage:
    """Build a reader's mail of ``kind`` (``NOTICES``) about ``newsletters``, with its ``link``."""
    _check_header_texts(newsletters)
    with force_locale(language):
        context = {
            "newsletters": newsletters,
            "names": ", ".join(n.name for n in newsletters),
            "link": link,
            "receipt": receipt,
            "ttl_hours": current_app.config["CONFIRM_TTL_HOURS"],
            "language": language,
            "brand": brand(newsletters),
        }
        context["subject"] = NOTICES[kind][1](newsletters, context)
        mail = _headed(
            from_address(newsletters, sender_address),
            context["subject"],
            recipient,
            date,
            message_id,
        )
        _add_parts(mail, f"mail/{kind}", context)
    return mail


def webhook_paused(
    paused: dict, sender_address: Address, *, recipient: str, date: str, message_id: str
) -> EmailMessage:
    """Build the mail telling an editor that a webhook was paused, from its outbox payload.

    In the language of the moment (the worker's default): editors' mails are not per reader.
    """
    name = paused.get("newsletter", "")
    # The newsletter's name is an editor's text, checked by the catalogue for line breaks.
    subject = f"Webhook paused: {name}"
    context = {
        **paused,
        "manage_url": external_url("admin.webhooks", slug=paused.get("slug", "")),
        "subject": subject,
        "brand": _brand(name, None, None, None),
    }
    mail = _headed(sender_address, subject, recipient, date, message_id)
    _add_parts(mail, "mail/webhook_paused", context)
    return mail


def sample(
    kind: OutboxKind,
    newsletter: Newsletter,
    sender_address: Address,
    language: str = i18n.DEFAULT_LANGUAGE,
    *,
    recipient: str,
    date: str,
    message_id: str,
) -> EmailMessage:
    """Build a test of ``newsletter``'s mail of ``kind``: as a reader gets it, in ``language``.

    Its links have the length and form of real ones but open no one's subscription (a fresh
    random secret that no token has), and its subject says it is a test.
    """
    secret = secrets.token_urlsafe(32)
    headers = {"recipient": recipient, "date": date, "message_id": message_id}
    if kind == OutboxKind.CONFIRM:
        mail = compose([newsletter], sender_address, secret, language, **headers)
    elif kind == OutboxKind.WEBHOOK_PAUSED:
        paused = {
            "newsletter": newsletter.name,
            "slug": newsletter.slug,
            "url": SAMPLE_WEBHOOK_URL,
            "reason": SAMPLE_WEBHOOK_REASON,
        }
        with force_locale(language):
            mail = webhook_paused(paused, sender_address, **headers)
    else:
        link = external_url(NOTICES[kind][0], token=secret)
        now = utcnow()
        receipt = (
            reader_mails.receipt_of(newsletter.name, now, now, None, "hosted")
            if kind == OutboxKind.WELCOME
            else None
        )
        mail = notice(kind, [newsletter], sender_address, link, language, receipt, **headers)
    with force_locale(language):
        subject = gettext("[Test] %(subject)s", subject=mail["Subject"])
    mail.replace_header("Subject", subject)
    return mail


def _headed(
    sender_address: Address, subject: str, recipient: str, date: str, message_id: str
) -> EmailMessage:
    """Return a new mail with its headers: From, To, Subject, Date, Message-ID."""
    mail = EmailMessage()
    mail["From"] = sender_address
    mail["To"] = recipient
    mail["Subject"] = subject
    mail["Date"] = date
    mail["Message-ID"] = message_id
    mail["Auto-Submitted"] = "auto-generated"
    return mail


def _add_parts(mail: EmailMessage, template: str, context: dict) -> None:
    """Give ``mail`` its text part and its HTML part, from ``template``'s .txt and .html."""
    mail.set_content(render_template(f"{template}.txt", **context))
    mail.add_alternative(render_template(f"{template}.html", **context), subtype="html")


def brand(newsletters: list[Newsletter]) -> dict:
    """Return how a mail about ``newsletters`` looks: their name, colours, logo and site.

    One newsletter's own accent, logo and site; several share the product's look unless
    they share one accent.
    """
    one = newsletters[0] if len(newsletters) == 1 else None
    accents = {colors.accent(n) for n in newsletters}
    return _brand(
        ", ".join(n.name for n in newsletters),
        accents.pop() if len(accents) == 1 else None,
        one.logo_url if one is not None else None,
        one.site_url if one is not None else None,
    )


def _brand(name: str, accent: str | None, logo_url: str | None, site_url: str | None) -> dict:
    # Only https images and web sites go into a mail (the catalogue checks them when saved).
    return {
        "name": name,
        **palette(accent or colors.DEFAULT_ACCENT),
        "logo_url": logo_url if logo_url and logo_url.startswith("https://") else None,
        "logo_width": LOGO_WIDTH,
        "site_url": site_url if site_url and _is_web(site_url) else None,
        "site_label": colors.site_label(site_url) if site_url and _is_web(site_url) else None,
    }


@functools.lru_cache(maxsize=256)
def palette(accent: str) -> dict[str, str]:
    """Return a mail's colours for ``accent``: the button, its label, links on white and dark.

    Each reads at WCAG AA (4.5:1) on what it stands on; computed once per accent.
    """
    on_dark = accent if colors.contrast(accent, DARK_CARD) >= 4.5 else DARK_TEXT
    return {
        "accent": accent,
        "on_accent": colors.text_on(accent),
        "link": colors.link_on_white(accent),
        "link_dark": on_dark,
    }


def _is_web(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https")


def _subject_of(text: str | None, default: str):
    """Return a subject function: a newsletter's own ``text``, else ``default`` with names.

    Called in the mail's language (``force_locale``): both come out in it.
    """

    def subject(newsletters: list[Newsletter], context: dict) -> str:
        own = text and len(newsletters) == 1 and newsletters[0].text(text)
        return own or gettext(default, names=context["names"])

    return subject


def _(text: str) -> str:
    """Mark ``text`` for the catalogue; ``_subject_of`` translates it when the mail is built."""
    return text


# The readers' mails besides the confirmation: the endpoint of the one link each carries (its
# token in the payload's ``token_id``), and its subject.
NOTICES = {
    OutboxKind.REMINDER: (
        "subscriptions.confirm_page",
        _subject_of("reminder_subject", _("Reminder: confirm your subscription to %(names)s")),
    ),
    OutboxKind.WELCOME: (
        "preferences.page",
        _subject_of("welcome_subject", _("Welcome to %(names)s")),
    ),
    OutboxKind.PREFERENCES_LINK: (
        "preferences.page",
        _subject_of(None, _("Your link to manage your subscriptions")),
    ),
    OutboxKind.DATA_LINK: (
        "preferences.data",
        _subject_of(None, _("Your data, ready to download")),
    ),
}


# The mails an editor may preview and send themselves a test of (admin/mail_preview.py).
SAMPLES = (OutboxKind.CONFIRM, *NOTICES, OutboxKind.WEBHOOK_PAUSED)
# What a test of the "webhook paused" mail shows: a receiver of the publisher's, failing.
SAMPLE_WEBHOOK_URL = "https://crm.example.org/hooks/newsletters"
SAMPLE_WEBHOOK_REASON = "HTTP 500 from the receiver, 8 deliveries in a row"


def from_address(newsletters: list[Newsletter], sender_address: Address) -> Address:
    """Return the From of a reader's mail: MAIL_FROM's address, named as its one newsletter.

    Named by the editors' sender name, else the newsletter's name; a mail about several
    newsletters keeps MAIL_FROM's own name. Address encodes a name in any script (RFC 2047).
    """
    one = newsletters[0] if len(newsletters) == 1 else None
    sender_name = one is not None and (one.text("sender_name") or one.name)
    return Address(
        display_name=sender_name or sender_address.display_name,
        username=sender_address.username,
        domain=sender_address.domain,
    )


def wire(mail: EmailMessage, *, utf8: bool) -> bytes:
    """Return ``mail`` as ``smtplib``'s ``send_message`` puts it on the wire."""
    with io.BytesIO() as out:
        generator = BytesGenerator(out, policy=mail.policy.clone(utf8=True) if utf8 else None)
        generator.flatten(mail, linesep="\r\n")
        return out.getvalue()


def confirm_url(secret: str) -> str:
    """Return the public confirmation link of ``secret``."""
    return external_url("subscriptions.confirm", token=secret)


def newsletter_ids(session: Session, message: OutboxMessage) -> list[int]:
    """Return the newsletters ``message`` is about; none if that can no longer be known."""
    if message.kind != OutboxKind.CONFIRM:
        return []
    token_id = _token_id(message)
    return _tokens(session, [token_id])[1].get(token_id, [])


def _tokens(session: Session, token_ids: list) -> tuple[dict, dict[int, list[int]]]:
    """Read tokens and the newsletters each confirms, in subscription order."""
    query = _queries(session.get_bind().dialect.name)[0]
    found = session.execute(query, {"ids": sorted({t for t in token_ids if t is not None})})
    by_id, newsletters_of, language_of = {}, {}, {}
    for token_id, purpose, salt, key_id, digest, newsletter_id, language in found:
        by_id[token_id] = (purpose, salt, key_id, digest)
        listed = newsletters_of.setdefault(token_id, [])
        if newsletter_id is not None:
            listed.append(newsletter_id)
        if i18n.supported(language):
            language_of.setdefault(token_id, language)
    return by_id, newsletters_of, language_of


def among(dialect: str, column, name: str) -> sa.ColumnElement[bool]:
    """Return ``column IN :name``, a batch's worth of values bound as ``name``.

    On PostgreSQL as ``= ANY(:name)``, one array: SQLAlchemy would render a placeholder per
    value of a list, for each statement anew, which costs more than the query itself.
    """
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(column.type)))
    return column.in_(sa.bindparam(name, expanding=True))


@functools.cache
def _queries(dialect: str) -> tuple[sa.Select, sa.Select]:
    """Return the queries of a batch's tokens and of their newsletters, built once."""
    tokens_query = (
        sa.select(
            Token.id,
            Token.purpose,
            Token.salt,
            Token.key_id,
            Token.digest,
            Subscription.newsletter_id,
            Subscription.language,
        )
        .select_from(Token)
        .outerjoin(token_subscription, token_subscription.c.token_id == Token.id)
        .outerjoin(Subscription, Subscription.id == token_subscription.c.subscription_id)
        .where(among(dialect, Token.__table__.c.id, "ids"))
        .order_by(Token.id, Subscription.id)
    )
    newsletters = Newsletter.__table__
    newsletters_query = sa.select(newsletters).where(among(dialect, newsletters.c.id, "ids"))
    return tokens_query, newsletters_query


def message_id(message: OutboxMessage, domain: str | None = None) -> str:
    """Return the Message-ID of ``message``: its stored unique part at MAIL_FROM's domain.

    Built with the mail, so the settings of the worker that sends it decide the domain, as
    they decide the From; the unique part was fixed at enqueue, so a mail sent again after
    a crash carries the same Message-ID. Rows queued before this stored a whole Message-ID,
    which is kept as it is.
    """
    if "@" in message.message_id:
        return message.message_id
    if domain is None:
        domain = ascii_domain(sender().addr_spec).rpartition("@")[2]
    return f"<{message.message_id}@{domain}>"


def sender() -> Address:
    """Return MAIL_FROM as an address: ``news@example.org`` or ``News <news@example.org>``."""
    # The config checked at start-up that it is one address.
    [address] = policy.default.header_factory("From", current_app.config["MAIL_FROM"]).addresses
    return address


def _token_id(message: OutboxMessage) -> int | None:
    token_id = (message.payload or {}).get("token_id")
    # Only what can be a token's id goes into the query (a bad payload must not fail it).
    return token_id if isinstance(token_id, int) and not isinstance(token_id, bool) else None


def _payload_newsletters(message: OutboxMessage) -> list[int]:
    carries = message.kind in NOTICES or message.kind == OutboxKind.SAMPLE
    listed = (message.payload or {}).get("newsletter_ids") if carries else None
    if not isinstance(listed, list):
        return []
    return [n for n in listed if isinstance(n, int) and not isinstance(n, bool)]


def _mail_texts(newsletter: Newsletter) -> tuple:
    """Return what of ``newsletter`` a mail may hold: a prototype is kept while it stays."""
    own = tuple(sorted((t.language, t.key, t.value) for t in newsletter.texts))
    branding = (newsletter.accent_color, newsletter.logo_url, newsletter.site_url)
    return (newsletter.id, newsletter.name, newsletter.slug, newsletter.language, own, branding)


def _check_header_texts(newsletters: list[Newsletter]) -> None:
    """Refuse texts that cannot be a header, saved before the catalogue refused them."""
    for newsletter in newsletters:
        texts = [("name", newsletter.name)]
        texts += [(t.key, t.value) for t in newsletter.texts if t.key in HEADER_TEXTS]
        for field_name, value in texts:
            if has_control_characters(value or ""):
                raise Unrenderable(
                    f"the {catalogue.TEXTS[field_name].label.lower()} of the newsletter "
                    f"{newsletter.slug!r} holds a line break or another control character; "
                    "correct it in the newsletter's settings"
                )


def ascii_domain(address: str) -> str:
    """Return ``address`` with its domain in IDNA form, which every mail server accepts.

    The IDNA 2008 form, as email-validator computed it at signup: Python's own "idna" codec
    is IDNA 2003, which maps ß to ss and would send straße.de's mail to strasse.de, another
    domain with another owner.
    """
    if address.isascii():
        return address  # nothing to convert; stored addresses are normalised at signup
    local, _, _domain = address.rpartition("@")
    try:
        checked = validate_email(address, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        return address
    return f"{local}@{checked.ascii_domain}"
