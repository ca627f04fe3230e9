"""Decide what kind of answer a request wants."""

from flask import request


def wants_json() -> bool:
    """Tell whether the client asked for a JSON answer (JSON body or Accept header)."""
    if request.is_json:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"
