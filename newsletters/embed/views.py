"""The iframe page and the JS widget of a newsletter's signup form."""

from flask import Blueprint, g, make_response, render_template, url_for

from .. import catalogue, headers, limits
from ..links import external_url
from ..models import DEFAULT_TEXTS, Newsletter, Source
from ..subscriptions.entry import take_signup
from ..subscriptions.views import newsletter_or_404
from . import origins

bp = Blueprint("embed", __name__)

WIDGET_TEXT_KEYS = ("placeholder", "button", "required_note", "invalid_email")


def newsletter_frame_ancestors() -> str | None:
    """Return the frame-ancestors directive of the request's newsletter, once it is known."""
    newsletters = g.get("signup_newsletters")
    return origins.frame_ancestors(newsletters[0]) if newsletters else None


@bp.get("/n/<slug>/embed")
@headers.framed_by(newsletter_frame_ancestors)
def frame(slug):
    """Show the form alone, compact, for an iframe on an allowed origin."""
    newsletter = newsletter_or_404(slug)
    return _frame_response(newsletter, form=None, done=False)


@bp.post("/n/<slug>/embed")
@limits.signup
@headers.framed_by(newsletter_frame_ancestors)
def frame_subscribe(slug):
    """Take a signup from the iframe and answer inline, in the iframe."""
    newsletter = newsletter_or_404(slug)
    form = take_signup([newsletter], Source.EMBED)
    return _frame_response(newsletter, form=form, done=not form.errors)


@bp.get("/n/<slug>/embed.js")
def widget(slug):
    """Serve the widget: it renders the form where its own <script> tag stands."""
    newsletter = newsletter_or_404(slug)
    public = catalogue.published().public
    settings = {
        "slug": newsletter.slug,
        "name": newsletter.name,
        "action": external_url("subscriptions.subscribe", slug=newsletter.slug),
        "multiAction": external_url("subscriptions.subscribe_many"),
        "stylesheet": external_url("static", filename="widget.css"),
        "texts": {key: newsletter.text(key) for key in WIDGET_TEXT_KEYS},
        "defaults": {k: DEFAULT_TEXTS[k] for k in ("success_title", "success_text")},
        "newsletters": {n.slug: n.name for n in public},
    }
    response = make_response(render_template("embed/widget.js", settings=settings))
    response.mimetype = "text/javascript"
    response.cache_control.public = True
    response.cache_control.max_age = 300
    return response


def _frame_response(newsletter: Newsletter, form, done: bool):
    return make_response(
        render_template(
            "embed/frame.html",
            newsletter=newsletter,
            form=form,
            done=done,
            action=url_for(".frame_subscribe", slug=newsletter.slug),
        ),
        400 if form is not None and form.errors else 200,
    )
