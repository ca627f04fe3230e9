"""Read what a request is: the kind of answer it wants, and whether its form is text."""

from urllib.parse import parse_qsl

from flask import current_app, request
from flask_babel import gettext as _
from werkzeug.exceptions import BadRequest


def wants_json() -> bool:
    """Tell whether the client asked for a JSON answer (JSON body or Accept header)."""
    if request.is_json:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def refuse_undecodable_form() -> None:
    """Refuse (400) a form body whose percent-escapes are not UTF-8, before any view reads it.

    werkzeug decodes ``%ff`` leniently, keeping it as the literal text "%FF", so a signup of
    ``%ff%fe@example.org`` would store an address nobody typed. Raw bytes that are not UTF-8
    are refused here too; a multipart body is checked by the signup's own parsing.
    """
    if request.mimetype != "application/x-www-form-urlencoded" or not request.content_length:
        return
    body = request.get_data(cache=True)
    try:
        parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest(_("The form is not valid UTF-8 text. Send it encoded as UTF-8.")) from None


def takes_large_uploads(view):
    """Mark a view whose request body may be up to IMPORT_MAX_BYTES (an editor's CSV file).

    Every other body is small (MAX_CONTENT_LENGTH); ``allow_large_uploads`` raises the limit
    for the marked views only, before CSRFProtect parses the body.
    """
    view.takes_large_uploads = True
    return view


def allow_large_uploads() -> None:
    """Raise this request's body limit if its view was marked ``takes_large_uploads``."""
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "takes_large_uploads", False):
        request.max_content_length = current_app.config["IMPORT_MAX_BYTES"]


def repeated_key(pairs: list[tuple[str, object]]) -> str | None:
    """Return the first key a JSON object gives twice (``object_pairs_hook``'s pairs), if any.

    json.loads would keep the last of them silently; the signup paths refuse such a body.
    """
    seen = set()
    for key, _value in pairs:
        if key in seen:
            return key
        seen.add(key)
    return None
