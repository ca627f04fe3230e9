"""newsletters: signup forms, double opt-in and subscriber lists for publishers."""

from pathlib import Path

from flask import Flask
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from . import colors, config, counters, db, headers, i18n, limits, logs, negotiation

csrf = CSRFProtect()


def template_folder() -> str:
    """Return the templates' folder: inside the installed package, else the source tree's."""
    return _shipped_folder("templates")


def static_folder() -> str:
    """Return the stylesheets' folder: inside the installed package, else the source tree's."""
    return _shipped_folder("static")


def _shipped_folder(name: str) -> str:
    packaged = Path(__file__).parent / name
    if packaged.is_dir():
        return str(packaged)
    return str(Path(__file__).parent.parent / name)


def create_app(test_config: dict | None = None) -> Flask:
    """Build the application: config, extensions, blueprints, error pages, commands."""
    app = Flask(
        __name__,
        template_folder=template_folder(),
        static_folder=static_folder(),
        instance_relative_config=True,
    )
    config.load(app, test_config)
    # Any werkzeug server of this app (newsletters dev, flask run) logs request lines, which
    # hold the link secrets readers open: mask them there, as gunicorn's logger does.
    logs.mask_werkzeug_log()
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    if app.config["TRUSTED_PROXIES"]:
        n = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)

    db.init_app(app)
    counters.init_app(app)
    i18n.init_app(app)
    colors.init_app(app)
    # Before CSRFProtect, whose check parses the body under the app-wide size limit.
    app.before_request(negotiation.allow_large_uploads)
    app.before_request(negotiation.refuse_undecodable_form)
    csrf.init_app(app)

    from . import admin, api, errors, health
    from .embed.views import bp as embed_bp
    from .subscriptions.preferences import bp as preferences_bp
    from .subscriptions.views import bp as subscriptions_bp

    # Public signup and link endpoints are exempt from CSRF on purpose: a form on another
    # site cannot carry our token. What protects them instead: rate limits per IP, the
    # honeypot, the per-address mail throttles, and confirmation only by the inbox owner.
    csrf.exempt(subscriptions_bp)
    csrf.exempt(embed_bp)
    csrf.exempt(preferences_bp)  # like unsubscribe: the link's secret is the authority
    app.register_blueprint(subscriptions_bp)
    app.register_blueprint(embed_bp)
    app.register_blueprint(preferences_bp)
    app.register_blueprint(health.bp)
    # Browsers ask for /favicon.ico whatever the page says (public pages name favicon.svg).
    app.add_url_rule(
        "/favicon.ico", "favicon", lambda: app.send_static_file("favicon.ico"), methods=["GET"]
    )
    admin.init_app(app)
    api.init_app(app)
    limits.init_app(app)
    errors.init_app(app)
    headers.init_app(app)

    from .cli import register

    register(app)
    return app
