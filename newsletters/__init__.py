"""newsletters: signup forms, double opt-in and subscriber lists for publishers."""

from pathlib import Path

from flask import Flask
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config, db

csrf = CSRFProtect()


def template_folder() -> str:
    """Return the templates' folder: inside the installed package, else the source tree's."""
    packaged = Path(__file__).parent / "templates"
    if packaged.is_dir():
        return str(packaged)
    return str(Path(__file__).parent.parent / "templates")


def create_app(test_config: dict | None = None) -> Flask:
    """Build the application: config, extensions, blueprints, error pages, commands."""
    app = Flask(__name__, template_folder=template_folder(), instance_relative_config=True)
    config.load(app, test_config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    if app.config["TRUSTED_PROXIES"]:
        n = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)

    db.init_app(app)
    csrf.init_app(app)

    from . import errors, health
    from .subscriptions.views import bp as subscriptions_bp

    # Public signup and link endpoints: see SignupForm.Meta for why they carry no CSRF token.
    csrf.exempt(subscriptions_bp)
    app.register_blueprint(subscriptions_bp)
    app.register_blueprint(health.bp)
    errors.init_app(app)

    from .cli import register

    register(app)
    return app
