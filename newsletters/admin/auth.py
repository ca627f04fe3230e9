"""Logging in and out, and changing one's password."""

from flask import redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user

from .. import db, editors, limits
from . import bp, done, local_path
from .forms import LoginForm, PasswordForm


@bp.route("/login", methods=["GET", "POST"])
@limits.login
def login():
    """Show the login form; log in with email and password."""
    form = LoginForm()
    if form.validate_on_submit():
        editor = editors.authenticate(db.session(), form.email.data, form.password.data)
        if editor is not None:
            login_user(editor)
            return redirect(local_path(request.args.get("next")) or url_for(".index"), 303)
        form.password.errors.append(_("Wrong email or password."))
    status = 400 if request.method == "POST" else 200
    return render_template("admin/login.html", form=form), status


@bp.post("/logout")
def logout():
    """End this session."""
    logout_user()
    return redirect(url_for(".login"), 303)


@bp.route("/account/password", methods=["GET", "POST"])
def password():
    """Change one's password, which ends one's other sessions."""
    form = PasswordForm()
    if form.validate_on_submit():
        if editors.authenticate(db.session(), current_user.email, form.current.data) is None:
            form.current.errors.append(_("That is not your current password."))
        else:
            editors.change_password(db.session(), current_user, form.new.data)
            db.session().commit()
            # This session carries the new version; the others do not, and end.
            login_user(current_user._get_current_object())
            return done(_("Password changed. Your other sessions have ended."), ".index")
    status = 400 if form.errors else 200
    return render_template("admin/password.html", form=form), status
