"""The newsletters an editor may see: list, create (admins), edit texts and embed settings."""

import sqlalchemy as sa
from flask import render_template, request

from .. import db
from ..embed.origins import parse_origins
from ..embed.snippets import snippets
from ..models import DEFAULT_TEXTS, Newsletter, Status, Subscription
from . import admin_required, bp, done, editable_newsletter, visible_newsletters
from .forms import NewsletterForm

# Form fields stored as NULL when left empty, so that SPEC's default text applies.
TEXT_FIELDS = tuple(DEFAULT_TEXTS) + ("sender_name", "confirm_subject", "confirm_body")


@bp.get("/")
def index():
    """List the editor's newsletters with their subscriber counts."""
    newsletters = visible_newsletters()
    counts: dict[tuple[int, str], int] = {}
    if newsletters:
        rows = db.session().execute(
            sa.select(Subscription.newsletter_id, Subscription.status, sa.func.count())
            .where(Subscription.newsletter_id.in_([n.id for n in newsletters]))
            .group_by(Subscription.newsletter_id, Subscription.status)
        )
        counts = {(nid, str(status)): n for nid, status, n in rows}
    return render_template(
        "admin/index.html", newsletters=newsletters, counts=counts, statuses=list(Status)
    )


@bp.route("/newsletters/new", methods=["GET", "POST"])
@admin_required
def newsletter_new():
    """Create a newsletter (admins only)."""
    form = NewsletterForm(is_public=True)
    if form.validate_on_submit() and _save(form, Newsletter()):
        return done(f"Created {form.name.data}.", ".newsletter_edit", slug=form.slug.data)
    return _form_page(form, None)


@bp.route("/n/<slug>/settings", methods=["GET", "POST"])
def newsletter_edit(slug):
    """Edit a newsletter's name, texts, embed origins and mail; show its embed snippets."""
    newsletter = editable_newsletter(slug)
    form = NewsletterForm(obj=newsletter)
    if request.method == "GET":
        form.allowed_origins.data = "\n".join(newsletter.origins())
    if form.validate_on_submit() and _save(form, newsletter):
        return done("Saved.", ".newsletter_edit", slug=newsletter.slug)
    return _form_page(form, newsletter)


def _save(form: NewsletterForm, newsletter: Newsletter) -> bool:
    """Copy the form onto ``newsletter`` and commit; False with field errors if it cannot."""
    try:
        origins = parse_origins(form.allowed_origins.data)
    except ValueError as exc:
        form.allowed_origins.errors.append(str(exc))
        return False
    session = db.session()
    taken = session.scalar(
        sa.select(Newsletter.id).where(
            Newsletter.slug == form.slug.data, Newsletter.id != newsletter.id
        )
    )
    if taken:
        form.slug.errors.append("Another newsletter has this slug.")
        return False
    newsletter.slug = form.slug.data
    newsletter.name = form.name.data.strip()
    newsletter.description = (form.description.data or "").strip()
    newsletter.is_public = form.is_public.data
    for field in TEXT_FIELDS:
        setattr(newsletter, field, (getattr(form, field).data or "").strip() or None)
    newsletter.allowed_origins = " ".join(origins)
    session.add(newsletter)
    session.commit()
    return True


def _form_page(form: NewsletterForm, newsletter: Newsletter | None):
    page = render_template(
        "admin/newsletter_form.html",
        form=form,
        newsletter=newsletter,
        snippets=snippets(newsletter) if newsletter else None,
        defaults=DEFAULT_TEXTS,
    )
    return page, 400 if form.errors else 200
