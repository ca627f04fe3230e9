"""The copy-paste snippets that put a newsletter's form on another site."""

from flask import get_template_attribute
from flask_babel import force_locale
from flask_babel import gettext as _
from markupsafe import escape

from ..links import external_url
from ..models import Newsletter

# The three ways, in the order the editors' page and the CLI show them.
KINDS = ("form", "iframe", "widget")
# The frame page's natural height in CSS pixels (static/frame.css: the field and button, 70,
# and the note; the success text at a desktop's width, 73), so that a host page without
# resize.js shows the form with no space under it. A longer answer there (an error, the
# success text on a phone) scrolls inside the frame; resize.js fits the frame to each.
FRAME_HEIGHT = 76


def snippets(newsletter: Newsletter) -> dict[str, str]:
    """Return the three ways to embed ``newsletter``: plain form, iframe, widget.

    The plain form is the signup form's own markup (``subscriptions/_form.html``), in the
    newsletter's language, with absolute links: a page elsewhere posts it as it is.
    """
    frame = external_url("embed.frame", slug=newsletter.slug)
    widget = external_url("embed.widget", slug=newsletter.slug)
    resize = external_url("embed.resize_script")
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
    form_lines = [line for line in str(form).splitlines() if line.strip()]
    return {
        # The product's stylesheet (every rule of no specificity) lays the form out and keeps
        # its label read out but out of sight; refused or left out, the form still works.
        "form": "\n".join([f'<link rel="stylesheet" href="{stylesheet}">', *form_lines]),
        # Valid HTML, nothing inline that a strict CSP of the host page refuses: the size in
        # attributes (pixels), the borderless, page-wide look from the product's stylesheet;
        # resize.js (optional) then fits the frame to the form, its errors and its answer.
        "iframe": (
            f'<link rel="stylesheet" href="{stylesheet}">\n'
            f'<iframe src="{frame}" title="{escape(title)}" class="nl-frame"'
            f' width="480" height="{FRAME_HEIGHT}" loading="lazy"'
            # The article's URL reaches the frame as its Referer, not only its origin: the
            # signup's page (attribution.py keeps its path and utm_* parameters only).
            ' referrerpolicy="no-referrer-when-downgrade"></iframe>\n'
            f'<script src="{resize}" async></script>'
        ),
        "widget": f'<script src="{widget}"></script>',
    }
