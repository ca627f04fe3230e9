"""Per-IP rate limits (Flask-Limiter): memory in development, Redis shared across workers.

One Limiter per app, made in ``init_app``: Flask-Limiter keeps storage and key prefix on the
Limiter object, so a module-level one would carry counts from one app into the next.
"""

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

TOO_MANY_SIGNUPS = "Too many signups from your network. Please wait a minute and try again."
TOO_MANY_LOGINS = "Too many login attempts from your network. Please wait a minute."

# One budget for every public signup entry point, so switching between the hosted form, the
# iframe, the widget and the multi-newsletter form gains an abuser nothing.
SIGNUP_ENDPOINTS = (
    "subscriptions.subscribe",
    "subscriptions.subscribe_many",
    "embed.frame_subscribe",
)
LOGIN_ENDPOINTS = ("admin.login",)


def init_app(app: Flask) -> Limiter:
    """Limit the signup and login endpoints of ``app``; call after registering blueprints."""
    limiter = Limiter(
        # The client address as werkzeug sees it: the socket's, or X-Forwarded-For's only
        # when TRUSTED_PROXIES put ProxyFix in front.
        key_func=get_remote_address,
        app=app,
        storage_uri=app.config["RATELIMIT_STORAGE_URL"],
        headers_enabled=True,
        enabled=app.config["RATELIMIT_ENABLED"],
    )
    signup = limiter.shared_limit(
        lambda: current_app.config["SIGNUP_RATE_LIMIT"],
        scope="signup",
        methods=["POST"],
        error_message=TOO_MANY_SIGNUPS,
    )
    login = limiter.shared_limit(
        lambda: current_app.config["LOGIN_RATE_LIMIT"],
        scope="login",
        methods=["POST"],
        error_message=TOO_MANY_LOGINS,
    )
    for endpoints, limit in ((SIGNUP_ENDPOINTS, signup), (LOGIN_ENDPOINTS, login)):
        for endpoint in endpoints:
            app.view_functions[endpoint] = limit(app.view_functions[endpoint])
    app.extensions["newsletters.limiter"] = limiter
    return limiter
