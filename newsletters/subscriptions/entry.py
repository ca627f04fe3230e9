"""One way in for every public signup: hosted form, iframe, widget and multi-newsletter form.

Parses the body (form or JSON), validates it, drops honeypot hits, calls the signup service
and commits, so the entry points differ only in how they answer.
"""

from flask import request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from .. import db
from ..models import Newsletter, Source
from . import services
from .forms import SignupForm

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
STRING_FIELDS = ("email", "name", "website", "return_url")


def take_signup(newsletters: list[Newsletter], source: Source) -> SignupForm:
    """Record the signup in the current request; return the form, with errors if refused.

    A filled honeypot field (``website``, hidden from people) gets the same answer as a real
    signup and stores nothing: a bot learns nothing from trying again.
    """
    form = SignupForm(formdata=signup_payload(), meta={"csrf": False})
    if not form.validate() or form.website.data:
        return form
    services.signup(
        db.session(), newsletters, form.email.data, form.name.data, evidence(source, newsletters)
    )
    db.session().commit()
    return form


def signup_payload() -> MultiDict:
    """Return a signup's fields from a form or JSON body, refusing what is neither."""
    if request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise BadRequest('The body is not a JSON object. Send {"email": "you@example.com"}.')
        payload = MultiDict()
        for key, value in data.items():
            if key in ("newsletter", "newsletters"):
                values = value if isinstance(value, list) else [value]
                if not all(isinstance(v, str) for v in values):
                    raise BadRequest(f"The field {key!r} must be a list of newsletter names.")
                for v in values:
                    payload.add("newsletter", v)
            elif key in STRING_FIELDS and value is not None:
                if not isinstance(value, str):
                    raise BadRequest(f"The field {key!r} must be a string.")
                payload[key] = value
        return payload
    if request.mimetype in FORM_TYPES:
        return request.form
    raise UnsupportedMediaType(
        "Send the signup as a form (application/x-www-form-urlencoded) or as JSON "
        "(application/json)."
    )


def evidence(source: Source, newsletters: list[Newsletter]) -> services.Evidence:
    """Return the consent evidence of the current request: who, from where, seeing what."""
    shown = "; ".join(
        f"{n.name}: {n.text('placeholder')} [{n.text('button')}]" for n in newsletters
    )
    user_agent = request.user_agent.string
    return services.Evidence(
        ip=request.remote_addr,
        user_agent=user_agent[:512] if user_agent else None,
        source=source,
        form_text=shown,
    )
