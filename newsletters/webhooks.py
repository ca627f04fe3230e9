"""Webhooks: signed POSTs of every subscription change, delivered through the outbox."""

import click

webhook_group = click.Group("webhook", help="Add, list and remove webhooks.")
