"""Settings: defaults, then an instance config file, then NEWSLETTERS_* from the environment.

This is the one module that reads the environment (through Flask's ``from_prefixed_env``).
"""

import os
import secrets
import time
from email import policy
from pathlib import Path

from flask import Flask

DEFAULTS = {
    "ENV": "development",
    "DATABASE_URL": None,  # filled in from the instance folder
    "MAIL_URL": None,  # file:// into the instance folder
    "MAIL_FROM": "newsletters@localhost",
    "BASE_URL": "http://127.0.0.1:5000",
    "SECRET_KEY": None,
    # Earlier secret keys, newest first: links and sessions made with them keep working.
    "SECRET_KEY_FALLBACKS": [],
    "RATELIMIT_STORAGE_URL": "memory://",
    "RATELIMIT_ENABLED": True,
    "SIGNUP_RATE_LIMIT": "5 per minute;30 per hour",
    "LOGIN_RATE_LIMIT": "10 per minute;50 per hour",
    # Per account named in the login form, from any address: guesses spread over many IPs.
    "LOGIN_ACCOUNT_RATE_LIMIT": "10 per 10 minutes;30 per hour",
    # memory:// counts per process: only for a deployment of one process (see load()).
    "RATELIMIT_PER_PROCESS": False,
    "CONFIRM_TTL_HOURS": 72,
    "CONFIRM_THROTTLE_MINUTES": 10,
    "CONFIRM_MAILS_PER_DAY": 5,
    # "worker": a signup's request stores one row and the worker processes it (production,
    # make run); "inline": processed at once in the request (tests; no worker needed).
    "SIGNUP_PROCESSING": "worker",
    # How long a process serves its public pages and signups from the newsletters it read.
    "NEWSLETTER_CACHE_SECONDS": 2.0,
    # Signup requests one worker transaction processes at most (see subscriptions/processing).
    "SIGNUP_BATCH": 200,
    "TRUSTED_PROXIES": 0,
    # Form views and stopped signups are tallied per process and written by the first one
    # this long after the last write (counters.py says when else).
    "COUNT_FLUSH_SECONDS": 10.0,
    # Bot defence (proof.py). A browser's form solves a proof-of-work challenge while the
    # reader types: about POW_MIN_NUMBER / 2 hashes at a normal signup rate, growing with the
    # signups of the last POW_WINDOW_MINUTES beyond POW_NORMAL_SIGNUPS_PER_MINUTE (per
    # newsletter), up to POW_MAX_NUMBER. A challenge is good for POW_EXPIRES_SECONDS, once.
    "POW_MIN_NUMBER": 100_000,
    "POW_MAX_NUMBER": 10_000_000,
    "POW_NORMAL_SIGNUPS_PER_MINUTE": 10,
    "POW_WINDOW_MINUTES": 5,
    "POW_EXPIRES_SECONDS": 1800,
    # A form sent back sooner than this after it was shown was not filled in by a person.
    "FORM_MIN_FILL_SECONDS": 2.0,
    # User agents of automation, refused like the honeypot (a regular expression, any case).
    "BOT_USER_AGENTS": (
        r"HeadlessChrome|PhantomJS|Puppeteer|Playwright|Selenium|webdriver|Scrapy|"
        r"python-requests|python-urllib|aiohttp|httpx|Go-http-client|libwww-perl|"
        r"\bcurl/|\bWget/|HTTrack|\bbot\b|crawler|spider"
    ),
    # The tighter per-IP budget of a signup that proved nothing (no challenge solved: the
    # plain HTML form, a page without script), on top of SIGNUP_RATE_LIMIT.
    "UNVERIFIED_SIGNUP_RATE_LIMIT": "2 per minute;10 per hour",
    # Ask DNS whether the domain of a signup's address takes mail (MX, then A/AAAA); a
    # failure or a timeout marks the signup unchecked, never refuses it.
    "EMAIL_CHECK_DELIVERABILITY": False,
    "EMAIL_DNS_TIMEOUT_SECONDS": 2.0,
    "EMAIL_MAX_LENGTH": 254,
    "NAME_MAX_LENGTH": 200,
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "IMPORT_MAX_BYTES": 50 * 1024 * 1024,
    "OUTBOX_LEASE_SECONDS": 300,
    "OUTBOX_BACKOFF_SECONDS": 5,
    "OUTBOX_BACKOFF_CAP_SECONDS": 3600,
    "OUTBOX_MAX_ATTEMPTS": 12,
    "OUTBOX_MAX_AGE_HOURS": 48,
    "WORKER_POLL_SECONDS": 0.5,
    # The JSON API (/api/v1): requests per API key, in Flask-Limiter's notation.
    "API_RATE_LIMIT": "120 per minute;5000 per hour",
    # Changes and subscriptions one API page holds at most (a caller may ask for fewer).
    "API_PAGE_SIZE": 500,
    # How long an Idempotency-Key's answer is kept: a retry within it gets the same answer.
    "API_IDEMPOTENCY_HOURS": 24,
    # Webhooks: each POST's time limit; deliveries that fail in a row before the webhook is
    # paused and its editors told; whether URLs may point at private, loopback or link-local
    # addresses (None: refused in production, allowed in development and tests).
    "WEBHOOK_TIMEOUT_SECONDS": 10,
    "WEBHOOK_MAX_FAILURES": 12,
    "WEBHOOK_ALLOW_PRIVATE": None,
    # Retention, applied by `newsletters purge` (None: off). Pending signups are removed this
    # many days after they were made (off: once their confirmation link has expired, after
    # CONFIRM_TTL_HOURS); the IP addresses and user agents of consent events and
    # subscriptions older than RETENTION_EVIDENCE_DAYS are cut to their network / dropped.
    "RETENTION_PENDING_DAYS": None,
    "RETENTION_EVIDENCE_DAYS": None,
    "DEMO_NEWSLETTER": True,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": None,  # None: secure in production only
}

REQUIRED_IN_PRODUCTION = ("SECRET_KEY", "BASE_URL")
# from_prefixed_env() parses values as JSON, which turns an all-digit secret key into an int;
# these settings are text whatever they look like.
TEXT_SETTINGS = (
    "SECRET_KEY",
    "BASE_URL",
    "DATABASE_URL",
    "MAIL_URL",
    "MAIL_FROM",
    "RATELIMIT_STORAGE_URL",
    "SIGNUP_RATE_LIMIT",
    "LOGIN_RATE_LIMIT",
    "LOGIN_ACCOUNT_RATE_LIMIT",
    "API_RATE_LIMIT",
)

# Where `newsletters dev` writes the URL it serves, for the commands run beside it.
DEV_BASE_URL_FILE = "dev_base_url"


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names it."""


def load(app: Flask, test_config: dict | None = None) -> None:
    """Fill ``app.config`` from defaults, the instance file, the environment and tests."""
    app.config.from_mapping(DEFAULTS)
    # BASE_URL has a development default; production must name its own, so remember
    # whether it was set anywhere other than the defaults.
    app.config["BASE_URL"] = None
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("NEWSLETTERS")
    for name in TEXT_SETTINGS:
        if f"NEWSLETTERS_{name}" in os.environ:
            app.config[name] = os.environ[f"NEWSLETTERS_{name}"]
    if test_config:
        app.config.from_mapping(test_config)

    production = app.config["ENV"] == "production"
    if production:
        for name in REQUIRED_IN_PRODUCTION:
            if not app.config.get(name):
                raise ConfigError(f"NEWSLETTERS_{name} must be set when NEWSLETTERS_ENV=production")
    _check_rate_limit_storage(app.config, production)
    if app.config["WEBHOOK_ALLOW_PRIVATE"] is None:
        # A webhook URL naming an internal address would let an editor's key reach it (SSRF).
        app.config["WEBHOOK_ALLOW_PRIVATE"] = not production
    if app.config["SESSION_COOKIE_SECURE"] is None:
        # Flask's own default is False; production serves over HTTPS only.
        app.config["SESSION_COOKIE_SECURE"] = production
    instance = Path(app.instance_path)
    # Whether BASE_URL was set (in the environment or the instance config): `newsletters dev`
    # replaces only a URL nobody chose.
    app.config["BASE_URL_IS_SET"] = bool(app.config["BASE_URL"])
    if not app.config["BASE_URL"] and not production:
        app.config["BASE_URL"] = _dev_base_url(instance)
    if not app.config["BASE_URL"]:
        app.config["BASE_URL"] = DEFAULTS["BASE_URL"]
    app.config["BASE_URL"] = str(app.config["BASE_URL"]).rstrip("/")
    if not app.config["DATABASE_URL"]:
        app.config["DATABASE_URL"] = f"sqlite:///{instance / 'newsletters.db'}"
    if not app.config["MAIL_URL"]:
        app.config["MAIL_URL"] = f"file://{instance / 'mail'}"
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = _development_secret(instance)
    fallbacks = app.config["SECRET_KEY_FALLBACKS"]
    if not isinstance(fallbacks, list) or not all(isinstance(k, str) and k for k in fallbacks):
        raise ConfigError(
            'NEWSLETTERS_SECRET_KEY_FALLBACKS must be a JSON list of earlier keys, like ["old-key"]'
        )
    _check_mail_from(app.config["MAIL_FROM"])
    if app.config["SIGNUP_PROCESSING"] not in ("worker", "inline"):
        raise ConfigError('NEWSLETTERS_SIGNUP_PROCESSING must be "worker" or "inline"')
    for name in (
        "CONFIRM_TTL_HOURS",
        "TRUSTED_PROXIES",
        "MAX_CONTENT_LENGTH",
        "SIGNUP_BATCH",
        "API_PAGE_SIZE",
        "API_IDEMPOTENCY_HOURS",
        "WEBHOOK_MAX_FAILURES",
    ):
        value = app.config[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"NEWSLETTERS_{name} must be a whole number, got {value!r}")
    for name in ("RETENTION_PENDING_DAYS", "RETENTION_EVIDENCE_DAYS"):
        value = app.config[name]
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise ConfigError(
                f"NEWSLETTERS_{name} must be a number of days (1 or more), or unset for off; "
                f"got {value!r}"
            )


def _check_rate_limit_storage(settings, production: bool) -> None:
    """Stop a production start whose rate limits would count per process, unless it says so.

    With memory:// each gunicorn worker keeps its own counts, so N workers allow N times every
    limit; only a deployment of one process may choose that, with RATELIMIT_PER_PROCESS.
    """
    per_process = settings["RATELIMIT_PER_PROCESS"]
    if not isinstance(per_process, bool):
        raise ConfigError(
            f"NEWSLETTERS_RATELIMIT_PER_PROCESS must be true or false, got {per_process!r}"
        )
    url = str(settings["RATELIMIT_STORAGE_URL"])
    if (
        production
        and settings["RATELIMIT_ENABLED"]
        and url.startswith("memory:")
        and not per_process
    ):
        raise ConfigError(
            "NEWSLETTERS_RATELIMIT_STORAGE_URL must name a store shared by the workers "
            "(redis://host:port) when NEWSLETTERS_ENV=production: memory:// multiplies every "
            "limit by the number of worker processes (a single process may set "
            "NEWSLETTERS_RATELIMIT_PER_PROCESS=true)"
        )


def write_dev_base_url(app: Flask, url: str) -> None:
    """Record ``url`` as the BASE_URL of commands run beside ``newsletters dev``.

    Written whole or not at all (a command starting meanwhile reads the old URL or the new one).
    """
    instance = Path(app.instance_path)
    instance.mkdir(parents=True, exist_ok=True)
    partial = instance / f"{DEV_BASE_URL_FILE}.{os.getpid()}"
    partial.write_text(url + "\n")
    partial.replace(instance / DEV_BASE_URL_FILE)


def _dev_base_url(instance: Path) -> str | None:
    """Return the URL the development server last served from this instance folder, if any."""
    try:
        return (instance / DEV_BASE_URL_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def _check_mail_from(value) -> None:
    """Stop the start if MAIL_FROM is not one address: every mail's From and Message-ID use it."""
    header = policy.default.header_factory("From", str(value))
    if len(header.addresses) != 1 or header.defects or not header.addresses[0].domain:
        raise ConfigError(
            "NEWSLETTERS_MAIL_FROM must be one address, like news@example.org or "
            f"News <news@example.org>; got {value!r}"
        )


def _development_secret(instance: Path) -> str:
    """Return the instance folder's secret key, generating it on first use.

    Created exclusively and private from the start: two processes starting at once (the
    server and a worker) must end up with the same key, or one signs links the other refuses.
    """
    path = instance / "secret_key"
    instance.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # The process that created it may be writing it this very moment.
        for _ in range(20):
            key = path.read_text().strip()
            if key:
                return key
            time.sleep(0.05)
        raise ConfigError(
            f"{path} is empty: delete it to have a new key made, or set NEWSLETTERS_SECRET_KEY"
        ) from None
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as file:
        file.write(key)
    return key
