"""Webhook fixtures: a real HTTP receiver on loopback that checks every signature."""

import contextlib
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from newsletters import db
from newsletters.db import utcnow
from newsletters.models import ConsentEvent, Newsletter, OutboxMessage, Subscription, Webhook
from newsletters.webhooks import delivery, services
from tests.admin.conftest import make_editor, other_newsletter  # noqa: F401 - fixtures
from tests.conftest import free_port

SIGNATURE = "X-Newsletters-Signature"


class Receiver:
    """An HTTP server on a fixed loopback port that a test stops, starts and sets answering.

    ``answer``: "ok" (200), an int (that status), "hang" (no answer for ``hang_seconds``,
    then 503) or "redirect" (302 to ``location``). Every request is kept in ``requests``
    with whether its signature matched ``secret``; the bodies answered 200 in ``accepted``.
    """

    def __init__(self):
        self.host = "127.0.0.1"
        self.port = free_port()
        self.secret: str | None = None
        self.answer: str | int = "ok"
        self.hang_seconds = 1.0
        self.location = ""
        self.requests: list[dict] = []
        self.accepted: list[dict] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = (
                    "sha256="
                    + hmac.new((receiver.secret or "").encode(), body, hashlib.sha256).hexdigest()
                )
                receiver.requests.append(
                    {
                        "path": self.path,
                        "host": self.headers["Host"],
                        "headers": dict(self.headers),
                        "body": body,
                        "verified": hmac.compare_digest(expected, self.headers.get(SIGNATURE, "")),
                    }
                )
                answer = receiver.answer
                if answer == "hang":
                    time.sleep(receiver.hang_seconds)
                    answer = 503
                if answer == "redirect":
                    self.send_response(302)
                    self.send_header("Location", receiver.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 200 if answer == "ok" else int(answer)
                if status == 200:
                    receiver.accepted.append(json.loads(body))
                text = b"thanks" if status == 200 else b"receiver trouble"
                self.send_response(status)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client gave up (a timeout)
                    self.wfile.write(text)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def receiver():
    """Return a running receiver; set its ``secret`` to the webhook's to check signatures."""
    found = Receiver()
    found.start()
    yield found
    found.stop()


def add_webhook(app, url: str, slug: str = "briefing") -> tuple[int, str]:
    """Add a webhook of ``slug`` through the service, committed; return its id and secret."""
    with app.app_context():
        session = db.session()
        newsletter = session.scalar(sa.select(Newsletter).where(Newsletter.slug == slug))
        webhook, secret = services.add(session, newsletter, url)
        session.commit()
        return webhook.id, secret


@pytest.fixture
def hooked(app, newsletter, receiver):
    """Add a webhook of 'briefing' to the receiver, which learns its secret; return its id."""
    webhook_id, receiver.secret = add_webhook(app, receiver.url)
    return webhook_id


def deliver(app) -> list[str]:
    """Run the worker's webhook part until every committed change is queued; return its report.

    On PostgreSQL the change feed hands out an event only once every older transaction has
    ended, on the whole server (other databases' tests included): a round may come too soon.
    """
    lines: list[str] = []
    deadline = time.monotonic() + 10
    with app.app_context():
        while True:
            delivery.run_round(report=lines.append)
            if _all_queued(db.session()) or time.monotonic() > deadline:
                db.session().commit()
                return lines
            db.session().commit()
            time.sleep(0.02)


def _all_queued(session) -> bool:
    """Tell whether each active webhook's position is at its newsletter's last change."""
    last = (
        sa.select(sa.func.max(ConsentEvent.id))
        .join(Subscription, Subscription.id == ConsentEvent.subscription_id)
        .where(Subscription.newsletter_id == Webhook.newsletter_id)
        .scalar_subquery()
    )
    behind = session.scalar(
        sa.select(sa.func.count())
        .select_from(Webhook)
        .where(Webhook.paused_at.is_(None), Webhook.queued_event_id < sa.func.coalesce(last, 0))
    )
    return behind == 0


def make_due(session) -> None:
    """Make every waiting delivery due now, as if its backoff had passed."""
    session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.webhook_id.is_not(None))
        .values(next_attempt_at=utcnow())
    )


def deliveries(session, webhook_id: int) -> list[OutboxMessage]:
    session.expire_all()
    return session.scalars(
        sa.select(OutboxMessage)
        .where(OutboxMessage.webhook_id == webhook_id)
        .order_by(OutboxMessage.id)
    ).all()


def webhook(session, webhook_id: int) -> Webhook:
    session.expire_all()
    return session.get(Webhook, webhook_id)
