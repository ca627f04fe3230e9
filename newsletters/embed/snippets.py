"""The copy-paste snippets that put a newsletter's form on another site."""

from flask import get_template_attribute
from flask_babel import force_locale
from flask_babel import gettext as _
from markupsafe import escape

from ..links import external_url
from ..models import Newsletter


def snippets(newsletter: Newsletter) -> dict[str, str]:
    """Return the three ways to embed ``newsletter``: plain form, iframe, widget.

    The plain form is the signup form's own markup (``subscriptions/_form.html``), in the
    newsletter's language, with absolute links: a page elsewhere posts it as it is.
    """
    frame = external_url("embed.frame", slug=newsletter.slug)
    widget = external_url("embed.widget", slug=newsletter.slug)
    stylesheet = external_url("static", filename="widget.css")
    signup_form = get_template_attribute("subscriptions/_form.html", "signup_form")
    with force_locale(newsletter.language):
        form = signup_form(
            newsletter,
            action=external_url("subscriptions.subscribe", slug=newsletter.slug),
            uid=f"nl-{newsletter.slug}",
            plain=True,
        )
        title = _("%(name)s signup", name=newsletter.name)
    return {
        "form": "\n".join(line for line in str(form).splitlines() if line.strip()),
        # Valid HTML, nothing inline that a strict CSP of the host page refuses: the size in
        # attributes (pixels), the borderless, page-wide look from the product's stylesheet.
        "iframe": (
            f'<link rel="stylesheet" href="{stylesheet}">\n'
            f'<iframe src="{frame}" title="{escape(title)}" class="nl-frame"'
            ' width="480" height="190" loading="lazy"'
            # The article's URL reaches the frame as its Referer, not only its origin: the
            # signup's page (attribution.py keeps its path and utm_* parameters only).
            ' referrerpolicy="no-referrer-when-downgrade"></iframe>'
        ),
        "widget": f'<script src="{widget}"></script>',
    }
