"""Keep the secrets of confirmation, unsubscribe and preference links out of request logs.

A link's secret is a segment of its path (``/confirm/<token>``), so every access log that
writes request lines would keep it, and an unsubscribe link never expires. Two loggers of
this product write request lines, and both mask it to ``/confirm/[token]``:

- gunicorn's access log, through ``LinkMaskingLogger`` (``logger_class`` in
  ``deploy/gunicorn.conf.py``);
- the development server's (werkzeug's) request log, through ``mask_werkzeug_log()``, which
  ``newsletters dev`` calls.

``deploy/nginx.conf`` does the same for nginx with a ``map`` on ``$request_uri``.
"""

import logging
import re

from gunicorn.glogging import Logger

# Every route whose path carries a link secret; tests/test_access_logs.py checks that each
# route with a <token> is here. A percent-encoded slash counts too: werkzeug decodes it
# before routing, so `/confirm%2F<token>` opens the same link.
SECRET_SEGMENT = re.compile(
    r"(/(?:confirm|unsubscribe|preferences(?:/|%2f)data|preferences)(?:/|%2f))[^/?#\s\"]+", re.I
)
MASK = r"\1[token]"


def mask_link_secrets(text: str) -> str:
    """Return ``text`` with the secret of every link path in it replaced by ``[token]``."""
    return SECRET_SEGMENT.sub(MASK, text)


class LinkMaskingLogger(Logger):
    """Write gunicorn's access log with link secrets masked, whatever the format's atoms."""

    def atoms(self, resp, req, environ, request_time):
        """Return gunicorn's atoms with every text value masked.

        Not only the request line (``%(r)s``) and path (``%(U)s``): the referrer (``%(f)s``),
        request headers (``%({x-original-uri}i)s``) and environ values (``%({raw_uri}e)s``)
        can carry a link as well.
        """
        atoms = super().atoms(resp, req, environ, request_time)
        return {
            name: mask_link_secrets(value) if isinstance(value, str) else value
            for name, value in atoms.items()
        }


class LinkMaskingFilter(logging.Filter):
    """Mask link secrets in the records of a logger that writes request lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message with its masked text; keep every record."""
        message = record.getMessage()
        masked = mask_link_secrets(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


_werkzeug_filter = LinkMaskingFilter()


def mask_werkzeug_log() -> None:
    """Mask link secrets in werkzeug's request log (the development server's); idempotent."""
    logging.getLogger("werkzeug").addFilter(_werkzeug_filter)
