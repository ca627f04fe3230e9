"""The iframe page and the JS widget of a newsletter's signup form."""

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    make_response,
    render_template,
    request,
    url_for,
)
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy.exc import SQLAlchemyError

from .. import attribution, catalogue, colors, counters, db, headers, i18n, limits
from ..links import external_url
from ..models import DEFAULT_TEXTS, Newsletter, Source
from ..subscriptions.entry import take_signup
from ..subscriptions.views import newsletter_or_404, success_text
from . import origins
from .snippets import KINDS, snippets

bp = Blueprint("embed", __name__)


def newsletter_frame_ancestors() -> str | None:
    """Return the frame-ancestors directive of the request's newsletter.

    Also for an answer given before the view found it (a 429 of the rate limit): a refusal
    inside the frame must show there, not as the browser's "refused to connect".
    """
    newsletters = g.get("signup_newsletters")
    if not newsletters and request.view_args and "slug" in request.view_args:
        try:
            found = catalogue.published().by_slug.get(request.view_args["slug"])
        except SQLAlchemyError:
            # The database is away (the answer is its 503): the default policy stands.
            db.session().rollback()
            found = None
        newsletters = [found] if found else None
    return origins.frame_ancestors(newsletters[0]) if newsletters else None


@bp.get("/n/<slug>/embed")
@headers.framed_by(newsletter_frame_ancestors)
def frame(slug):
    """Show the form alone, compact, for an iframe on an allowed origin."""
    newsletter = newsletter_or_404(slug)
    counters.view([newsletter.id], Source.IFRAME, attribution.page_of(request.args.get("page")))
    return _frame_response(newsletter, form=None, done=False)


@bp.post("/n/<slug>/embed")
@limits.signup
@headers.framed_by(newsletter_frame_ancestors)
def frame_subscribe(slug):
    """Take a signup from the iframe and answer inline, in the iframe."""
    newsletter = newsletter_or_404(slug)
    form = take_signup([newsletter], Source.IFRAME)
    return _frame_response(newsletter, form=form, done=not form.errors)


@bp.get("/n/<slug>/embed.js")
def widget(slug):
    """Serve the widget: it renders the form where its own <script> tag stands.

    It carries its texts in every language, and picks one as the pages do (``i18n``): the
    newsletter's, then the embed's (``data-lang``, or ``?lang=`` here), then the reader's
    browser unless the newsletter pins its language. So the script is the same for every
    reader and caches as one.
    """
    newsletter = newsletter_or_404(slug)
    public = catalogue.published().public
    settings = {
        "slug": newsletter.slug,
        "name": newsletter.name,
        "action": external_url("subscriptions.subscribe", slug=newsletter.slug),
        "multiAction": external_url("subscriptions.subscribe_many"),
        # Where the widget gets its proof-of-work challenge (proof.py), and the solver.
        "challenge": external_url("subscriptions.challenge", slug=newsletter.slug),
        "challengeMany": external_url("subscriptions.challenge_many"),
        "solver": external_url("static", filename="proof-worker.js"),
        "stylesheet": external_url("static", filename="widget.css"),
        "language": newsletter.language,
        "asked": i18n.supported(request.args.get("lang")),
        "pinned": newsletter.pin_language,
        "maxLength": current_app.config["EMAIL_MAX_LENGTH"],
        # The button's colour and the text that reads on it; a host's data-accent is checked
        # against the same two text colours in the browser.
        "accent": widget_accent(newsletter),
        "texts": {language: widget_texts(newsletter, language) for language in i18n.LANGUAGES},
        "newsletters": {n.slug: n.name for n in public},
    }
    response = make_response(render_template("embed/widget.js", settings=settings))
    response.mimetype = "text/javascript"
    response.cache_control.public = True
    response.cache_control.max_age = 300
    return response


@bp.get("/embed/resize.js")
def resize_script():
    """Serve the optional host-page script that fits each signup iframe to its form.

    One URL for every newsletter, cached a day by browsers and proxies: it holds no setting.
    """
    response = current_app.send_static_file("resize.js")
    response.cache_control.no_cache = None  # static files' default: revalidate every time
    response.cache_control.public = True
    response.cache_control.max_age = 86400
    return response


@bp.get("/n/<slug>/embed/preview/<embed>")
def preview(slug, embed):
    """Show one ``embed`` (``form``, ``iframe`` or ``widget``) running on a page of its own.

    The editors' settings page frames it, so that the embed looks as on a publisher's page,
    untouched by the editors' stylesheet; its snippet is the very one they copy.
    """
    newsletter = newsletter_or_404(slug)
    if embed not in KINDS:
        message = _("There is no embed called %(embed)r: try form, iframe or widget.", embed=embed)
        abort(404, description=message)
    return render_template(
        "embed/preview.html", newsletter=newsletter, snippet=snippets(newsletter)[embed]
    )


# The widget solves its challenge in a blob: worker there, as on a publisher's page.
headers.declare(preview, headers.Policy(extra=("worker-src 'self' blob:",)))


def widget_accent(newsletter: Newsletter) -> dict[str, str]:
    """Return the widget's colours: the accent, its text, its link on white, the text pair."""
    accent = colors.accent(newsletter)
    return {
        "accent": accent,
        "text": colors.text_on(accent),
        "link": colors.link_on_white(accent),
        "light": colors.LIGHT_TEXT,
        "dark": colors.DARK_TEXT,
    }


def widget_texts(newsletter: Newsletter, language: str) -> dict[str, str]:
    """Return every text the widget shows, in ``language``: the form's and its own."""
    with force_locale(language):
        return {key: newsletter.text(key, language) for key in DEFAULT_TEXTS} | {
            "email_label": _("Email (required)"),
            "name_label": _("Name (optional)"),
            "name_placeholder": _("Name"),
            "newsletters": _("Newsletters"),
            "unreachable": _("Could not reach the newsletter service. Please try again."),
            # Filled in by the widget: %(suggestion)s, %(button)s and %(typed)s.
            "use_suggestion": _("Use %(suggestion)s"),
            "keep_typed": _("Press %(button)s again to keep %(typed)s as you typed it."),
            "several_success_text": success_text(2),
        }


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
