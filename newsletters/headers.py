"""Security headers of every answer: a Content-Security-Policy, a Referrer-Policy, caching.

Every response gets the defaults from one after_request hook. A view or a whole blueprint
that needs something else says so where it is defined, as it says its route:

    @bp.get("/confirm/<token>")
    @headers.secret_link
    def confirm_page(token): ...

    headers.declare(bp, headers.Policy(frame_ancestors="frame-ancestors 'none'"))

so that a new entry point gets the safe defaults without anyone adding it to a list.
"""

import secrets
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

from flask import Flask, current_app, g, request

ATTRIBUTE = "security_headers"

# Only this product's own files: no inline script or style (so no style="" attributes and no
# onclick=), nothing from elsewhere but https images (a newsletter's logo). A template that
# really needs an inline <script> or <style> gives it nonce="{{ csp_nonce() }}". No
# form-action: the hosted form may send a reader back to a publisher's allowed return URL,
# and form-action would block that redirect.
BASE_POLICY = (
    "default-src 'self'",
    "script-src 'self'{nonce}",
    "style-src 'self'{nonce}",
    # A newsletter's logo (its branding) is an https image from the publisher's site.
    "img-src 'self' https:",
    "object-src 'none'",
    "base-uri 'none'",
)


@dataclass(frozen=True)
class Policy:
    """What a view or blueprint declares; a field left at None keeps the outer value."""

    # The whole CSP frame-ancestors directive, or a function that returns it for the request
    # (None from it: keep the default).
    frame_ancestors: str | Callable[[], str | None] | None = None
    referrer: str | None = None
    # Replaces whatever Cache-Control the view set.
    cache_control: str | None = None
    # Whole directives added to the CSP, of names BASE_POLICY does not use (``worker-src``).
    extra: tuple[str, ...] | None = None
    # The whole CSP, in place of all the above: for an answer that is not one of our pages
    # (a mail's HTML, shown to its editors in a sandboxed frame).
    content_security_policy: str | None = None


DEFAULT = Policy(
    # A confirm or unsubscribe button in a hostile frame could be clickjacked.
    frame_ancestors="frame-ancestors 'self'",
    referrer="strict-origin-when-cross-origin",
)


def declare(target, policy: Policy):
    """Attach ``policy`` to a view function or a blueprint; return ``target``."""
    setattr(target, ATTRIBUTE, policy)
    return target


def secret_link(view):
    """Mark a view whose URL is a secret (a mailed token): never sent on, never cached."""
    return declare(view, Policy(referrer="no-referrer", cache_control="no-store"))


def single_use(view):
    """Mark a view whose every answer is for one reader only (a challenge): never cached."""
    return declare(view, Policy(cache_control="no-store"))


def framed_by(frame_ancestors: Callable[[], str | None]):
    """Let the pages of a view be framed by whom ``frame_ancestors()`` names (a directive)."""
    return lambda view: declare(view, Policy(frame_ancestors=frame_ancestors))


def csp_nonce() -> str:
    """Return this request's nonce for an inline <script> or <style>; the header allows it."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


def init_app(app: Flask) -> None:
    """Add the headers to every response of ``app`` and offer ``csp_nonce()`` to templates."""
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    app.after_request(add_security_headers)


def add_security_headers(response):
    """Set the CSP, Referrer-Policy and, where declared, Cache-Control of ``response``."""
    policy = request_policy()
    ancestors = policy.frame_ancestors
    if callable(ancestors):
        ancestors = ancestors() or DEFAULT.frame_ancestors
    nonce = f" 'nonce-{g.csp_nonce}'" if "csp_nonce" in g else ""
    directives = [d.format(nonce=nonce) for d in BASE_POLICY]
    extra = list(policy.extra or ())
    response.headers["Content-Security-Policy"] = policy.content_security_policy or "; ".join(
        [*directives, *extra, ancestors]
    )
    response.headers["Referrer-Policy"] = policy.referrer
    if policy.cache_control:
        response.headers["Cache-Control"] = policy.cache_control
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def request_policy() -> Policy:
    """Return the defaults, overridden by the request's blueprints, then by its view."""
    policy = DEFAULT
    for name in reversed(request.blueprints):  # outermost first
        policy = _overridden(policy, getattr(current_app.blueprints[name], ATTRIBUTE, None))
    view = current_app.view_functions.get(request.endpoint)
    while view is not None and not hasattr(view, ATTRIBUTE):
        view = getattr(view, "__wrapped__", None)  # a decorator that did not copy __dict__
    return _overridden(policy, getattr(view, ATTRIBUTE, None))


def _overridden(policy: Policy, by: Policy | None) -> Policy:
    if by is None:
        return policy
    changes = {f.name: getattr(by, f.name) for f in fields(by) if getattr(by, f.name) is not None}
    return replace(policy, **changes)
