"""Where a signup came from: which form, on which page, from which campaign.

A page is kept as the reader's browser named it, less what could identify the reader: no
user or password, no fragment, and of its query only the ``utm_*`` parameters, which name a
campaign (a newsletter link, a post), not a person. Nothing here reads or sets a cookie.
"""

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import current_app, request

from .models import PAGE_MAX_LENGTH, UTM_MAX_LENGTH, Source

# The forms a browser's signup may say it came from (the iframe's route says it alone).
BROWSER_FORMS = {Source.HOSTED, Source.PLAIN, Source.WIDGET, Source.SEVERAL}
UTM_PREFIX = "utm_"


@dataclass(frozen=True)
class Campaign:
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None


def clean_page(url: str | None) -> str | None:
    """Return the page ``url`` as a signup keeps it, or None if it is not a web page's URL."""
    if not url or len(url) > 4 * PAGE_MAX_LENGTH or not url.isprintable():
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    # An IPv6 address keeps its brackets, or its port would read as part of it.
    name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    host = name + (f":{port}" if port else "")
    utm = [(k, v) for k, v in parse_qsl(parts.query) if k.lower().startswith(UTM_PREFIX)]
    page = urlunsplit((parts.scheme, host, parts.path or "/", urlencode(utm), ""))
    if len(page) > PAGE_MAX_LENGTH:
        # A path this long is not worth keeping whole; the campaign may still be.
        page = urlunsplit((parts.scheme, host, "/", urlencode(utm), ""))[:PAGE_MAX_LENGTH]
    return page


def campaign(page: str | None) -> Campaign:
    """Return the campaign a kept page's ``utm_source``, ``utm_medium``, ``utm_campaign`` name."""
    if not page or "?" not in page:
        return Campaign()
    found = {}
    for key, value in parse_qsl(urlsplit(page).query):
        key = key.lower()
        if key in ("utm_source", "utm_medium", "utm_campaign") and key not in found:
            # Printable only: a %00 or a line break decodes into text no column should hold.
            value = "".join(ch for ch in value if ch.isprintable()).strip()
            found[key] = value[:UTM_MAX_LENGTH] or None
    return Campaign(found.get("utm_source"), found.get("utm_medium"), found.get("utm_campaign"))


def form_of(payload, default: Source) -> Source:
    """Return the form a browser's signup came from: its ``form`` field, if a known one."""
    try:
        given = Source(payload.get("form") or "")
    except ValueError:
        return default
    return given if given in BROWSER_FORMS else default


def page_of(given: str | None) -> str | None:
    """Return the page a signup or a view came from: ``given`` (its ``page``), else the Referer.

    The widget and the iframe send ``page`` (the embedding page); a plain form has only the
    Referer, whose path a browser sends when the host page's referrer policy allows it.
    """
    return clean_page(given) or clean_page(request.headers.get("Referer"))


def this_page() -> str | None:
    """Return the URL of this product's page being rendered (under BASE_URL), kept as a page."""
    return clean_page(current_app.config["BASE_URL"].rstrip("/") + request.full_path)
