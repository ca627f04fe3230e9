"""The signup form: rendered on every public page; it parses, the service validates.

``entry.take_signup`` checks the fields with ``services.validate``, once, and puts its
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


def ticked_newsletters() -> set[int]:
    """Return the newsletter ids of the ticked boxes (repeated ``newsletter`` fields).

    For the pages that list a reader's newsletters with a box each (the confirmation of a
    signup to several, the preference centre); anything but an id is refused.
    """
    values = request.form.getlist("newsletter")
    if not all(v.isascii() and v.isdigit() and len(v) < 10 for v in values):
        raise BadRequest("A ticked newsletter is not one of this page's. Reload the page.")
    return {int(v) for v in values}
