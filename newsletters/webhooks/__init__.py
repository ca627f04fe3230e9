"""Webhooks: signed POSTs of every subscription change, delivered through the outbox.

``services``: the use cases (add, list, remove, resume, resend); ``targets``: where a webhook
may point, and the POST itself; ``delivery``: the worker's part (fan-out, then delivery in
order); ``commands``: the ``webhook`` CLI group. docs/webhooks.md says what a receiver gets.
"""

from .commands import webhook_group

__all__ = ["webhook_group"]
