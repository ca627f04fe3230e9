"""Per-IP rate limits (Flask-Limiter): memory in development, Redis shared across workers."""

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

# The client address as werkzeug sees it: the socket's, or X-Forwarded-For's only when
# TRUSTED_PROXIES put ProxyFix in front.
limiter = Limiter(key_func=get_remote_address, headers_enabled=True)

TOO_MANY_SIGNUPS = "Too many signups from your network. Please wait a minute and try again."

# One budget for every public signup entry point, so switching between the hosted form, the
# iframe, the widget and the multi-newsletter form gains an abuser nothing.
signup_limit = limiter.shared_limit(
    lambda: current_app.config["SIGNUP_RATE_LIMIT"],
    scope="signup",
    methods=["POST"],
    error_message=TOO_MANY_SIGNUPS,
)


def init_app(app: Flask) -> None:
    """Configure Flask-Limiter from this app's settings."""
    app.config["RATELIMIT_STORAGE_URI"] = app.config["RATELIMIT_STORAGE_URL"]
    limiter.init_app(app)
