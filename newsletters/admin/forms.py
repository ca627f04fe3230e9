"""The editors' area forms; every one carries Flask-WTF's CSRF token."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from .. import catalogue
from ..editors import MIN_PASSWORD_LENGTH
from ..i18n import LANGUAGE_NAMES


class LoginForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=320)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1000)])


class PasswordForm(FlaskForm):
    current = PasswordField(_l("Current password"), validators=[DataRequired()])
    new = PasswordField(
        _l("New password"),
        validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=1000)],
    )


class EditorForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=320)])
    password = PasswordField(
        _l("Password"), validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=1000)]
    )
    is_admin = BooleanField(_l("Admin (sees every newsletter, manages editors)"))
    newsletters = SelectMultipleField(_l("Newsletters"), coerce=int, validate_choice=True)


class EditorAccessForm(FlaskForm):
    """What an editor may do: admin or not, and the newsletters they edit."""

    is_admin = BooleanField(_l("Admin"))
    newsletters = SelectMultipleField(_l("Newsletters"), coerce=int, validate_choice=True)


# What a newsletter does with a disposable or a role address (catalogue.POLICIES).
POLICY_CHOICES = [
    SelectChoice("flag", _l("Take them, flagged for editors")),
    SelectChoice("refuse", _l("Refuse them, with a message to the reader")),
]


def _text(field: str, kind=StringField, label: str | None = None):
    """Return a form field for the newsletter text ``field``: the catalogue checks it."""
    rule = catalogue.TEXTS[field]
    return kind(label or rule.label, render_kw={"maxlength": rule.longest})


class NewsletterForm(FlaskForm):
    """A newsletter's settings, parsed only: ``catalogue`` holds the rules, for the CLI too.

    The texts of ``TEXT_KEYS`` are those of one language, the page's ``texts_language``.
    Choices are checked by the catalogue, not here (validate_choice=False), so that the
    command line and the form refuse the same things with the same words.
    """

    slug = StringField(_l("Slug (in URLs)"), render_kw={"maxlength": 64})
    name = _text("name")
    description = _text("description", TextAreaField)
    is_public = BooleanField(_l("Listed on the public page"))
    language = SelectField(
        _l("Language of its pages and mails"),
        choices=[SelectChoice(code, name) for code, name in LANGUAGE_NAMES.items()],
        validate_choice=False,
    )
    pin_language = BooleanField(_l("Pin the language: readers' browsers do not choose another"))
    disposable_policy = SelectField(
        _l("Addresses of disposable mail services (mailinator.com …)"),
        choices=POLICY_CHOICES,
        validate_choice=False,
    )
    role_policy = SelectField(
        _l("Shared role addresses (info@, admin@, noreply@ …)"),
        choices=POLICY_CHOICES,
        validate_choice=False,
    )
    placeholder = _text("placeholder")
    button = _text("button")
    required_note = _text("required_note")
    invalid_email = _text("invalid_email")
    success_title = _text("success_title")
    success_text = _text("success_text", TextAreaField)
    allowed_origins = TextAreaField(
        _l("Allowed embed origins (one per line, e.g. https://www.example.com; empty: any page)"),
        render_kw={"maxlength": catalogue.ORIGINS_LONGEST},
    )
    # Branding: parsed as text, checked by the catalogue (as the CLI's are).
    accent_color = StringField(
        _l("Accent colour of buttons and links (#rrggbb; empty: the standard blue)"),
        render_kw={"maxlength": 7, "placeholder": "#0b57d0", "autocomplete": "off"},
    )
    logo_url = StringField(
        _l("Logo (the https:// address of an image; empty: none)"),
        render_kw={"maxlength": catalogue.URL_LONGEST, "inputmode": "url"},
    )
    site_url = StringField(
        _l("Your site (readers are sent back there after signing up; empty: none)"),
        render_kw={"maxlength": catalogue.URL_LONGEST, "inputmode": "url"},
    )
    sender_name = _text("sender_name")
    confirm_body = _text(
        "confirm_body",
        TextAreaField,
        _l("Confirmation mail text, above the link (plain text; empty: the standard text)"),
    )
    confirm_subject = _text("confirm_subject")
    # Mails after confirmation: each off until turned on; the texts are the editors' own.
    welcome_enabled = BooleanField(_l("Send a welcome mail after the confirmation"))
    welcome_subject = _text("welcome_subject")
    welcome_body = _text(
        "welcome_body",
        TextAreaField,
        _l("Welcome mail text, above the consent receipt (plain text; empty: the standard text)"),
    )
    # Parsed as text: the catalogue says what a valid number of hours is, for the CLI too.
    reminder_hours = StringField(
        _l("Remind an unconfirmed signup after this many hours (empty: no reminder)"),
        render_kw={"inputmode": "numeric", "maxlength": 6},
    )
    reminder_subject = _text("reminder_subject")
    reminder_body = _text(
        "reminder_body",
        TextAreaField,
        _l("Reminder text, above the confirmation link (plain text; empty: the standard text)"),
    )


class ImportForm(FlaskForm):
    file = FileField(_l("CSV file"), validators=[FileRequired()])
    send_confirmation = BooleanField(
        _l("Send a confirmation mail to imported addresses without a recorded opt-in")
    )
