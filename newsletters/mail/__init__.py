"""Mail: the outbox that requests write to, and the worker that empties it."""
