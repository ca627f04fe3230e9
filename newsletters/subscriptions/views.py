"""Public pages: the signup forms, the thank-you pages, confirmation and unsubscription."""

from email.utils import parseaddr

import sqlalchemy as sa
from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import BadRequest

from .. import attribution, catalogue, counters, db, headers, i18n, limits, proof
from ..embed import origins
from ..i18n import default_text
from ..models import Newsletter, Source, Status
from ..negotiation import wants_json
from . import services
from .entry import client_ip, client_user_agent, form_guard, signup_payload, take_signup
from .forms import SignupForm, ticked_newsletters

bp = Blueprint("subscriptions", __name__)
# The hidden fields of a browser's form: where it came from, and its bot defence.
bp.add_app_template_global(form_guard, "signup_guard")

MAX_NEWSLETTERS_PER_SIGNUP = 50


@bp.get("/")
def index():
    """Show one signup form with a box to tick for each public newsletter."""
    return _index()


@bp.get("/n/<slug>")
def hosted(slug):
    """Show the hosted signup page of one newsletter (a view of its form, counted)."""
    newsletter = newsletter_or_404(slug)
    counters.view([newsletter.id], Source.HOSTED, attribution.this_page())
    return render_template("subscriptions/hosted.html", newsletter=newsletter, form=SignupForm())


@bp.get("/n/<slug>/challenge")
@origins.readable_cross_origin
@headers.single_use
def challenge(slug):
    """Hand a form of this newsletter a proof-of-work challenge and its render time (proof.py).

    The widget asks for it when it renders, so this counts the widget's views (``form`` and
    ``page`` say which); the hosted page and the iframe count theirs when they render.
    """
    return _challenge([newsletter_or_404(slug)])


@bp.get("/challenge")
@origins.readable_cross_origin
@headers.single_use
def challenge_many():
    """Hand a form of several newsletters (repeated ``newsletter``) its challenge."""
    slugs = list(dict.fromkeys(request.args.getlist("newsletter")))
    if not slugs:
        raise BadRequest(_("Choose at least one newsletter."))
    known = catalogue.published().by_slug
    if len(slugs) > MAX_NEWSLETTERS_PER_SIGNUP or not all(s in known for s in slugs):
        abort(404, description=_("There is no newsletter called %(slug)r.", slug=slugs[0]))
    g.signup_newsletters = newsletters = list({known[s].id: known[s] for s in slugs}.values())
    return _challenge(newsletters)


def _challenge(newsletters: list[Newsletter]):
    origins.check(newsletters)
    form = request.args.get("form")
    if form == Source.WIDGET:
        page = attribution.page_of(request.args.get("page"))
        counters.view([n.id for n in newsletters], Source.WIDGET, page)
    return jsonify(challenge=proof.challenge(newsletters), rendered=proof.rendered(newsletters))


@bp.post("/n/<slug>/subscribe")
@origins.readable_cross_origin
@limits.signup
def subscribe(slug):
    """Take a signup to one newsletter from a form (plain, cross-origin) or a JSON request."""
    newsletter = newsletter_or_404(slug)
    form = take_signup([newsletter], Source.PLAIN)
    if form.errors:
        if wants_json():
            return _invalid_json(form, newsletter.text("invalid_email"))
        page = render_template("subscriptions/hosted.html", newsletter=newsletter, form=form)
        return page, 400
    if wants_json():
        return _success_json(newsletter.text("success_title"), newsletter.text("success_text"))
    target = origins.safe_return_url([newsletter], form.return_url.data)
    return redirect(target or url_for(".thanks", slug=newsletter.slug), 303)


@bp.post("/subscribe")
@origins.readable_cross_origin
@limits.signup
def subscribe_many():
    """Take one signup to several newsletters (repeated ``newsletter`` fields): one mail."""
    try:
        newsletters = _chosen_newsletters()
    except BadRequest as exc:
        if wants_json():
            raise
        # None ticked, or too many: the form again, with what the reader typed.
        return _index(several=_several(signup_payload(), exc.description), status=400)
    form = take_signup(newsletters, Source.SEVERAL)
    if form.errors:
        if wants_json():
            return _invalid_json(form, default_text("invalid_email"))
        # The form says what is wrong with the address itself (SPEC's text, then why).
        message = None if form.email.errors else _first_error(form)
        return _index(several=_several(signup_payload(), message, form), status=400)
    if wants_json():
        return _success_json(default_text("success_title"), success_text(len(newsletters)))
    target = origins.safe_return_url(newsletters, form.return_url.data)
    return redirect(target or url_for(".thanks_many", n=[n.slug for n in newsletters]), 303)


def success_text(count: int) -> str:
    """Return the thank-you text for a signup to ``count`` newsletters at once."""
    if count == 1:
        return default_text("success_text")
    return _(
        "Thank you for signing up for these newsletters. "
        "We've sent you one confirmation email for all of them."
    )


@bp.get("/n/<slug>/thanks")
def thanks(slug):
    """Show the success message after a signup."""
    newsletter = newsletter_or_404(slug)
    return render_template(
        "subscriptions/thanks.html",
        title=newsletter.text("success_title"),
        text=newsletter.text("success_text"),
        names=[newsletter.name],
        newsletter=newsletter,
        sender=mail_sender([newsletter]),
        site=newsletter.site_url,
    )


@bp.get("/thanks")
def thanks_many():
    """Show the success message after a signup to several newsletters."""
    slugs = [s for s in request.args.getlist("n")[:MAX_NEWSLETTERS_PER_SIGNUP] if _may_exist(s)]
    chosen = list(db.session().scalars(sa.select(Newsletter).where(Newsletter.slug.in_(slugs))))
    # Back to the publisher's site when the newsletters signed up to name one site.
    sites = {n.site_url for n in chosen if n.site_url}
    return render_template(
        "subscriptions/thanks.html",
        title=default_text("success_title"),
        text=success_text(len(chosen)),
        names=[n.name for n in chosen],
        brand=chosen[0] if len(chosen) == 1 else None,
        sender=mail_sender(chosen),
        site=sites.pop() if len(sites) == 1 else None,
    )


def mail_sender(newsletters: list[Newsletter]) -> str:
    """Return who the confirmation mail comes from, as the reader's inbox will show it."""
    name, address = parseaddr(current_app.config["MAIL_FROM"])
    if len(newsletters) == 1:
        name = newsletters[0].text("sender_name") or newsletters[0].name
    return f"{name} <{address}>" if name else address


@bp.after_request
def allow_cross_origin_reads(response):
    """Let widgets on allowed pages read signup answers, errors and rate limits included."""
    if origins.is_readable_cross_origin():
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
@headers.secret_link
def confirm_page(token):
    """Show what a confirmation link confirms, with a button (a box for each of several)."""
    found = services.confirmation_token(db.session(), token)
    i18n.speak_to(found.subscriptions)
    return _confirm_page(found, token)


@bp.post("/confirm/<token>")
@headers.secret_link
def confirm(token):
    """Confirm the subscriptions behind a confirmation link (those left ticked, if asked)."""
    session = db.session()
    chosen = ticked_newsletters() if request.form.get("choosing") else None
    opened = services.confirmation_token(session, token)
    i18n.speak_to(opened.subscriptions)
    try:
        confirmed = services.confirm(session, token, client_ip(), client_user_agent(), chosen)
    except services.InvalidSignup as exc:
        # None ticked: nothing changes, the link stays unused, the page comes back.
        session.rollback()
        return _confirm_page(services.confirmation_token(session, token), token, exc.message, 400)
    session.commit()
    return render_template(
        "subscriptions/confirmed.html", token=confirmed, secret=token, brand=_brand(confirmed)
    )


def _confirm_page(token, secret: str, error: str | None = None, status: int = 200):
    pending = [s for s in token.subscriptions if s.status == Status.PENDING]
    page = render_template(
        "subscriptions/confirm.html",
        token=token,
        secret=secret,
        # A signup to several newsletters: the reader may untick those they do not want.
        choosing=pending if len(pending) > 1 else None,
        error=error,
        brand=_brand(token),
    )
    return page, status


@bp.get("/unsubscribe/<token>")
@headers.secret_link
def unsubscribe_page(token):
    """Show an unsubscribe button; change nothing (mail scanners follow links)."""
    subscription = services.unsubscribe_target(db.session(), token)
    i18n.speak_to([subscription])
    return render_template(
        "subscriptions/unsubscribe.html",
        subscription=subscription,
        secret=token,
        done=False,
        brand=subscription.newsletter,
    )


@bp.post("/unsubscribe/<token>")
@headers.secret_link
def unsubscribe(token):
    """Unsubscribe; also RFC 8058's one-click POST, answered 200 without a redirect."""
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    subscription = services.unsubscribe(
        db.session(),
        token,
        services.Evidence(
            ip=client_ip(),
            user_agent=client_user_agent(),
            source="one-click" if one_click else "link",
        ),
    )
    db.session().commit()
    i18n.speak_to([subscription])
    if one_click or wants_json():
        return jsonify(status=str(Status.UNSUBSCRIBED), newsletter=subscription.newsletter.slug)
    return render_template(
        "subscriptions/unsubscribe.html",
        subscription=subscription,
        secret=token,
        done=True,
        brand=subscription.newsletter,
    )


@bp.app_errorhandler(services.LinkError)
def link_error(exc: services.LinkError):
    if wants_json():
        return jsonify(error="link", message=exc.message), exc.status
    page = render_template(
        "subscriptions/link_error.html", message=exc.message, sign_up_again=exc.sign_up_again
    )
    return page, exc.status


@bp.app_errorhandler(services.AlreadyConfirmed)
def already_confirmed(exc: services.AlreadyConfirmed):
    standing = [s.newsletter.name for s in exc.token.subscriptions if s.status == Status.CONFIRMED]
    message = _("You are already subscribed to %(names)s.", names=", ".join(standing))
    if wants_json():
        return jsonify(status=str(Status.CONFIRMED), message=message)
    return render_template(
        "subscriptions/confirmed.html", token=exc.token, already=message, brand=_brand(exc.token)
    )


def _brand(token) -> Newsletter | None:
    """Return the newsletter whose look a confirmation link's pages wear: its only one."""
    newsletters = {s.newsletter_id: s.newsletter for s in token.subscriptions}
    return next(iter(newsletters.values())) if len(newsletters) == 1 else None


def newsletter_or_404(slug: str) -> Newsletter:
    """Return the newsletter called ``slug`` now or before, or answer 404 with a message.

    A GET of an old slug is redirected (308) to the same page under the current one. Any
    other method is served where it arrives: cross-origin form posts and fetches from
    pages that embed the old slug must not depend on following a redirect.
    """
    newsletter = _newsletter_by_slug(slug)
    if newsletter is None:
        abort(404, description=_("There is no newsletter called %(slug)r.", slug=slug))
    if newsletter.slug != slug and request.method in ("GET", "HEAD"):
        target = url_for(request.endpoint, **(request.view_args | {"slug": newsletter.slug}))
        if request.query_string:
            # Latin-1 gives back the very bytes the client sent.
            target += "?" + request.query_string.decode("latin-1")
        abort(redirect(target, 308))
    g.signup_newsletters = [newsletter]
    i18n.choose_again()  # the page speaks this newsletter's language, or its reader's
    return newsletter


def _newsletter_by_slug(slug: str) -> Newsletter | None:
    return catalogue.published().by_slug.get(slug)


def _may_exist(slug: str) -> bool:
    # PostgreSQL refuses a NUL in any text parameter; no slug holds one, so do not ask.
    return "\x00" not in slug


def _chosen_newsletters() -> list[Newsletter]:
    slugs = list(dict.fromkeys(signup_payload().getlist("newsletter")))
    if not slugs:
        raise BadRequest(_("Choose at least one newsletter."))
    if len(slugs) > MAX_NEWSLETTERS_PER_SIGNUP:
        raise BadRequest(
            _("Choose at most %(count)s newsletters at once.", count=MAX_NEWSLETTERS_PER_SIGNUP)
        )
    known = catalogue.published().by_slug
    found = {slug: known[slug] for slug in slugs if slug in known}
    missing = [slug for slug in slugs if slug not in found]
    if missing:
        abort(404, description=_("There is no newsletter called %(slug)r.", slug=missing[0]))
    # An old slug and the current one of the same newsletter are one choice.
    g.signup_newsletters = list({found[slug].id: found[slug] for slug in slugs}.values())
    i18n.choose_again()
    return g.signup_newsletters


def _index(several: dict | None = None, status: int = 200):
    if several is None:
        public = catalogue.published().public
        if public:  # one form, a box to tick per newsletter
            counters.view([n.id for n in public], Source.SEVERAL, attribution.this_page())
    page = render_template(
        "subscriptions/index.html",
        newsletters=catalogue.published().public,
        several=several,
    )
    return page, status


def _several(payload, error: str, form: SignupForm | None = None) -> dict:
    """Return what the several-at-once form shows again: the ticks, the address, the error."""
    return {
        "chosen": list(dict.fromkeys(payload.getlist("newsletter"))),
        "form": form or SignupForm(formdata=payload, meta={"csrf": False}),
        "error": error,
    }


def _first_error(form: SignupForm) -> str:
    return next(field.errors[0] for field in form._fields.values() if field.errors)


def _success_json(title: str, message: str):
    return jsonify(status="ok", title=title, message=message)


def _invalid_json(form: SignupForm, invalid_email: str):
    """Answer a refused signup: SPEC's message, or the refusal's own; any suggestion."""
    errors = {name: field.errors[0] for name, field in form._fields.items() if field.errors}
    message = invalid_email if "email" in errors else next(iter(errors.values()))
    body = {"error": "invalid", "message": form.refusal or message, "fields": errors}
    if form.suggestion:
        body["suggestion"] = form.suggestion
    return jsonify(body), 400
