"""The domain: newsletters, subscribers, their subscriptions, tokens, consent and the outbox."""

import enum
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base, UTCDateTime, utcnow


def _(text: str) -> str:
    """Mark ``text`` for the catalogue; it is translated where it is shown."""
    return text


# SPEC's default texts of the signup form, in English; a newsletter may override each, per
# language (``NewsletterText``). Marked for the catalogue, translated where they are shown
# (``Newsletter.text``), so each reader gets them in their language.
DEFAULT_TEXTS = {
    "placeholder": _("Enter your email to subscribe"),
    "button": _("Subscribe"),
    "required_note": _("* indicates required"),
    "invalid_email": _("Please, enter correct email address"),
    "success_title": _("Successfully subscribed"),
    "success_text": _(
        "Thank you for signing up for this newsletter. We've sent you a confirmation email."
    ),
}
# The texts of a newsletter that an editor may write per language (``NewsletterText.key``):
# the form's, then the mails'. None of the mail texts has a default here: the mails say their
# own (templates/mail).
TEXT_KEYS = (
    *DEFAULT_TEXTS,
    "sender_name",
    "confirm_subject",
    "confirm_body",
    "welcome_subject",
    "welcome_body",
    "reminder_subject",
    "reminder_body",
)


class Status(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"


class Source(enum.StrEnum):
    """Which form a signup came through (attribution.py); the funnel counts by it."""

    HOSTED = "hosted"  # the product's own page of a newsletter, or the index's form for it
    PLAIN = "plain"  # the plain HTML form pasted into another site (or one written by hand)
    IFRAME = "iframe"
    WIDGET = "widget"
    SEVERAL = "several"  # one form, several newsletters (the index's, or a widget's)
    API = "api"
    IMPORT = "import"
    # Before 2026-12: "form" was the hosted page, the plain form and the widget alike, and
    # "embed" the iframe. Rows keep what they were given.
    FORM = "form"
    EMBED = "embed"


class Verification(enum.StrEnum):
    """What a browser signup proved about being made by a person (proof.py)."""

    PROOF = "proof"  # a solved proof-of-work challenge, spent once
    UNVERIFIED = "unverified"  # no challenge at all: the plain form, a page without script


# The longest source an imported file may give a subscription (see Subscription.source).
SOURCE_MAX_LENGTH = 64
# The longest page URL and UTM value a signup keeps (longer ones are cut: attribution.py).
PAGE_MAX_LENGTH = 1000
UTM_MAX_LENGTH = 200


class TokenPurpose(enum.StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    # A preference-centre link mailed on request ("send me my link"): expires.
    PREFERENCES = "preferences"
    # A link to download one's own data, mailed from the preference centre: expires.
    DATA = "data"


class OutboxKind(enum.StrEnum):
    """What an outbox row is, and so who sends it."""

    # Mails: rendered by mail/messages.py, sent by the mail worker's SMTP delivery.
    CONFIRM = "confirm"
    REMINDER = "reminder"  # the one reminder of an unconfirmed signup: the same link again
    WELCOME = "welcome"  # after a confirmation, with the consent receipt
    PREFERENCES_LINK = "preferences_link"  # "send me my link"
    DATA_LINK = "data_link"  # the link to download one's data
    WEBHOOK_PAUSED = "webhook_paused"  # to a newsletter's editors
    SAMPLE = "sample"  # an editor's test of one of the above (payload "of"), to themselves
    # A webhook's POST (webhook_id set): sent by webhooks/delivery.py, in order per webhook.
    WEBHOOK = "webhook"


class OutboxState(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    # Refused for good by the mail server (a 5xx for that address), or unsendable.
    FAILED = "failed"
    # Given up: too many attempts, or too long in the outbox; an operator may retry it.
    DEAD = "dead"


def _enum(cls: type[enum.Enum]) -> sa.Enum:
    # Stored as plain strings with a CHECK, the same on SQLite and PostgreSQL.
    return sa.Enum(
        cls,
        native_enum=False,
        create_constraint=True,
        length=20,
        values_callable=lambda e: [m.value for m in e],
        name=cls.__name__.lower(),
    )


class Newsletter(Base):
    __tablename__ = "newsletter"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    is_public: Mapped[bool] = mapped_column(default=True)
    # The language of its pages and mails unless a reader's is known (i18n.reader_language),
    # and whether the reader's browser may choose another (False) or not (True).
    language: Mapped[str] = mapped_column(sa.String(8), default="en", server_default="en")
    pin_language: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # What a signup with a disposable address or a role address (info@) gets: "flag" (taken,
    # and marked for editors) or "refuse".
    disposable_policy: Mapped[str] = mapped_column(
        sa.String(10), default="flag", server_default="flag"
    )
    role_policy: Mapped[str] = mapped_column(sa.String(10), default="flag", server_default="flag")
    # The mail after a confirmation: off unless an editor turns it on (its texts: ``texts``).
    welcome_enabled: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # One reminder of a signup still unconfirmed after this many hours; None: none is sent.
    reminder_hours: Mapped[int | None] = mapped_column()
    # Origins (https://www.example.com) whose pages may embed the form, read the widget's
    # answers and be returned to after a signup; empty: any page may embed, none is returned to.
    allowed_origins: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    # Branding, each optional: the accent colour (#rrggbb) of buttons and links on its pages,
    # embeds and mails; a logo (an https URL) at the top of its hosted pages and mails; and
    # the publisher's site, which the thank-you page links back to.
    accent_color: Mapped[str | None] = mapped_column(sa.String(7))
    logo_url: Mapped[str | None] = mapped_column(sa.String(2000))
    site_url: Mapped[str | None] = mapped_column(sa.String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # The editor's texts, every language: read with the newsletter, since every page needs them.
    texts: Mapped[list["NewsletterText"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="NewsletterText.key"
    )

    def own_text(self, key: str, language: str | None = None) -> str | None:
        """Return the editor's text ``key`` in ``language`` (default: the newsletter's), if any."""
        language = language or self.language
        for text in self.texts:
            if text.key == key and text.language == language:
                return text.value
        return None

    def text(self, key: str, language: str | None = None) -> str | None:
        """Return text ``key`` in ``language`` (default: the page's or mail's language).

        The editor's text in that language; else theirs in the newsletter's own language;
        else the product's default, translated (None for a mail text, which has none).
        """
        from .i18n import current_language, default_text, translate

        if self.texts:
            own = self.own_text(key, language or current_language()) or self.own_text(key)
            if own:
                return own
        if key not in DEFAULT_TEXTS:
            return None
        # In the current language no switch of locale is needed: a signup's hot path.
        return translate(DEFAULT_TEXTS[key], language) if language else default_text(key)

    def origins(self) -> list[str]:
        """Return the allowed embed origins, as normalised when they were saved."""
        return (self.allowed_origins or "").split()


class NewsletterText(Base):
    """A newsletter's text (``TEXT_KEYS``) in one language, as its editor wrote it."""

    __tablename__ = "newsletter_text"

    newsletter_id: Mapped[int] = mapped_column(
        sa.ForeignKey("newsletter.id", ondelete="CASCADE"), primary_key=True
    )
    language: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)


class SlugAlias(Base):
    """A slug a newsletter had before: forms embedded on other sites still post to it."""

    __tablename__ = "slug_alias"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(64), unique=True)
    newsletter_id: Mapped[int] = mapped_column(
        sa.ForeignKey("newsletter.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    newsletter: Mapped[Newsletter] = relationship()


class Subscriber(Base):
    """One person, by address: lower-cased and normalised, so unique."""

    __tablename__ = "subscriber"
    # Ids are never reused on SQLite either: the consent ledger names subscribers by id.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The address's confirmation mails across all newsletters: a daily budget, so signing one
    # address up to many newsletters cannot flood its inbox.
    mail_window_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mails_in_window: Mapped[int] = mapped_column(default=0, server_default="0")

    subscriptions: Mapped[list["Subscription"]] = relationship(back_populates="subscriber")


token_subscription = sa.Table(
    "token_subscription",
    Base.metadata,
    sa.Column("token_id", sa.ForeignKey("token.id", ondelete="CASCADE"), primary_key=True),
    sa.Column(
        "subscription_id", sa.ForeignKey("subscription.id", ondelete="CASCADE"), primary_key=True
    ),
)


class Subscription(Base):
    """A subscriber on one newsletter: the status and the consent evidence live here."""

    __tablename__ = "subscription"
    __table_args__ = (
        sa.UniqueConstraint("newsletter_id", "subscriber_id"),
        # Exports and lists walk one newsletter's rows of one status in id order.
        sa.Index("ix_subscription_list", "newsletter_id", "status", "id"),
        # ... and all of one newsletter's rows in id order (exports with status=all).
        sa.Index("ix_subscription_newsletter_order", "newsletter_id", "id"),
        # The dashboard's per-day series and confirmation rate over one newsletter's dates.
        sa.Index("ix_subscription_optins", "newsletter_id", "optin_at", "confirmed_at"),
        sa.Index("ix_subscription_confirmations", "newsletter_id", "confirmed_at"),
        sa.Index("ix_subscription_unsubscribes", "newsletter_id", "unsubscribed_at"),
        # The subscriber list, newest first by signup time (then id), a page per index range:
        # all of a newsletter's rows, those of one status, and only the flagged rows, so a
        # rare flag is found without walking the whole list (bench/RESULTS.md). Its search
        # indexes (trigrams) are made by hand in migration 0017.
        sa.Index("ix_subscription_signups", "newsletter_id", "optin_at", "id"),
        sa.Index("ix_subscription_status_signups", "newsletter_id", "status", "optin_at", "id"),
        sa.Index(
            "ix_subscription_flagged",
            "newsletter_id",
            "optin_at",
            "id",
            # ... with the flags, so a count of one flag reads this index alone.
            "address_flags",
            sqlite_where=sa.text("address_flags IS NOT NULL"),
            postgresql_where=sa.text("address_flags IS NOT NULL"),
        ),
        # Ids are never reused on SQLite either: the consent ledger's chains are by id.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(
        sa.ForeignKey("newsletter.id", ondelete="CASCADE"), index=True
    )
    subscriber_id: Mapped[int] = mapped_column(
        sa.ForeignKey("subscriber.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[Status] = mapped_column(_enum(Status), default=Status.PENDING)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    # Where the signup came from: one of ``Source`` for the app's own entry points, or the
    # label an imported file gave (``import:legacy-list``), kept as given; see SOURCE_MAX_LENGTH.
    source: Mapped[str] = mapped_column(sa.String(SOURCE_MAX_LENGTH), default=str(Source.FORM))
    optin_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    optin_ip: Mapped[str | None] = mapped_column(sa.String(45))
    optin_user_agent: Mapped[str | None] = mapped_column(sa.String(512))
    form_text: Mapped[str | None] = mapped_column(sa.Text)
    # The version of the form text agreed to (its digest in consent_text) and the origin of
    # the page the form was embedded in: the export's consent columns.
    text_digest: Mapped[str | None] = mapped_column(sa.String(64))
    origin: Mapped[str | None] = mapped_column(sa.String(255))
    # The reader's language (i18n.LANGUAGES): every mail to them is in it.
    language: Mapped[str | None] = mapped_column(sa.String(8))
    # What the address check found (address_checks.FLAGS), space-separated: "disposable role".
    address_flags: Mapped[str | None] = mapped_column(sa.String(64))
    # Where the signup came from (attribution.py): the page the form was on (its query cut to
    # utm_* parameters) and the campaign those name; and what it proved (Verification).
    page: Mapped[str | None] = mapped_column(sa.String(PAGE_MAX_LENGTH))
    utm_source: Mapped[str | None] = mapped_column(sa.String(UTM_MAX_LENGTH))
    utm_medium: Mapped[str | None] = mapped_column(sa.String(UTM_MAX_LENGTH))
    utm_campaign: Mapped[str | None] = mapped_column(sa.String(UTM_MAX_LENGTH))
    verification: Mapped[str | None] = mapped_column(sa.String(16))
    # When the mail server took the signup's confirmation mail (the funnel's third step).
    mail_accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirm_ip: Mapped[str | None] = mapped_column(sa.String(45))
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmation_mailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the one reminder of an unconfirmed signup was queued (see Newsletter.reminder_hours).
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribe_token_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("token.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    newsletter: Mapped[Newsletter] = relationship()
    subscriber: Mapped[Subscriber] = relationship(back_populates="subscriptions")
    unsubscribe_token: Mapped["Token | None"] = relationship(foreign_keys=[unsubscribe_token_id])
    # The consent ledger's rows of this subscription, read only: the ledger is written by
    # ``ledger.record`` alone, and outlives the subscription.
    events: Mapped[list["ConsentEvent"]] = relationship(
        primaryjoin="Subscription.id == foreign(ConsentEvent.subscription_id)",
        order_by="ConsentEvent.id",
        viewonly=True,
    )


class SignupRequest(Base):
    """A signup as the request accepted it: validated, not yet processed.

    The request writes only this row (one INSERT, whatever the address's state, so the answer
    takes the same time for everyone); the worker turns batches of them into subscriptions,
    tokens, consent events and mails, and deletes them in the same transaction.
    """

    __tablename__ = "signup_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320))
    name: Mapped[str | None] = mapped_column(sa.String(200))
    # The newsletters signed up to at once (one confirmation mail for all), by id.
    newsletter_ids: Mapped[list] = mapped_column(sa.JSON)
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.String(512))
    source: Mapped[str] = mapped_column(sa.String(64))
    form_text: Mapped[str | None] = mapped_column(sa.Text)
    origin: Mapped[str | None] = mapped_column(sa.String(255))
    language: Mapped[str | None] = mapped_column(sa.String(8))
    address_flags: Mapped[str | None] = mapped_column(sa.String(64))
    page: Mapped[str | None] = mapped_column(sa.String(PAGE_MAX_LENGTH))
    utm_source: Mapped[str | None] = mapped_column(sa.String(UTM_MAX_LENGTH))
    utm_medium: Mapped[str | None] = mapped_column(sa.String(UTM_MAX_LENGTH))
    utm_campaign: Mapped[str | None] = mapped_column(sa.String(UTM_MAX_LENGTH))
    verification: Mapped[str | None] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DailyCount(Base):
    """A count per day, newsletter, form and page: views of a form, signups a defence stopped.

    Nothing about a visitor: no address, no cookie, no identifier; counters.py adds to it in
    batches (``metric``: "view", or "stopped:<defence>").
    """

    __tablename__ = "daily_count"

    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(
        sa.ForeignKey("newsletter.id", ondelete="CASCADE"), primary_key=True
    )
    metric: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    form: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    # The page's URL as attribution.py keeps it; "" when unknown (a key has no NULLs).
    page: Mapped[str] = mapped_column(sa.String(PAGE_MAX_LENGTH), primary_key=True)
    count: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class SpentChallenge(Base):
    """A proof-of-work challenge already used for a signup: refused if it comes again.

    Kept until it would have expired anyway (proof.py); one table for every worker.
    """

    __tablename__ = "spent_challenge"

    signature: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class LinkRequest(Base):
    """A reader's "send me my link", as the request accepted it: one INSERT, whoever asks.

    The worker mails a preference-centre link if the address is on any list, and nothing
    otherwise, then deletes the row: the answer tells nobody whether an address is known.
    """

    __tablename__ = "link_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320))
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    # The language of the page it was asked from: the link's mail is in it.
    language: Mapped[str | None] = mapped_column(sa.String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Token(Base):
    """A link's secret, stored as a SHA-256 digest; the secret itself is derived with HMAC.

    The secret is ``HMAC(SECRET_KEY, purpose:salt)`` with a random salt, so the worker that
    renders a mail and the export that writes an unsubscribe URL can re-derive it, while the
    database alone (and the outbox in it) holds nothing that opens a link.
    """

    __tablename__ = "token"

    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[TokenPurpose] = mapped_column(_enum(TokenPurpose))
    subscriber_id: Mapped[int] = mapped_column(
        sa.ForeignKey("subscriber.id", ondelete="CASCADE"), index=True
    )
    salt: Mapped[str] = mapped_column(sa.String(64))
    # Which secret key derived the secret (a fingerprint, see ``tokens.key_id``), so links
    # keep working after a rotation; None on tokens issued before keys were recorded.
    key_id: Mapped[str | None] = mapped_column(sa.String(16))
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    subscriber: Mapped[Subscriber] = relationship()
    subscriptions: Mapped[list[Subscription]] = relationship(secondary=token_subscription)


class ConsentText(Base):
    """A text a reader was shown when agreeing (a form's wording), stored once, by hash."""

    __tablename__ = "consent_text"

    digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    text: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConsentEvent(Base):
    """A row of the consent ledger: one event of a subscription, chained to the one before.

    Written only by ``ledger.record``; never updated (but for the redaction of its personal
    fields) nor deleted, which triggers enforce (migration 0013). It names its subscription,
    subscriber and newsletter by id without foreign keys, so it outlives all three.
    """

    __tablename__ = "consent_event"
    __table_args__ = (
        sa.Index("ix_consent_event_feed", "txid", "id"),
        sa.Index("ix_consent_event_chain", "subscription_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column()
    subscriber_id: Mapped[int | None] = mapped_column(index=True)
    newsletter_id: Mapped[int | None] = mapped_column()
    # What happened (ledger.Action) and the status it left the subscription in.
    action: Mapped[str | None] = mapped_column(sa.String(20))
    status: Mapped[Status] = mapped_column(_enum(Status))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Personal: blanked by erasure, cut to a network after RETENTION_EVIDENCE_DAYS.
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.String(512))
    source: Mapped[str | None] = mapped_column(sa.String(64))
    origin: Mapped[str | None] = mapped_column(sa.String(255))
    # The page the form was on (attribution.py) and what the signup proved (Verification).
    page: Mapped[str | None] = mapped_column(sa.String(PAGE_MAX_LENGTH))
    verification: Mapped[str | None] = mapped_column(sa.String(16))
    # The form text shown (consent_text.digest), the form's version.
    text_digest: Mapped[str | None] = mapped_column(sa.String(64))
    detail: Mapped[str | None] = mapped_column(sa.Text)
    # The personal fields enter the hash as this salted digest; the salt goes with them.
    salt: Mapped[str | None] = mapped_column(sa.String(32))
    evidence_digest: Mapped[str | None] = mapped_column(sa.String(64))
    prev_hash: Mapped[str | None] = mapped_column(sa.String(64))
    hash: Mapped[str | None] = mapped_column(sa.String(64))
    redacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # On PostgreSQL the id of the transaction that wrote the event (its default,
    # pg_current_xact_id(), migration 0012): the change feed orders events by (txid, id) and
    # hands out only those of finished transactions, so a reader never skips an event that
    # a slower transaction commits later with a smaller id. NULL on SQLite, whose writers
    # commit one after the other, in the order of their ids. FetchedValue: the ORM leaves the
    # column out of its INSERTs (without it, it writes NULL and PostgreSQL's default is lost).
    txid: Mapped[int | None] = mapped_column(sa.BigInteger, server_default=sa.FetchedValue())


class ErasedAddress(Base):
    """An erased person's address, as a keyed hash: no import or API call brings it back.

    ``digest`` is HMAC-SHA256 of the address under the secret key (``erasure.digest``): the
    address cannot be read back, only recognised. A new signup by the person, confirmed,
    removes the row.
    """

    __tablename__ = "erased_address"

    digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PurgeRun(Base):
    """One run of ``newsletters purge``: when, and what it removed or cut, for the record."""

    __tablename__ = "purge_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    summary: Mapped[dict] = mapped_column(sa.JSON)


class OutboxMessage(Base):
    """A mail to send, written in the transaction that caused it; the worker delivers it."""

    __tablename__ = "outbox_message"
    __table_args__ = (sa.Index("ix_outbox_message_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(40))
    recipient: Mapped[str] = mapped_column(sa.String(320))
    payload: Mapped[dict] = mapped_column(sa.JSON)
    # The unique part of the Message-ID, fixed at enqueue time, so a mail sent twice after a
    # crash is recognisably the same one; the mail adds MAIL_FROM's domain when it is built
    # (``mail.messages.message_id``). Rows queued before that hold a whole Message-ID.
    message_id: Mapped[str] = mapped_column(sa.String(255))
    state: Mapped[OutboxState] = mapped_column(_enum(OutboxState), default=OutboxState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the row last entered the queue: at enqueue, or when an operator retried it. Its
    # age (OUTBOX_MAX_AGE_HOURS) counts from here, so a retried old row gets a fresh chance.
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set for a webhook delivery (kind "webhook"): whose URL it goes to; NULL for a mail.
    webhook_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("webhook.id", ondelete="CASCADE"), index=True
    )


class Suppression(Base):
    """An address the mail server refused for good: no more mail to it for that newsletter."""

    __tablename__ = "suppression"
    __table_args__ = (sa.UniqueConstraint("email", "newsletter_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320))
    newsletter_id: Mapped[int] = mapped_column(
        sa.ForeignKey("newsletter.id", ondelete="CASCADE"), index=True
    )
    reason: Mapped[str] = mapped_column(sa.Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TransportStatus(Base):
    """How a mail transport fared last, as workers saw it: a failure here is no message's fault.

    One row per transport (``smtp://host:port``, never with its password), written by the
    workers when they cannot connect, greet or log in, and read by ``outbox status``.
    """

    __tablename__ = "transport_status"

    id: Mapped[int] = mapped_column(primary_key=True)
    transport: Mapped[str] = mapped_column(sa.String(255), unique=True)
    # Failures since the last success; 0 once a mail went through again.
    failures: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recovered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


editor_newsletter = sa.Table(
    "editor_newsletter",
    Base.metadata,
    sa.Column("editor_id", sa.ForeignKey("editor.id", ondelete="CASCADE"), primary_key=True),
    sa.Column(
        "newsletter_id", sa.ForeignKey("newsletter.id", ondelete="CASCADE"), primary_key=True
    ),
)


class Editor(Base):
    """A person who logs in to the editors' area: an admin, or an editor of some newsletters."""

    __tablename__ = "editor"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    # Part of the login session's identity: bumping it (a password change) ends every other
    # session of this editor.
    session_version: Mapped[int] = mapped_column(default=1)
    # Set when an admin disabled the account: it cannot log in, its sessions and keys stop.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    newsletters: Mapped[list[Newsletter]] = relationship(
        secondary=editor_newsletter, order_by="Newsletter.name"
    )

    @property
    def is_active(self) -> bool:
        """Tell whether the account may be used (Flask-Login refuses inactive ones)."""
        return self.disabled_at is None

    # The rest of Flask-Login's user protocol.
    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"

    def may_edit(self, newsletter: Newsletter) -> bool:
        """Tell whether this editor may see and change ``newsletter``."""
        return self.is_admin or any(n.id == newsletter.id for n in self.newsletters)


class ExportRecord(Base):
    """One export of a list: who took which subscribers out, when, and how many."""

    __tablename__ = "export_record"

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(
        sa.ForeignKey("newsletter.id", ondelete="CASCADE"), index=True
    )
    editor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("editor.id", ondelete="SET NULL"))
    via: Mapped[str] = mapped_column(sa.String(20))
    status: Mapped[str] = mapped_column(sa.String(20))
    format: Mapped[str] = mapped_column(sa.String(10))
    rows: Mapped[int | None] = mapped_column()
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    newsletter: Mapped[Newsletter] = relationship()
    editor: Mapped[Editor | None] = relationship()


class ApiKey(Base):
    """A key an editor's other systems use on /api/v1: it acts as that editor, or reads only.

    Only a hash of the key is stored (``digest``, SHA-256: the key is 256 random bits, so a
    slow hash buys nothing); ``prefix`` is its first characters, shown to tell keys apart.
    """

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    editor_id: Mapped[int] = mapped_column(
        sa.ForeignKey("editor.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(100))
    prefix: Mapped[str] = mapped_column(sa.String(16))
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    read_only: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    editor: Mapped[Editor] = relationship()


class IdempotentRequest(Base):
    """An API request made with an ``Idempotency-Key``, and the answer it got."""

    __tablename__ = "idempotent_request"
    __table_args__ = (sa.UniqueConstraint("api_key_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    api_key_id: Mapped[int] = mapped_column(sa.ForeignKey("api_key.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(255))
    # SHA-256 of the method, path and body: the same key with another request is a conflict.
    request_digest: Mapped[str] = mapped_column(sa.String(64))
    status_code: Mapped[int] = mapped_column()
    body: Mapped[dict] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Webhook(Base):
    """A URL told of every change of a newsletter's subscriptions, signed with its secret."""

    __tablename__ = "webhook"

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(
        sa.ForeignKey("newsletter.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(sa.String(2000))
    # The signing secret: kept as it is, since each delivery is signed with it.
    secret: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The change feed's position up to which deliveries were queued: (txid, consent event id).
    queued_txid: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    queued_event_id: Mapped[int] = mapped_column(default=0, server_default="0")
    # Set when it kept failing: nothing more is sent until an editor resumes it.
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_reason: Mapped[str | None] = mapped_column(sa.Text)

    newsletter: Mapped[Newsletter] = relationship()


class ImportJob(Base):
    """A list uploaded in the editors' area, imported by the worker while the editor waits or not.

    The file is kept here until the import ends (so any worker process can take the job), then
    dropped; the counts are written as the worker goes, for the progress page.
    """

    __tablename__ = "import_job"

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(
        sa.ForeignKey("newsletter.id", ondelete="CASCADE"), index=True
    )
    editor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("editor.id", ondelete="SET NULL"))
    filename: Mapped[str] = mapped_column(sa.String(255), default="")
    # queued → running → done or failed (refused: the report says why).
    state: Mapped[str] = mapped_column(sa.String(10), default="queued", index=True)
    # Loaded only by the worker that runs the job: a list of jobs never reads the files.
    content: Mapped[bytes | None] = mapped_column(sa.LargeBinary, deferred=True)
    size: Mapped[int] = mapped_column(default=0)
    # The file's lines, counted at the upload: what rows_done goes up to.
    lines: Mapped[int] = mapped_column(default=0)
    send_confirmation: Mapped[bool] = mapped_column(default=False)
    rows_done: Mapped[int] = mapped_column(default=0)
    refused: Mapped[int] = mapped_column(default=0)
    # The finished import's report (counts, refused rows as shown), or why it failed.
    report: Mapped[dict | None] = mapped_column(sa.JSON)
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Renewed while a worker holds the job: a job whose worker died is taken again after a while.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Claims so far: the one a worker took is its fence (only it may finish the job).
    attempts: Mapped[int] = mapped_column(default=0)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    newsletter: Mapped[Newsletter] = relationship()
