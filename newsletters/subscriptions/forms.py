"""The signup form: rendered on every public page; it parses, the service validates.

``entry.take_signup`` checks the fields with ``services.check_signup``, once, and puts its
message on the field it names, so the form, the widget, the API and the importer share one
rule and nothing is normalised twice.
"""

from flask import request
from flask_wtf import FlaskForm
from werkzeug.exceptions import BadRequest
from wtforms import EmailField, StringField


class SignupForm(FlaskForm):
    # Public signup forms are posted from other sites, which cannot carry our CSRF token;
    # they change nothing an attacker could profit from (a pending subscription that only
    # the inbox owner can confirm), and rate limits and the mail throttle bound abuse.
    class Meta:
        csrf = False

    email = EmailField("Email")
    name = StringField("Name")
    # The honeypot: hidden from people, filled by bots (see entry.take_signup).
    website = StringField("Leave this empty")
    # Where a plain form on a publisher's page sends the reader back to, if allowed.
    return_url = StringField("Return to")
    # The address as typed, sent again after a "Did you mean …?": take it as it is.
    accept_as_typed = StringField("Keep the address as typed")
    # The language the form was shown in (i18n), kept for the reader's mails.
    lang = StringField("Language")
    # Set by ``entry.take_signup`` when the address looks like a typo: the likely address;
    # and when the address is valid but refused here (disposable, role): its message.
    suggestion: str | None = None
    refusal: str | None = None

    def accepts_typo(self) -> bool:
        """Tell whether the reader chose to keep the address as typed after a suggestion."""
        kept = (self.accept_as_typed.data or "").strip()
        typed = (self.email.data or "").strip()
        return kept.lower() in ("1", "true", "yes", "on") or (
            bool(kept) and kept.casefold() == typed.casefold()
        )


def ticked_newsletters() -> set[int]:
    """Return the newsletter ids of the ticked boxes (repeated ``newsletter`` fields).

    For the pages that list a reader's newsletters with a box each (the confirmation of a
    signup to several, the preference centre); anything but an id is refused.
    """
    values = request.form.getlist("newsletter")
    if not all(v.isascii() and v.isdigit() and len(v) < 10 for v in values):
        raise BadRequest("A ticked newsletter is not one of this page's. Reload the page.")
    return {int(v) for v in values}
