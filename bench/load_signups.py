"""Drive sustained signup load through gunicorn, PostgreSQL, two mail workers and real SMTP.

Run from the repository's root (PostgreSQL must answer; the database named by
--database-url is DROPPED and created anew, so never point it at data you keep):

    .venv/bin/python bench/load_signups.py
    .venv/bin/python bench/load_signups.py --requests 2000 --no-write    # a quick check

About 5 minutes on 2 otherwise idle CPUs; the signup phase stops at --time-limit (600 s)
whatever happens, and a run cut short fails.

What it does, all on loopback:

1. drops and creates the database, runs ``newsletters db upgrade`` and
   ``newsletters newsletter create`` for three newsletters;
2. starts an SMTP server in this process (aiosmtpd), which counts the mails and their
   Message-IDs per recipient;
3. starts ``gunicorn -w 4 --threads 4 wsgi:app`` and two ``newsletters worker`` processes
   (rate limits off: every request comes from 127.0.0.1);
4. times GET /healthz at the same concurrency for a few seconds: the baseline of this run;
5. sends --requests signups over --concurrency keep-alive connections, half as form posts
   (answer: 303 to the thank-you page), half as JSON (answer: 200 ``{"status": "ok"}``), to
   the three newsletters; about 15 % repeat an address already used, half of those in
   another letter case;
6. waits until the outbox is empty, stops everything, and verifies.

The expected mail count is exact by design: every address signs up to one newsletter only,
and its repeats go to that same newsletter within the ten-minute throttle, so each distinct
address gets exactly one confirmation mail (one mail a day is far under
CONFIRM_MAILS_PER_DAY). Verified: every answer as expected; exactly one subscription per
distinct (newsletter, address) and nothing else; exactly one mail per distinct address, each
with the Message-ID of its outbox row and none delivered twice; no outbox row pending or
failed; every process stopped cleanly (exit 0). The figures replace the section "Sustained
signup load (gunicorn + PostgreSQL + worker + SMTP)" of bench/RESULTS.md (--no-write skips
that). Exits 1 when the verification fails, 2 when the stack cannot be set up.
"""

import argparse
import http.client
import json
import math
import os
import platform
import random
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from importlib.metadata import version
from pathlib import Path

import sqlalchemy as sa
from aiosmtpd.controller import Controller
from psycopg import connect, sql

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Sustained signup load (gunicorn + PostgreSQL + worker + SMTP)"
NEWSLETTERS = ("briefing", "weekly", "culture")
REPEAT_SHARE = 0.15
GUNICORN_WORKERS, GUNICORN_THREADS, MAIL_WORKERS = 4, 4, 2


class SetupFailed(RuntimeError):
    """The stack could not be set up: nothing was measured."""


# --- the mail server ---------------------------------------------------------------------


@dataclass
class MailCounter:
    """An aiosmtpd handler that keeps, per recipient, the Message-IDs it was handed."""

    by_recipient: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    mails: int = 0

    async def handle_DATA(self, server, session, envelope):
        mail = message_from_bytes(envelope.content, policy=policy.default)
        # The part of the Message-ID that the outbox row stores (the mail adds the domain).
        unique = str(mail["Message-ID"]).strip("<>").partition("@")[0]
        for recipient in envelope.rcpt_tos:
            self.by_recipient[recipient].append(unique)
        self.mails += 1
        return "250 Message accepted"


# --- the stack ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def recreate_database(url: str) -> None:
    """Drop and create the database that ``url`` names."""
    target = sa.engine.make_url(url)
    if not target.drivername.startswith("postgresql") or not target.database:
        raise SetupFailed(f"--database-url must name a PostgreSQL database, got {url!r}")
    drop_database(url, create=True)


def drop_database(url: str, create: bool = False) -> None:
    """Drop the database that ``url`` names (and create it anew), from the server's 'postgres'."""
    target = sa.engine.make_url(url)
    admin = target.set(drivername="postgresql", database="postgres")
    name = sql.Identifier(target.database)
    with connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        if create:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


class Stack:
    """The processes of one run: gunicorn and the mail workers, with their logs."""

    def __init__(self, env: dict[str, str], port: int, logs: Path):
        self.env, self.port, self.logs = env, port, logs
        self.processes: dict[str, subprocess.Popen] = {}

    def command(self, *args: str) -> str:
        """Run a ``newsletters`` command to completion; return its output or stop the run."""
        done = subprocess.run(
            [str(BIN / "newsletters"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise SetupFailed(f"newsletters {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def start(self, name: str, argv: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("w")
        self.processes[name] = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def start_all(self) -> None:
        self.start(
            "gunicorn",
            [
                str(BIN / "gunicorn"),
                "-w", str(GUNICORN_WORKERS),
                "--threads", str(GUNICORN_THREADS),
                "-b", f"127.0.0.1:{self.port}",
                "wsgi:app",
            ],
        )  # fmt: skip
        for n in range(MAIL_WORKERS):
            self.start(f"worker{n + 1}", [str(BIN / "newsletters"), "worker"])

    def wait_until_serving(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise SetupFailed(f"{name} exited early:\n{self.tail(name)}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SetupFailed(f"gunicorn did not answer /healthz in {timeout:.0f}s")

    def cpu_seconds(self, engine: sa.Engine) -> dict[str, float]:
        """Return the CPU time used so far by gunicorn, the workers, and our database's backends."""
        master = self.processes["gunicorn"].pid
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        with engine.connect() as conn:
            backends = conn.scalars(
                sa.text(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).all()
        workers = [p.pid for name, p in self.processes.items() if name.startswith("worker")]
        return {
            "gunicorn": sum(_cpu_of(pid) for pid in [master, *map(int, children)]),
            "workers": sum(_cpu_of(pid) for pid in workers),
            **{f"pg{pid}": _cpu_of(pid) for pid in backends},
        }

    def alive(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.poll() is None]

    def stop(self) -> dict[str, int | None]:
        """Stop every process: SIGINT to workers, SIGTERM to gunicorn; kill what lingers."""
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
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _cpu_of(pid: int) -> float:
    """Return the user + system CPU seconds of process ``pid`` (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Return the CPU seconds each part used between two ``cpu_seconds`` readings."""
    backends = [after[k] - before[k] for k in after if k.startswith("pg") and k in before]
    return {
        "gunicorn": after["gunicorn"] - before["gunicorn"],
        "workers": after["workers"] - before["workers"],
        "postgres": sum(backends),
    }


# --- the load ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Signup:
    newsletter: str
    email: str  # as sent; the stored address is its lower-cased form
    as_json: bool
    repeat: bool


def plan(count: int, seed: int, run: str) -> list[Signup]:
    """Return ``count`` signups: new addresses, each to one newsletter, and ~15 % repeats."""
    rng = random.Random(seed)
    firsts: list[Signup] = []
    signups: list[Signup] = []
    for n in range(count):
        if firsts and rng.random() < REPEAT_SHARE:
            first = rng.choice(firsts)
            email = first.email.upper() if rng.random() < 0.5 else first.email
            signups.append(Signup(first.newsletter, email, rng.random() < 0.5, repeat=True))
        else:
            signup = Signup(
                NEWSLETTERS[n % len(NEWSLETTERS)],
                f"reader.{n}.{run}@load.example.com",
                rng.random() < 0.5,
                repeat=False,
            )
            firsts.append(signup)
            signups.append(signup)
    return signups


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    sent: int = 0
    elapsed: float = 0.0
    stopped_by_time: bool = False


class Load:
    """Send requests over ``concurrency`` keep-alive connections, one thread each."""

    def __init__(self, port: int, concurrency: int):
        self.port, self.concurrency = port, concurrency

    def run(self, next_request, deadline: float) -> Outcome:
        """Call ``next_request()`` until it returns None or ``deadline`` passes."""
        outcome = Outcome()
        lock = threading.Lock()

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            latencies, statuses, errors = [], Counter(), []
            while time.monotonic() < deadline:
                with lock:
                    request = next_request()
                    if request is None:
                        break
                    outcome.sent += 1
                method, path, body, headers, check = request
                began = time.perf_counter()
                try:
                    conn.request(method, path, body=body, headers=headers)
                    response = conn.getresponse()
                    content = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    errors.append(f"{method} {path}: {type(exc).__name__}: {exc}")
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    continue
                latencies.append(time.perf_counter() - began)
                statuses[response.status] += 1
                problem = check(response, content)
                if problem:
                    errors.append(f"{method} {path}: {problem}")
            conn.close()
            with lock:
                outcome.latencies += latencies
                outcome.statuses += statuses
                outcome.errors += errors

        threads = [threading.Thread(target=client, daemon=True) for _ in range(self.concurrency)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        outcome.elapsed = time.perf_counter() - began
        outcome.stopped_by_time = time.monotonic() >= deadline
        return outcome


def healthz_requests(seconds: float):
    """Return a ``next_request`` that asks for GET /healthz until ``seconds`` have passed."""
    until = time.monotonic() + seconds

    def check(response, content):
        if response.status != 200:
            return f"expected 200, got {response.status}"
        return None

    def next_request():
        if time.monotonic() >= until:
            return None
        return "GET", "/healthz", None, {}, check

    return next_request


def signup_requests(signups: list[Signup]):
    """Return a ``next_request`` that hands out ``signups`` in order, once each."""
    position = iter(range(len(signups)))

    def next_request():
        n = next(position, None)
        if n is None:
            return None
        signup = signups[n]
        path = f"/n/{signup.newsletter}/subscribe"
        headers = {"User-Agent": "load_signups/1"}
        if signup.as_json:
            body = json.dumps({"email": signup.email}).encode()
            headers.update({"Content-Type": "application/json", "Accept": "application/json"})
            return "POST", path, body, headers, _expect_json_ok
        body = urllib.parse.urlencode({"email": signup.email}).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        thanks = f"/n/{signup.newsletter}/thanks"
        return "POST", path, body, headers, lambda r, c: _expect_redirect(r, thanks)

    return next_request


def _expect_json_ok(response, content) -> str | None:
    if response.status != 200:
        return f"expected 200, got {response.status}: {content[:200]!r}"
    try:
        answer = json.loads(content)
    except ValueError:
        return f"expected JSON, got {content[:200]!r}"
    return None if answer.get("status") == "ok" else f"expected status ok, got {answer!r}"


def _expect_redirect(response, thanks: str) -> str | None:
    location = response.getheader("Location", "")
    if response.status != 303 or location != thanks:
        return f"expected 303 to {thanks}, got {response.status} to {location!r}"
    return None


class WaitSampler(threading.Thread):
    """Sample what this database's busy sessions wait on, every quarter second, until stopped."""

    def __init__(self, engine: sa.Engine):
        super().__init__(daemon=True)
        self.engine, self.samples, self.seen = engine, 0, Counter()
        self.done = threading.Event()

    def run(self):
        query = sa.text(
            "SELECT coalesce(wait_event_type || '/' || wait_event, 'on CPU'),"
            " upper(split_part(ltrim(query), ' ', 1))"
            " FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'active' AND pid <> pg_backend_pid()"
        )
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            while not self.done.wait(0.25):
                self.samples += 1
                self.seen.update(f"{wait} in {verb}" for wait, verb in conn.execute(query))

    def summary(self, top: int = 4) -> str:
        total = sum(self.seen.values())
        if not total:
            return "-"
        shown = [f"{what} {n / total:.0%}" for what, n in self.seen.most_common(top)]
        return (
            f"{total / self.samples:.2f} busy at a time on average ({self.samples:,} samples);"
            f" of their time: {', '.join(shown)}"
        )


# --- waiting and verifying ---------------------------------------------------------------


def wait_for_empty_outbox(engine: sa.Engine, timeout: float) -> tuple[float, int]:
    """Wait until no outbox row is pending; return the seconds waited and the rows left."""
    began = time.perf_counter()
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            left = conn.scalar(
                sa.text("SELECT count(*) FROM outbox_message WHERE state = 'pending'")
            )
        if left == 0 or time.monotonic() >= deadline:
            return time.perf_counter() - began, left
        time.sleep(0.25)


def verify(engine: sa.Engine, signups: list[Signup], sent: int, mails: MailCounter) -> dict:
    """Compare the database and the mail server with what the sent signups must leave."""
    expected = {(s.newsletter, s.email.lower()) for s in signups[:sent]}
    addresses = {email for _, email in expected}
    failures = []
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT n.slug, s.email, count(*) FROM subscription AS sub"
                " JOIN newsletter AS n ON n.id = sub.newsletter_id"
                " JOIN subscriber AS s ON s.id = sub.subscriber_id GROUP BY n.slug, s.email"
            )
        ).all()
        outbox_states = dict(
            conn.execute(sa.text("SELECT state, count(*) FROM outbox_message GROUP BY state")).all()
        )
        outbox_ids = defaultdict(list)
        for recipient, message_id in conn.execute(
            sa.text("SELECT recipient, message_id FROM outbox_message WHERE state = 'sent'")
        ):
            outbox_ids[recipient].append(message_id)
        delays = conn.execute(
            sa.text(
                "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP"
                " (ORDER BY extract(epoch FROM sent_at - created_at))"
                " FROM outbox_message WHERE state = 'sent'"
            )
        ).scalar()
        subscribers = conn.scalar(sa.text("SELECT count(*) FROM subscriber"))
    stored = {(slug, email): n for slug, email, n in rows}
    doubled = [key for key, n in stored.items() if n != 1]
    missing = expected - stored.keys()
    extra = stored.keys() - expected
    if doubled:
        failures.append(f"{len(doubled)} (newsletter, address) pairs stored more than once")
    if missing:
        failures.append(f"{len(missing)} signups not stored, e.g. {sorted(missing)[:3]}")
    if extra:
        failures.append(f"{len(extra)} subscriptions nobody signed up for")
    if subscribers != len(addresses):
        failures.append(f"{subscribers} subscribers stored, {len(addresses)} distinct addresses")

    unsent = {state: n for state, n in outbox_states.items() if state != "sent"}
    if unsent:
        failures.append(f"outbox not clean: {unsent}")
    if outbox_states.get("sent", 0) != len(addresses):
        failures.append(f"{outbox_states.get('sent', 0)} outbox rows sent, want {len(addresses)}")

    received = mails.by_recipient
    unmailed = addresses - received.keys()
    twice = {r: ids for r, ids in received.items() if len(ids) != 1}
    strangers = received.keys() - addresses
    if unmailed:
        failures.append(f"{len(unmailed)} addresses got no mail, e.g. {sorted(unmailed)[:3]}")
    if twice:
        failures.append(f"{len(twice)} addresses got more than one mail, e.g. {next(iter(twice))}")
    if strangers:
        failures.append(f"{len(strangers)} mails to addresses nobody signed up")
    if mails.mails != len(addresses):
        failures.append(f"{mails.mails} mails received, want exactly {len(addresses)}")
    mismatched = [r for r, ids in received.items() if sorted(ids) != sorted(outbox_ids.get(r, []))]
    if mismatched:
        failures.append(f"{len(mismatched)} mails whose Message-ID is not their outbox row's")
    return {
        "failures": failures,
        "signups": sent,
        "pairs": len(expected),
        "addresses": len(addresses),
        "repeats": sum(s.repeat for s in signups[:sent]),
        "outbox": outbox_states,
        "mails": mails.mails,
        "mail_delay": delays or [None, None, None],
    }


# --- reporting ---------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """Return the nearest-rank percentile ``share`` (0..1) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def latency_cells(outcome: Outcome) -> str:
    ms = [x * 1000 for x in outcome.latencies]
    cells = [percentile(ms, p) for p in (0.5, 0.95, 0.99)] + [max(ms, default=float("nan"))]
    return " | ".join(f"{x:.1f}" for x in cells)


def report(args, baseline: Outcome, load: Outcome, checked: dict, times: dict) -> str:
    """Return the RESULTS.md section for this run."""
    base_rps = len(baseline.latencies) / baseline.elapsed
    load_rps = len(load.latencies) / load.elapsed
    delay = checked["mail_delay"]
    ceiling = os.cpu_count() * load.sent / max(1e-9, sum(times["cpu"].values()))
    pg = times["postgres"]
    verdict = "passed" if not checked["failures"] else "FAILED: " + "; ".join(checked["failures"])
    kinds = Counter("JSON" if s.as_json else "form" for s in times["signups"][: load.sent])
    statuses = ", ".join(f"{code}: {n:,}" for code, n in sorted(load.statuses.items()))
    outbox_cell = ", ".join(f"{k} {v:,}" for k, v in sorted(checked["outbox"].items()))
    lines = [
        SECTION,
        "",
        f"`bench/load_signups.py --requests {args.requests} --concurrency {args.concurrency}`,"
        f" {time.strftime('%Y-%m-%d')}, code at {times['revision']},"
        f" Python {platform.python_version()} on {platform.machine()} ({os.cpu_count()} CPUs),"
        f" {pg}, gunicorn {version('gunicorn')}"
        f" (`-w {GUNICORN_WORKERS} --threads {GUNICORN_THREADS}`, gthread),"
        f" {MAIL_WORKERS} `newsletters worker` processes, an aiosmtpd server in the driving"
        " process. Everything, the load generator included, shares the same CPUs on loopback;"
        " rate limits off (every request comes from 127.0.0.1). Other work on the machine"
        " takes CPUs from the stack: the rows on CPU share and load average below say how"
        " much, and the ceiling row estimates the throughput on dedicated CPUs.",
        "",
        f"Load: {load.sent:,} signups over {args.concurrency} keep-alive connections"
        f" ({kinds['form']:,} form posts answered 303, {kinds['JSON']:,} JSON posts answered"
        f" 200) to {len(NEWSLETTERS)} newsletters; {checked['repeats']:,}"
        f" ({checked['repeats'] / max(1, load.sent):.0%}) repeat an address already used,"
        " half of them in upper case. Each address signs up to one newsletter only and its"
        " repeats to the same one, inside the ten-minute throttle, so the expected mail count"
        f" is exactly one per distinct address: {checked['addresses']:,}.",
        "",
        "| phase | requests | seconds | req/s | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| baseline: GET /healthz (`SELECT 1`), same concurrency |"
        f" {len(baseline.latencies):,} | {baseline.elapsed:.1f} | {base_rps:,.0f} |"
        f" {latency_cells(baseline)} |",
        f"| signups (POST /n/<slug>/subscribe) | {len(load.latencies):,} | {load.elapsed:.1f} |"
        f" {load_rps:,.0f} | {latency_cells(load)} |",
        "",
        "| figure | value |",
        "|---|---|",
        f"| signup throughput / /healthz throughput | {load_rps / base_rps:.2f} |",
        f"| answers | {statuses}; errors {len(load.errors)} |",
        f"| distinct (newsletter, address) | {checked['pairs']:,} |",
        f"| mails delivered over SMTP | {checked['mails']:,} |",
        f"| outbox after the run | {outbox_cell} |",
        f"| outbox drained after the load ended in | {times['drain']:.1f} s |",
        "| mail delay (outbox row written to sent), p50 / p95 / p99 |"
        + " /".join(f" {d:.1f} s" if d is not None else " -" for d in delay)
        + " |",
        "| CPU per signup: gunicorn / PostgreSQL backends / mail workers / load generator |"
        + " /".join(
            f" {times['cpu'][part] / max(1, load.sent) * 1000:.1f} ms"
            for part in ("gunicorn", "postgres", "workers", "driver")
        )
        + " |",
        f"| CPU used by the stack during the signups, of {os.cpu_count()} CPUs ×"
        f" {load.elapsed:.0f} s | {sum(times['cpu'].values()) / load.elapsed:.2f} CPUs |",
        f"| load average (1 min) when the signups began | {times['load_average']:.2f} |",
        f"| what busy database sessions were doing during the signups | {times['waits']} |",
        f"| ceiling if the stack had all {os.cpu_count()} CPUs ({os.cpu_count()} / CPU per"
        " signup; an estimate that ignores waits such as WAL flushes) |"
        f" {ceiling:,.0f} signups/s |",
        f"| whole run (database to verification) | {times['total']:.0f} s |",
        f"| verification | {verdict} |",
        "",
    ]
    return "\n".join(lines)


def revision() -> str:
    """Return the commit the code was run at, marked when the working tree had changes."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty=+changes"],
            cwd=ROOT, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except OSError:
        return "an unknown commit"
    return f"`{done.stdout.strip()}`" if done.returncode == 0 else "an unknown commit"


def write_section(section: str) -> None:
    """Replace this benchmark's section of RESULTS.md, leaving the others as they are."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Bench results\n"
    start = text.find(SECTION)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        rest = "" if end == -1 else text[end + 1 :]
        text = text[:start] + section + ("\n" + rest if rest else "")
    RESULTS.write_text(text, encoding="utf-8")


# --- the run -----------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Sustained signup load through gunicorn, PostgreSQL, mail workers and SMTP,"
        " verified end to end. The database is dropped and created anew.",
    )
    parser.add_argument("--requests", type=int, default=20_000, help="signups to send")
    parser.add_argument("--concurrency", type=int, default=32, help="parallel connections")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "NEWSLETTERS_BENCH_LOAD_DATABASE_URL",
            "postgresql+psycopg://postgres@127.0.0.1:5432/bench_load",
        ),
        help="PostgreSQL database to DROP and recreate (default: %(default)s)",
    )
    parser.add_argument(
        "--time-limit", type=float, default=600, help="longest signup phase, in seconds"
    )
    parser.add_argument(
        "--baseline-seconds", type=float, default=5, help="how long to time GET /healthz"
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=180, help="longest wait for an empty outbox"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the request mix")
    parser.add_argument("--keep-database", action="store_true", help="leave it for inspection")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")
    return args


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv=None) -> int:
    args = parse_args(argv)
    # Started as a background job of a non-interactive shell, this process (and so every
    # process it starts) would ignore SIGINT, which is how the workers are stopped, as under
    # systemd (KillSignal=SIGINT). Undo that: Ctrl-C works, and the children start with the
    # default handling.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    began = time.perf_counter()
    run = secrets.token_hex(3)
    signups = plan(args.requests, args.seed, run)

    recreate_database(args.database_url)
    mails = MailCounter()
    smtp = Controller(mails, hostname="127.0.0.1", port=free_port())
    smtp.start()
    port = free_port()
    # Only this run's settings: a NEWSLETTERS_* left in the shell must not change the stack.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")}
    env = {
        **inherited,
        "NEWSLETTERS_ENV": "production",
        "NEWSLETTERS_DATABASE_URL": args.database_url,
        "NEWSLETTERS_MAIL_URL": f"smtp://127.0.0.1:{smtp.port}",
        "NEWSLETTERS_MAIL_FROM": "newsletters@load.example.com",
        "NEWSLETTERS_SECRET_KEY": secrets.token_hex(32),
        "NEWSLETTERS_BASE_URL": f"http://127.0.0.1:{port}",
        "NEWSLETTERS_RATELIMIT_ENABLED": "false",
    }
    engine = sa.create_engine(args.database_url, poolclass=sa.pool.NullPool)
    logs = Path(tempfile.mkdtemp(prefix="load_signups-"))
    # gunicorn 25.1+ opens a control socket in XDG_RUNTIME_DIR, else in ~/.gunicorn, shared by
    # every gunicorn of this user: keep this run's to itself.
    env["XDG_RUNTIME_DIR"] = str(logs)
    stack = Stack(env, port, logs)
    exit_codes: dict = {}
    try:
        stack.command("db", "upgrade")
        for slug in NEWSLETTERS:
            stack.command("newsletter", "create", slug, "--name", slug.title())
        stack.start_all()
        stack.wait_until_serving()
        print(f"serving on 127.0.0.1:{port}, SMTP on 127.0.0.1:{smtp.port}, logs in {logs}")

        load = Load(port, args.concurrency)
        far = time.monotonic() + args.baseline_seconds + 60
        baseline = load.run(healthz_requests(args.baseline_seconds), far)
        print(f"baseline /healthz: {len(baseline.latencies) / baseline.elapsed:,.0f} req/s")

        load_average = os.getloadavg()[0]
        cpu_before = stack.cpu_seconds(engine)
        driver_before = _own_cpu()
        deadline = time.monotonic() + args.time_limit
        sampler = WaitSampler(engine)
        sampler.start()
        outcome = load.run(signup_requests(signups), deadline)
        sampler.done.set()
        sampler.join()
        cpu = cpu_used(cpu_before, stack.cpu_seconds(engine))
        cpu["driver"] = _own_cpu() - driver_before
        print(
            f"signups: {len(outcome.latencies):,} answered in {outcome.elapsed:.1f}s,"
            f" {len(outcome.latencies) / outcome.elapsed:,.0f} req/s,"
            f" {len(outcome.errors)} errors"
        )
        drain, left = wait_for_empty_outbox(engine, args.drain_timeout)
        print(f"outbox drained in {drain:.1f}s ({left} left)")
        alive = stack.alive()
    finally:
        exit_codes = stack.stop()
        smtp.stop()

    checked = verify(engine, signups, outcome.sent, mails)
    failures = checked["failures"]
    if baseline.errors:
        failures.insert(0, f"{len(baseline.errors)} /healthz errors, e.g. {baseline.errors[0]}")
    if outcome.errors:
        failures.insert(0, f"{len(outcome.errors)} bad answers, e.g. {outcome.errors[0]}")
    if outcome.stopped_by_time or outcome.sent < args.requests:
        failures.insert(0, f"time limit: {outcome.sent} of {args.requests} signups sent")
    if left:
        failures.append(f"outbox not empty after {args.drain_timeout:.0f}s: {left} pending")
    print("stopped:", ", ".join(f"{name} exit {code}" for name, code in exit_codes.items()))
    if len(alive) != len(exit_codes):
        failures.append(f"processes died during the run: {sorted(set(exit_codes) - set(alive))}")
    elif any(exit_codes.values()):
        failures.append(f"processes did not stop cleanly: {exit_codes}")
    with engine.connect() as conn:
        postgres = "PostgreSQL " + conn.scalar(sa.text("SHOW server_version")).split()[0]
    engine.dispose()
    if not args.keep_database:
        drop_database(args.database_url)

    times = {
        "revision": revision(),
        "drain": drain,
        "total": time.perf_counter() - began,
        "postgres": postgres,
        "signups": signups,
        "cpu": cpu,
        "load_average": load_average,
        "waits": sampler.summary(),
    }
    section = report(args, baseline, outcome, checked, times)
    print("\n" + section)
    if not args.no_write:
        write_section(section)
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    if failures:
        print("VERIFICATION FAILED:", *failures, sep="\n  ", file=sys.stderr)
        for name in exit_codes:
            print(f"--- {name} (last lines of {logs / name}.log)", file=sys.stderr)
            print(stack.tail(name), file=sys.stderr)
        return 1
    print("verification passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SetupFailed as exc:
        print(f"load_signups: cannot set up: {exc}", file=sys.stderr)
        sys.exit(2)
