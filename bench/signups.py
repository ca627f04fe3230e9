"""Measure the signup path against a ceiling and a peer, on SQLite and PostgreSQL.

Run from the repository's root (loopback only; PostgreSQL at 127.0.0.1:5432, user postgres):

    .venv/bin/python bench/signups.py            # the full run, about 12 minutes
    .venv/bin/python bench/signups.py --quick    # a couple of minutes: a smoke test of the bench

Three stacks, each served by ``gunicorn -w 2`` (sync workers) on 127.0.0.1, each on its own
database of the same kind (a SQLite file in a temporary folder; PostgreSQL databases named
``bench_signups_*``, created for the run and DROPPED after it):

- the product: ``newsletters db upgrade``, ``newsletters newsletter create bench``, gunicorn
  on ``wsgi:app`` in production mode with rate limits off, and one ``newsletters worker``
  beside it, sending to an SMTP sink (aiosmtpd) that this script runs and that notes when
  each recipient's mail arrived;
- the ceiling (``ceiling_app`` below): parse the form, validate the address with
  email-validator, one INSERT and commit through SQLAlchemy, on the engine the product's own
  ``newsletters.db.create_engine`` makes (so the same PRAGMAs on SQLite, the same pool and
  driver on PostgreSQL): what a signup costs at the least on this stack;
- the peer: django-newsletter's subscribe view in a minimal Django project
  (bench/_django_newsletter), in a virtualenv of its own (bench/.venv-django, made on first
  use from bench/_django_newsletter/requirements.txt); it sends its confirmation mail over
  SMTP inside the request, to the same sink.

wrk (``-t2 -c16``, a fixed duration per phase) POSTs form-encoded signups, a new address per
request, to each stack in turn, several rounds (product, ceiling, peer, product with a mix of
50 % new and 50 % already subscribed addresses); the report gives medians. After each
product phase the script waits (bounded) until every accepted signup is a subscription with
its confirmation mail queued, then sent, and times both from the load's end. A paced client
then measures signup → mail at the sink. Then the product's list grows to 1,000,000
confirmed subscriptions (bulk SQL) and the rounds run again. The figures replace the
section "## Signups: product, ceiling and peer" of bench/RESULTS.md (``--no-write`` skips).
See bench/README.md for how to read them.
"""

import argparse
import hashlib
import hmac
import http.client
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
RESULTS = HERE / "RESULTS.md"
SECTION = "## Signups: product, ceiling and peer"
PEER_PROJECT = HERE / "_django_newsletter"
PEER_VENV = HERE / ".venv-django"
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
PG_DATABASES = {s: f"bench_signups_{s}" for s in ("product", "ceiling", "peer")}
DOMAIN = "bench.example.com"
SLUG = "bench"
THREADS, CONNECTIONS, GUNICORN_WORKERS = 2, 16, 2
# The confirmed subscriptions the mixed load signs up again, present from the start.
POOL = 5_000
CEILING_DATABASE = "BENCH_CEILING_DATABASE_URL"


@dataclass(frozen=True)
class Profile:
    phase_seconds: int
    repeats: int
    existing: int  # subscriptions in the product's list for the second set of rounds
    repeats_at_scale: int
    paced_rate: int  # signups per second of the signup → mail measure
    paced_seconds: int
    drain_timeout: int  # longest wait after a product phase, from the load's end
    # The whole run's budget: rounds after the first of each set are skipped (and the report
    # says so) once a database has used its share, however slowly the product drains.
    budget_minutes: float


FULL = Profile(10, 3, 1_000_000, 2, 200, 10, 60, 14)
QUICK = Profile(3, 1, 100_000, 1, 100, 3, 30, 4)


class SetupFailed(RuntimeError):
    """A stack could not be set up: nothing was measured."""


# --- the ceiling -------------------------------------------------------------------------

CEILING_TABLE = sa.Table(
    "ceiling_signup",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)


def ceiling_app():
    """Return the ceiling app: parse, validate, one INSERT and commit, answer 303.

    gunicorn loads it as ``signups:ceiling_app()`` with bench/ on its Python path.
    """
    from email_validator import EmailNotValidError, validate_email
    from flask import Flask, redirect, request

    from newsletters.db import create_engine

    engine = create_engine(os.environ[CEILING_DATABASE])
    insert = CEILING_TABLE.insert()
    app = Flask("ceiling")

    @app.post("/n/<slug>/subscribe")
    def subscribe(slug):
        try:
            result = validate_email(request.form.get("email", ""), check_deliverability=False)
        except EmailNotValidError as exc:
            return str(exc), 400
        with engine.begin() as conn:
            conn.execute(
                insert, {"email": result.normalized.lower(), "created_at": datetime.now(UTC)}
            )
        return redirect(f"/n/{slug}/thanks", 303)

    @app.get("/healthz")
    def healthz():
        return "ok"

    return app


# --- the SMTP sink -----------------------------------------------------------------------


class MailSink:
    """An aiosmtpd handler that notes when each recipient's first mail arrived."""

    def __init__(self):
        self.lock = threading.Lock()
        self.arrivals: dict[str, float] = {}
        self.by_tag: Counter = Counter()
        self.mails = 0

    async def handle_DATA(self, server, session, envelope):
        now = time.time()
        with self.lock:
            self.mails += 1
            for recipient in envelope.rcpt_tos:
                self.arrivals.setdefault(recipient, now)
                self.by_tag[recipient.partition("-")[0]] += 1
        return "250 Message accepted"

    def count(self, tag: str) -> int:
        with self.lock:
            return self.by_tag[tag]

    def arrival(self, recipient: str) -> float | None:
        with self.lock:
            return self.arrivals.get(recipient)


# --- the load ----------------------------------------------------------------------------

# wrk's script. Arguments: path, form field, tag, mode (unique|mixed), extra form fields,
# Cookie header, file of already subscribed addresses (URL-encoded, one a line). New
# addresses are tag-thread-counter@domain; in mixed mode every other request draws an
# address from the file. done() prints one JSON line that the bench reads.
WRK_SCRIPT = r"""
threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

function init(args)
  path, field, tag, mode, extra, cookie, pool_file =
    args[1], args[2], args[3], args[4], args[5], args[6], args[7]
  counter, sent_new, sent_old = 0, 0, 0
  statuses = {}
  pool = {}
  if mode == "mixed" then
    for line in io.lines(pool_file) do pool[#pool + 1] = line end
  end
  math.randomseed(tid * 7919)
  headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
  if cookie ~= "" then headers["Cookie"] = cookie end
end

function request()
  counter = counter + 1
  local address
  if mode == "mixed" and counter % 2 == 0 then
    address = pool[math.random(#pool)]
    sent_old = sent_old + 1
  else
    address = tag .. "-" .. tid .. "-" .. counter .. "%40" .. "DOMAIN"
    sent_new = sent_new + 1
  end
  return wrk.format("POST", path, headers, field .. "=" .. address .. extra)
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local answered, new, old = {}, 0, 0
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do
      answered[code] = (answered[code] or 0) + n
    end
    new = new + thread:get("sent_new")
    old = old + thread:get("sent_old")
  end
  local codes = {}
  for code, n in pairs(answered) do codes[#codes + 1] = string.format('"%s": %d', code, n) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "sent_new": %d, "sent_old": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d, "errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d}, "statuses": {%s}}\n',
    summary.requests, summary.duration, new, old,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(codes, ", ")))
end
""".replace("DOMAIN", DOMAIN)


@dataclass
class Phase:
    """One load phase against one stack, and what followed it."""

    database: str
    scale: str  # "small" or "large" (the product's list size)
    repeat: int
    stack: str
    mode: str  # "unique", "mixed" or "paused" (new addresses, the mail worker stopped)
    tag: str
    seconds: float = 0.0
    ok: int = 0
    requests: int = 0
    sent_new: int = 0
    sent_old: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    statuses: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    load_before: float = 0.0
    load_after: float = 0.0
    processed_s: float | None = None  # product: subscriptions and their mails queued
    mailed_s: float | None = None  # product: every confirmation mail at the sink
    waited_for: int = 0
    mails: int = 0  # at the sink when the phase was over (for the product: after the wait)
    left: str = ""

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def new_accepted(self) -> int:
        """Return how many new addresses were surely accepted (a lower bound in mixed mode)."""
        return max(0, self.sent_new - (self.sent_new + self.sent_old - self.ok))


def run_wrk(
    stack: "Stack",
    phase: Phase,
    seconds: int,
    script: Path,
    pool: Path | None,
    script_args: list[str] | None = None,
) -> None:
    """Drive ``stack`` with wrk for ``seconds``; fill ``phase`` with what wrk saw.

    ``script_args``: the arguments of another Lua script than WRK_SCRIPT (whose done() prints
    the same BENCH_JSON line); by default WRK_SCRIPT's, from ``stack`` and ``phase``.
    """
    if script_args is None:
        script_args = [
            stack.path, stack.field, phase.tag, phase.mode, stack.extra_body, stack.cookie,
            str(pool or ""),
        ]  # fmt: skip
    argv = [
        "wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "30s",
        "-s", str(script), f"http://127.0.0.1:{stack.port}{stack.path}", "--", *script_args,
    ]  # fmt: skip
    phase.load_before = os.getloadavg()[0]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    phase.load_after = os.getloadavg()[0]
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise SetupFailed(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    figures = json.loads(line.removeprefix("BENCH_JSON "))
    phase.seconds = figures["duration_us"] / 1e6
    phase.requests = figures["requests"]
    phase.statuses = figures["statuses"]
    phase.ok = phase.statuses.get(str(stack.expect), 0)
    phase.sent_new, phase.sent_old = figures["sent_new"], figures["sent_old"]
    phase.p50_ms, phase.p99_ms = figures["p50_us"] / 1e3, figures["p99_us"] / 1e3
    phase.max_ms = figures["max_us"] / 1e3
    phase.errors = {k: v for k, v in figures["errors"].items() if v}


@dataclass
class Paced:
    """The signup → mail measure: a paced client's send times against the sink's arrivals."""

    sent: int = 0
    accepted: int = 0
    seconds: float = 0.0
    request_ms: list[float] = field(default_factory=list)
    to_mail_s: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    missing: int = 0


def paced_signups(stack: "Stack", tag: str, rate: int, seconds: int, sink: MailSink) -> Paced:
    """Post ``rate`` signups a second for ``seconds``, noting when each was sent.

    Open loop over 8 connections: each signup has its due time, so a slow answer delays the
    signups behind it on that connection only. http.client keeps the connection alive where
    the server allows (gunicorn's sync workers close it after each answer).
    """
    total, connections = rate * seconds, 8
    outcome = Paced(sent=total)
    records: list[tuple[str, float, int | None, float]] = []
    lock = threading.Lock()
    start = time.monotonic() + 0.2

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
        mine = []
        for i in range(k, total, connections):
            pause = start + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            address = f"{tag}-{k}-{i}@{DOMAIN}"
            body = f"{stack.field}={urllib.parse.quote(address)}{stack.extra_body}"
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            if stack.cookie:
                headers["Cookie"] = stack.cookie
            sent, began = time.time(), time.perf_counter()
            try:
                conn.request("POST", stack.path, body, headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                status = None
            mine.append((address, sent, status, time.perf_counter() - began))
        conn.close()
        with lock:
            records.extend(mine)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcome.seconds = time.monotonic() - start
    outcome.statuses = Counter(status for _, _, status, _ in records)
    accepted = [(a, sent) for a, sent, status, _ in records if status == stack.expect]
    outcome.accepted = len(accepted)
    outcome.request_ms = [took * 1000 for *_, took in records]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sink.count(tag) < len(accepted):
        time.sleep(0.2)
    for address, sent in accepted:
        arrived = sink.arrival(address)
        if arrived is None:
            outcome.missing += 1
        else:
            outcome.to_mail_s.append(arrived - sent)
    return outcome


# --- the stacks --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Stack:
    """One application under gunicorn (and the product's mail worker), with its logs."""

    def __init__(self, name: str, path: str, field: str, expect: int, env: dict, logs: Path):
        self.name, self.path, self.field, self.expect = name, path, field, expect
        self.env, self.logs = env, logs
        self.port = free_port()
        self.processes: dict[str, subprocess.Popen] = {}
        self.extra_body = ""
        self.cookie = ""
        self.health = "/healthz"

    def run(self, argv: list[str], cwd: Path = ROOT, timeout: float = 300) -> str:
        """Run a setup command to completion; return its output or stop the run."""
        done = subprocess.run(
            argv, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise SetupFailed(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def start(self, name: str, argv: list[str], cwd: Path = ROOT) -> None:
        log = (self.logs / f"{self.name}-{name}.log").open("w")
        self.processes[name] = subprocess.Popen(
            argv, cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def gunicorn(self, binary: Path, app: str, cwd: Path = ROOT, *extra: str) -> None:
        argv = [str(binary), "-w", str(GUNICORN_WORKERS), "-b", f"127.0.0.1:{self.port}"]
        self.start("gunicorn", [*argv, *extra, app], cwd)

    def wait_until_serving(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise SetupFailed(f"{self.name} {name} exited early:\n{self.tail(name)}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", self.health)
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SetupFailed(f"{self.name} did not answer {self.health} in {timeout:.0f}s")

    def stop(self) -> dict[str, int]:
        """Stop every process: SIGINT to the mail worker, SIGTERM to gunicorn."""
        for name, process in self.processes.items():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM if name == "gunicorn" else signal.SIGINT)
        codes = {}
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # its own group: started with a session
                codes[name] = process.wait()
        return codes

    def tail(self, name: str, lines: int = 20) -> str:
        path = self.logs / f"{self.name}-{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def log_problems(self) -> Counter:
        """Count tracebacks and error lines in this stack's logs."""
        found: Counter = Counter()
        for path in self.logs.glob(f"{self.name}-*.log"):
            text = path.read_text(errors="replace")
            found["tracebacks"] += text.count("Traceback (most recent call last)")
            found["error lines"] += len(re.findall(r"\b(ERROR|CRITICAL)\b", text))
            found["worker timeouts"] += text.count("WORKER TIMEOUT")
        return +found


def base_env(logs: Path) -> dict[str, str]:
    # Only this run's settings: a NEWSLETTERS_* or DJANGO_* left in the shell must not count.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NEWSLETTERS_", "DJANGO_", "BENCH_"))
    }
    # gunicorn 25.1+ opens a control socket in XDG_RUNTIME_DIR, else in ~/.gunicorn, shared by
    # every gunicorn of this user: keep this run's to itself.
    env["XDG_RUNTIME_DIR"] = str(logs)
    return env


def product_stack(url: str, smtp_port: int, secret: str, logs: Path, before_start=None) -> Stack:
    """Set up the product's database and start it; ``before_start(stack)`` runs just before."""
    stack = Stack("product", f"/n/{SLUG}/subscribe", "email", 303, base_env(logs), logs)
    stack.env.update(
        NEWSLETTERS_ENV="production",
        NEWSLETTERS_DATABASE_URL=url,
        NEWSLETTERS_MAIL_URL=f"smtp://127.0.0.1:{smtp_port}",
        NEWSLETTERS_MAIL_FROM=f"newsletters@{DOMAIN}",
        NEWSLETTERS_SECRET_KEY=secret,
        NEWSLETTERS_BASE_URL=f"http://127.0.0.1:{stack.port}",
        # Every request comes from 127.0.0.1: limits would measure the limiter. Per process,
        # so no Redis is needed for a start that production would otherwise refuse.
        NEWSLETTERS_RATELIMIT_ENABLED="false",
        NEWSLETTERS_RATELIMIT_PER_PROCESS="true",
    )
    stack.run([str(BIN / "newsletters"), "db", "upgrade"])
    stack.run([str(BIN / "newsletters"), "newsletter", "create", SLUG, "--name", "Bench"])
    if before_start is not None:
        before_start(stack)
    stack.gunicorn(BIN / "gunicorn", "wsgi:app")
    stack.start("worker", [str(BIN / "newsletters"), "worker"])
    return stack


def ceiling_stack(url: str, logs: Path) -> Stack:
    stack = Stack("ceiling", f"/n/{SLUG}/subscribe", "email", 303, base_env(logs), logs)
    stack.env[CEILING_DATABASE] = url
    from newsletters.db import create_engine

    engine = create_engine(url)
    CEILING_TABLE.metadata.create_all(engine)
    engine.dispose()
    stack.gunicorn(BIN / "gunicorn", "signups:ceiling_app()", ROOT, "--pythonpath", str(HERE))
    return stack


def peer_stack(url: str, smtp_port: int, sqlite_init: str, logs: Path) -> Stack:
    stack = Stack(
        "peer", f"/newsletter/{SLUG}/subscribe/", "email_field", 302, base_env(logs), logs
    )
    stack.env.update(
        BENCH_PEER_DATABASE=url,
        BENCH_PEER_SMTP_PORT=str(smtp_port),
        BENCH_PEER_SQLITE_INIT=sqlite_init,
        BENCH_PEER_SECRET_KEY=secrets.token_hex(32),
        PYTHONWARNINGS="ignore",
    )
    stack.run([str(PEER_VENV / "bin" / "python"), "-m", "benchsite.setup_peer", SLUG], PEER_PROJECT)
    stack.health = stack.path
    stack.gunicorn(PEER_VENV / "bin" / "gunicorn", "benchsite.wsgi:application", PEER_PROJECT)
    return stack


def warm_up(stack: Stack, tag: str, count: int = 30) -> None:
    """Send a few signups one by one: workers import lazily, and a refusal shows up here."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if stack.cookie:
        headers["Cookie"] = stack.cookie
    for n in range(count):
        body = f"{stack.field}={tag}-0-{n}%40{DOMAIN}{stack.extra_body}"
        conn.request("POST", stack.path, body, headers)
        response = conn.getresponse()
        content = response.read()
        if response.status != stack.expect:
            raise SetupFailed(
                f"{stack.name} answered a signup {response.status}, not {stack.expect}:"
                f" {content[:300]!r}"
            )
    conn.close()


def fetch_csrf(stack: Stack) -> None:
    """Take one CSRF cookie and form token for every request of the run.

    Django checks the form's token against the cookie's secret, not against a connection or
    a session, so one pair serves all connections: the check itself still runs each time.
    """
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    conn.request("GET", stack.path)
    response = conn.getresponse()
    page = response.read().decode()
    conn.close()
    cookie = re.search(r"csrftoken=([^;]+)", response.getheader("Set-Cookie", ""))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if not cookie or not token:
        raise SetupFailed("the peer's subscribe page gave no CSRF cookie and token")
    stack.cookie = f"csrftoken={cookie.group(1)}"
    stack.extra_body = f"&csrfmiddlewaretoken={token.group(1)}"


def ensure_peer_venv() -> None:
    """Make bench/.venv-django with the peer's pinned packages, if it is not there yet."""
    if (PEER_VENV / "bin" / "gunicorn").exists():
        return
    print("making bench/.venv-django for django-newsletter …", file=sys.stderr)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(PEER_VENV)], check=True)
    pip = [str(PEER_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-r", str(PEER_PROJECT / "requirements.txt")], check=True)


def sqlite_pragmas(url: str) -> dict[str, str]:
    """Return the PRAGMAs a connection of the product's engine has, read back from SQLite."""
    from newsletters.db import create_engine

    engine = create_engine(url)
    with engine.connect() as conn:
        found = {
            name: str(conn.exec_driver_sql(f"PRAGMA {name}").scalar())
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }
    engine.dispose()
    return found


# --- waiting for the product's work ------------------------------------------------------


def between(tag: str) -> dict[str, str]:
    # Addresses tag-…: '-' then '.' in ASCII, so the range is every address with the prefix,
    # found through the unique index (LIKE on SQLite ignores case, and so any index).
    return {"lo": f"{tag}-", "hi": f"{tag}."}


def wait_for_product(engine: sa.Engine, phase: Phase, sink: MailSink, timeout: float, ended):
    """Wait until the phase's new signups are subscriptions with mails queued, then sent."""
    expected = phase.new_accepted
    phase.waited_for = expected
    has_requests = sa.inspect(engine).has_table("signup_request")
    counts = sa.text(
        "SELECT"
        " (SELECT count(*) FROM subscription AS sub JOIN subscriber AS s"
        "  ON s.id = sub.subscriber_id WHERE s.email >= :lo AND s.email < :hi),"
        " (SELECT count(*) FROM outbox_message WHERE recipient >= :lo AND recipient < :hi),"
        + (" (SELECT count(*) FROM signup_request)" if has_requests else " 0")
    )
    deadline = ended + timeout
    subscriptions = queued = waiting = 0
    while True:
        now = time.monotonic()
        if phase.processed_s is None:
            with engine.connect() as conn:
                subscriptions, queued, waiting = conn.execute(counts, between(phase.tag)).one()
            if subscriptions >= expected and queued >= expected and not waiting:
                phase.processed_s = now - ended
        mailed = sink.count(phase.tag)
        if phase.processed_s is not None and mailed >= expected:
            phase.mailed_s = now - ended
            return
        if now >= deadline:
            phase.left = (
                f"after {timeout:.0f}s: {subscriptions:,}/{expected:,} subscriptions,"
                f" {queued:,} mails queued, {waiting:,} signup requests waiting,"
                f" {mailed:,} mails at the sink"
            )
            return
        time.sleep(0.1)


# --- a list of 1,000,000 -----------------------------------------------------------------


def grow_list(url: str, newsletter_id: int, first: int, last: int, secret: str) -> float:
    """Add confirmed subscriptions existing<first..last>@domain, as the product makes them.

    Each has its subscriber row and its own unsubscribe token (salt, key fingerprint and the
    digest of the HMAC-derived secret, so its link works); set-based: three INSERT … SELECT.
    Returns the seconds taken, statistics included.
    """
    from newsletters import tokens
    from newsletters.db import create_engine

    began = time.perf_counter()
    at = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=30)
    seed = secrets.token_hex(16)
    params = {"first": first, "last": last, "key_id": tokens.key_id(secret), "at": at}
    stamp = sa.bindparam("at", type_=sa.DateTime())
    postgres = url.startswith("postgresql")
    engine = create_engine(url)
    with engine.begin() as conn:
        before = conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM subscriber")).scalar()
        tokens_before = conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM token")).scalar()
        if postgres:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pgcrypto"))
            subscribers = (
                "INSERT INTO subscriber (email, created_at, mails_in_window)"
                " SELECT 'existing' || n || '@" + DOMAIN + "', :at, 0"
                " FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n"
            )
            salt = "substr(encode(hmac(CAST(s.id AS text), :seed, 'sha256'), 'hex'), 1, 32)"
            secret_sql = (
                f"rtrim(translate(encode(hmac('unsubscribe:' || {salt}, :key, 'sha256'),"
                " 'base64'), '+/', '-_'), '=')"
            )
            digest = f"encode(sha256(convert_to({secret_sql}, 'UTF8')), 'hex')"
            params.update(seed=seed, key=secret)
        else:
            subscribers = (
                "WITH RECURSIVE n(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM n"
                " WHERE i < :last) INSERT INTO subscriber (email, created_at, mails_in_window)"
                " SELECT 'existing' || i || '@" + DOMAIN + "', :at, 0 FROM n"
            )
            # Both derived from the id: SQLite may evaluate the salt once per use.
            key, seed_bytes = secret.encode(), seed.encode()

            def bench_salt(row_id: int) -> str:
                return hmac.new(seed_bytes, str(row_id).encode(), hashlib.sha256).hexdigest()[:32]

            def bench_digest(row_id: int) -> str:
                return tokens.digest_of(tokens.mac(key, "unsubscribe", bench_salt(row_id)))

            raw = conn.connection.driver_connection
            raw.create_function("bench_salt", 1, bench_salt, deterministic=True)
            raw.create_function("bench_digest", 1, bench_digest, deterministic=True)
            salt, digest = "bench_salt(s.id)", "bench_digest(s.id)"
        conn.execute(sa.text(subscribers).bindparams(stamp), params)
        conn.execute(
            sa.text(
                "INSERT INTO token (purpose, subscriber_id, salt, key_id, digest, created_at)"
                f" SELECT 'unsubscribe', s.id, {salt}, :key_id, {digest}, :at"
                " FROM subscriber AS s WHERE s.id > :before"
            ).bindparams(stamp),
            {**params, "before": before},
        )
        conn.execute(
            sa.text(
                "INSERT INTO subscription (newsletter_id, subscriber_id, status, source,"
                " optin_at, optin_ip, optin_user_agent, confirmed_at, confirm_ip,"
                " confirmation_mailed_at, unsubscribe_token_id, created_at)"
                " SELECT :newsletter_id, t.subscriber_id, 'confirmed', 'form', :at,"
                " '198.51.100.7', 'bench/signups.py', :at, '198.51.100.7', :at, t.id, :at"
                " FROM token AS t WHERE t.id > :tokens_before"
            ).bindparams(stamp),
            {"newsletter_id": newsletter_id, "tokens_before": tokens_before, "at": at},
        )
        row = conn.execute(
            sa.text("SELECT salt, digest FROM token WHERE id > :t ORDER BY id LIMIT 1"),
            {"t": tokens_before},
        ).one()
    if tokens.digest_of(tokens.mac(secret.encode(), "unsubscribe", row.salt)) != row.digest:
        raise SetupFailed("the bulk-loaded tokens do not match the product's derivation")
    if postgres:
        # What autovacuum would soon do on its own, and must not do in the middle of a phase.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE) subscriber, token, subscription")
    engine.dispose()
    return time.perf_counter() - began


def write_pool(path: Path, numbers: list[int]) -> None:
    path.write_text("".join(f"existing{n}%40{DOMAIN}\n" for n in numbers))


# --- databases ---------------------------------------------------------------------------


def pg_admin() -> sa.Engine:
    # The server's maintenance database, only to create and drop this run's own databases.
    return sa.create_engine(
        f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )


def pg_recreate(create: bool, names=None) -> None:
    """Drop this run's databases (``names``, by default PG_DATABASES'), and create them afresh."""
    engine = pg_admin()
    with engine.connect() as conn:
        for name in PG_DATABASES.values() if names is None else names:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if create:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()


def database_urls(kind: str, folder: Path) -> dict[str, str]:
    if kind == "SQLite":
        return {s: f"sqlite:///{folder / f'{s}.db'}" for s in PG_DATABASES}
    return {s: f"{PG_SERVER}/{name}" for s, name in PG_DATABASES.items()}


def peer_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


# --- one database ------------------------------------------------------------------------


@dataclass
class Outcome:
    database: str
    engine_note: str = ""
    server: str = ""
    phases: list[Phase] = field(default_factory=list)
    paced: Paced | None = None
    paced_rate: int = 0
    skipped: list[str] = field(default_factory=list)
    grow_s: float = 0.0
    existing: int = 0
    log_problems: dict = field(default_factory=dict)
    exit_codes: dict = field(default_factory=dict)


def measure(
    kind: str, profile: Profile, sink: MailSink, smtp_port: int, folder: Path, minutes: float
) -> Outcome:
    """Run every phase on one kind of database within about ``minutes``; return the figures."""
    outcome = Outcome(kind)
    began = time.monotonic()
    # The small-list rounds may take a little less than half of this database's share: the
    # signup → mail measure, growing the list and the large-list rounds follow.
    small_until, large_until = began + minutes * 60 * 0.45, began + minutes * 60
    code = kind[0].lower()
    # Kept after the run (the databases are not): where to look when a figure surprises.
    logs = Path(tempfile.mkdtemp(prefix=f"bench-signups-{code}-logs-"))
    print(f"{kind}: logs in {logs}", file=sys.stderr)
    urls = database_urls(kind, folder)
    if kind == "PostgreSQL":
        pg_recreate(create=True)
    secret = secrets.token_hex(32)
    script = folder / "signups.lua"
    script.write_text(WRK_SCRIPT)
    small_pool = folder / f"{code}-pool-small.txt"
    write_pool(small_pool, list(range(1, POOL + 1)))
    stacks: list[Stack] = []
    driver = sa.create_engine(urls["product"], poolclass=sa.pool.NullPool)
    try:
        product = product_stack(urls["product"], smtp_port, secret, logs)
        stacks.append(product)
        if kind == "SQLite":
            pragmas = sqlite_pragmas(urls["product"])
            outcome.engine_note = ", ".join(f"{k}={v}" for k, v in pragmas.items())
            peer_init = "".join(f"PRAGMA {k}={v};" for k, v in pragmas.items())
            outcome.server = f"SQLite {sqlite_version()}"
        else:
            peer_init = ""
            with driver.connect() as conn:
                version_text = conn.exec_driver_sql("SHOW server_version").scalar()
            outcome.server = f"PostgreSQL {version_text.split()[0]}"
        stacks.append(ceiling_stack(urls["ceiling"], logs))
        stacks.append(peer_stack(peer_url(urls["peer"]), smtp_port, peer_init, logs))
        for stack in stacks:
            stack.wait_until_serving()
        fetch_csrf(stacks[2])
        for stack in stacks:
            warm_up(stack, f"{code}warm{stack.name[:2]}")
        with driver.connect() as conn:
            newsletter_id = conn.execute(
                sa.text("SELECT id FROM newsletter WHERE slug = :s"), {"s": SLUG}
            ).scalar_one()
        grow_list(urls["product"], newsletter_id, 1, POOL, secret)
        outcome.existing = POOL
        product, ceiling, peer = stacks

        def phase(scale: str, repeat: int, stack: Stack, mode: str, pool: Path | None) -> None:
            tag = f"{code}{scale[0]}{repeat}{stack.name[:2]}{mode[0]}"
            record = Phase(kind, scale, repeat, stack.name, mode, tag)
            print(f"{kind} {scale} #{repeat}: {stack.name} {mode} …", file=sys.stderr, end=" ")
            # "paused": the mail worker stopped (SIGSTOP) during the load, and let go after
            # it: how fast the request path alone is on these cores, beside the ceiling,
            # which has no worker of its own to share them with.
            paused = stack.processes["worker"] if mode == "paused" else None
            if paused:
                os.killpg(paused.pid, signal.SIGSTOP)
            try:
                run_wrk(stack, record, profile.phase_seconds, script, pool)
            finally:
                if paused:
                    os.killpg(paused.pid, signal.SIGCONT)
            ended = time.monotonic()
            if stack is product:
                wait_for_product(driver, record, sink, profile.drain_timeout, ended)
            record.mails = sink.count(tag)
            outcome.phases.append(record)
            print(
                f"{record.rps:,.0f} req/s, p99 {record.p99_ms:.0f} ms, answers"
                f" {record.statuses}, processed {record.processed_s}, mailed {record.mailed_s}"
                f" {record.left}",
                file=sys.stderr,
            )

        for repeat in range(1, profile.repeats + 1):
            if repeat > 1 and time.monotonic() > small_until:
                outcome.skipped.append(f"small list: rounds {repeat}–{profile.repeats}")
                break
            phase("small", repeat, product, "unique", None)
            phase("small", repeat, ceiling, "unique", None)
            phase("small", repeat, peer, "unique", None)
            phase("small", repeat, product, "paused", None)
            phase("small", repeat, product, "mixed", small_pool)
        # Moderate: well under what the product just sustained, so the measure is of the
        # path from signup to mail, not of a queue of signups waiting for a gunicorn worker.
        sustained = median(p.rps for p in select(outcome, "small", "product", "unique"))
        outcome.paced_rate = min(profile.paced_rate, max(5, int(sustained / 2)))
        print(f"{kind}: signup → mail, {outcome.paced_rate}/s …", file=sys.stderr)
        outcome.paced = paced_signups(
            product, f"{code}paced", outcome.paced_rate, profile.paced_seconds, sink
        )
        print(f"{kind}: growing the list to {profile.existing:,} …", file=sys.stderr)
        outcome.grow_s = grow_list(
            urls["product"], newsletter_id, POOL + 1, profile.existing, secret
        )
        outcome.existing = profile.existing
        big_pool = folder / f"{code}-pool-big.txt"
        write_pool(big_pool, random.Random(1).sample(range(1, profile.existing + 1), POOL))
        for repeat in range(1, profile.repeats_at_scale + 1):
            if repeat > 1 and time.monotonic() > large_until:
                outcome.skipped.append(f"large list: rounds {repeat}–{profile.repeats_at_scale}")
                break
            phase("large", repeat, product, "unique", None)
            phase("large", repeat, ceiling, "unique", None)
            phase("large", repeat, product, "mixed", big_pool)
    finally:
        for stack in stacks:
            outcome.exit_codes[stack.name] = stack.stop()
            outcome.log_problems[stack.name] = dict(stack.log_problems())
        driver.dispose()
        figures = {"phases": [asdict(p) for p in outcome.phases], "paced_rate": outcome.paced_rate}
        (logs / "figures.json").write_text(json.dumps(figures, indent=1, default=str))
        if kind == "PostgreSQL":
            pg_recreate(create=False)
    return outcome


# --- reporting ---------------------------------------------------------------------------


def sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def select(outcome: Outcome, scale: str, stack: str, mode: str) -> list[Phase]:
    return [p for p in outcome.phases if p.scale == scale and p.stack == stack and p.mode == mode]


def seconds_cell(phases: list[Phase], attribute: str) -> str:
    values = [getattr(p, attribute) for p in phases]
    if not values:
        return "-"
    done = [v for v in values if v is not None]
    if len(done) < len(values):
        return f"{median(done):.1f} s ({len(values) - len(done)} of {len(values)} not in time)"
    return f"{median(done):.1f} s (max {max(done):.1f})"


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.platform()}"


def versions(peer: bool = True) -> str:
    """Say the versions of what runs; ``peer``: django-newsletter's too (from its venv)."""
    ours = ", ".join(
        f"{name} {version(name)}"
        for name in ("flask", "sqlalchemy", "psycopg", "gunicorn", "email-validator", "aiosmtpd")
    )
    peer_text = ""
    if peer:
        found = subprocess.run(
            [
                str(PEER_VENV / "bin" / "python"), "-c",
                "from importlib.metadata import version as v;"
                "print(', '.join(f'{n} {v(n)}' for n in ('django', 'django-newsletter')))",
            ],
            capture_output=True, text=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        peer_text = f"; peer: {found}"
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    wrk_version = (wrk.stdout or wrk.stderr).split()[1] if (wrk.stdout or wrk.stderr) else "?"
    return f"Python {platform.python_version()}, {ours}{peer_text}; wrk {wrk_version}"


def revision() -> str:
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty=+changes"],
            cwd=ROOT, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except OSError:
        return "an unknown commit"
    return f"`{done.stdout.strip()}`" if done.returncode == 0 else "an unknown commit"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def database_section(outcome: Outcome, profile: Profile) -> list[str]:
    scale_label = f"{profile.existing:,}"
    rows = [
        ("product", "unique", "small"),
        ("product", "mixed", "small"),
        ("product", "paused", "small"),
        ("ceiling", "unique", "small"),
        ("peer", "unique", "small"),
        ("product", "unique", "large"),
        ("product", "mixed", "large"),
        ("ceiling", "unique", "large"),
    ]
    names = {"product": "product", "ceiling": "ceiling", "peer": "peer (django-newsletter)"}
    loads = {
        "unique": "new addresses",
        "mixed": "50 % new, 50 % subscribed",
        "paused": "new addresses, the worker paused",
    }
    note = f" ({outcome.engine_note}; the ceiling and the peer get the same)" * bool(
        outcome.engine_note
    )
    lines = [
        f"### {outcome.server}{note}",
        "",
        "| stack | load | product's list | runs | req/s | p50 ms | p99 ms | answers "
        "| load avg (1 min), start → end |",
        "|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    medians = {}
    for stack, mode, scale in rows:
        phases = select(outcome, scale, stack, mode)
        if not phases:
            continue
        rps = median(p.rps for p in phases)
        medians[(stack, mode, scale)] = rps
        answers = Counter()
        for p in phases:
            answers.update(p.statuses)
            answers.update({f"{k} errors": v for k, v in p.errors.items() if k != "status"})
        listed = f"{POOL:,}+" if scale == "small" else f"{scale_label}+"
        loadavg = ", ".join(f"{p.load_before:.1f} → {p.load_after:.1f}" for p in phases)
        lines.append(
            f"| {names[stack]} | {loads[mode]} | {listed} | {len(phases)} | {rps:,.0f}"
            f" | {median(p.p50_ms for p in phases):.1f} | {median(p.p99_ms for p in phases):.1f}"
            f" | {', '.join(f'{k}: {v:,}' for k, v in sorted(answers.items()))} | {loadavg} |"
        )
    m = medians.get
    pu, pu_large = m(("product", "unique", "small"), 0), m(("product", "unique", "large"), 0)
    cu, cu_large = m(("ceiling", "unique", "small"), 0), m(("ceiling", "unique", "large"), 0)
    peer = m(("peer", "unique", "small"), 0)
    unique_small = select(outcome, "small", "product", "unique")
    unique_big = select(outcome, "large", "product", "unique")
    mixed = [p for scale in ("small", "large") for p in select(outcome, scale, "product", "mixed")]
    lines += [
        "",
        "| figure | value |",
        "|---|---|",
        f"| product / ceiling, new addresses, same rounds (small list) | {ratio(pu, cu)} |",
        f"| product / peer, new addresses, same rounds (small list) | {ratio(pu, peer)} |",
        "| product with its worker paused / ceiling (small list): the request path alone |"
        f" {ratio(m(('product', 'paused', 'small'), 0), cu)} |",
        f"| product with {scale_label} subscriptions / product with the small list,"
        f" new addresses | {ratio(pu_large, pu)} |",
        f"| product / ceiling, new addresses, the rounds with {scale_label} |"
        f" {ratio(pu_large, cu_large)} |",
        f"| product with {scale_label} / with the small list, each against the ceiling of its"
        f" own rounds (how busy the machine was cancels out) |"
        f" {ratio(pu_large * cu, pu * cu_large)} |",
        f"| product, mixed / new addresses (small list; {scale_label}) |"
        f" {ratio(m(('product', 'mixed', 'small'), 0), pu)};"
        f" {ratio(m(('product', 'mixed', 'large'), 0), pu_large)} |",
        "| after a product phase (new addresses), every accepted signup a subscription with its"
        f" mail queued, from the load's end: median (small list; {scale_label}) |"
        f" {seconds_cell(unique_small, 'processed_s')};"
        f" {seconds_cell(unique_big, 'processed_s')} |",
        "| … and every confirmation mail accepted by the SMTP sink |"
        f" {seconds_cell(unique_small, 'mailed_s')}; {seconds_cell(unique_big, 'mailed_s')} |",
        "| the same after the mixed phases (processed; mailed) |"
        f" {seconds_cell(mixed, 'processed_s')}; {seconds_cell(mixed, 'mailed_s')} |",
    ]
    paced = outcome.paced
    if paced:
        to_mail = paced.to_mail_s
        lines.append(
            f"| signup → mail accepted by the sink, {outcome.paced_rate} signups/s for"
            f" {profile.paced_seconds} s ({paced.accepted:,} of {paced.sent:,} accepted in"
            f" {paced.seconds:.1f} s; {paced.missing} mails missing after 60 s): p50 / p95 / max |"
            f" {percentile(to_mail, 0.5):.2f} s / {percentile(to_mail, 0.95):.2f} s /"
            f" {max(to_mail, default=float('nan')):.2f} s |"
        )
        lines.append(
            "| … the paced requests' own latency: p50 / p99 |"
            f" {percentile(paced.request_ms, 0.5):.1f} ms /"
            f" {percentile(paced.request_ms, 0.99):.1f} ms |"
        )
    lines.append(
        f"| {profile.existing - POOL:,} confirmed subscriptions added (subscriber, token,"
        f" subscription; INSERT … SELECT) in | {outcome.grow_s:.0f} s |"
    )
    problems = "; ".join(
        f"{stack}: " + ", ".join(f"{k} {v}" for k, v in found.items())
        for stack, found in outcome.log_problems.items()
        if found
    )
    lines.append(f"| tracebacks and errors in the stacks' logs | {problems or 'none'} |")
    unclean = {
        f"{stack} {name}": code
        for stack, codes in outcome.exit_codes.items()
        for name, code in codes.items()
        if code
    }
    if unclean:
        lines.append(f"| processes that did not stop cleanly (exit codes) | {unclean} |")
    if outcome.skipped:
        lines.append(f"| skipped for the time budget | {'; '.join(outcome.skipped)} |")
    unfinished = [p for p in outcome.phases if p.left]
    for p in unfinished:
        lines.append(f"| not done in time: {p.tag} ({p.stack} {p.mode}, {p.scale}) | {p.left} |")
    lines += ["", *phase_table(outcome), ""]
    return lines


def phase_table(outcome: Outcome) -> list[str]:
    lines = [
        "<details><summary>Every phase, in the order run</summary>",
        "",
        "| # | list | stack | load | req/s | p50 ms | p99 ms | max ms | answers | processed "
        "| mailed | mails at the sink | load avg |",
        "|---|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for n, p in enumerate(outcome.phases, 1):
        listed = f"{POOL:,}+" if p.scale == "small" else f"{outcome.existing:,}+"
        answers = ", ".join(f"{k}: {v:,}" for k, v in sorted(p.statuses.items()))
        if p.errors:
            answers += "; errors " + ", ".join(f"{k} {v}" for k, v in p.errors.items())

        def secs(value):
            return "-" if value is None else f"{value:.1f} s"

        waited = p.stack == "product"
        lines.append(
            f"| {n} | {listed} | {p.stack} | {p.mode} | {p.rps:,.0f} | {p.p50_ms:.1f}"
            f" | {p.p99_ms:.1f} | {p.max_ms:.0f} | {answers}"
            f" | {secs(p.processed_s) if waited else ''} | {secs(p.mailed_s) if waited else ''}"
            f" | {p.mails:,} | {p.load_before:.1f} → {p.load_after:.1f} |"
        )
    lines += ["", "</details>"]
    return lines


def report(outcomes: list[Outcome], profile: Profile, argv: list[str], began: float) -> str:
    command = " ".join(["bench/signups.py", *argv])
    lines = [
        SECTION,
        "",
        f"`{command}`, {datetime.now(UTC):%Y-%m-%d}, code at {revision()}; {machine()};"
        f" {versions()}.",
        "",
        f"Each stack runs under `gunicorn -w {GUNICORN_WORKERS}` (sync workers) on 127.0.0.1,"
        " on a database of its own of the same kind; the product with one `newsletters worker`"
        " beside it, sending to an SMTP sink (aiosmtpd) in the driving process, which the peer"
        " sends to as well (from inside its request). wrk"
        f" (`-t{THREADS} -c{CONNECTIONS}`, {profile.phase_seconds} s a phase) POSTs"
        " form-encoded signups, each to a new address, or (product only) every other one to an"
        " address already subscribed and confirmed. Rounds interleave product, ceiling, peer,"
        f" product mixed ({profile.repeats} rounds on the small list; then"
        f" {profile.repeats_at_scale} rounds of product, ceiling, product mixed with"
        f" {profile.existing:,} subscriptions in the product's list); each row is the median of"
        " its rounds. req/s counts answers that accept a signup (product and ceiling 303, peer"
        " 302); p50/p99 are wrk's. 'Small list': the 5,000 confirmed subscriptions the mixed"
        " load draws from, plus what earlier phases added. Everything, wrk and the sink"
        " included, shares the machine's cores with whatever else runs on it: the load"
        " averages tell how busy it was; compare figures within one run.",
        "",
        "- ceiling: parse, validate with email-validator, one INSERT + commit through"
        " SQLAlchemy on the engine the product's `newsletters.db.create_engine` makes.",
        "- peer: django-newsletter's `SubscribeRequestView` in a minimal Django project"
        " (bench/_django_newsletter: Django's default middleware, CSRF on with one token"
        " fetched for the run, persistent connections, the product's SQLite PRAGMAs), which"
        " renders and sends its confirmation mail inside the request.",
        "",
    ]
    for outcome in outcomes:
        lines += database_section(outcome, profile)
    lines.append(f"Whole run: {(time.monotonic() - began) / 60:.1f} minutes.")
    lines.append("")
    return "\n".join(lines)


def write_section(section: str, title: str = SECTION) -> None:
    """Replace the section ``title`` of RESULTS.md, leaving the others as they are."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Bench results\n"
    start = text.find(title)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(title))
        rest = "" if end == -1 else text[end + 1 :]
        text = text[:start] + section + ("\n" + rest if rest else "")
    RESULTS.write_text(text, encoding="utf-8")


# --- the run -----------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Signup throughput of the product against a ceiling app and"
        " django-newsletter, on SQLite and PostgreSQL (loopback only).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="short phases, one round, 100k rows: a smoke test"
    )
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument(
        "--only", choices=("sqlite", "postgresql"), help="measure on one kind of database"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    profile = QUICK if args.quick else FULL
    # Started in the background by a non-interactive shell, this process (and every process
    # it starts) would ignore SIGINT, which is how the mail worker is stopped.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if shutil.which("wrk") is None:
        raise SetupFailed("wrk is not installed (Debian: apt-get install -y wrk)")
    ensure_peer_venv()
    from aiosmtpd.controller import Controller

    began = time.monotonic()
    sink = MailSink()
    smtp = Controller(sink, hostname="127.0.0.1", port=free_port())
    smtp.start()
    kinds = {"sqlite": ["SQLite"], "postgresql": ["PostgreSQL"]}.get(
        args.only, ["SQLite", "PostgreSQL"]
    )
    outcomes = []
    try:
        for n, kind in enumerate(kinds):
            # Each database gets an equal share of what is left of the budget.
            left = profile.budget_minutes - (time.monotonic() - began) / 60
            with tempfile.TemporaryDirectory(prefix="bench-signups-") as folder:
                outcomes.append(
                    measure(kind, profile, sink, smtp.port, Path(folder), left / (len(kinds) - n))
                )
    finally:
        smtp.stop()
    section = report(outcomes, profile, argv, began)
    print("\n" + section)
    if not args.no_write:
        write_section(section)
        print(f"wrote {RESULTS.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SetupFailed as exc:
        print(f"signups: cannot set up: {exc}", file=sys.stderr)
        sys.exit(2)
