"""Build public URLs from BASE_URL, never from the request's Host header."""

from flask import current_app


def external_url(endpoint: str, **values) -> str:
    """Return the absolute public URL of ``endpoint``, usable with or without a request."""
    adapter = current_app.url_map.bind("localhost", script_name="/")
    return current_app.config["BASE_URL"] + adapter.build(endpoint, values)
