"""One way in for every public signup: hosted form, iframe, widget and multi-newsletter form.

Parses the body (form or JSON), validates it, drops honeypot hits, calls the signup service
and commits, so the entry points differ only in how they answer.
"""

import ipaddress
import json

from flask import request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from .. import db, i18n, negotiation, wakeup
from ..embed import origins
from ..models import Newsletter, Source
from ..text import has_lone_surrogate
from . import services
from .forms import SignupForm

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
STRING_FIELDS = ("email", "name", "website", "return_url", "accept_as_typed", "lang")
JSON_EXAMPLE = 'Send {"email": "you@example.com"}.'
# The longest text form of an IP address (IPv4-mapped IPv6); the column holds no more.
MAX_IP_LENGTH = 45
MAX_ORIGIN_LENGTH = 255


def take_signup(newsletters: list[Newsletter], source: Source) -> SignupForm:
    """Accept the signup of the current request; return the form, with errors if refused.

    A page that may not use these newsletters' forms is refused first (403), whichever
    entry point it posted to. The answer speaks the reader's language (the body's ``lang``,
    see ``i18n``), which is kept for their mails. An address that looks like a typo is
    refused with the likely one (``form.suggestion``) unless it comes back as typed. A filled
    honeypot field (``website``, hidden from people) gets the same answer as a real signup
    and stores nothing: a bot learns nothing from trying again. Otherwise one row is stored
    for the worker (``services.signup``).
    """
    origins.check(newsletters)
    payload = signup_payload()
    i18n.choose_again(payload.get("lang"))
    form = SignupForm(formdata=payload, meta={"csrf": False})
    try:
        checked = services.check_signup(
            form.email.data, form.name.data, newsletters, accept_typo=form.accepts_typo()
        )
    except services.InvalidSignup as exc:
        form[exc.field].errors = [exc.message]
        form.suggestion = exc.suggestion
        form.refusal = exc.message if exc.suggestion or exc.policy else None
        return form
    if form.website.data:
        return form
    services.signup(
        db.session(),
        newsletters,
        checked,
        None,
        evidence(source, newsletters),
        language=i18n.current_language(),
    )
    db.session().commit()
    wakeup.notify()
    return form


def signup_payload() -> MultiDict:
    """Return a signup's fields from a form or JSON body, refusing what is neither.

    Refused before anything is stored: a field sent twice (which one would count?), text that
    is not text (undecodable bytes, lone surrogates) and a return address that could not be
    redirected to (line breaks would fail the redirect after the signup was committed).
    """
    if request.is_json:
        payload = _json_payload()
    elif request.mimetype in FORM_TYPES:
        payload = request.form
        for key in STRING_FIELDS:
            if len(payload.getlist(key)) > 1:
                raise BadRequest(f"The field {key!r} was sent more than once; send it once.")
        # werkzeug decodes a form leniently, replacing bytes that are not UTF-8 with U+FFFD.
        if any("\ufffd" in value for _, value in payload.items(multi=True)):
            raise BadRequest("The form is not valid UTF-8 text. Send it encoded as UTF-8.")
    else:
        raise UnsupportedMediaType(
            "Send the signup as a form (application/x-www-form-urlencoded) or as JSON "
            "(application/json)."
        )
    if any(not ch.isprintable() for ch in payload.get("return_url", "")):
        raise BadRequest(
            "The field 'return_url' may not contain line breaks or control characters."
        )
    return payload


def _json_payload() -> MultiDict:
    try:
        data = json.loads(request.get_data(cache=True), object_pairs_hook=_refuse_repeated_keys)
    except RecursionError:
        raise BadRequest(f"The JSON body is nested too deeply. {JSON_EXAMPLE}") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError among them
        raise BadRequest(f"The body is not a valid JSON object ({exc}). {JSON_EXAMPLE}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"The body is not a JSON object. {JSON_EXAMPLE}")
    payload = MultiDict()
    for key, value in data.items():
        if key in ("newsletter", "newsletters"):
            values = value if isinstance(value, list) else [value]
            if not all(isinstance(v, str) for v in values):
                raise BadRequest(f"The field {key!r} must be a list of newsletter names.")
            for v in values:
                payload.add("newsletter", _text(key, v))
        elif key == "accept_as_typed" and isinstance(value, bool):
            payload[key] = "true" if value else ""
        elif key in STRING_FIELDS and value is not None:
            if not isinstance(value, str):
                raise BadRequest(f"The field {key!r} must be a string.")
            payload[key] = _text(key, value)
    return payload


def _refuse_repeated_keys(pairs: list[tuple[str, object]]) -> dict:
    key = negotiation.repeated_key(pairs)
    if key is not None:
        raise BadRequest(f"The field {key!r} was sent more than once; send it once.")
    return dict(pairs)


def _text(key: str, value: str) -> str:
    if has_lone_surrogate(value):
        raise BadRequest(f"The field {key!r} is not valid text (it holds a lone surrogate).")
    return value


def evidence(source: Source, newsletters: list[Newsletter]) -> services.Evidence:
    """Return the consent evidence of the current request: who, from where, seeing what."""
    shown = "; ".join(
        f"{n.name}: {n.text('placeholder')} [{n.text('button')}]" for n in newsletters
    )
    return services.Evidence(
        ip=client_ip(),
        user_agent=client_user_agent(),
        source=source,
        form_text=shown,
        origin=page_origin(),
    )


def page_origin() -> str | None:
    """Return the origin of the page the form was on: the Origin header, or the Referer's."""
    for header in ("Origin", "Referer"):
        found = origins.origin_of(request.headers.get(header) or "")
        if found and len(found) <= MAX_ORIGIN_LENGTH and found.isprintable():
            return found
    return None


def client_ip() -> str | None:
    """Return the client's IP address as werkzeug sees it, or None if it is not one.

    Behind a trusted proxy it comes from X-Forwarded-For, which a client may have filled
    with anything; only a real address goes into the consent evidence.
    """
    try:
        address = str(ipaddress.ip_address(request.remote_addr or ""))
    except ValueError:
        return None
    return address if len(address) <= MAX_IP_LENGTH else None


def client_user_agent() -> str | None:
    """Return the User-Agent header without control characters, at most 512 long, or None."""
    agent = "".join(ch for ch in request.user_agent.string if ch.isprintable())[:512]
    return agent or None
