"""One way in for every public signup: hosted form, iframe, widget and multi-newsletter form.

Parses the body (form or JSON), validates it, drops honeypot hits, calls the signup service
and commits, so the entry points differ only in how they answer.
"""

import ipaddress
import json

from flask import request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from .. import attribution, counters, db, i18n, limits, negotiation, proof, wakeup
from ..embed import origins
from ..models import Newsletter, Source, Verification
from ..text import has_lone_surrogate
from . import services
from .forms import SignupForm

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
STRING_FIELDS = (
    "email",
    "name",
    "website",
    "return_url",
    "accept_as_typed",
    "lang",
    # Where it came from (attribution.py) and what it proves (proof.py).
    "page",
    "form",
    "rendered",
    "altcha",
)
JSON_EXAMPLE = 'Send {"email": "you@example.com"}.'
# The longest text form of an IP address (IPv4-mapped IPv6); the column holds no more.
MAX_IP_LENGTH = 45
MAX_ORIGIN_LENGTH = 255


def take_signup(newsletters: list[Newsletter], source: Source) -> SignupForm:
    """Accept the signup of the current request; return the form, with errors if refused.

    A page that may not use these newsletters' forms is refused first (403), whichever
    entry point it posted to. The answer speaks the reader's language (the body's ``lang``,
    see ``i18n``), which is kept for their mails. An address that looks like a typo is
    refused with the likely one (``form.suggestion``) unless it comes back as typed.
    ``source`` is the form's kind; a post to the plain or the several-at-once route may name
    its own (``form``: the hosted page's, the widget's). What the post proves about being a
    person's (``proof.judge``) decides the rest: a bot gets the same answer as a real signup
    and stores nothing, so it learns nothing from trying again; a signup that proves nothing
    spends the tighter unverified budget; otherwise one row is stored for the worker
    (``services.signup``), with where it came from (``attribution``).
    """
    origins.check(newsletters)
    payload = signup_payload()
    i18n.choose_again(payload.get("lang"))
    form = SignupForm(formdata=payload, meta={"csrf": False})
    if source in (Source.PLAIN, Source.SEVERAL):
        source = attribution.form_of(payload, source)
    page = attribution.page_of(payload.get("page"))
    verdict = proof.judge(payload, newsletters, client_user_agent())
    try:
        checked = services.check_signup(
            form.email.data, form.name.data, newsletters, accept_typo=form.accepts_typo()
        )
    except services.InvalidSignup as exc:
        form[exc.field].errors = [exc.message]
        form.suggestion = exc.suggestion
        form.refusal = exc.message if exc.suggestion or exc.policy else None
        return form
    ids = [n.id for n in newsletters]
    if verdict.stopped:
        counters.stopped(ids, verdict.stopped, source, page)
        return form
    if verdict.verification == Verification.UNVERIFIED:
        limits.spend_unverified()
    session = db.session()
    if not proof.spend(session, verdict):
        session.rollback()
        counters.stopped(ids, proof.Defence.REPLAY, source, page)
        return form
    services.signup(
        session,
        newsletters,
        checked,
        None,
        evidence(source, newsletters, page, verdict.verification),
        language=i18n.current_language(),
    )
    session.commit()
    wakeup.notify()
    return form


def form_guard(newsletters: list[Newsletter] | Newsletter, kind: str) -> dict[str, str]:
    """Return the hidden fields of a browser's signup form, and where it gets its challenge.

    ``form`` and ``page`` say where a signup comes from (attribution.py); ``rendered`` is the
    signed time the form was shown, ``challenge`` the URL of its proof-of-work challenge
    (proof.py), solved by static/proof.js. A form shown again after a refusal keeps what
    was posted: its render time (a reader pressing Subscribe again at once is no bot) and
    its page.
    """
    if isinstance(newsletters, Newsletter):
        newsletters = [newsletters]
    posted = signup_payload() if request.method == "POST" else MultiDict()
    if kind == Source.IFRAME:
        page = attribution.page_of(request.args.get("page"))
    else:
        page = attribution.this_page()
    if len(newsletters) == 1:
        challenge = url_for("subscriptions.challenge", slug=newsletters[0].slug)
    else:
        challenge = url_for(
            "subscriptions.challenge_many", newsletter=[n.slug for n in newsletters]
        )
    return {
        "form": posted.get("form") or str(kind),
        "page": attribution.clean_page(posted.get("page")) or page or "",
        # Shown again after a refusal: the first showing's time, or none if it had none (a
        # reader may press "Use …" at once, and is no faster than a person then).
        "rendered": posted.get("rendered", "") if posted else proof.rendered(newsletters),
        "altcha": posted.get("altcha") or "",
        "challenge": f"{challenge}{'&' if '?' in challenge else '?'}form={kind}",
    }


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


def evidence(
    source: Source,
    newsletters: list[Newsletter],
    page: str | None = None,
    verification: str | None = None,
) -> services.Evidence:
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
        page=page,
        verification=verification and str(verification),
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
