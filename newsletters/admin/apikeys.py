"""API keys in the editors' area: an editor's own keys (an admin sees all), create, revoke."""

from flask import abort, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, StringField

from .. import apikeys, db
from ..models import ApiKey
from . import bp, done


class ApiKeyForm(FlaskForm):
    """A new key's name and access, parsed only: ``apikeys.create`` checks them."""

    name = StringField(
        _l("Name (where the key is used, e.g. shop signups)"),
        render_kw={"maxlength": apikeys.NAME_MAX_LENGTH},
    )
    read_only = BooleanField(_l("Read only (may read lists and changes, not sign anyone up)"))


@bp.route("/api-keys", methods=["GET", "POST"])
def apikey_list():
    """List the current editor's keys (an admin's: everybody's), and create one."""
    session = db.session()
    form = ApiKeyForm()
    if form.validate_on_submit():
        try:
            api_key, key = apikeys.create(
                session, current_user._get_current_object(), form.name.data, form.read_only.data
            )
        except apikeys.ApiKeyError as exc:
            form.name.errors.append(str(exc))
        else:
            session.commit()
            # Shown in this answer only (the area's pages are no-store): a flash message
            # would put the key into the session cookie.
            return _page(ApiKeyForm(formdata=None), created=api_key, key=key)
    return _page(form, status=400 if form.errors else 200)


@bp.route("/api-keys/<int:key_id>/revoke", methods=["GET", "POST"])
def apikey_revoke(key_id: int):
    """Ask whether to revoke a key (GET), and revoke it (POST): it stops working at once."""
    session = db.session()
    api_key = _own_key(key_id)
    if request.method == "GET":
        return _page(ApiKeyForm(formdata=None), revoking=api_key)
    apikeys.revoke(session, api_key)
    session.commit()
    return done(
        _("Revoked the API key %(name)s (%(prefix)s…).", name=api_key.name, prefix=api_key.prefix),
        ".apikey_list",
    )


def _page(form: ApiKeyForm, status: int = 200, **shown):
    """Render the keys the current editor may see, the form that adds one, and ``shown``."""
    editor = None if current_user.is_admin else current_user._get_current_object()
    keys = apikeys.listing(db.session(), editor)
    return render_template("admin/apikeys.html", form=form, keys=keys, **shown), status


def _own_key(key_id: int) -> ApiKey:
    """Return the key ``key_id`` if it is the current editor's, or they are an admin."""
    try:
        api_key = apikeys.find(db.session(), key_id)
    except apikeys.ApiKeyError:
        abort(404, description=_("There is no API key number %(number)s.", number=key_id))
    if api_key.editor_id != current_user.id and not current_user.is_admin:
        abort(
            403,
            description=_("This API key is another editor's: only they or an admin may revoke it."),
        )
    return api_key
