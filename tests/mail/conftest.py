"""Mail fixtures: SMTP servers that stop, restart, stall, ask for a login or kill the client."""

import asyncio
import os
import signal
import sysconfig
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from newsletters import db
from newsletters.models import Newsletter, Source
from newsletters.subscriptions import services
from tests.conftest import MailSink, free_port

SCRIPT = Path(sysconfig.get_path("scripts")) / "newsletters"
PASSWORD = "right-password"


def stopped(timeout: float) -> None:
    """Wait for the worker threads (``start_in_thread``) to end: none may outlive its test."""
    for thread in threading.enumerate():
        if thread.name == "mail-worker":
            thread.join(timeout)


class StoppableServer:
    """An aiosmtpd server on a fixed loopback port that a test can stop and start again."""

    def __init__(self, sink: MailSink, **options):
        self.sink = sink
        self.options = options
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(
            self.sink, hostname=self.sink.host, port=self.sink.port, **self.options
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def stoppable_smtp_server():
    """Return a running SMTP server that the test may ``stop()`` and ``start()``."""
    server = StoppableServer(MailSink("127.0.0.1", free_port()))
    server.start()
    yield server
    server.stop()


def _password_check(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=auth_data.password == PASSWORD.encode(), handled=False)


@pytest.fixture
def auth_smtp_server():
    """Run an SMTP server that requires a login (without TLS) and takes only ``PASSWORD``."""
    sink = MailSink("127.0.0.1", free_port())
    server = StoppableServer(
        sink, auth_required=True, auth_require_tls=False, authenticator=_password_check
    )
    server.start()
    yield sink
    server.stop()


class StallingSink(MailSink):
    """A mail server that stalls its clients on cue: to hold mails in flight, or kill a client.

    ``stall_rcpt`` holds every RCPT TO until it is set; ``seen_rcpt`` is set at the first.
    ``kill`` (pid, n): the n-th mail is stored, then that process is killed before the reply.
    ``together`` makes each mail wait (up to 20 s) until that many connections carry one.
    ``delay`` (seconds) slows every mail down.
    """

    def __init__(self, host, port):
        super().__init__(host, port)
        self.stall_rcpt = threading.Event()
        self.stall_rcpt.set()
        self.seen_rcpt = threading.Event()
        self.kill: tuple[int, int] | None = None
        self.together = 0
        self.delay = 0.0
        self.in_flight: set[int] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.seen_rcpt.set()
        while not self.stall_rcpt.is_set():
            await asyncio.sleep(0.01)
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):
        self.in_flight.add(id(session))
        deadline = time.monotonic() + 20
        while len(self.in_flight) < self.together and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(self.delay)
        reply = await super().handle_DATA(server, session, envelope)
        if self.kill and len(self.messages) == self.kill[1]:
            # The mail is stored: the client dies before it can hear that, as in a crash.
            os.kill(self.kill[0], signal.SIGKILL)
            await asyncio.sleep(0.2)
        return reply


@pytest.fixture
def stalling_smtp_server():
    sink = StallingSink("127.0.0.1", free_port())
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    yield sink
    sink.stall_rcpt.set()
    controller.stop()


@pytest.fixture
def worker_env(app):
    """Return a function giving the environment of a ``newsletters`` process like ``app``."""

    def environment(mail_url: str, **settings) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")}
        env |= {
            "NEWSLETTERS_DATABASE_URL": app.config["DATABASE_URL"],
            "NEWSLETTERS_MAIL_URL": mail_url,
            "NEWSLETTERS_SECRET_KEY": app.config["SECRET_KEY"],
            "NEWSLETTERS_BASE_URL": app.config["BASE_URL"],
            "NEWSLETTERS_MAIL_FROM": app.config["MAIL_FROM"],
        }
        return env | {f"NEWSLETTERS_{name}": str(value) for name, value in settings.items()}

    return environment


@pytest.fixture
def queue_signups(app, newsletter):
    """Return a function that signs up ``n`` addresses in one transaction, queueing n mails."""

    def queue(n: int, prefix: str = "reader") -> list[str]:
        addresses = [f"{prefix}{i}@example.com" for i in range(n)]
        with app.app_context():
            session = db.session()
            briefing = session.scalar(sa.select(Newsletter).where(Newsletter.slug == newsletter))
            evidence = services.Evidence(ip="192.0.2.1", user_agent=None, source=Source.FORM)
            for address in addresses:
                assert services.signup(session, [briefing], address, None, evidence).mail_queued
            session.commit()
        return addresses

    return queue
