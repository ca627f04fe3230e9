"""The newsletters an editor may see: list, create (admins), edit texts and embed settings."""

from flask import render_template, request
from flask_babel import gettext as _

from .. import catalogue, db, i18n
from ..embed.snippets import snippets
from ..models import DEFAULT_TEXTS, TEXT_KEYS, Newsletter, Status
from . import admin_required, bp, done, editable_newsletter, visible_newsletters
from .forms import NewsletterForm

# Every setting the form edits, handed to the catalogue as typed.
SETTINGS = tuple(catalogue.TEXTS) + catalogue.OTHER_SETTINGS


@bp.get("/")
def index():
    """List the editor's newsletters with their subscriber counts."""
    newsletters = visible_newsletters()
    by_newsletter = catalogue.counts(db.session(), [n.id for n in newsletters])
    counts = {
        (nid, str(status)): n for nid, found in by_newsletter.items() for status, n in found.items()
    }
    return render_template(
        "admin/index.html", newsletters=newsletters, counts=counts, statuses=list(Status)
    )


@bp.route("/newsletters/new", methods=["GET", "POST"])
@admin_required
def newsletter_new():
    """Create a newsletter (admins only)."""
    form = NewsletterForm(is_public=True)
    language = texts_language(None)
    if form.validate_on_submit():
        newsletter = _save(form, None, language)
        if newsletter is not None:
            return done(
                _("Created %(name)s.", name=newsletter.name),
                ".newsletter_edit",
                slug=newsletter.slug,
            )
    return _form_page(form, None, language)


@bp.route("/n/<slug>/settings", methods=["GET", "POST"])
def newsletter_edit(slug):
    """Edit a newsletter's name, slug, texts (per language), embeds and mails; show snippets."""
    newsletter = editable_newsletter(slug)
    language = texts_language(newsletter)
    form = NewsletterForm(obj=newsletter)
    if request.method == "GET":
        form.allowed_origins.data = "\n".join(newsletter.origins())
        for key in TEXT_KEYS:
            form[key].data = newsletter.own_text(key, language)
    if form.validate_on_submit() and _save(form, newsletter, language) is not None:
        # Back to the same language's texts; the newsletter's own language needs no mention.
        shown = language if language != newsletter.language else None
        return done(_("Saved."), ".newsletter_edit", slug=newsletter.slug, texts=shown)
    return _form_page(form, newsletter, language)


def texts_language(newsletter: Newsletter | None) -> str:
    """Return the language whose texts the settings page edits: asked for, or the list's."""
    asked = request.form.get("texts_language") if request.method == "POST" else None
    asked = asked or request.args.get("texts")
    own = newsletter.language if newsletter is not None else i18n.DEFAULT_LANGUAGE
    return i18n.supported(asked) or own


def _save(form: NewsletterForm, newsletter: Newsletter | None, language: str) -> Newsletter | None:
    """Create or change the newsletter from the form and commit; None with a field error."""
    session = db.session()
    settings = {field: getattr(form, field).data for field in SETTINGS}
    try:
        if newsletter is None:
            newsletter = catalogue.create(session, texts_language=language, **settings)
        else:
            catalogue.update(session, newsletter, texts_language=language, **settings)
    except catalogue.CatalogueError as exc:
        session.rollback()
        form[exc.field].errors.append(exc.message)
        return None
    session.commit()
    return newsletter


def _form_page(form: NewsletterForm, newsletter: Newsletter | None, language: str):
    session = db.session()
    page = render_template(
        "admin/newsletter_form.html",
        form=form,
        newsletter=newsletter,
        old_slugs=catalogue.aliases(session, newsletter) if newsletter else [],
        snippets=snippets(newsletter) if newsletter else None,
        texts_language=language,
        defaults=_defaults(newsletter, language),
    )
    return page, 400 if form.errors else 200


def _defaults(newsletter: Newsletter | None, language: str) -> dict[str, str]:
    """Return what a reader in ``language`` sees of each form text left empty there."""
    own = newsletter is not None and language != newsletter.language
    return {
        key: (own and newsletter.own_text(key)) or i18n.translate(text, language)
        for key, text in DEFAULT_TEXTS.items()
    }
