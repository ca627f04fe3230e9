"""The newsletters an editor may see: list, create (admins), edit texts and embed settings."""

from flask import render_template, request

from .. import catalogue, db
from ..embed.snippets import snippets
from ..models import DEFAULT_TEXTS, Newsletter, Status
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
    if form.validate_on_submit():
        newsletter = _save(form, None)
        if newsletter is not None:
            return done(f"Created {newsletter.name}.", ".newsletter_edit", slug=newsletter.slug)
    return _form_page(form, None)


@bp.route("/n/<slug>/settings", methods=["GET", "POST"])
def newsletter_edit(slug):
    """Edit a newsletter's name, slug, texts, embed origins and mail; show its snippets."""
    newsletter = editable_newsletter(slug)
    form = NewsletterForm(obj=newsletter)
    if request.method == "GET":
        form.allowed_origins.data = "\n".join(newsletter.origins())
    if form.validate_on_submit() and _save(form, newsletter) is not None:
        return done("Saved.", ".newsletter_edit", slug=newsletter.slug)
    return _form_page(form, newsletter)


def _save(form: NewsletterForm, newsletter: Newsletter | None) -> Newsletter | None:
    """Create or change the newsletter from the form and commit; None with a field error."""
    session = db.session()
    settings = {field: getattr(form, field).data for field in SETTINGS}
    try:
        if newsletter is None:
            newsletter = catalogue.create(session, **settings)
        else:
            catalogue.update(session, newsletter, **settings)
    except catalogue.CatalogueError as exc:
        session.rollback()
        form[exc.field].errors.append(exc.message)
        return None
    session.commit()
    return newsletter


def _form_page(form: NewsletterForm, newsletter: Newsletter | None):
    session = db.session()
    page = render_template(
        "admin/newsletter_form.html",
        form=form,
        newsletter=newsletter,
        old_slugs=catalogue.aliases(session, newsletter) if newsletter else [],
        snippets=snippets(newsletter) if newsletter else None,
        defaults=DEFAULT_TEXTS,
    )
    return page, 400 if form.errors else 200
