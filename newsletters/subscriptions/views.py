"""Public pages: the signup forms, the thank-you page, confirmation and unsubscription."""

import sqlalchemy as sa
from flask import Blueprint, abort, jsonify, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from .. import db
from ..models import Newsletter, Source, Status
from ..negotiation import wants_json
from . import services
from .forms import SignupForm

bp = Blueprint("subscriptions", __name__)

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@bp.get("/")
def index():
    """Show every public newsletter with its own signup form."""
    newsletters = db.session().scalars(
        sa.select(Newsletter).where(Newsletter.is_public).order_by(Newsletter.name)
    )
    return render_template("subscriptions/index.html", newsletters=list(newsletters))


@bp.get("/n/<slug>")
def hosted(slug):
    """Show the hosted signup page of one newsletter."""
    return render_template(
        "subscriptions/hosted.html", newsletter=_newsletter(slug), form=SignupForm()
    )


@bp.post("/n/<slug>/subscribe")
def subscribe(slug):
    """Take a signup from a form or a JSON request."""
    newsletter = _newsletter(slug)
    form = SignupForm(formdata=signup_payload(), meta={"csrf": False})
    if not form.validate():
        if wants_json():
            return _invalid_json(newsletter, form)
        return render_template("subscriptions/hosted.html", newsletter=newsletter, form=form), 400
    services.signup(
        db.session(),
        [newsletter],
        form.email.data,
        form.name.data,
        evidence(Source.FORM, newsletter),
    )
    db.session().commit()
    if wants_json():
        return jsonify(
            status="ok",
            title=newsletter.text("success_title"),
            message=newsletter.text("success_text"),
        )
    return redirect(url_for(".thanks", slug=slug), 303)


@bp.get("/n/<slug>/thanks")
def thanks(slug):
    """Show the success message after a signup."""
    return render_template("subscriptions/thanks.html", newsletter=_newsletter(slug))


@bp.get("/confirm/<token>")
def confirm_page(token):
    """Show what a confirmation link confirms, with a button; change nothing."""
    found = services.confirmation_token(db.session(), token)
    return render_template("subscriptions/confirm.html", token=found, secret=token)


@bp.post("/confirm/<token>")
def confirm(token):
    """Confirm the subscriptions behind a confirmation link."""
    confirmed = services.confirm(db.session(), token, request.remote_addr, _user_agent())
    db.session().commit()
    return render_template("subscriptions/confirmed.html", token=confirmed)


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token):
    """Show an unsubscribe button; change nothing (mail scanners follow links)."""
    subscription = services.unsubscribe_target(db.session(), token)
    return render_template(
        "subscriptions/unsubscribe.html", subscription=subscription, secret=token, done=False
    )


@bp.post("/unsubscribe/<token>")
def unsubscribe(token):
    """Unsubscribe; also RFC 8058's one-click POST, answered 200 without a redirect."""
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    subscription = services.unsubscribe(
        db.session(),
        token,
        request.remote_addr,
        _user_agent(),
        source="one-click" if one_click else "link",
    )
    db.session().commit()
    if one_click or wants_json():
        return jsonify(status=str(Status.UNSUBSCRIBED), newsletter=subscription.newsletter.slug)
    return render_template(
        "subscriptions/unsubscribe.html", subscription=subscription, secret=token, done=True
    )


@bp.errorhandler(services.LinkError)
def link_error(exc: services.LinkError):
    if wants_json():
        return jsonify(error="link", message=exc.message), exc.status
    return render_template("subscriptions/link_error.html", message=exc.message), exc.status


def _newsletter(slug: str) -> Newsletter:
    newsletter = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == slug))
    if newsletter is None:
        abort(404, description=f"There is no newsletter called {slug!r}.")
    return newsletter


def signup_payload() -> MultiDict:
    """Return a signup's fields from a form or JSON body, refusing what is neither."""
    if request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise BadRequest('The body is not a JSON object. Send {"email": "you@example.com"}.')
        for key in ("email", "name"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise BadRequest(f"The field {key!r} must be a string.")
        return MultiDict({k: v for k, v in data.items() if isinstance(v, str)})
    if request.mimetype in FORM_TYPES:
        return request.form
    raise UnsupportedMediaType(
        "Send the signup as a form (application/x-www-form-urlencoded) or as JSON "
        "(application/json)."
    )


def evidence(source: Source, newsletter: Newsletter) -> services.Evidence:
    """Return the consent evidence of the current request."""
    return services.Evidence(
        ip=request.remote_addr,
        user_agent=_user_agent(),
        source=source,
        form_text=" | ".join(
            [newsletter.name, newsletter.text("placeholder"), newsletter.text("button")]
        ),
    )


def _user_agent() -> str | None:
    return (request.user_agent.string or None) and request.user_agent.string[:512]


def _invalid_json(newsletter: Newsletter, form: SignupForm):
    errors = {name: field.errors[0] for name, field in form._fields.items() if field.errors}
    message = newsletter.text("invalid_email") if "email" in errors else next(iter(errors.values()))
    return jsonify(error="invalid", message=message, fields=errors), 400
