"""Rate limits (Flask-Limiter): per IP on signups, per IP and per account on logins, per API key.

A view says which limit it takes where it is defined, as flaskr's views say
``@login_required``::

    @bp.post("/n/<slug>/subscribe")
    @limits.signup
    def subscribe(slug): ...

and ``init_app`` puts the limit on every marked view of the app, so that a new entry point
cannot be forgotten in a list of names.

One Limiter per app, made in ``init_app``: Flask-Limiter keeps storage and key prefix on the
Limiter object, so a module-level one would carry counts from one app into the next.

Counts live in memory in development and in Redis, shared by every worker, in production.
When Redis stops answering, the limiter counts in each process's memory (Flask-Limiter's
in-memory fallback) and goes back to Redis by itself once it answers again: a signup never
fails because the rate-limit store is away.
"""

import hashlib
import hmac
import logging
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Flask, current_app, g, request
from flask_babel import gettext
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse_many
from werkzeug.exceptions import TooManyRequests

from . import editors

log = logging.getLogger(__name__)


def _(text: str) -> str:
    """Mark ``text`` for the catalogue; ``translated`` translates it for each refusal."""
    return text


# The 429 answers' texts, in English; each refusal says it in the request's language.
TOO_MANY_SIGNUPS = _("Too many signups from your network. Please wait a minute and try again.")
TOO_MANY_LOGINS = _("Too many login attempts from your network. Please wait a minute.")
TOO_MANY_LOGINS_FOR_ACCOUNT = _(
    "Too many login attempts for this account, from wherever they came. "
    "Please wait a few minutes and try again."
)
TOO_MANY_UNVERIFIED = _(
    "Too many signups from your network without the form's check. Please wait a few "
    "minutes, or sign up from a page with JavaScript on."
)
TOO_MANY_API_REQUESTS = _(
    "Too many requests with this API key. Wait as Retry-After says, then retry."
)

# The attribute that carries a view's mark; functools.wraps copies it to outer decorators.
MARK = "rate_limit"
SIGNUP = "signup"
LOGIN = "login"
API = "api"

# A rate-limit store that hangs must not hang the signup waiting for it: give up quickly and
# count in memory instead (RATELIMIT_STORAGE_OPTIONS overrides these).
REDIS_OPTIONS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}
REDIS_SCHEMES = ("redis", "rediss", "redis+unix")


def signup(view: Callable) -> Callable:
    """Mark ``view`` as a signup entry point: it spends the per-IP signup budget."""
    setattr(view, MARK, SIGNUP)
    return view


def login(view: Callable) -> Callable:
    """Mark ``view`` as a login: limited per IP and per account named in the form."""
    setattr(view, MARK, LOGIN)
    return view


def api(view: Callable) -> Callable:
    """Mark ``view`` as an API endpoint: it spends its API key's budget (API_RATE_LIMIT).

    The key is the one the API's authentication put on ``g.api_key_id`` before the view runs.
    """
    setattr(view, MARK, API)
    return view


def init_app(app: Flask) -> Limiter:
    """Put the limits on every marked view of ``app``; call after registering blueprints."""
    url = app.config["RATELIMIT_STORAGE_URL"]
    limiter = Limiter(
        # The client address as werkzeug sees it: the socket's, or X-Forwarded-For's only
        # when TRUSTED_PROXIES put ProxyFix in front.
        key_func=get_remote_address,
        app=app,
        storage_uri=url,
        storage_options=REDIS_OPTIONS if urlsplit(url).scheme in REDIS_SCHEMES else {},
        # Counts in this process's memory while the storage does not answer, with the same
        # limits, and checks the storage again now and then (at growing intervals, up to 32 s).
        in_memory_fallback_enabled=True,
        headers_enabled=True,
        enabled=app.config["RATELIMIT_ENABLED"],
    )
    # One budget for every public signup entry point, so switching between the hosted form,
    # the iframe, the widget and the multi-newsletter form gains an abuser nothing.
    per_ip_signups = limiter.shared_limit(
        lambda: current_app.config["SIGNUP_RATE_LIMIT"],
        scope="signup",
        methods=["POST"],
        error_message=translated(TOO_MANY_SIGNUPS),
    )
    per_ip_logins = limiter.shared_limit(
        lambda: current_app.config["LOGIN_RATE_LIMIT"],
        scope="login",
        methods=["POST"],
        error_message=translated(TOO_MANY_LOGINS),
    )
    # Guesses at one password spread over many addresses meet this one. It counts for a time
    # window only, so whoever tried to lock the right person out cannot do it for longer.
    per_account_logins = limiter.shared_limit(
        lambda: current_app.config["LOGIN_ACCOUNT_RATE_LIMIT"],
        scope="login-account",
        key_func=_login_account,
        methods=["POST"],
        error_message=translated(TOO_MANY_LOGINS_FOR_ACCOUNT),
    )
    # One budget per key over every API endpoint; a decorated limit is checked when the view is
    # called, after the API blueprint's before_request has authenticated the key.
    per_api_key = limiter.shared_limit(
        lambda: current_app.config["API_RATE_LIMIT"],
        scope="api-key",
        key_func=_api_key,
        error_message=translated(TOO_MANY_API_REQUESTS),
    )
    decorators = {
        SIGNUP: [per_ip_signups],
        LOGIN: [per_ip_logins, per_account_logins],
        API: [per_api_key],
    }
    for endpoint, view in list(app.view_functions.items()):
        for limit in decorators.get(getattr(view, MARK, None), ()):
            view = limit(view)
        app.view_functions[endpoint] = view
    app.extensions["newsletters.limiter"] = limiter
    if limiter.enabled:
        # On teardown: Flask-Limiter may find its storage gone in its own after_request hook.
        app.teardown_request(StorageWatch(limiter, url).look)
    return limiter


def spend_unverified() -> None:
    """Spend the tighter per-IP budget of a signup that proved nothing (proof.py); 429 if spent.

    Beside the signup budget that every entry point spends: a plain form keeps working, at
    the pace of a person (UNVERIFIED_SIGNUP_RATE_LIMIT).
    """
    limiter: Limiter = current_app.extensions["newsletters.limiter"]
    if not limiter.enabled:
        return
    ip = get_remote_address()
    for item in parse_many(current_app.config["UNVERIFIED_SIGNUP_RATE_LIMIT"]):
        # limiter.limiter: the storage's strategy, or the in-memory fallback's while it is away.
        if not limiter.limiter.hit(item, "unverified-signup", ip):
            raise TooManyRequests(translated(TOO_MANY_UNVERIFIED)(), retry_after=item.get_expiry())


def translated(text: str) -> Callable[[], str]:
    """Return the limiter's error message: ``text`` in the refused request's language.

    In English in an app without Flask-Babel: the limits do not need it.
    """
    return lambda: gettext(text) if "babel" in current_app.extensions else text


def storage_state(app: Flask) -> str:
    """Say where the app counts requests now: ``redis``, ``memory``, ``off`` or a fallback."""
    limiter: Limiter = app.extensions["newsletters.limiter"]
    if not limiter.enabled:
        return "off"
    scheme = urlsplit(app.config["RATELIMIT_STORAGE_URL"]).scheme
    if _falls_back(limiter):
        return f"fallback: per-process ({scheme} unreachable)"
    return scheme


def _falls_back(limiter: Limiter) -> bool:
    """Tell whether ``limiter`` counts in its in-memory fallback, its storage being away."""
    # Public API: ``limiter.limiter`` is the strategy in use, on the fallback's own storage
    # while the configured one is unreachable.
    return limiter.limiter.storage is not limiter.storage


class StorageWatch:
    """Log once when the limiter falls back to memory, and once when its storage is back."""

    def __init__(self, limiter: Limiter, url: str):
        self.limiter = limiter
        self.scheme = urlsplit(url).scheme
        self.falling_back = False
        self.lock = threading.Lock()

    def look(self, _exc: BaseException | None = None) -> None:
        """Compare the limiter's state with the last one seen; log a change."""
        now = _falls_back(self.limiter)
        with self.lock:
            changed, self.falling_back = now != self.falling_back, now
        if changed and now:
            log.warning(
                "rate limits: the %s storage is unreachable; counting per process until it "
                "answers again (each worker allows the full limit meanwhile)",
                self.scheme,
            )
        elif changed:
            log.warning("rate limits: the %s storage answers again; counts are shared", self.scheme)


def _api_key() -> str:
    """Return the rate-limit key of the request's API key; empty (no limit) if none was seen."""
    key_id = g.get("api_key_id")
    return f"key:{key_id}" if key_id is not None else ""


def _login_account() -> str:
    """Return the rate-limit key of the account a login form names.

    The address is normalised as ``editors.authenticate`` looks it up, so that no spelling of
    one account (case, spaces, Unicode forms) gets a budget of its own; and keyed-hashed, so
    that no address stands in the limiter's storage.
    """
    email = editors._address(request.form.get("email") or "")
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, email.encode(), hashlib.sha256).hexdigest()
