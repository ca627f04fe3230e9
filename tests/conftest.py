"""Fixtures: a fresh app per test on SQLite and on PostgreSQL, a real SMTP server on loopback."""

import os
import shutil
import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from newsletters import catalogue, create_app, db
from newsletters.migrations import upgrade
from newsletters.models import TEXT_KEYS, Base, Newsletter, NewsletterText

POSTGRES_ENV = "NEWSLETTERS_TEST_DATABASE_URL"
# CI sets this: a part of the suite that cannot run there is a failure, not a skip.
STRICT = os.environ.get("NEWSLETTERS_TEST_STRICT") == "1"


def skip_or_fail(reason: str):
    """Skip with ``reason`` on a developer's machine; fail under NEWSLETTERS_TEST_STRICT=1."""
    if STRICT:
        pytest.fail(f"{reason} (NEWSLETTERS_TEST_STRICT=1 requires it)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """Migrate one SQLite file per run; each test gets a copy of it."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    app = create_app({"DATABASE_URL": f"sqlite:///{path}", "SECRET_KEY": "x"})
    with app.app_context():
        upgrade()
        db.engine().dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url():
    """Migrate the PostgreSQL test database once per run, from an empty schema."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        skip_or_fail(f"PostgreSQL: {POSTGRES_ENV} is not set, so the PostgreSQL run was skipped")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "x"})
    with app.app_context():
        upgrade()
        db.engine().dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """Return an empty, migrated database: a copied SQLite file, or truncated PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        # The consent ledger refuses TRUNCATE (migration 0013); a superuser's session in
        # replica mode fires no triggers, which is how a test database is emptied.
        connection.execute(sa.text("SET LOCAL session_replication_role = replica"))
        connection.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def settings(request, database_url, tmp_path):
    """Return the test settings, with a ``@pytest.mark.settings(...)`` marker's overrides."""
    marker = request.node.get_closest_marker("settings")
    return {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret",
        "BASE_URL": "https://news.example.org",
        "MAIL_URL": f"file://{tmp_path / 'mail'}",
        "RATELIMIT_ENABLED": False,
        "WORKER_POLL_SECONDS": 0.05,
        # A test sees a signup's subscription as soon as the request answers; the tests of
        # the worker's own path (accept, then process) ask for "worker".
        "SIGNUP_PROCESSING": "inline",
        # Counts written at once, so a test reads what it caused (counters.py).
        "COUNT_FLUSH_SECONDS": 0,
        # Tests change newsletters behind the app's back and expect it to see that at once.
        "NEWSLETTER_CACHE_SECONDS": 0,
    } | (marker.kwargs if marker else {})


@pytest.fixture
def app(settings):
    app = create_app(settings)
    yield app
    with app.app_context():
        db.engine().dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def session(app):
    """Return a session for arranging and checking the database, beside the app's own.

    Every statement commits by itself, so a check always sees what the app did last and never
    holds a lock that the app's requests and worker wait for. It pushes no app context:
    requests made meanwhile by the test client would share it, and one session with it.
    """
    url = app.config["DATABASE_URL"]
    engine = db.create_engine(url, sqlite_begin=None)
    if not url.startswith("sqlite"):
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    with Session(engine, expire_on_commit=False) as session:
        yield session
    engine.dispose()


def newsletter_with(language: str = "en", **fields) -> Newsletter:
    """Return a ``Newsletter`` of ``fields``; those of TEXT_KEYS are its texts in ``language``."""
    texts = [
        NewsletterText(key=key, language=language, value=fields.pop(key))
        for key in TEXT_KEYS
        if fields.get(key) is not None
    ]
    return Newsletter(**fields, texts=texts)


def set_texts(session, slug: str = "briefing", language: str = "en", **texts) -> None:
    """Set texts of the newsletter ``slug`` in ``language`` as they are stored, unchecked."""
    newsletter = session.scalar(sa.select(Newsletter).where(Newsletter.slug == slug))
    for key, value in texts.items():
        catalogue.set_text(newsletter, key, language, value)
    session.commit()


@pytest.fixture
def newsletter(app):
    """Add the newsletter 'briefing' and return its slug."""
    with app.app_context():
        db.session().add(Newsletter(slug="briefing", name="Morning Briefing"))
        db.session().commit()
    return "briefing"


@dataclass
class MailSink:
    """Mails received by the SMTP server, parsed; ``*_reply`` set its answers to refuse."""

    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list = field(default_factory=list)
    rcpt_reply: str | None = None
    # The SMTP session (one per connection) that carried each mail, in order.
    sessions: list = field(default_factory=list)
    # The answer to MAIL FROM, when set (a relay that refuses our sender).
    mail_reply: str | None = None
    # The answer to the message (DATA), when set: a relay that checks addresses only then.
    data_reply: str | None = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """Return how many SMTP connections carried the mails received so far."""
        return len({id(session) for session in self.sessions})

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply:
            return self.data_reply
        self.envelopes.append(envelope)
        self.sessions.append(session)
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted"


def process_signups(app) -> int:
    """Process every waiting signup request, batch by batch, as the worker does; count them."""
    from newsletters.subscriptions import processing

    done = 0
    with app.app_context():
        while batch := processing.process_due(db.session()):
            db.session().commit()
            done += batch
    return done


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server():
    """Run a real SMTP server (aiosmtpd) on loopback for the test."""
    sink = MailSink("127.0.0.1", free_port())
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    yield sink
    controller.stop()


@pytest.fixture
def closed_smtp_url():
    """Return an smtp:// URL on loopback where nothing listens: every connection is refused."""
    return f"smtp://127.0.0.1:{free_port()}"


@pytest.fixture
def ascii_smtp_server():
    """Run a real SMTP server without SMTPUTF8 (RFC 6531), as some older relays are.

    ``smtp_server`` advertises it: aiosmtpd's Controller enables it by default.
    """
    sink = MailSink("127.0.0.1", free_port())
    controller = Controller(sink, hostname=sink.host, port=sink.port, enable_SMTPUTF8=False)
    controller.start()
    yield sink
    controller.stop()


@pytest.fixture
def live_server(app):
    """Serve the app with a real WSGI server on a free loopback port; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def pytest_terminal_summary(terminalreporter):
    """Say once per reason what was skipped, so a partial run is never mistaken for a full one."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.section("skipped parts of the suite")
        for reason, count in sorted(reasons.items()):
            terminalreporter.write_line(f"{count:5d} tests  {reason}")
