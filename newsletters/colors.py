"""A newsletter's branding on pages, embeds and mails: its accent, the text that reads on it.

WCAG 2.2's contrast ratio (1.4.3, AA: 4.5:1 for text) decides whether a button's label is
white or near-black on the accent; the relative luminance is WCAG's own formula.
"""

import re
from urllib.parse import urlsplit

from flask import Flask
from markupsafe import Markup

DEFAULT_ACCENT = "#0b57d0"
RRGGBB = re.compile(r"#[0-9a-fA-F]{6}")
LIGHT_TEXT = "#ffffff"
DARK_TEXT = "#1d1d1f"


def luminance(colour: str) -> float:
    """Return the relative luminance (0 black … 1 white) of a ``#rrggbb`` colour."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    """Return WCAG's contrast ratio of two ``#rrggbb`` colours, from 1 to 21."""
    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def text_on(accent: str | None) -> str:
    """Return the text colour that reads best on ``accent`` (default: the product's blue)."""
    accent = accent or DEFAULT_ACCENT
    best = max((LIGHT_TEXT, DARK_TEXT), key=lambda text: contrast(text, accent))
    # Mid tones (#777777) reach 4.5:1 with neither; pure black always does where white fails.
    return best if contrast(best, accent) >= 4.5 else "#000000"


def accent(newsletter) -> str:
    """Return ``newsletter``'s accent colour, or the product's if it has none (or is None)."""
    colour = newsletter.accent_color if newsletter is not None else None
    # Checked when saved (catalogue); a row written otherwise cannot put CSS into a page.
    return colour if colour and RRGGBB.fullmatch(colour) else DEFAULT_ACCENT


def link_on_white(accent: str | None) -> str:
    """Return ``accent`` if it reads as link text on white (4.5:1), else the text colour."""
    accent = accent or DEFAULT_ACCENT
    return accent if contrast(accent, LIGHT_TEXT) >= 4.5 else DARK_TEXT


def brand_style(newsletter) -> Markup:
    """Return the ``<style>`` that gives a page ``newsletter``'s accent (CSP: with the nonce)."""
    from .headers import csp_nonce

    colour = accent(newsletter)  # checked as #rrggbb when saved (catalogue)
    return Markup(  # noqa: S704 - a checked #rrggbb and a nonce of ours, nothing typed
        f'<style nonce="{csp_nonce()}">:root {{ --accent: {colour}; '
        f"--on-accent: {text_on(colour)}; --link: {link_on_white(colour)}; }}</style>"
    )


def site_label(url: str) -> str:
    """Return how a site is named in "Back to …": its host, without a leading www."""
    host = urlsplit(url).hostname or url
    return host.removeprefix("www.")


def init_app(app: Flask) -> None:
    app.jinja_env.globals["site_label"] = site_label
    app.jinja_env.globals["brand_style"] = brand_style
    app.jinja_env.globals["text_on"] = text_on
