"""The signup form: rendered on every public page, validated by the services' rules."""

from flask_wtf import FlaskForm
from wtforms import EmailField, StringField, ValidationError

from .services import InvalidSignup, clean_name, normalise_address


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

    def validate_email(self, field):
        try:
            normalise_address(field.data or "")
        except InvalidSignup as exc:
            raise ValidationError(exc.message) from None

    def validate_name(self, field):
        try:
            clean_name(field.data)
        except InvalidSignup as exc:
            raise ValidationError(exc.message) from None
