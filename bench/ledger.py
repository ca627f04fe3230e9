"""Measure what the consent ledger costs signup processing, and how fast it is checked.

Run from the repository's root (PostgreSQL at 127.0.0.1:5432, user postgres):

    .venv/bin/python bench/ledger.py                  # 20,000 signups, 3 rounds a database
    .venv/bin/python bench/ledger.py --quick          # 4,000 signups, 2 rounds
    .venv/bin/python bench/ledger.py --only sqlite --no-write

For each database (a SQLite file in a temporary folder; the PostgreSQL database
``bench_ledger``, created for the run and dropped after it) it migrates, adds a newsletter
and then, each round: stores N signup requests of new addresses (the row the request
writes), processes them in batches as the worker does, and times the whole and the part
spent in ``ledger.record`` (hashing, the chain heads, the form text, the rows' INSERT). The
baseline is the same processing in the same round without that part: the ratio says what
the ledger costs. Then ``ledger.verify`` walks the whole ledger (rows checked a second), and
one address is erased among them all (``erasure.erase``, milliseconds). Medians; the
figures replace the section "## Consent ledger: its cost" of bench/RESULTS.md.
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, write_section  # noqa: E402

from newsletters import create_app, db, erasure, ledger, migrations  # noqa: E402
from newsletters.models import ConsentEvent, Newsletter  # noqa: E402
from newsletters.subscriptions import processing  # noqa: E402

SECTION = "## Consent ledger: its cost"
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
PG_DATABASE = "bench_ledger"
EVIDENCE = ledger.Evidence(
    ip="203.0.113.9",
    user_agent="Mozilla/5.0 (X11; Linux x86_64) bench",
    source="embed",
    form_text="Morning Briefing: Enter your email to subscribe [Subscribe]",
    origin="https://www.example.com",
)


def run_database(url: str, signups: int, rounds: int) -> dict:
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench-ledger", "DEMO_NEWSLETTER": False})
    figures = {"rate": [], "ledger_share": [], "load": []}
    with app.app_context():
        migrations.upgrade()
        session = db.session()
        newsletter = Newsletter(slug="bench", name="Morning Briefing")
        session.add(newsletter)
        session.commit()
        spent = [0.0]
        real = ledger.record

        def timed(*args, **kwargs):
            began = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - began

        ledger.record = timed
        try:
            for round_ in range(rounds):
                for i in range(signups):
                    email = f"r{round_}.{i}@bench.example.com"
                    request = processing.Request.of([newsletter.id], email, None, EVIDENCE)
                    processing.accept(session, request)
                session.commit()
                spent[0] = 0.0
                began = time.perf_counter()
                while processing.process_due(session):
                    session.commit()
                elapsed = time.perf_counter() - began
                figures["rate"].append(signups / elapsed)
                figures["ledger_share"].append(spent[0] / elapsed)
                figures["load"].append(os.getloadavg()[0])
                print(
                    f"  round {round_ + 1}: {signups / elapsed:,.0f} signups/s, "
                    f"ledger.record {spent[0] / elapsed:.0%} of it",
                    file=sys.stderr,
                )
        finally:
            ledger.record = real
        rows = session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))
        began = time.perf_counter()
        checked, breaks = ledger.verify(session)
        figures["verify"] = checked / (time.perf_counter() - began)
        assert not breaks and checked == rows, (checked, rows, breaks[:3])
        began = time.perf_counter()
        erasure.erase(session, "r0.7@bench.example.com", EVIDENCE, "bench")
        session.commit()
        figures["erase_ms"] = (time.perf_counter() - began) * 1000
        figures["rows"] = rows
        db.engine().dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--signups", type=int)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    signups = args.signups or (4_000 if args.quick else 20_000)
    rounds = 2 if args.quick else 3
    results = {}
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as folder:
            print("SQLite", file=sys.stderr)
            results["SQLite"] = run_database(f"sqlite:///{folder}/ledger.db", signups, rounds)
    if args.only != "sqlite":
        server = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
        with server.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DATABASE}")
            connection.exec_driver_sql(f"CREATE DATABASE {PG_DATABASE}")
        try:
            print("PostgreSQL", file=sys.stderr)
            results["PostgreSQL"] = run_database(f"{PG_SERVER}/{PG_DATABASE}", signups, rounds)
        finally:
            with server.connect() as connection:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DATABASE}")
            server.dispose()
    section = report(results, signups, rounds, " ".join(sys.argv[1:]))
    print(section)
    if not args.no_write:
        write_section(SECTION, section)


def report(results: dict, signups: int, rounds: int, options: str) -> str:
    lines = [
        SECTION,
        "",
        f"`{' '.join(['bench/ledger.py', options]).strip()}`, {datetime.now(UTC):%Y-%m-%d}, "
        f"{machine()}, Python {platform.python_version()}, "
        f"SQLAlchemy {sa.__version__}. {rounds} rounds a database of {signups:,} signup "
        "requests of new addresses, processed in the worker's batches; the part spent in "
        "`ledger.record` timed inside each round, so the baseline (processing without it) "
        "comes from the same round. Medians.",
        "",
        "| database | signups processed /s | `ledger.record`'s share | without it /s | ratio "
        "with / without | `consent verify`, rows/s | erase one address among them | ledger "
        "rows | load avg (1 min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, f in results.items():
        rate = statistics.median(f["rate"])
        share = statistics.median(f["ledger_share"])
        lines.append(
            f"| {name} | {rate:,.0f} | {share:.0%} | {rate / (1 - share):,.0f} | "
            f"{1 - share:.2f} | {f['verify']:,.0f} | {f['erase_ms']:.0f} ms | {f['rows']:,} | "
            f"{min(f['load']):.1f} – {max(f['load']):.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
