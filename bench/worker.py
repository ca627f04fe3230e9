"""Measure the mail worker against raw smtplib, and signup processing, on SQLite and PostgreSQL.

Run from the repository's root (loopback only; PostgreSQL at 127.0.0.1:5432, user postgres):

    .venv/bin/python bench/worker.py                 # 5,000 mails, 4 rounds: a few minutes
    .venv/bin/python bench/worker.py --quick         # 1,000 mails, 2 rounds: a smoke test
    .venv/bin/python bench/worker.py --mails 20000 --only sqlite --no-write
    .venv/bin/python bench/worker.py --quick --profile   # one more round under pyinstrument

An SMTP sink (aiosmtpd) runs in a process of its own and counts what it receives. For each
database (a SQLite file in a temporary folder; the PostgreSQL database ``bench_worker``,
created for the run and dropped after it) the script migrates, adds a newsletter, then:

- signups: inserts N signup requests (the row ``processing.accept`` writes, N new addresses)
  and runs ``newsletters worker --once`` against the sink, which processes them all, then
  sends their N confirmation mails; its report says how long each part took;
- mail: puts those N mails back to pending and runs ``newsletters worker --once`` again,
  interleaved with the baseline: raw smtplib sending N prebuilt messages (the same mails,
  rendered once by the product beforehand) over one connection to the same sink.

mails/s is counted at the sink, from its first mail to its last, so the process's start-up
is not in it (the whole process's time is shown beside). The figures replace the section
"## Mail worker and signup processing" of bench/RESULTS.md (``--no-write`` skips that).
"""

import argparse
import contextlib
import json
import os
import platform
import re
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Mail worker and signup processing"
SCRIPT = Path(sys.executable).parent / "newsletters"
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
PG_DATABASE = "bench_worker"
MAIL_FROM = "bench@news.example.org"
BASE_URL = "https://news.example.org"
SECRET_KEY = "bench-worker-secret"


@dataclass(frozen=True)
class Profile:
    mails: int
    rounds: int  # of the product's mail round and the baseline, interleaved
    signup_rounds: int


FULL = Profile(5_000, 4, 2)
QUICK = Profile(1_000, 2, 1)


# --- the sink ----------------------------------------------------------------------------


class CountingSink:
    """An aiosmtpd handler that keeps only counts: how many, which Message-IDs, first and last."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.count = 0
        self.ids: set[bytes] = set()
        self.first = self.last = None

    async def handle_DATA(self, server, session, envelope):
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.count += 1
        content = envelope.content
        start = content.find(b"Message-ID: ")
        if start != -1:
            self.ids.add(content[start + 12 : content.find(b"\r\n", start)])
        return "250 Message accepted"

    def stats(self) -> dict:
        span = (self.last - self.first) if self.count > 1 else 0.0
        return {"count": self.count, "distinct": len(self.ids), "span": span}


def serve_sink(port: int) -> None:
    """Run the sink until stdin closes; answer ``stats`` and ``reset`` lines on stdout."""
    from aiosmtpd.controller import Controller

    sink = CountingSink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "stats":
            print(json.dumps(sink.stats()), flush=True)
        elif command == "reset":
            sink.reset()
            print("ok", flush=True)
    controller.stop()


class Sink:
    """The sink's process, seen from the bench."""

    def __init__(self):
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--sink", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "ready"

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def ask(self, command: str) -> str:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def reset(self) -> None:
        self.ask("reset")

    def stats(self) -> dict:
        return json.loads(self.ask("stats"))

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- the product -------------------------------------------------------------------------


def make_app(url: str):
    from newsletters import create_app

    return create_app(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": SECRET_KEY,
            "BASE_URL": BASE_URL,
            "MAIL_FROM": MAIL_FROM,
        }
    )


def prepare_database(app) -> int:
    """Migrate, add the newsletter; return its id."""
    from newsletters import db
    from newsletters.migrations import upgrade
    from newsletters.models import Newsletter

    with app.app_context():
        upgrade()
        session = db.session()
        newsletter = Newsletter(slug="bench", name="Bench Weekly")
        session.add(newsletter)
        session.commit()
        return newsletter.id


def accept_signups(app, newsletter_id: int, n: int, tag: str) -> None:
    """Store ``n`` signup requests of new addresses, as ``processing.accept`` writes each."""
    from newsletters import db
    from newsletters.models import SignupRequest
    from newsletters.subscriptions import processing

    evidence = processing.Evidence(
        ip="198.51.100.7", user_agent="bench/1.0", source="form", form_text="Bench [Subscribe]"
    )
    rows = [
        asdict(
            processing.Request.of([newsletter_id], f"{tag}.{i}@bench.example.com", None, evidence)
        )
        for i in range(n)
    ]
    with app.app_context():
        session = db.session()
        for start in range(0, n, 1000):
            session.execute(sa.insert(SignupRequest.__table__), rows[start : start + 1000])
        session.commit()


def requeue_mails(app, n: int | None = None) -> int:
    """Put the first ``n`` mails (or all) back to pending, due now, as if freshly queued."""
    from newsletters import db
    from newsletters.db import utcnow
    from newsletters.models import OutboxMessage, OutboxState

    with app.app_context():
        session = db.session()
        now = utcnow()
        first = sa.select(OutboxMessage.id).order_by(OutboxMessage.id).limit(n)
        n = session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.id.in_(first.scalar_subquery()))
            .values(
                state=OutboxState.PENDING,
                attempts=0,
                sent_at=None,
                locked_until=None,
                last_error=None,
                next_attempt_at=now,
                queued_at=now,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
        return n


def outbox_counts(app) -> dict[str, int]:
    from newsletters import db
    from newsletters.mail import outbox

    with app.app_context():
        counts = outbox.counts(db.session())
        db.session().rollback()
        return counts


def prebuilt_messages(app, n: int) -> list[tuple[str, bytes]]:
    """Render the outbox's first ``n`` mails once, as the product does: the baseline's."""
    from newsletters import db
    from newsletters.mail import messages
    from newsletters.models import OutboxMessage

    with app.app_context():
        session = db.session()
        rows = session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id).limit(n)).all()
        renderer = messages.Renderer(session, rows)
        built = [(m.recipient, m.data) for m in map(renderer.render, rows)]
        session.rollback()
    return built


@dataclass
class Run:
    """One ``newsletters worker --once``: its figures and what it said."""

    seconds: float
    sink: dict
    report: str
    signups: float | None = None  # seconds its report gives for processing signups
    mails: float | None = None  # ... and for delivering mail

    @property
    def rate(self) -> float:
        return rate(self.sink)


def rate(stats: dict) -> float:
    return (stats["count"] - 1) / stats["span"] if stats["span"] else 0.0


def run_worker(url: str, sink: Sink, profile_to: Path | None = None) -> Run:
    """Run one ``newsletters worker --once`` against the sink; return its figures."""
    [run] = run_workers(url, sink, 1, profile_to)
    return run


def run_workers(url: str, sink: Sink, n: int, profile_to: Path | None = None) -> list[Run]:
    """Run ``n`` ``newsletters worker --once`` side by side; return each one's figures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")}
    env |= {
        "NEWSLETTERS_DATABASE_URL": url,
        "NEWSLETTERS_MAIL_URL": sink.url,
        "NEWSLETTERS_SECRET_KEY": SECRET_KEY,
        "NEWSLETTERS_BASE_URL": BASE_URL,
        "NEWSLETTERS_MAIL_FROM": MAIL_FROM,
    }
    command = [str(SCRIPT), "worker", "--once"]
    if profile_to:
        command = [sys.executable, "-m", "pyinstrument", "-o", str(profile_to), *command]
    sink.reset()
    # Their logs (a line per mail) go to files, as to a log collector: a pipe read by this
    # process would wake it for every line, on the cores the workers and the sink share.
    runs = []
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile("w+")) for _ in range(n)]
        began = time.perf_counter()
        processes = [
            subprocess.Popen(command, env=env, stdout=log, stderr=log, text=True, cwd=ROOT)
            for log in logs
        ]
        for process, log in zip(processes, logs, strict=True):
            process.wait()
            seconds = time.perf_counter() - began
            log.seek(0)
            output = log.read()
            if process.returncode != 0:
                raise RuntimeError(f"worker failed ({process.returncode}):\n{output[-3000:]}")
            run = Run(seconds, {}, output)
            if found := re.search(r"signups: (\d+) requests processed in ([\d.]+) s", output):
                run.signups = float(found.group(2))
            if found := re.search(r"outbox: (\d+) mails handled in ([\d.]+) s", output):
                run.mails = float(found.group(2))
            runs.append(run)
    stats = sink.stats()
    for run in runs:
        run.sink = stats
    return runs


def run_baseline(sink: Sink, built: list[tuple[str, bytes]]) -> dict:
    """Send ``built`` with raw smtplib over one connection: the ceiling of the sink and wire."""
    sink.reset()
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=30) as connection:
        for recipient, content in built:
            connection.sendmail(MAIL_FROM, [recipient], content)
    return sink.stats()


# --- one database ------------------------------------------------------------------------


@dataclass
class Figures:
    label: str
    version: str
    mails: int
    product: list[Run] = field(default_factory=list)
    baseline: list[dict] = field(default_factory=list)
    signups: list[Run] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    four: float | None = None  # seconds 4 workers side by side took to process N signups
    profile: str | None = None


def measure(label: str, url: str, profile: Profile, sink: Sink, profile_to: Path | None):
    app = make_app(url)
    newsletter_id = prepare_database(app)
    figures = Figures(label, database_version(app), profile.mails)
    n = profile.mails
    for round_ in range(profile.signup_rounds):
        accept_signups(app, newsletter_id, n, f"r{round_}")
        figures.loads.append(os.getloadavg()[0])
        run = run_worker(url, sink)
        check(app, run.sink, n, (round_ + 1) * n)
        figures.signups.append(run)
        say(
            f"{label}: {n} signups processed in {run.signups:.2f} s, then mailed "
            f"({run.rate:.0f} mails/s); whole run {run.seconds:.2f} s"
        )
    # Four workers side by side on the same number of new requests: how processing scales.
    accept_signups(app, newsletter_id, n, "four")
    figures.loads.append(os.getloadavg()[0])
    runs = run_workers(url, sink, 4)
    check(app, runs[0].sink, n, (profile.signup_rounds + 1) * n)
    figures.four = max(run.signups or 0.0 for run in runs)
    say(f"{label}: {n} signups processed by 4 workers in {figures.four:.2f} s")
    # The mail rounds send the mails of the first signup round again; the rest stay sent.
    built = prebuilt_messages(app, n)
    total = (profile.signup_rounds + 1) * n
    for round_ in range(profile.rounds):
        order = ("product", "baseline") if round_ % 2 == 0 else ("baseline", "product")
        for which in order:
            figures.loads.append(os.getloadavg()[0])
            if which == "product":
                requeue_mails(app, n)
                run = run_worker(url, sink)
                check(app, run.sink, n, total)
                figures.product.append(run)
                say(f"{label}: product {run.rate:.0f} mails/s ({run.seconds:.2f} s whole)")
            else:
                stats = run_baseline(sink, built)
                figures.baseline.append(stats)
                say(f"{label}: smtplib {rate(stats):.0f} mails/s")
    if profile_to:
        requeue_mails(app, n)
        run_worker(url, sink, profile_to)
        figures.profile = str(profile_to)
        say(f"{label}: profile of one more product round in {profile_to}")
    with app.app_context():
        from newsletters import db

        db.engine().dispose()
    return figures


def check(app, stats: dict, sent: int, in_outbox: int) -> None:
    """Stop the run unless the sink got ``sent`` distinct mails and the outbox is all sent."""
    counts = outbox_counts(app)
    if stats["count"] != sent or stats["distinct"] != sent or counts != {"sent": in_outbox}:
        raise RuntimeError(f"expected {sent} distinct mails: sink {stats}, outbox {counts}")


def database_version(app) -> str:
    from newsletters import db

    with app.app_context():
        engine = db.engine()
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                return "SQLite " + connection.exec_driver_sql("select sqlite_version()").scalar()
            return (
                connection.exec_driver_sql("show server_version").scalar().join(["PostgreSQL ", ""])
            )


def pg_admin() -> sa.Engine:
    return sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")


def pg_recreate(create: bool) -> None:
    engine = pg_admin()
    with engine.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
        if create:
            connection.exec_driver_sql(f'CREATE DATABASE "{PG_DATABASE}"')
    engine.dispose()


# --- the report --------------------------------------------------------------------------


def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def report(results: list[Figures], profile: Profile) -> str:
    lines = [
        SECTION,
        "",
        f"`bench/worker.py{' --quick' if profile is QUICK else ''}`, "
        f"{datetime.now(UTC):%Y-%m-%d}, code at `{revision()}`; {machine()}; {versions()}. "
        f"{profile.mails:,} confirmation mails per round; an aiosmtpd sink in a process of its "
        "own on 127.0.0.1, which both the product and the baseline send to; mails/s counted at "
        f"the sink from its first mail to its last. {profile.rounds} rounds of the product "
        "(`newsletters worker --once`, its mails put back to pending before each) interleaved "
        "with the baseline (raw `smtplib` sending the same mails, prebuilt, over one "
        "connection); medians. Signups: N requests of new addresses stored (the row "
        "`processing.accept` writes), then one `newsletters worker --once` processes them and "
        "sends their mails, its report giving each part's time; then N more, processed by "
        "four `newsletters worker --once` side by side.",
        "",
        "| database | product mails/s | smtplib mails/s | product / smtplib | worker --once, "
        "whole process | signups processed /s | processing | mail part | signups/s, 4 workers "
        "| load avg (1 min) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for f in results:
        product = median(r.rate for r in f.product)
        baseline = median(rate(s) for s in f.baseline)
        signup_seconds = median(r.signups for r in f.signups)
        mail_seconds = median(r.mails for r in f.signups)
        lines.append(
            f"| {f.label} | {product:,.0f} | {baseline:,.0f} | {product / baseline:.2f} | "
            f"{median(r.seconds for r in f.product):.2f} s | {f.mails / signup_seconds:,.0f} | "
            f"{signup_seconds:.2f} s | {mail_seconds:.2f} s | {f.mails / f.four:,.0f} | "
            f"{min(f.loads):.1f} – {max(f.loads):.1f} |"
        )
    lines += [
        "",
        "- Every round checks that the sink got N distinct Message-IDs and that the outbox "
        "holds only sent mails.",
        "- *worker --once, whole process*: the mail round's process from start to exit "
        "(Python and app start-up, the claims, rendering, sending, marking).",
        "- *processing* / *mail part*: of the signup round's worker, as its report gives "
        "them: turning N requests into subscriptions, tokens, consent events and outbox rows "
        "(batches of SIGNUP_BATCH, a commit each), then delivering those N mails. "
        "*4 workers*: N over the longest processing part of the four (they start together).",
        "",
        "<details><summary>Every round</summary>",
        "",
        "| database | round | product mails/s | smtplib mails/s | signups/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for f in results:
        for i in range(max(len(f.product), len(f.signups))):
            product = f"{f.product[i].rate:,.0f}" if i < len(f.product) else ""
            baseline = f"{rate(f.baseline[i]):,.0f}" if i < len(f.baseline) else ""
            signups = f"{f.mails / f.signups[i].signups:,.0f}" if i < len(f.signups) else ""
            lines.append(f"| {f.label} | {i + 1} | {product} | {baseline} | {signups} |")
    lines += ["", "</details>", "", *HISTORY, ""]
    return "\n".join(lines)


# What each change of issue 9 bought, measured while it was made: on this script's SQLite
# unless said otherwise, at 1,000–5,000 mails, on 2 cores other programs shared (load 1–3), so
# read the steps' direction and size, not their digits. Kept here: a run rewrites the section.
HISTORY = [
    "### What each change bought (issue 9)",
    "",
    "Measured with this script and profilers (pyinstrument, py-spy, cProfile) while the "
    "changes were made, on the same shared 2 cores (load 1–3 besides): the steps' direction "
    "and size hold, their digits move from run to run.",
    "",
    "| step | measured |",
    "|---|---|",
    "| before: one row per claim, three transactions and one `EmailMessage` per mail | "
    "35 mails/s against smtplib's 425–788 (2,000 mails). Delivery's time: rendering 29 % "
    "(header parsing by the email package, two lazy loads a mail), commits 24 %, SMTP 20 %, "
    "claims 13 %, per-mail lookups of newsletters and suppressions 12 % |",
    "| batches: one claim statement (`UPDATE … RETURNING`), the batch's tokens, newsletters "
    "and suppressions read at once, sent and failed marked per batch | 179 mails/s against "
    "1,145 (0.16): now building each `EmailMessage` and flattening it is 65 % of the time |",
    "| one prototype per set of newsletters, each mail its bytes with its own link, To, Date "
    "and Message-ID put in (byte-identical to a mail built alone: tests/mail/test_rendering.py) "
    "| 514–655 against 869–896 (≈0.65) |",
    "| prototypes kept for the round, MAIL_FROM parsed once, Date formatted once a second | "
    "rendering 77 → 21 µs a mail |",
    "| plain rows instead of ORM objects for the claim, only the columns used | PostgreSQL, "
    "claim of 100: ≈135 → 85 µs a row |",
    "| claim in the order of the (state, next_attempt_at) index (no tie-break on id) | "
    "PostgreSQL, 100 of 3,000 due: 10 ms → 2.3 ms in the server (it sorted every due row) |",
    "| SQLite: the claim's UPDATE by id alone | its plan: `SEARCH … USING INTEGER PRIMARY "
    "KEY` instead of scanning every pending row of the index |",
    "| statements built once; on PostgreSQL id lists bound as one array (`= ANY`) | a query of "
    "100 ids 6.3 → 2.8 ms; claim and reads 160 → 100 µs a mail (SQLite) |",
    "| MAIL and RCPT without smtplib's address re-parsing for plain addresses | −20 µs of "
    "CPU a mail |",
    "| batches of up to 400 (from 100) | PostgreSQL, the batch's statements per mail: "
    "315 µs (batches of 100) → 178 µs (300) |",
    "| tried and dropped: claiming the next batch in a second thread while one is sent | "
    "+100–150 µs of CPU a mail (GIL hand-overs, a session per batch), no gain that showed "
    "through the noise on 2 shared cores |",
    "| after | SQLite 0.86, PostgreSQL 0.80 of smtplib (5,000 mails). Delivery's time: SMTP "
    "69–70 %, rendering 9–11 %, claim and reads 8–13 %, the report line 4–5 %, recording "
    "2–3 %. The aiosmtpd sink itself takes ≈1.1 ms of CPU a mail, more than either client: "
    "on 2 shared cores the clients' CPU is what the ratio measures |",
]


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


def versions() -> str:
    names = ("flask", "sqlalchemy", "psycopg", "jinja2", "aiosmtpd")
    return f"Python {platform.python_version()}, " + ", ".join(
        f"{name} {version(name)}" for name in names
    )


def revision() -> str:
    def git(*args):
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=ROOT, check=False
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


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


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--mails", type=int, help="mails (and signups) per round")
    parser.add_argument("--quick", action="store_true", help="fewer mails and rounds")
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--no-write", action="store_true", help="leave RESULTS.md as it is")
    parser.add_argument("--profile", action="store_true", help="one more round, profiled")
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        serve_sink(args.sink)
        return
    profile = QUICK if args.quick else FULL
    if args.mails:
        profile = Profile(args.mails, profile.rounds, profile.signup_rounds)
    sink = Sink()
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-worker-") as folder:
            folder = Path(folder)
            if args.only in (None, "sqlite"):
                profile_to = folder / "sqlite-profile.txt" if args.profile else None
                results.append(
                    measure("SQLite", f"sqlite:///{folder / 'bench.db'}", profile, sink, profile_to)
                )
                keep_profile(profile_to)
            if args.only in (None, "postgresql"):
                pg_recreate(create=True)
                try:
                    profile_to = folder / "postgresql-profile.txt" if args.profile else None
                    url = f"{PG_SERVER}/{PG_DATABASE}"
                    results.append(measure("PostgreSQL", url, profile, sink, profile_to))
                    keep_profile(profile_to)
                finally:
                    pg_recreate(create=False)
    finally:
        sink.close()
    section = report(results, profile)
    if not args.no_write:
        write_section(section)
    print(section)


def keep_profile(path: Path | None) -> None:
    """Copy a profile out of the temporary folder, and print where it went."""
    if path and path.exists():
        kept = Path(tempfile.gettempdir()) / f"bench-worker-{path.name}"
        kept.write_text(path.read_text())
        say(f"profile kept in {kept}")


if __name__ == "__main__":
    main()
