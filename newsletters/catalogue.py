"""The newsletters themselves: create, change settings and slug, set origins, look up, count.

The one home of a newsletter's rules, for the editors' area and the command line alike. The
functions flush and never commit; the view or the command commits once.

A changed slug stays an alias (``SlugAlias``) of its newsletter, because forms embedded on
other sites, widgets and links in old mails keep using it.
"""

import dataclasses
import re
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import lazy_pgettext as _lp
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import db
from .embed.origins import parse_origins
from .i18n import LANGUAGES
from .models import TEXT_KEYS, Newsletter, NewsletterText, SlugAlias, Status, Subscription
from .text import has_control_characters

SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")  # the whole slug: fullmatch()
# Counts one statement of ``counts`` holds (SQLite allows 2,000 columns in a result).
COUNTS_PER_STATEMENT = 300
SLUG_RULE = _l(
    "Use lower-case letters, digits and hyphens, starting with a letter or digit, "
    "64 characters at most."
)


class CatalogueError(ValueError):
    """A newsletter's setting cannot be taken as given; ``field`` names it, the message why."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Text:
    """The rule of one text setting: its label, its longest length, whether it spans lines."""

    label: str  # lazily translated: shown in the editor's language
    longest: int
    multiline: bool = False
    required: bool = False


# Every text a newsletter has; those of TEXT_KEYS in each language. One-line texts go into mail
# headers (name, sender, subject) or into one line of a form, so they may not hold line breaks
# or other control characters.
TEXTS = {
    "name": Text(_lp("newsletter", "Name"), 200, required=True),
    "description": Text(_l("Description"), 2000, multiline=True),
    "placeholder": Text(_l("Field placeholder"), 200),
    "button": Text(_l("Button"), 100),
    "required_note": Text(_l("Note"), 200),
    "invalid_email": Text(_l("Invalid address message"), 200),
    "success_title": Text(_l("Success title"), 200),
    "success_text": Text(_l("Success text"), 2000, multiline=True),
    "sender_name": Text(_l("Sender name of mails"), 200),
    "confirm_subject": Text(_l("Subject of the confirmation mail"), 200),
    "confirm_body": Text(_l("Confirmation mail text"), 4000, multiline=True),
    "welcome_subject": Text(_l("Subject of the welcome mail"), 200),
    "welcome_body": Text(_l("Welcome mail text"), 4000, multiline=True),
    "reminder_subject": Text(_l("Subject of the reminder"), 200),
    "reminder_body": Text(_l("Reminder text"), 4000, multiline=True),
}
# Settings that are not texts.
OTHER_SETTINGS = (
    "slug",
    "is_public",
    "allowed_origins",
    "welcome_enabled",
    "reminder_hours",
    "language",
    "pin_language",
    "disposable_policy",
    "role_policy",
    "accent_color",
    "logo_url",
    "site_url",
)
# Branding (Newsletter.accent_color, logo_url, site_url): each optional, empty for none.
BRANDING = ("accent_color", "logo_url", "site_url")
ACCENT = re.compile(r"#[0-9a-f]{6}")
URL_LONGEST = 2000
# What a signup with a disposable or a role address gets (Newsletter.disposable_policy).
POLICIES = ("flag", "refuse")
ORIGINS_LONGEST = 4000


def check_slug(slug: str) -> str:
    """Return ``slug`` if it may name a newsletter in URLs; else raise ``CatalogueError``."""
    if not SLUG.fullmatch(slug or ""):
        raise CatalogueError("slug", str(SLUG_RULE))
    return slug


def check_text(field: str, value: str | None) -> str | None:
    """Return the text setting ``field`` trimmed, None if empty; else raise ``CatalogueError``."""
    rule = TEXTS[field]
    value = (value or "").strip()
    if rule.multiline:
        # A browser sends a textarea's line breaks as CRLF: one break, not two characters.
        value = value.replace("\r\n", "\n")
    if rule.required and not 0 < len(value) <= rule.longest:
        raise CatalogueError(
            field,
            _(
                "%(label)s: give 1 to %(longest)s characters.",
                label=rule.label,
                longest=rule.longest,
            ),
        )
    if len(value) > rule.longest:
        raise CatalogueError(
            field,
            _("%(label)s: %(longest)s characters at most.", label=rule.label, longest=rule.longest),
        )
    if has_control_characters(value, multiline=rule.multiline):
        message = (
            _("%(label)s may not contain control characters.", label=rule.label)
            if rule.multiline
            else _("%(label)s may not contain line breaks or control characters.", label=rule.label)
        )
        raise CatalogueError(field, message)
    return value or None


def check_language(value: str | None) -> str:
    """Return ``value`` if it is one of the product's languages; else raise ``CatalogueError``."""
    if value not in LANGUAGES:
        raise CatalogueError(
            "language", _("Language: choose one of %(languages)s.", languages=", ".join(LANGUAGES))
        )
    return value


def check_policy(field: str, value: str | None) -> str:
    """Return ``value`` if it is one of ``POLICIES``; else raise ``CatalogueError``."""
    if value not in POLICIES:
        raise CatalogueError(field, _("Choose one of %(choices)s.", choices=", ".join(POLICIES)))
    return value


def check_reminder_hours(value: str | int | None) -> int | None:
    """Return the hours after which a reminder goes, None for none; else raise ``CatalogueError``.

    The reminder repeats the confirmation link, so it must come before the link expires
    (CONFIRM_TTL_HOURS); a later one could never be sent.
    """
    if isinstance(value, str):
        value = value.strip()
    if value is None or value == "":
        return None
    ttl = current_app.config["CONFIRM_TTL_HOURS"]
    rule = _(
        "Reminder: give a whole number of hours from 1 to %(last)s (the confirmation link "
        "expires after %(ttl)s), or leave it empty for none.",
        last=ttl - 1,
        ttl=ttl,
    )
    if isinstance(value, bool):
        raise CatalogueError("reminder_hours", rule)
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit():
            raise CatalogueError("reminder_hours", rule)
        value = int(value)
    if not isinstance(value, int) or not 1 <= value < ttl:
        raise CatalogueError("reminder_hours", rule)
    return value


def create(session: Session, slug: str, name: str, **settings) -> Newsletter:
    """Add a newsletter called ``slug``, with any of the other settings ``update`` takes."""
    newsletter = Newsletter(slug=check_slug(slug), description="", is_public=True)
    _claim_slug(session, newsletter, slug)
    update(session, newsletter, name=name, **settings)
    return newsletter


def update(
    session: Session, newsletter: Newsletter, *, texts_language: str | None = None, **settings
) -> None:
    """Change the given settings of ``newsletter``: texts, ``slug``, ``is_public``, origins.

    Every setting is checked before any is changed. The texts of ``TEXT_KEYS`` are those of
    ``texts_language`` (default: the newsletter's language); an empty one means the default
    (the newsletter's own language's text, else SPEC's form texts, translated).
    ``allowed_origins`` is text, one origin per line or space; ``welcome_enabled`` turns the
    welcome mail on; ``reminder_hours`` (hours, empty or None for none) sets the one
    reminder of an unconfirmed signup; ``language``, ``pin_language``, ``disposable_policy``
    and ``role_policy`` as ``Newsletter`` says; ``accent_color`` (#rrggbb), ``logo_url`` and
    ``site_url`` brand its pages, embeds and mails (empty: none).
    """
    forget()  # this process's public pages serve the change once it is committed
    unknown = set(settings) - set(TEXTS) - set(OTHER_SETTINGS)
    if unknown:
        raise TypeError(f"no such newsletter setting: {', '.join(sorted(unknown))}")
    texts = {field: check_text(field, value) for field, value in settings.items() if field in TEXTS}
    origins = None
    if "allowed_origins" in settings:
        origins = _origins(settings["allowed_origins"])
    if "reminder_hours" in settings:
        reminder_hours = check_reminder_hours(settings["reminder_hours"])
    choices = {
        field: check_policy(field, settings[field])
        for field in ("disposable_policy", "role_policy")
        if field in settings
    }
    if "language" in settings:
        choices["language"] = check_language(settings["language"])
    branding = {f: _BRANDING_CHECKS[f](settings[f]) for f in BRANDING if f in settings}
    language = check_language(
        texts_language or choices.get("language") or newsletter.language or "en"
    )
    slug = settings.get("slug")
    if slug is not None and slug != newsletter.slug:
        _claim_slug(session, newsletter, check_slug(slug))
        _rename(session, newsletter, slug)
    for field, value in texts.items():
        if field in TEXT_KEYS:
            set_text(newsletter, field, language, value)
        else:
            # An empty description is just empty.
            setattr(newsletter, field, value or "" if field == "description" else value)
    for field, value in (choices | branding).items():
        setattr(newsletter, field, value)
    for field in ("is_public", "welcome_enabled", "pin_language"):
        if field in settings:
            setattr(newsletter, field, bool(settings[field]))
    if "reminder_hours" in settings:
        newsletter.reminder_hours = reminder_hours
    if origins is not None:
        newsletter.allowed_origins = " ".join(origins)
    session.add(newsletter)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        # Another request took the slug between the check and this write.
        raise CatalogueError("slug", _taken(newsletter.slug)) from None


def set_text(newsletter: Newsletter, key: str, language: str, value: str | None) -> None:
    """Set the editor's text ``key`` of ``newsletter`` in ``language``; None removes it."""
    found = next((t for t in newsletter.texts if (t.key, t.language) == (key, language)), None)
    if value is None:
        if found is not None:
            newsletter.texts.remove(found)
    elif found is None:
        newsletter.texts.append(NewsletterText(key=key, language=language, value=value))
    else:
        found.value = value


def set_origins(session: Session, newsletter: Newsletter, origins: str) -> None:
    """Let the sites in ``origins`` (https://www.example.com …) embed ``newsletter``."""
    update(session, newsletter, allowed_origins=origins)


def find(session: Session, slug: str) -> Newsletter | None:
    """Return the newsletter whose slug is ``slug`` now, if any."""
    if not _may_exist(slug):
        return None
    return session.scalar(sa.select(Newsletter).where(Newsletter.slug == slug))


def lookup(session: Session, slug: str) -> Newsletter | None:
    """Return the newsletter whose slug is or was ``slug``; compare its slug to tell which."""
    return lookup_many(session, [slug]).get(slug)


def lookup_many(session: Session, slugs: list[str]) -> dict[str, Newsletter]:
    """Return, for each of ``slugs`` that names a newsletter now or did before, that newsletter."""
    asked = [slug for slug in slugs if _may_exist(slug)]
    if not asked:
        return {}
    found = {
        n.slug: n for n in session.scalars(sa.select(Newsletter).where(Newsletter.slug.in_(asked)))
    }
    if len(found) < len(set(asked)):
        aliases = session.execute(
            sa.select(SlugAlias.slug, Newsletter)
            .join(SlugAlias.newsletter)
            .where(SlugAlias.slug.in_([slug for slug in asked if slug not in found]))
        )
        found |= {slug: newsletter for slug, newsletter in aliases}
    return found


@dataclass
class Published:
    """Every newsletter by current and old slug, as the public pages serve them.

    Read in two queries at most every NEWSLETTER_CACHE_SECONDS per process, so that a signup
    or a form page costs no query for its newsletter: the signup request writes one row and
    reads none. The newsletters are copies that belong to no session (read them, never add
    them to one). A change made in this process is seen at once (``forget``); one made by
    another process within the interval, once it has passed.
    """

    by_slug: dict[str, Newsletter] = dataclasses.field(default_factory=dict)
    public: list[Newsletter] = dataclasses.field(default_factory=list)
    read_at: float = float("-inf")


_reading = threading.Lock()


def published() -> Published:
    """Return this process's snapshot of the newsletters, read again once it is too old."""
    cache = current_app.extensions.setdefault("newsletters.published", [Published()])
    ttl = current_app.config["NEWSLETTER_CACHE_SECONDS"]
    if time.monotonic() - cache[0].read_at <= ttl:
        return cache[0]
    with _reading:
        if time.monotonic() - cache[0].read_at > ttl:
            cache[0] = _read_published()
    return cache[0]


def forget() -> None:
    """Make the next ``published()`` of this process read the newsletters again."""
    current_app.extensions.pop("newsletters.published", None)


def _read_published() -> Published:
    table = Newsletter.__table__
    started = time.monotonic()
    # A connection of its own, not the request's session: its transaction (which holds the
    # write lock on SQLite) ends here, and nothing pending in the session is touched.
    with db.engine().connect() as connection:
        rows = connection.execute(sa.select(table).order_by(table.c.name, table.c.id)).all()
        copies = detached(connection, rows)
        aliases = connection.execute(sa.select(SlugAlias.slug, SlugAlias.newsletter_id)).all()
    by_slug = {n.slug: n for n in copies.values()}
    for slug, newsletter_id in aliases:
        by_slug.setdefault(slug, copies[newsletter_id])
    public = [n for n in copies.values() if n.is_public]
    return Published(by_slug=by_slug, public=public, read_at=started)


def detached(connection, rows) -> dict[int, Newsletter]:
    """Return newsletters built from their table's ``rows``, texts read, in no session.

    For readers that must not hold a session's objects (the public pages' snapshot, the mail
    worker's batches): one more query, for every newsletter's texts at once.
    """
    copies = {row.id: Newsletter(**row._mapping) for row in rows}
    if copies:
        texts = NewsletterText.__table__
        for text in connection.execute(
            sa.select(texts).where(texts.c.newsletter_id.in_(list(copies)))
        ):
            copies[text.newsletter_id].texts.append(NewsletterText(**text._mapping))
    return copies


def aliases(session: Session, newsletter: Newsletter) -> list[str]:
    """Return the slugs ``newsletter`` had before and that still lead to it, oldest first."""
    return list(
        session.scalars(
            sa.select(SlugAlias.slug)
            .where(SlugAlias.newsletter_id == newsletter.id)
            .order_by(SlugAlias.created_at, SlugAlias.id)
        )
    )


def everything(session: Session) -> list[Newsletter]:
    """Return every newsletter, by slug."""
    return list(session.scalars(sa.select(Newsletter).order_by(Newsletter.slug)))


def counts(session: Session, newsletter_ids: list[int]) -> dict[int, dict[Status, int]]:
    """Return how many subscriptions of each newsletter have each status, zeros included."""
    # One count per (newsletter, status), each a range of the index on (newsletter_id,
    # status, id), all in one statement: SQLite counts a range at twice the speed that it
    # groups the same rows (bench/RESULTS.md: 64 → 31 ms at 1,000,000 subscriptions).
    pairs = [(nid, status) for nid in newsletter_ids for status in Status]
    found = {nid: {} for nid in newsletter_ids}
    for start in range(0, len(pairs), COUNTS_PER_STATEMENT):
        chunk = pairs[start : start + COUNTS_PER_STATEMENT]
        counted = session.execute(
            sa.select(
                *(
                    sa.select(sa.func.count())
                    .where(Subscription.newsletter_id == nid, Subscription.status == status)
                    .scalar_subquery()
                    for nid, status in chunk
                )
            )
        ).one()
        for (nid, status), n in zip(chunk, counted, strict=True):
            found[nid][status] = n
    return found


def check_accent_color(value: str | None) -> str | None:
    """Return a ``#rrggbb`` colour (lower case), None for none; else raise ``CatalogueError``."""
    value = (value or "").strip().lower()
    if not value:
        return None
    if len(value) == 4 and ACCENT.fullmatch("#" + "".join(c * 2 for c in value[1:])):
        value = "#" + "".join(c * 2 for c in value[1:])  # #f60 is #ff6600
    if not ACCENT.fullmatch(value):
        raise CatalogueError(
            "accent_color",
            _("Accent colour: give it as #rrggbb (for example #0b57d0), or leave it empty."),
        )
    return value


def check_logo_url(value: str | None) -> str | None:
    """Return the logo's URL (https, or http on this machine), None for none; else raise."""
    return _web_address(
        "logo_url",
        value,
        _("Logo: give the https:// address of an image (PNG, SVG or JPEG), or leave it empty."),
    )


def check_site_url(value: str | None) -> str | None:
    """Return the publisher's site (an http or https URL), None for none; else raise."""
    return _web_address(
        "site_url",
        value,
        _("Site: give your site's address, such as https://www.example.com, or leave it empty."),
        plain_http=True,
    )


def _web_address(field: str, value: str | None, rule: str, plain_http: bool = False) -> str | None:
    """Check a URL readers' browsers will load or follow: http(s), a host, no user, no spaces.

    Plain http is allowed for ``plain_http`` and, for anything, on this machine (a demo).
    """
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > URL_LONGEST or has_control_characters(value) or any(c.isspace() for c in value):
        raise CatalogueError(field, rule)
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise CatalogueError(field, rule) from None
    local = host in ("localhost", "::1") or host.startswith("127.")
    schemes = ("https", "http") if plain_http or local else ("https",)
    if parts.scheme.lower() not in schemes or not host or parts.username or parts.password:
        raise CatalogueError(field, rule)
    return value


_BRANDING_CHECKS = {
    "accent_color": check_accent_color,
    "logo_url": check_logo_url,
    "site_url": check_site_url,
}


def _claim_slug(session: Session, newsletter: Newsletter, slug: str) -> None:
    """Refuse ``slug`` if another newsletter has it, now or as an old slug."""
    owner = lookup(session, slug)
    if owner is not None and owner is not newsletter:
        raise CatalogueError("slug", _taken(slug))


def _rename(session: Session, newsletter: Newsletter, slug: str) -> None:
    """Give ``newsletter`` the new ``slug``, keeping its current one as an alias."""
    # Renamed back to an old slug: that slug is the newsletter's own again, not an alias.
    session.execute(sa.delete(SlugAlias).where(SlugAlias.slug == slug))
    if newsletter.id is not None:  # not a newsletter still being created
        session.add(SlugAlias(slug=newsletter.slug, newsletter_id=newsletter.id))
    newsletter.slug = slug


def _origins(text: str | list[str] | None) -> list[str]:
    if isinstance(text, list):
        text = " ".join(text)
    if len(text or "") > ORIGINS_LONGEST:
        raise CatalogueError(
            "allowed_origins",
            _("List %(longest)s characters of origins at most.", longest=ORIGINS_LONGEST),
        )
    try:
        return parse_origins(text)
    except ValueError as exc:
        raise CatalogueError("allowed_origins", str(exc)) from None


def _taken(slug: str) -> str:
    return _("The slug %(slug)r is taken: another newsletter has it, or had it before.", slug=slug)


def _may_exist(slug: str) -> bool:
    # PostgreSQL refuses a NUL in any text parameter; no slug holds one, so do not ask.
    return "\x00" not in slug
