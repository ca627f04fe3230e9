"""Public pages: the signup forms, the thank-you pages, confirmation and unsubscription."""

import sqlalchemy as sa
from flask import Blueprint, abort, g, jsonify, redirect, render_template, request, url_for
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import BadRequest, Forbidden

from .. import db
from ..embed import origins
from ..models import DEFAULT_TEXTS, Newsletter, Source, Status
from ..negotiation import wants_json
from . import services
from .entry import client_ip, client_user_agent, signup_payload, take_signup
from .forms import SignupForm

bp = Blueprint("subscriptions", __name__)

MAX_NEWSLETTERS_PER_SIGNUP = 50


@bp.get("/")
def index():
    """Show every public newsletter with its own signup form, and one form for several."""
    return _index()


@bp.get("/n/<slug>")
def hosted(slug):
    """Show the hosted signup page of one newsletter."""
    return render_template(
        "subscriptions/hosted.html", newsletter=newsletter_or_404(slug), form=SignupForm()
    )


@bp.post("/n/<slug>/subscribe")
def subscribe(slug):
    """Take a signup to one newsletter from a form (plain, cross-origin) or a JSON request."""
    newsletter = newsletter_or_404(slug)
    _check_origin([newsletter])
    form = take_signup([newsletter], Source.FORM)
    if form.errors:
        if wants_json():
            return _invalid_json(form, newsletter.text("invalid_email"))
        page = render_template("subscriptions/hosted.html", newsletter=newsletter, form=form)
        return page, 400
    if wants_json():
        return _success_json(newsletter.text("success_title"), newsletter.text("success_text"))
    target = origins.safe_return_url([newsletter], form.return_url.data)
    return redirect(target or url_for(".thanks", slug=slug), 303)


@bp.post("/subscribe")
def subscribe_many():
    """Take one signup to several newsletters (repeated ``newsletter`` fields): one mail."""
    newsletters = _chosen_newsletters()
    _check_origin(newsletters)
    form = take_signup(newsletters, Source.FORM)
    if form.errors:
        if wants_json():
            return _invalid_json(form, DEFAULT_TEXTS["invalid_email"])
        return _index(several_form=form, status=400)
    if wants_json():
        return _success_json(DEFAULT_TEXTS["success_title"], DEFAULT_TEXTS["success_text"])
    target = origins.safe_return_url(newsletters, form.return_url.data)
    return redirect(target or url_for(".thanks_many", n=[n.slug for n in newsletters]), 303)


@bp.get("/n/<slug>/thanks")
def thanks(slug):
    """Show the success message after a signup."""
    newsletter = newsletter_or_404(slug)
    return render_template(
        "subscriptions/thanks.html",
        title=newsletter.text("success_title"),
        text=newsletter.text("success_text"),
        names=[newsletter.name],
    )


@bp.get("/thanks")
def thanks_many():
    """Show the success message after a signup to several newsletters."""
    slugs = [s for s in request.args.getlist("n")[:MAX_NEWSLETTERS_PER_SIGNUP] if _may_exist(s)]
    names = db.session().scalars(sa.select(Newsletter.name).where(Newsletter.slug.in_(slugs)))
    return render_template(
        "subscriptions/thanks.html",
        title=DEFAULT_TEXTS["success_title"],
        text=DEFAULT_TEXTS["success_text"],
        names=list(names),
    )


@bp.after_request
def allow_cross_origin_reads(response):
    """Let widgets on allowed pages read signup answers, errors and rate limits included."""
    if request.endpoint in ("subscriptions.subscribe", "subscriptions.subscribe_many"):
        newsletters = g.get("signup_newsletters")
        if newsletters is None and request.view_args and "slug" in request.view_args:
            # The view failed before it found the newsletter: a 404, a 429, or the database
            # is down. An error answer carries nothing private, so "*" is the fallback.
            try:
                found = _newsletter_by_slug(request.view_args["slug"])
            except SQLAlchemyError:
                db.session().rollback()
                found = None
            newsletters = [found] if found else []
        origins.add_cors_headers(response, newsletters or [])
    return response


@bp.get("/confirm/<token>")
def confirm_page(token):
    """Show what a confirmation link confirms, with a button; change nothing."""
    found = services.confirmation_token(db.session(), token)
    return render_template("subscriptions/confirm.html", token=found, secret=token)


@bp.post("/confirm/<token>")
def confirm(token):
    """Confirm the subscriptions behind a confirmation link."""
    confirmed = services.confirm(db.session(), token, client_ip(), client_user_agent())
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
        client_ip(),
        client_user_agent(),
        source="one-click" if one_click else "link",
    )
    db.session().commit()
    if one_click or wants_json():
        return jsonify(status=str(Status.UNSUBSCRIBED), newsletter=subscription.newsletter.slug)
    return render_template(
        "subscriptions/unsubscribe.html", subscription=subscription, secret=token, done=True
    )


@bp.app_errorhandler(services.LinkError)
def link_error(exc: services.LinkError):
    if wants_json():
        return jsonify(error="link", message=exc.message), exc.status
    return render_template("subscriptions/link_error.html", message=exc.message), exc.status


def newsletter_or_404(slug: str) -> Newsletter:
    """Return the newsletter called ``slug``, or answer 404 with a readable message."""
    newsletter = _newsletter_by_slug(slug)
    if newsletter is None:
        abort(404, description=f"There is no newsletter called {slug!r}.")
    g.signup_newsletters = [newsletter]
    return newsletter


def _newsletter_by_slug(slug: str) -> Newsletter | None:
    if not _may_exist(slug):
        return None
    return db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == slug))


def _may_exist(slug: str) -> bool:
    # PostgreSQL refuses a NUL in any text parameter; no slug holds one, so do not ask.
    return "\x00" not in slug


def _chosen_newsletters() -> list[Newsletter]:
    slugs = list(dict.fromkeys(signup_payload().getlist("newsletter")))
    if not slugs:
        raise BadRequest("Choose at least one newsletter.")
    if len(slugs) > MAX_NEWSLETTERS_PER_SIGNUP:
        raise BadRequest(f"Choose at most {MAX_NEWSLETTERS_PER_SIGNUP} newsletters at once.")
    asked = [slug for slug in slugs if _may_exist(slug)]
    found = {
        n.slug: n
        for n in db.session().scalars(sa.select(Newsletter).where(Newsletter.slug.in_(asked)))
    }
    missing = [slug for slug in slugs if slug not in found]
    if missing:
        abort(404, description=f"There is no newsletter called {missing[0]!r}.")
    g.signup_newsletters = [found[slug] for slug in slugs]
    return g.signup_newsletters


def _check_origin(newsletters: list[Newsletter]) -> None:
    """Refuse a signup posted from a page that these newsletters do not allow."""
    origin = origins.origin_of(request.headers.get("Origin", ""))
    if not origins.permits(newsletters, origin):
        raise Forbidden(f"This signup form may not be used on {origin}.")


def _index(several_form: SignupForm | None = None, status: int = 200):
    newsletters = db.session().scalars(
        sa.select(Newsletter).where(Newsletter.is_public).order_by(Newsletter.name)
    )
    page = render_template(
        "subscriptions/index.html",
        newsletters=list(newsletters),
        several_form=several_form,
        default_texts=DEFAULT_TEXTS,
    )
    return page, status


def _success_json(title: str, message: str):
    return jsonify(status="ok", title=title, message=message)


def _invalid_json(form: SignupForm, invalid_email: str):
    errors = {name: field.errors[0] for name, field in form._fields.items() if field.errors}
    message = invalid_email if "email" in errors else next(iter(errors.values()))
    return jsonify(error="invalid", message=message, fields=errors), 400
