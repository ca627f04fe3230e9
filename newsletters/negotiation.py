"""Read what a request is: the kind of answer it wants, and whether its form is text."""

from urllib.parse import parse_qsl

from flask import request
from werkzeug.exceptions import BadRequest

NOT_UTF8 = "The form is not valid UTF-8 text. Send it encoded as UTF-8."


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
        raise BadRequest(NOT_UTF8) from None
