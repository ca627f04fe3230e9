"""Signup, confirmation and unsubscription: one function per use case.

Every entry point (hosted form, embed, API, importer) calls these, so validation and throttles
cannot drift apart. They flush and never commit: the caller commits once, and the outbox row
written here goes out only if that commit happens.
"""

from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import address_checks, addresses, erasure, ledger, reader_mails, tokens
from ..db import utcnow
from ..ledger import Action, Evidence
from ..models import (
    Editor,
    Newsletter,
    Source,
    Status,
    Subscription,
    Token,
    TokenPurpose,
)
from ..text import has_control_characters
from . import processing

CANCELLED = _l(
    "This subscription was cancelled after this link was sent. Sign up again to receive it."
)


class InvalidSignup(ValueError):
    """A signup's field is unacceptable; ``field`` names it and the message says why.

    ``suggestion`` is the address the reader probably meant (a typo in a common domain):
    sent again as typed, with ``accept_as_typed``, the address is taken.
    """

    def __init__(
        self, field: str, message: str, suggestion: str | None = None, *, policy: bool = False
    ):
        super().__init__(message)
        self.field = field
        self.message = message
        self.suggestion = suggestion
        # A valid address this newsletter does not take (disposable, role): the message is
        # what the reader needs, not "enter a correct address".
        self.policy = policy


@dataclass(frozen=True)
class Signup:
    """A signup's fields as they are kept: the address checked, the name cleaned."""

    email: str
    name: str | None
    # What the address check found (address_checks.FLAGS), for editors to see.
    flags: frozenset[str] = frozenset()

    @property
    def address_flags(self) -> str | None:
        """Return the flags as stored: space-separated, in a fixed order; None for none."""
        return address_checks.stored(self.flags)


class LinkError(LookupError):
    """A confirmation or unsubscribe link that cannot be used; the message says why.

    ``sign_up_again`` lists the newsletters whose forms the reader may use for a new link.
    """

    def __init__(self, message: str, status: int, sign_up_again: list[Newsletter] = ()):
        super().__init__(message)
        self.message = message
        self.status = status
        self.sign_up_again = list(sign_up_again)


class AlreadyConfirmed(Exception):
    """A used confirmation link whose subscription stands: the reader is subscribed.

    Said plainly, since whoever holds the link owns the inbox it was sent to.
    """

    def __init__(self, token: "Token"):
        super().__init__("already confirmed")
        self.token = token


def normalise_address(raw: str) -> str:
    """Return the lower-cased normalised form of ``raw``, or raise ``InvalidSignup``.

    For finding an address (the preference centre, the API's lookups): syntax only. A signup
    checks more (``check_signup``).
    """
    raw = _present(raw)
    try:
        return addresses.normalise(raw)
    except addresses.InvalidAddress as exc:
        raise InvalidSignup("email", addresses.explained(str(exc))) from None


def check_address(
    raw: str,
    newsletters: list[Newsletter] = (),
    *,
    accept_typo: bool = False,
    dns: bool | None = None,
) -> address_checks.AddressCheck:
    """Check a signup's address for ``newsletters``, or raise ``InvalidSignup`` saying why.

    Syntax and normal form (email-validator), a typo in a common domain (refused with the
    suggestion unless ``accept_typo``, then flagged), disposable and role addresses (flagged,
    or refused where a newsletter says so) and, with EMAIL_CHECK_DELIVERABILITY (or ``dns``),
    the domain's mail servers in DNS, whose failure never refuses an address.
    """
    raw = _present(raw)
    config = current_app.config
    try:
        found = address_checks.check(
            raw,
            accept_typo=accept_typo,
            dns=config["EMAIL_CHECK_DELIVERABILITY"] if dns is None else dns,
            timeout=config["EMAIL_DNS_TIMEOUT_SECONDS"],
        )
    except addresses.InvalidAddress as exc:
        raise InvalidSignup("email", addresses.explained(str(exc))) from None
    if found.suggestion and not accept_typo:
        raise InvalidSignup(
            "email",
            _("Did you mean %(suggestion)s?", suggestion=found.suggestion),
            suggestion=found.suggestion,
        )
    if "disposable" in found.flags and any(n.disposable_policy == "refuse" for n in newsletters):
        raise InvalidSignup(
            "email",
            _(
                "This address is from a disposable mail service, which this newsletter does "
                "not accept. Please use an address you keep."
            ),
            policy=True,
        )
    if "role" in found.flags and any(n.role_policy == "refuse" for n in newsletters):
        raise InvalidSignup(
            "email",
            _(
                "This looks like a shared address (such as info@ or admin@), which this "
                "newsletter does not accept. Please use your own address."
            ),
            policy=True,
        )
    return found


def _present(raw: str | None) -> str:
    raw = (raw or "").strip()
    if not raw:
        raise InvalidSignup("email", _("Enter an email address."))
    if len(raw) > current_app.config["EMAIL_MAX_LENGTH"]:
        raise InvalidSignup("email", _("That email address is too long."))
    return raw


def clean_name(raw: str | None) -> str | None:
    """Return the optional name, trimmed, or raise ``InvalidSignup`` if it cannot be kept."""
    name = (raw or "").strip()
    if not name:
        return None
    if len(name) > current_app.config["NAME_MAX_LENGTH"]:
        limit = current_app.config["NAME_MAX_LENGTH"]
        raise InvalidSignup(
            "name", _("The name is too long: %(limit)s characters at most.", limit=limit)
        )
    if has_control_characters(name):
        raise InvalidSignup(
            "name", _("The name may not contain line breaks or control characters.")
        )
    return name


def check_signup(
    email: str | None,
    name: str | None,
    newsletters: list[Newsletter] = (),
    *,
    accept_typo: bool = False,
) -> Signup:
    """Return a signup's fields as they are kept, or raise ``InvalidSignup``.

    The one check of a signup's fields, for the form, the iframe, the widget, the API and
    the importer (``check_address``, ``clean_name``).
    """
    found = check_address(email or "", newsletters, accept_typo=accept_typo)
    return Signup(email=found.address, name=clean_name(name), flags=found.flags)


@dataclass
class SignupResult:
    # Whether a confirmation mail was queued; None when the worker will decide.
    mail_queued: bool | None


def signup(
    session: Session,
    newsletters: list[Newsletter],
    email: str | Signup,
    name: str | None,
    evidence: Evidence,
    language: str | None = None,
) -> SignupResult:
    """Accept a signup to ``newsletters``, checked by ``check_signup``: store it for the worker.

    The request writes one row, whatever the address's state (``processing.accept``), so
    the answer it gives takes the same time for everyone and tells nobody who is subscribed;
    the worker makes the subscriptions and queues the mail within a second or two. With
    SIGNUP_PROCESSING = "inline" (tests, and a deployment without a worker) the same
    processing runs at once in the caller's transaction. ``email`` may be the plain address
    of a caller that checked nothing else (it is checked then, a typo taken as typed).
    """
    checked = email if isinstance(email, Signup) else check_signup(email, name, accept_typo=True)
    request = processing.Request.of(
        [n.id for n in newsletters],
        checked.email,
        checked.name,
        evidence,
        language=language,
        address_flags=checked.address_flags,
    )
    if current_app.config["SIGNUP_PROCESSING"] == "inline":
        return SignupResult(mail_queued=processing.process(session, [request]) > 0)
    processing.accept(session, request)
    return SignupResult(mail_queued=None)


def _get_or_create(session: Session, model, key: dict):
    """Return the row of ``model`` with ``key``, inserting it if absent, safe under races."""
    query = sa.select(model).filter_by(**key)
    row = session.scalar(query)
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = model(**key)
            session.add(row)
    except IntegrityError:
        # Another transaction inserted it first; its row is committed and visible now.
        row = session.scalar(query)
        if row is None:
            raise
    return row


def record(
    session: Session,
    subscription: Subscription,
    action: Action,
    evidence: Evidence,
    detail: str | None = None,
) -> None:
    """Append one event of ``subscription`` to the consent ledger, with its current status."""
    ledger.record(
        session,
        [
            ledger.Entry(
                subscription_id=subscription.id,
                subscriber_id=subscription.subscriber_id,
                newsletter_id=subscription.newsletter_id,
                action=action,
                status=subscription.status,
                evidence=evidence,
                detail=detail,
            )
        ],
    )


def confirmation_token(session: Session, secret: str) -> Token:
    """Return the usable confirmation token behind ``secret``; else raise why it is not.

    ``AlreadyConfirmed`` for a used link whose subscriptions are confirmed, ``LinkError``
    for every other link that cannot be used.
    """
    token = tokens.find(session, TokenPurpose.CONFIRM, secret)
    if token is None:
        raise LinkError(
            _("This confirmation link is not valid. Check that it was copied whole."), 404
        )
    newsletters = [s.newsletter for s in token.subscriptions]
    if token.used_at is not None:
        if any(s.status == Status.CONFIRMED for s in token.subscriptions):
            raise AlreadyConfirmed(token)
        raise LinkError(_("This confirmation link has already been used."), 410, newsletters)
    if token.expires_at is not None and token.expires_at <= utcnow():
        raise LinkError(
            _("This confirmation link has expired. Sign up again to get a new one."),
            410,
            newsletters,
        )
    if all(s.status == Status.UNSUBSCRIBED for s in token.subscriptions):
        # The reader left after this link was sent; only a new signup may bring them back.
        raise LinkError(str(CANCELLED), 410, newsletters)
    return token


def confirm(
    session: Session,
    secret: str,
    ip: str | None,
    user_agent: str | None,
    chosen: set[int] | None = None,
) -> Token:
    """Confirm the pending subscriptions behind a confirmation link, once.

    ``chosen`` (newsletter ids), when given, is what the reader kept ticked on the page of a
    signup to several newsletters: the others are declined (unsubscribed, and recorded so).
    """
    token = confirmation_token(session, secret)
    now = utcnow()
    claimed = session.execute(
        sa.update(Token)
        .where(Token.id == token.id, Token.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        # Another request used it a moment ago (a double click): answer as it will be seen.
        session.expire(token)
        confirmation_token(session, secret)
        raise LinkError(_("This confirmation link has already been used."), 410)
    session.expire(token, ["used_at"])
    evidence = Evidence(ip=ip, user_agent=user_agent, source=Source.FORM)
    if chosen is not None and not chosen & {s.newsletter_id for s in token.subscriptions}:
        raise InvalidSignup("newsletter", _("Tick at least one newsletter to confirm."))
    confirmed_any = False
    for subscription in token.subscriptions:
        if chosen is not None and subscription.newsletter_id not in chosen:
            leave(session, subscription, evidence, action=Action.DECLINED)
            continue
        # Conditional, like the claim above: an unsubscription committed since the token was
        # read wins, and is not overwritten by a confirmation read before it.
        confirmed = session.execute(
            sa.update(Subscription)
            .where(Subscription.id == subscription.id, Subscription.status == Status.PENDING)
            .values(status=Status.CONFIRMED, confirmed_at=now, confirm_ip=ip)
            .execution_options(synchronize_session=False)
        )
        session.expire(subscription, ["status", "confirmed_at", "confirm_ip"])
        if confirmed.rowcount == 1:
            confirmed_any = True
            record(session, subscription, Action.CONFIRMED, evidence)
    if not confirmed_any and all(s.status == Status.UNSUBSCRIBED for s in token.subscriptions):
        # Cancelled while this link was being followed; the rollback leaves it unused.
        raise LinkError(str(CANCELLED), 410, [s.newsletter for s in token.subscriptions])
    if confirmed_any:
        # The person's own confirmed signup: an erasure they asked for no longer holds it back.
        erasure.forget(session, token.subscriber.email)
        reader_mails.queue_welcome(
            session, [s for s in token.subscriptions if s.confirmed_at == now], now
        )
    session.flush()
    return token


def unsubscribe_target(session: Session, secret: str) -> Subscription:
    """Return the subscription an unsubscribe link belongs to, or raise ``LinkError``."""
    token = tokens.find(session, TokenPurpose.UNSUBSCRIBE, secret)
    subscription = (
        None
        if token is None
        else session.scalar(
            sa.select(Subscription).where(Subscription.unsubscribe_token_id == token.id)
        )
    )
    if subscription is None:
        raise LinkError(
            _("This unsubscribe link is not valid. Check that it was copied whole."), 404
        )
    return subscription


def unsubscribe(session: Session, secret: str, evidence: Evidence) -> Subscription:
    """Unsubscribe the subscription behind an unsubscribe link; doing it twice is harmless."""
    subscription = unsubscribe_target(session, secret)
    leave(session, subscription, evidence)
    return subscription


def leave(
    session: Session,
    subscription: Subscription,
    evidence: Evidence,
    *,
    action: Action = Action.UNSUBSCRIBED,
    detail: str | None = None,
) -> bool:
    """Unsubscribe ``subscription`` and record who asked; False if it was unsubscribed already.

    A conditional UPDATE: of several unsubscriptions racing (a double click, a mail client's
    one-click POST beside the reader's), exactly one changes the row and records the event.
    """
    left = session.execute(
        sa.update(Subscription)
        .where(Subscription.id == subscription.id, Subscription.status != Status.UNSUBSCRIBED)
        .values(status=Status.UNSUBSCRIBED, unsubscribed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.expire(subscription, ["status", "unsubscribed_at"])
    if left.rowcount != 1:
        return False
    record(session, subscription, action, evidence, detail)
    session.flush()
    return True


def unsubscribe_by_editor(
    session: Session,
    subscription: Subscription,
    editor: Editor,
    evidence: Evidence,
    via: str | None = None,
) -> bool:
    """Unsubscribe ``subscription`` on an editor's word; False if it was unsubscribed already.

    The consent ledger names the editor (and ``via``, such as which API key), so that a
    reader who asks why they were taken off a list gets an answer.
    """
    return leave(
        session, subscription, evidence, action=Action.EDITED, detail=_by_editor(editor, via)
    )


def delete(
    session: Session,
    subscription: Subscription,
    editor: Editor,
    evidence: Evidence,
    via: str | None = None,
) -> None:
    """Delete ``subscription`` on an editor's word; its ledger stays, as does the address.

    Unlike an erasure this keeps the evidence (the ledger outlives the subscription, and the
    address its subscriber row), so who agreed to what can still be shown.
    """
    session.execute(
        sa.select(Subscription.id).where(Subscription.id == subscription.id).with_for_update()
    )
    subscription.status = Status.UNSUBSCRIBED
    record(session, subscription, Action.DELETED, evidence, _by_editor(editor, via))
    session.expire(subscription)
    token_id = subscription.unsubscribe_token_id
    session.execute(sa.delete(Subscription).where(Subscription.id == subscription.id))
    if token_id is not None:
        session.execute(
            sa.delete(Token).where(
                Token.id == token_id,
                ~sa.exists().where(Subscription.unsubscribe_token_id == token_id),
            )
        )
    session.flush()


def _by_editor(editor: Editor, via: str | None) -> str:
    return f"by editor {editor.email}" + (f" {via}" if via else "")
