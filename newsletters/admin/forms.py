"""The editors' area forms; every one carries Flask-WTF's CSRF token."""

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length

from .. import catalogue
from ..editors import MIN_PASSWORD_LENGTH


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1000)])


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired()])
    new = PasswordField(
        "New password", validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=1000)]
    )


class EditorForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=1000)]
    )
    is_admin = BooleanField("Admin (sees every newsletter, manages editors)")
    newsletters = SelectMultipleField("Newsletters", coerce=int, validate_choice=True)


class EditorAccessForm(FlaskForm):
    """What an editor may do: admin or not, and the newsletters they edit."""

    is_admin = BooleanField("Admin")
    newsletters = SelectMultipleField("Newsletters", coerce=int, validate_choice=True)


def _text(field: str, kind=StringField, label: str | None = None):
    """Return a form field for the newsletter text ``field``: the catalogue checks it."""
    rule = catalogue.TEXTS[field]
    return kind(label or rule.label, render_kw={"maxlength": rule.longest})


class NewsletterForm(FlaskForm):
    """A newsletter's settings, parsed only: ``catalogue`` holds the rules, for the CLI too."""

    slug = StringField("Slug (in URLs)", render_kw={"maxlength": 64})
    name = _text("name")
    description = _text("description", TextAreaField)
    is_public = BooleanField("Listed on the public page")
    placeholder = _text("placeholder")
    button = _text("button")
    required_note = _text("required_note")
    invalid_email = _text("invalid_email")
    success_title = _text("success_title")
    success_text = _text("success_text", TextAreaField)
    allowed_origins = TextAreaField(
        "Allowed embed origins (one per line, e.g. https://www.example.com; empty: any page)",
        render_kw={"maxlength": catalogue.ORIGINS_LONGEST},
    )
    sender_name = _text("sender_name")
    confirm_body = _text(
        "confirm_body",
        TextAreaField,
        "Confirmation mail text, above the link (plain text; empty: the standard text)",
    )
    confirm_subject = _text("confirm_subject")
    # Mails after confirmation: each off until turned on; the texts are the editors' own.
    welcome_enabled = BooleanField("Send a welcome mail after the confirmation")
    welcome_subject = _text("welcome_subject")
    welcome_body = _text(
        "welcome_body",
        TextAreaField,
        "Welcome mail text, above the consent receipt (plain text; empty: the standard text)",
    )
    # Parsed as text: the catalogue says what a valid number of hours is, for the CLI too.
    reminder_hours = StringField(
        "Remind an unconfirmed signup after this many hours (empty: no reminder)",
        render_kw={"inputmode": "numeric", "maxlength": 6},
    )
    reminder_subject = _text("reminder_subject")
    reminder_body = _text(
        "reminder_body",
        TextAreaField,
        "Reminder text, above the confirmation link (plain text; empty: the standard text)",
    )


class ImportForm(FlaskForm):
    file = FileField("CSV file", validators=[FileRequired()])
    send_confirmation = BooleanField(
        "Send a confirmation mail to imported addresses without a recorded opt-in"
    )
