"""Which other sites may embed a newsletter's form, read its answers, or be returned to."""

from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Response, current_app, request

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


def permits(newsletters: Iterable[Newsletter], origin: str | None) -> bool:
    """Tell whether a page of ``origin`` may use these newsletters' forms (empty list: any)."""
    if origin is None or origin == own_origin():
        return True
    return all(not n.origins() or origin in n.origins() for n in newsletters)


def safe_return_url(newsletters: Iterable[Newsletter], url: str | None) -> str | None:
    """Return ``url`` if every newsletter lists its origin explicitly; never an open redirect."""
    origin = origin_of(url or "")
    if origin is None:
        return None
    if origin == own_origin() or all(origin in n.origins() for n in newsletters):
        return url.strip()
    return None


def add_cors_headers(response: Response, newsletters: list[Newsletter]) -> Response:
    """Let the requesting page read this answer, by exact origin; never with credentials."""
    origin = origin_of(request.headers.get("Origin", ""))
    response.vary.add("Origin")
    if all(not n.origins() for n in newsletters):
        response.headers["Access-Control-Allow-Origin"] = "*"
    elif origin and permits(newsletters, origin):
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
