"""API keys: created per editor, shown once, stored hashed, named, revocable."""

import click

apikey_group = click.Group("apikey", help="Create, list and revoke API keys.")
