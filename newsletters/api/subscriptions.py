"""Subscriptions through the API: sign up, page through, look up, unsubscribe."""

from datetime import datetime, timedelta

from .. import attribution, db, erasure, limits, subscribers, wakeup
from ..db import utcnow
from ..models import Source
from ..subscriptions import services
from ..subscriptions.entry import client_ip, client_user_agent
from ..text import has_control_characters
from . import auth, bp, idempotency, queries, schemas
from .body import json_object
from .errors import ApiError
from .responses import documented

ACCEPTED = (
    "Accepted. If the address may get one, a confirmation mail goes out within seconds; "
    "the subscription is confirmed when its owner follows the link."
)
# How far ahead of our clock a caller's consent time may be: clocks differ a little.
CLOCK_SKEW = timedelta(minutes=5)
SUBSCRIPTION = "/newsletters/<slug>/subscriptions/<email>"


@bp.route("/newsletters/<slug>/subscriptions", methods=["POST"])
@limits.api
@json_object
@bp.arguments(schemas.Signup, error_status_code=422)
@bp.response(202, schemas.Accepted)
@bp.doc(parameters=[idempotency.PARAMETER])
@documented(400, 403, 404, 409, 415, 422)
def create_subscription(signup: dict, slug: str):
    """Sign someone up, as the newsletter's form does: double opt-in, same checks.

    The answer is the same whether the address is new, pending or confirmed; an address
    erased at its owner's request is refused (409, `erased`) until the person signs up again
    through a form and confirms. Send an
    `Idempotency-Key` header to make retries safe: the same key with the same request gets
    the first answer again (and `Idempotent-Replayed: true`), and does nothing twice.
    """
    api_key = auth.current_key()
    newsletter = auth.newsletter(slug, write=True)
    session = db.session()
    retry_key = idempotency.key()
    if retry_key and (stored := idempotency.replay(session, api_key, retry_key)):
        session.rollback()
        return stored
    try:
        checked = services.check_signup(
            signup["email"],
            signup.get("name"),
            [newsletter],
            accept_typo=signup["accept_as_typed"],
        )
    except services.InvalidSignup as exc:
        raise ApiError(
            422,
            "invalid_fields",
            exc.message,
            {exc.field: exc.message},
            suggestion=exc.suggestion,
        ) from None
    email = checked.email
    if erasure.is_erased(session, email):
        # Another server cannot give the consent of a person who asked to be forgotten.
        raise ApiError(409, "erased", erasure.REFUSED, {"email": erasure.REFUSED})
    evidence = services.Evidence(
        ip=client_ip(),
        user_agent=client_user_agent(),
        source=Source.API,
        form_text=_consent_text(signup.get("consent") or {}),
        # The page the caller says they agreed on, kept as a form's page (its campaign too).
        page=attribution.clean_page((signup.get("consent") or {}).get("page")),
    )
    body = {
        "status": "accepted",
        "newsletter": newsletter.slug,
        "email": email,
        "message": ACCEPTED,
    }
    if retry_key and (stored := idempotency.remember(session, api_key, retry_key, body, 202)):
        session.rollback()
        return stored
    services.signup(
        session,
        [newsletter],
        checked,
        None,
        evidence,
        language=signup.get("lang") or newsletter.language,
    )
    session.commit()
    wakeup.notify()
    return body


@bp.route("/newsletters/<slug>/subscriptions", methods=["GET"])
@limits.api
@bp.arguments(schemas.ListArgs, location="query", error_status_code=400)
@bp.response(200, schemas.SubscriptionPage)
@documented(400, 403, 404)
def list_subscriptions(args: dict, slug: str):
    """Return a page of a newsletter's subscriptions, oldest first, and the next page's cursor.

    Walk the list by passing each page's `next_cursor` as `cursor`, until it is null.
    """
    newsletter = auth.newsletter(slug)
    after = queries.parse_cursor(args.get("cursor"))
    size = queries.page_size(args.get("limit"))
    page = subscribers.oldest_first(db.session(), newsletter, args["status"], after, size)
    return {
        "subscriptions": queries.bodies(page.subscriptions),
        "next_cursor": None if page.next_after is None else str(page.next_after),
    }


@bp.route(SUBSCRIPTION, methods=["GET"])
@limits.api
@bp.response(200, schemas.Subscription)
@documented(403, 404)
def get_subscription(slug: str, email: str):
    """Return the subscription of one address to a newsletter."""
    newsletter = auth.newsletter(slug)
    subscription = queries.subscription_of(db.session(), newsletter, email)
    return queries.bodies([subscription])[0]


@bp.route(SUBSCRIPTION, methods=["DELETE"])
@limits.api
@bp.response(200, schemas.Subscription)
@documented(403, 404)
def delete_subscription(slug: str, email: str):
    """Unsubscribe one address, on the word of the key's editor (kept in its history).

    Doing it again is harmless: the answer is the subscription as it stands.
    """
    return _unsubscribe(slug, email)


@bp.route(SUBSCRIPTION + "/unsubscribe", methods=["POST"])
@limits.api
@bp.response(200, schemas.Subscription)
@documented(403, 404)
def unsubscribe_subscription(slug: str, email: str):
    """Unsubscribe one address: the same as DELETE, for clients that cannot send one."""
    return _unsubscribe(slug, email)


def _unsubscribe(slug: str, email: str) -> dict:
    api_key = auth.current_key()
    newsletter = auth.newsletter(slug, write=True)
    session = db.session()
    subscription = queries.subscription_of(session, newsletter, email)
    services.unsubscribe_by_editor(
        session,
        subscription,
        api_key.editor,
        services.Evidence(ip=client_ip(), user_agent=client_user_agent(), source=Source.API),
        via=f"through API key {api_key.id} ({api_key.name})",
    )
    session.commit()
    return queries.bodies([subscription])[0]


def _consent_text(consent: dict) -> str:
    """Return the consent evidence the caller gave, labelled as the caller's, in one text.

    Evidence holds one text beside the IP, user agent and source (which are those of the
    calling server): the caller's time, page and words go there, each named.
    """
    api_key = auth.current_key()
    parts = [f"API key {api_key.id} ({api_key.name}) of editor {api_key.editor.email}"]
    at: datetime | None = consent.get("at")
    if at is not None:
        if at > utcnow() + CLOCK_SKEW:
            raise ApiError(
                422,
                "invalid_fields",
                "The consent time is in the future.",
                {"consent.at": "The consent time is in the future; send when they agreed."},
            )
        parts.append(f"consent given at (per the caller): {at.isoformat()}")
    page = consent.get("page")
    if page:
        if has_control_characters(page) or not page.startswith(("http://", "https://")):
            raise ApiError(
                422,
                "invalid_fields",
                "The consent page must be an http(s) URL on one line.",
                {"consent.page": "Send the http(s) URL of the page where they agreed."},
            )
        parts.append(f"on page (per the caller): {page}")
    text = consent.get("text")
    if text:
        if has_control_characters(text, multiline=True) or "\x00" in text:
            raise ApiError(
                422,
                "invalid_fields",
                "The consent text holds control characters.",
                {"consent.text": "The text may hold line breaks, no other control characters."},
            )
        parts.append(f"text shown (per the caller): {text}")
    if len(parts) == 1:
        parts.append("no consent evidence given by the caller")
    return "; ".join(parts)
