"""The WSGI entry point: ``gunicorn wsgi:app``."""

from newsletters import create_app

app = create_app()
