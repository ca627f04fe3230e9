"""Which other sites may embed a newsletter's form, read its answers, or be returned to."""

from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Response, current_app, request
from werkzeug.exceptions import Forbidden

from ..models import Newsletter


def origin_of(url: str) -> str | None:
    """Return ``scheme://host[:port]`` of an http(s) URL, lower-cased, or None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    suffix = f":{port}" if port and port != default else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{suffix}"


def parse_origins(text: str | None) -> list[str]:
    """Return the origins listed in ``text`` (whitespace or comma separated), normalised."""
    found = []
    for item in (text or "").replace(",", " ").split():
        origin = origin_of(item)
        if origin is None:
            raise ValueError(f"{item!r} is not an origin like https://www.example.com")
        if origin not in found:
            found.append(origin)
    return found


def own_origin() -> str:
    return origin_of(current_app.config["BASE_URL"]) or ""


def permits(newsletters: Iterable[Newsletter], header: str | None) -> bool:
    """Tell whether a page whose Origin header is ``header`` may use these newsletters' forms.

    No header at all is a request from no web page (curl, a server, a browser that sends
    none on same-origin posts): nothing to check. An opaque origin (``null``: a sandboxed
    iframe, a data: page) or one that is not a URL names no site, so it passes only where a
    newsletter lets any site embed it. A newsletter with an empty list allows every page.
    """
    if header is None:
        return True
    origin = origin_of(header)
    if origin is not None and origin == own_origin():
        return True
    return all(not n.origins() or origin in n.origins() for n in newsletters)


def check(newsletters: Iterable[Newsletter]) -> None:
    """Refuse (403) a signup posted from a page that these newsletters do not allow.

    The one origin check of every signup entry point: ``entry.take_signup`` calls it before
    it reads the form, so a new entry point cannot forget it.
    """
    header = request.headers.get("Origin")
    if not permits(newsletters, header):
        shown = origin_of(header or "") or "a page that hides its address (Origin: null)"
        raise Forbidden(
            f"This signup form may not be used on {shown}. The newsletter's editors choose "
            "the sites that may embed it."
        )


def safe_return_url(newsletters: Iterable[Newsletter], url: str | None) -> str | None:
    """Return ``url`` if every newsletter lists its origin explicitly; never an open redirect."""
    origin = origin_of(url or "")
    if origin is None:
        return None
    if origin == own_origin() or all(origin in n.origins() for n in newsletters):
        return url.strip()
    return None


def readable_cross_origin(view):
    """Mark a signup view whose answers pages on other sites may read (``add_cors_headers``).

    A mark on the view, like ``@limits.signup``: a new signup endpoint declares it where it
    is defined, instead of being added to a list of endpoint names elsewhere.
    """
    view.readable_cross_origin = True
    return view


def is_readable_cross_origin() -> bool:
    """Tell whether this request's view was marked ``readable_cross_origin``."""
    view = current_app.view_functions.get(request.endpoint or "")
    return getattr(view, "readable_cross_origin", False)


def add_cors_headers(response: Response, newsletters: list[Newsletter]) -> Response:
    """Let the requesting page read this answer, by exact origin; never with credentials.

    A refusal (4xx, 5xx) is readable by any page: it says only why nothing was stored, and
    a widget on a page that is not allowed must be able to show that instead of "could not
    reach the service".
    """
    header = request.headers.get("Origin")
    origin = origin_of(header or "")
    response.vary.add("Origin")
    # A preflight is answered for any page too: the request it clears is checked on arrival.
    anyone = response.status_code >= 400 or request.method == "OPTIONS"
    if anyone or all(not n.origins() for n in newsletters):
        response.headers["Access-Control-Allow-Origin"] = "*"
    elif origin and permits(newsletters, header):
        response.headers["Access-Control-Allow-Origin"] = origin
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "POST"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, Accept"
        response.headers["Access-Control-Max-Age"] = "86400"
    return response


def frame_ancestors(newsletter: Newsletter) -> str:
    """Return the CSP frame-ancestors value for a newsletter's iframe page."""
    origins = newsletter.origins()
    return "frame-ancestors " + (" ".join(["'self'", *origins]) if origins else "*")
