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
from wtforms.validators import DataRequired, Length, Optional, Regexp

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


class NewsletterForm(FlaskForm):
    slug = StringField(
        "Slug (in URLs)",
        validators=[
            DataRequired(),
            Length(max=64),
            Regexp(r"^[a-z0-9][a-z0-9-]*$", message="Lower-case letters, digits and hyphens."),
        ],
    )
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    description = TextAreaField("Description", validators=[Optional(), Length(max=2000)])
    is_public = BooleanField("Listed on the public page")
    placeholder = StringField("Field placeholder", validators=[Optional(), Length(max=200)])
    button = StringField("Button", validators=[Optional(), Length(max=100)])
    required_note = StringField("Note", validators=[Optional(), Length(max=200)])
    invalid_email = StringField("Invalid address message", validators=[Optional(), Length(max=200)])
    success_title = StringField("Success title", validators=[Optional(), Length(max=200)])
    success_text = TextAreaField("Success text", validators=[Optional(), Length(max=2000)])
    allowed_origins = TextAreaField(
        "Allowed embed origins (one per line, e.g. https://www.example.com; empty: any page)",
        validators=[Optional(), Length(max=4000)],
    )
    sender_name = StringField("Sender name of mails", validators=[Optional(), Length(max=200)])
    confirm_body = TextAreaField(
        "Confirmation mail text, above the link (plain text; empty: the standard text)",
        validators=[Optional(), Length(max=4000)],
    )
    confirm_subject = StringField(
        "Subject of the confirmation mail", validators=[Optional(), Length(max=200)]
    )


class ImportForm(FlaskForm):
    file = FileField("CSV file", validators=[FileRequired()])
    send_confirmation = BooleanField(
        "Send a confirmation mail to imported addresses without a recorded opt-in"
    )
