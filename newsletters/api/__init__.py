"""The JSON API under /api/v1, and its OpenAPI document."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the API's blueprint (exempt from CSRF: it authenticates by bearer key)."""
