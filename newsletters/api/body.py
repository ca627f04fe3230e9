"""A JSON body, refused before anything reads it when it is not one (415, 400).

webargs would treat a body of another type as no body at all, and take the last of two
same-named keys; the API says what is wrong instead, as the signup form does.
"""

import json
from functools import wraps

from flask import request

from .. import negotiation
from ..text import has_lone_surrogate
from .errors import ApiError

EXAMPLE = 'Send {"email": "reader@example.org"}.'


def json_object(view):
    """Let ``view`` run only for a request whose body is one JSON object."""

    @wraps(view)
    def checked(*args, **kwargs):
        if not request.is_json:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"Send the body as JSON, with 'Content-Type: application/json'. {EXAMPLE}",
            )
        try:
            data = json.loads(request.get_data(cache=True), object_pairs_hook=_once_each)
        except RecursionError:
            raise ApiError(400, "invalid_json", "The JSON body is nested too deeply.") from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a repeated key
            raise ApiError(
                400, "invalid_json", f"The body is not valid JSON ({exc}). {EXAMPLE}"
            ) from None
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_json", f"The body is not a JSON object. {EXAMPLE}")
        if has_lone_surrogate(data):
            # JSON's \ud800 escapes decode to lone surrogates, which no database can store.
            raise ApiError(400, "invalid_json", "The body holds a lone surrogate (\\ud800…).")
        return view(*args, **kwargs)

    return checked


def _once_each(pairs: list[tuple[str, object]]) -> dict:
    key = negotiation.repeated_key(pairs)
    if key is not None:
        raise ValueError(f"the field {key!r} is there twice; send it once")
    return dict(pairs)
