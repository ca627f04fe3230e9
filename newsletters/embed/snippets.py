"""The copy-paste snippets that put a newsletter's form on another site."""

from markupsafe import escape

from ..links import external_url
from ..models import Newsletter


def snippets(newsletter: Newsletter) -> dict[str, str]:
    """Return the three ways to embed ``newsletter``: plain form, iframe, widget."""
    action = external_url("subscriptions.subscribe", slug=newsletter.slug)
    frame = external_url("embed.frame", slug=newsletter.slug)
    widget = external_url("embed.widget", slug=newsletter.slug)
    stylesheet = external_url("static", filename="widget.css")
    placeholder = escape(newsletter.text("placeholder"))
    button = escape(newsletter.text("button"))
    note = escape(newsletter.text("required_note"))
    return {
        "form": (
            f'<form method="post" action="{action}">\n'
            f'  <input type="email" name="email" placeholder="{placeholder}" required>\n'
            f'  <input type="hidden" name="return_url" value="">'
            "  <!-- your page's URL, if its origin is allowed -->\n"
            f'  <button type="submit">{button}</button>\n'
            f"  <p>{note}</p>\n"
            "</form>"
        ),
        # Valid HTML, nothing inline that a strict CSP of the host page refuses: the size in
        # attributes (pixels), the borderless, page-wide look from the product's stylesheet.
        "iframe": (
            f'<link rel="stylesheet" href="{stylesheet}">\n'
            f'<iframe src="{frame}" title="{escape(newsletter.name)} signup" class="nl-frame"'
            ' width="480" height="130" loading="lazy"></iframe>'
        ),
        "widget": f'<script src="{widget}"></script>',
    }
