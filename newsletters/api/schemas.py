"""What the API takes and gives, as marshmallow schemas: they validate and they document.

The OpenAPI document is generated from these (flask-smorest through apispec), so what the
document says and what the code checks cannot drift apart.
"""

from datetime import UTC

import marshmallow as ma
from marshmallow import fields, validate

from ..export_presets import PRESETS
from ..exports import STATUSES
from ..i18n import LANGUAGES
from ..models import Status
from ..subscribers import ADDRESS_FLAGS

URL_MAX_LENGTH = 2000
CONSENT_TEXT_MAX_LENGTH = 5000
TIMESTAMP = {"format": "date-time", "description": "ISO 8601, UTC; null where unknown."}


class Consent(ma.Schema):
    """Evidence of consent that the caller collected itself, recorded as the caller's."""

    at = fields.AwareDateTime(
        default_timezone=UTC,
        metadata={"description": "When the person agreed (ISO 8601; UTC if no offset)."},
    )
    page = fields.String(
        validate=validate.Length(max=URL_MAX_LENGTH),
        metadata={"description": "The URL of the page where they agreed."},
    )
    text = fields.String(
        validate=validate.Length(max=CONSENT_TEXT_MAX_LENGTH),
        metadata={"description": "The words they agreed to, as they were shown."},
    )


class Signup(ma.Schema):
    """A signup from another server: checked as the form's, with double opt-in."""

    email = fields.String(required=True, metadata={"example": "reader@example.org"})
    name = fields.String(allow_none=True, metadata={"example": "Ada"})
    consent = fields.Nested(Consent, allow_none=True)
    accept_as_typed = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Keep an address that looks like a typo (the answer to the first "
            "try carried a `suggestion`); it is flagged `typo` for editors."
        },
    )
    lang = fields.String(
        allow_none=True,
        validate=validate.OneOf(LANGUAGES),
        metadata={
            "description": "The reader's language: their mails are in it (default: the "
            "newsletter's)."
        },
    )


class Accepted(ma.Schema):
    """The answer to every valid signup, whatever the address's state."""

    status = fields.String(required=True, metadata={"enum": ["accepted"]})
    newsletter = fields.String(required=True)
    email = fields.String(required=True, metadata={"description": "As it is kept."})
    message = fields.String(required=True)


class Subscription(ma.Schema):
    """One address on one newsletter: SPEC's export fields, null where unknown."""

    id = fields.Integer(required=True)
    email = fields.String(required=True)
    name = fields.String(required=True, allow_none=True)
    status = fields.String(required=True, metadata={"enum": [s.value for s in Status]})
    optin_at = fields.String(required=True, allow_none=True, metadata=TIMESTAMP)
    optin_ip = fields.String(required=True, allow_none=True)
    confirmed_at = fields.String(required=True, allow_none=True, metadata=TIMESTAMP)
    confirm_ip = fields.String(required=True, allow_none=True)
    unsubscribed_at = fields.String(required=True, allow_none=True, metadata=TIMESTAMP)
    source = fields.String(required=True)
    unsubscribe_url = fields.String(required=True, allow_none=True)
    address_flags = fields.List(
        fields.String(metadata={"enum": list(ADDRESS_FLAGS)}),
        required=True,
        metadata={
            "description": "What the address checks found at signup: a typo suggestion the "
            "reader declined (typo), a disposable-mail domain, a role address (info@), a "
            "domain with no MX record (no_mx), a DNS check that failed (unchecked). Empty "
            "when none, or for a signup older than the checks."
        },
    )
    language = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "enum": [*LANGUAGES, None],
            "description": "The reader's language, which their mails are in; null if unknown.",
        },
    )
    page = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "The page the signup form was on (for the API, the consent page "
            "the caller gave), its query cut to utm_* parameters; null if unknown."
        },
    )
    utm_source = fields.String(required=True, allow_none=True)
    utm_medium = fields.String(required=True, allow_none=True)
    utm_campaign = fields.String(required=True, allow_none=True)
    verification = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "enum": ["proof", "unverified", None],
            "description": "What a browser's signup proved: a solved proof-of-work challenge "
            "(proof), or nothing (unverified: a form without script); null for the API, "
            "imports and signups older than the check.",
        },
    )


class SubscriptionPage(ma.Schema):
    subscriptions = fields.List(fields.Nested(Subscription), required=True)
    next_cursor = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Pass as ?cursor= for the next page; null on the last one."},
    )


class Counts(ma.Schema):
    pending = fields.Integer(required=True)
    confirmed = fields.Integer(required=True)
    unsubscribed = fields.Integer(required=True)


class Newsletter(ma.Schema):
    slug = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    is_public = fields.Boolean(required=True)
    subscriptions = fields.Nested(Counts, required=True)


class NewsletterList(ma.Schema):
    newsletters = fields.List(fields.Nested(Newsletter), required=True)


class Change(ma.Schema):
    """One change of a subscription: the webhooks' body."""

    id = fields.String(required=True)
    event = fields.String(
        required=True,
        metadata={
            "enum": [
                "subscription.pending",
                "subscription.confirmed",
                "subscription.unsubscribed",
                "subscription.deleted",
                "subscription.erased",
            ]
        },
    )
    newsletter = fields.String(required=True)
    subscription = fields.Integer(
        required=True, metadata={"description": "The subscription's id, stable for its life."}
    )
    email = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "null for subscription.erased: the address is gone."},
    )
    status = fields.String(required=True, metadata={"enum": [s.value for s in Status]})
    at = fields.String(required=True, metadata=TIMESTAMP)
    cursor = fields.String(required=True, metadata={"description": "The feed's place after it."})


class ChangePage(ma.Schema):
    changes = fields.List(fields.Nested(Change), required=True)
    next_cursor = fields.String(
        required=True,
        metadata={"description": "Pass as ?cursor= to poll: the same one when nothing is new."},
    )


def _limit() -> fields.Integer:
    return fields.Integer(
        validate=validate.Range(min=1),
        metadata={"description": "At most this many (the server caps it at API_PAGE_SIZE)."},
    )


class ListArgs(ma.Schema):
    status = fields.String(
        load_default="all",
        validate=validate.OneOf(STATUSES),
        metadata={"description": "Only subscriptions with this status."},
    )
    cursor = fields.String(metadata={"description": "The next_cursor of the previous page."})
    limit = _limit()


class ChangeArgs(ma.Schema):
    cursor = fields.String(
        metadata={"description": "The next_cursor of the previous page; none: from the start."}
    )
    limit = _limit()


class ExportArgs(ma.Schema):
    status = fields.String(load_default="confirmed", validate=validate.OneOf(STATUSES))
    preset = fields.String(
        validate=validate.OneOf(list(PRESETS)),
        metadata={
            "description": "A CSV laid out for another tool's importer (listmonk, mailchimp, "
            "brevo, keila, ghost, buttondown, kit; docs/exports.md) instead of JSON Lines."
        },
    )
