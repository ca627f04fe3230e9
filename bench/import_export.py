"""Import 100,000 generated rows from a CSV, export them again, and measure both.

Run from the repository's root:

    .venv/bin/python bench/import_export.py

It runs on SQLite in a temporary folder and, when NEWSLETTERS_BENCH_DATABASE_URL is set (a
PostgreSQL URL), there too; it adds its own newsletters and subscribers there and removes them
afterwards. It reports rows per second of the import (the CLI's path: file, import_csv, one
commit) and of the CSV export, and the peak memory (tracemalloc) of exporting a list of 10k and
of 100k rows: the export streams, so the ratio must stay near 1. The figures replace the
section "## Import and export at 100k rows" of bench/RESULTS.md.
"""

import io
import os
import platform
import resource
import secrets
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from newsletters import create_app, db, exports, imports
from newsletters.migrations import upgrade
from newsletters.models import Newsletter, Subscriber

ROWS = 100_000
SMALL = 10_000
RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Import and export at 100k rows"


def write_csv(path: Path, rows: int, domain: str) -> None:
    """Write ``rows`` subscribers in the export's format, with evidence, names and statuses."""
    start = datetime(2023, 1, 1, tzinfo=UTC)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(exports.COLUMNS) + "\r\n")
        for n in range(rows):
            optin = start + timedelta(minutes=n)
            kind = n % 10
            status = "pending" if kind < 2 else "unsubscribed" if kind == 2 else "confirmed"
            confirmed = "" if status == "pending" else _iso(optin + timedelta(minutes=7))
            left = _iso(optin + timedelta(days=30)) if status == "unsubscribed" else ""
            name = "'=not a formula" if n % 997 == 0 else f"Réader {n}"
            out.write(
                f"reader{n}@{domain},{name},{status},{_iso(optin)},198.51.100.{n % 250},"
                f"{confirmed},2001:db8::{n % 65536:x},{left},form,\r\n"
            )


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def add_newsletter(slug: str) -> Newsletter:
    session = db.session()
    newsletter = Newsletter(slug=slug, name=slug)
    session.add(newsletter)
    session.commit()
    return newsletter


def run_import(newsletter: Newsletter, path: Path) -> tuple[float, imports.ImportReport]:
    """Import ``path`` as ``newsletters import`` does; return the seconds and the report."""
    session = db.session()
    began = time.perf_counter()
    with path.open("rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        report = imports.import_csv(session, newsletter, text)
        session.commit()
    return time.perf_counter() - began, report


def run_export(newsletter: Newsletter, path: Path) -> tuple[float, int]:
    """Export every row of ``newsletter`` as CSV into ``path``; return the seconds and rows."""
    session = db.session()
    began = time.perf_counter()
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        for chunk in exports.csv_chunks(exports.records(session, newsletter, "all")):
            out.write(chunk)
    session.commit()
    with path.open("rb") as written:
        rows = sum(1 for _ in written) - 1
    return time.perf_counter() - began, rows


def analyse() -> None:
    """Update the planner's statistics of the tables an export reads, as autovacuum would."""
    session = db.session()
    for table in ("subscription", "subscriber", "token"):
        session.execute(sa.text(f"ANALYZE {table}"))
    session.commit()


def traced_peak(action) -> float:
    """Return the peak memory (MiB) that ``action`` allocated beyond what was there before."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        action()
        return (tracemalloc.get_traced_memory()[1] - before) / 2**20
    finally:
        tracemalloc.stop()


def measure(label: str, url: str, folder: Path) -> dict:
    """Run the whole measurement on the database at ``url``; return its figures."""
    run = secrets.token_hex(3)
    domain = f"run{run}.example.com"
    app = create_app(
        {"DATABASE_URL": url, "SECRET_KEY": "bench", "BASE_URL": "https://news.example.org"}
    )
    big, small = folder / "big.csv", folder / "small.csv"
    fresh_small, fresh_big = folder / "fresh-small.csv", folder / "fresh-big.csv"
    write_csv(big, ROWS, domain)
    write_csv(small, SMALL, domain)
    write_csv(fresh_small, SMALL, "small." + domain)
    write_csv(fresh_big, ROWS, "big." + domain)
    figures = {"database": label}
    with app.app_context():
        upgrade()
        try:
            big_list = add_newsletter(f"bench-{run}-big")
            seconds, report = run_import(big_list, big)
            assert report.taken == ROWS and not report.refused, report.refused[:3]
            figures["import_s"] = seconds
            seconds, rows = run_export(big_list, folder / "out-big.csv")
            assert rows == ROWS, rows
            figures["export_s"] = seconds
            # Right after the import the planner's statistics do not know the new rows yet
            # (autovacuum has not run): measure again once they do.
            analyse()
            figures["export_analysed_s"], _ = run_export(big_list, folder / "out-big.csv")
            # A list of 10k of the same subscribers, to export beside the list of 100k.
            small_list = add_newsletter(f"bench-{run}-small")
            run_import(small_list, small)
            db.session().expire_all()
            figures["export_peak_small"] = traced_peak(
                lambda: run_export(small_list, folder / "out-small.csv")
            )
            figures["export_peak_big"] = traced_peak(
                lambda: run_export(big_list, folder / "out-big.csv")
            )
            # New addresses, as in the first import; traced, so slower than the timed run.
            fresh_list = add_newsletter(f"bench-{run}-fresh-small")
            figures["import_peak_small"] = traced_peak(lambda: run_import(fresh_list, fresh_small))
            fresh_list = add_newsletter(f"bench-{run}-fresh-big")
            figures["import_peak_big"] = traced_peak(lambda: run_import(fresh_list, fresh_big))
        finally:
            _clean_up(run, domain)
        db.engine().dispose()
    return figures


def _clean_up(run: str, domain: str) -> None:
    session = db.session()
    session.rollback()
    session.execute(sa.delete(Newsletter).where(Newsletter.slug.like(f"bench-{run}-%")))
    session.execute(sa.delete(Subscriber).where(Subscriber.email.like(f"%{domain}")))
    session.commit()


def report(results: list[dict]) -> str:
    """Return the RESULTS.md section for ``results``."""
    lines = [
        SECTION,
        "",
        f"`bench/import_export.py`, {datetime.now(UTC):%Y-%m-%d}: Python "
        f"{platform.python_version()}, SQLAlchemy {sa.__version__}, {os.cpu_count()} CPUs, "
        f"{ROWS:,} generated rows (70% confirmed, 20% pending, 10% unsubscribed, all with "
        "evidence). The import runs the CLI's path (file → `import_csv` → one commit); the "
        "export writes CSV to a file. Peak memory is what tracemalloc saw allocated on top "
        "of the state before each step.",
        "",
        "| database | import 100k | import rows/s | export 100k | export rows/s "
        "| export 100k after ANALYZE | export peak, 10k list | export peak, 100k list "
        "| ratio 100k/10k | import peak, 10k rows | import peak, 100k rows |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['database']} | {r['import_s']:.1f} s | {ROWS / r['import_s']:,.0f} "
            f"| {r['export_s']:.1f} s | {ROWS / r['export_s']:,.0f} "
            f"| {r['export_analysed_s']:.1f} s "
            f"| {r['export_peak_small']:.1f} MiB | {r['export_peak_big']:.1f} MiB "
            f"| {r['export_peak_big'] / r['export_peak_small']:.2f} "
            f"| {r['import_peak_small']:.1f} MiB | {r['import_peak_big']:.1f} MiB |"
        )
    lines += [
        "",
        f"Process peak RSS over the whole run: {_max_rss_mib():.0f} MiB; load average "
        f"{os.getloadavg()[0]:.1f} at the end (other work shares the machine: compare the "
        "figures of one run with each other rather than across runs).",
        "",
        "- The export's memory is flat: its peak does not grow with the list.",
        "- The import's peak grows with the file, by about 150 bytes a row: it keeps every "
        "address it has read, to refuse a second row of the same address, and the report's "
        "list of rows not taken. Its batches (500 rows: two indexed lookups, then bulk "
        "INSERTs) keep the rest flat.",
        "- PostgreSQL: an export of every status (`--status all`) just after a big import "
        "is slow until the statistics know the new rows: each batch of the keyset query "
        "(`newsletter_id = ? AND id > ? ORDER BY id LIMIT 1000`) then joins and sorts all "
        "the rest of the list, as no index covers (newsletter_id, id). The column after "
        "ANALYZE shows the same export once autovacuum has caught up.",
        "",
    ]
    return "\n".join(lines)


def _max_rss_mib() -> float:
    # Linux reports kilobytes, macOS bytes.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def write_section(section: str) -> None:
    """Replace this benchmark's section of RESULTS.md, leaving the others as they are."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmarks\n"
    start = text.find(SECTION)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        rest = "" if end == -1 else text[end + 1 :]
        text = text[:start] + section + ("\n" + rest if rest else "")
    RESULTS.write_text(text, encoding="utf-8")


def main() -> None:
    results = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        targets = [("SQLite", f"sqlite:///{folder / 'bench.db'}")]
        if url := os.environ.get("NEWSLETTERS_BENCH_DATABASE_URL"):
            targets.append(("PostgreSQL", url))
        for label, url in targets:
            print(f"{label}: importing and exporting {ROWS:,} rows …", file=sys.stderr)
            results.append(measure(label, url, folder))
            print(results[-1], file=sys.stderr)
    section = report(results)
    write_section(section)
    print(section)


if __name__ == "__main__":
    main()
