"""Time `newsletters import` against raw batched inserts of the same rows, on SQLite and PostgreSQL.

Run from the repository's root:

    .venv/bin/python bench/import.py [--rows 100000] [--quick] [--only sqlite|postgresql]

It writes a CSV of ``--rows`` rows in the export's format (70% confirmed, 20% pending, 10%
unsubscribed, with evidence; one row in ten an address already on the list, about one in
fifty invalid or a repeat of an earlier row) and a CSV of its first 10k rows. Then, on SQLite
(a file in a temporary folder) and on PostgreSQL (its own database ``bench_import`` at
127.0.0.1:5432, user postgres, created for each turn and dropped at the end;
NEWSLETTERS_BENCH_ADMIN_URL names another server), it runs turns of

- the product: ``newsletters import bench FILE``, the console script's own entry point,
- the baseline: the same file read with ``csv`` and its rows to be taken written as raw
  subscriber + subscription rows, ``executemany`` in batches of 10k, on a connection of the
  product's own engine (``newsletters.db.create_engine``: the same PRAGMAs on SQLite),

each a child process under GNU time (wall time, peak RSS), on a fresh database holding the
list's existing 10%. Each child also times itself from after its imports, so that Python's
start-up does not count against the import. The product also imports the 10k file (peak RSS:
memory stays flat), and once with ``--send-confirmation``. ``--quick``: 20k rows, 2 turns.

The figures replace the section "## Import at the database's speed" of bench/RESULTS.md.
"""

import argparse
import csv
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Import at the database's speed"
ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
TIME = "/usr/bin/time"  # GNU time (Debian package time)
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "bench_import"
KEY = "bench-import-key"
BASE_URL = "https://news.example.org"
SMALL = 10_000
BATCH = 10_000
EPOCH = datetime(2023, 1, 1, tzinfo=UTC)
COLUMNS = (
    "email,name,status,optin_at,optin_ip,confirmed_at,confirm_ip,unsubscribed_at,source,"
    "unsubscribe_url"
)
PROVIDERS = ("gmail.com", "outlook.com", "yahoo.com", "icloud.com", "ukr.net", "gmx.de")


# The list, row by row: what each row holds is a function of its number, so that the
# database's state before a turn and the baseline's choice of rows need no shared state.


def kind_of(n: int) -> str:
    """Return what row ``n`` is: new, listed (already on the list), invalid or repeated."""
    if n % 100 == 37:
        return "invalid"
    if n % 100 == 71 and n >= 100:
        return "repeated"
    return "listed" if n % 10 == 3 else "new"


def email_of(n: int) -> str:
    if kind_of(n) == "repeated":
        # Of a row a few batches back, or of one in the same batch.
        return email_of(n - 7_000 if n >= 7_000 and n % 200 == 71 else n - 50)
    domain = PROVIDERS[n % 6] if n % 5 < 2 else f"mail{n % 3001}.example.org"
    return f"reader.{n}@{domain}"


def row_of(n: int) -> list[str]:
    """Return row ``n`` of the CSV, as the export writes one."""
    optin = EPOCH + timedelta(seconds=37 * n)
    status = ("confirmed", "pending", "unsubscribed")[0 if n % 10 < 7 else 1 if n % 10 < 9 else 2]
    confirmed = "" if status == "pending" else _iso(optin + timedelta(minutes=7))
    left = _iso(optin + timedelta(days=30)) if status == "unsubscribed" else ""
    ip = f"198.51.{n % 200}.{n % 250}" if n % 2 else f"2001:db8:{n % 9973:x}::{n % 65521:x}"
    name = "" if n % 9 == 0 else f"O'Neil {n}" if n % 13 == 0 else f"Réader {n}"
    if n % 997 == 0:
        name = "'=not a formula"
    email = email_of(n)
    optin_text = _iso(optin)
    if kind_of(n) == "invalid":
        if n % 300 == 37:
            email = email.replace("@", " at ")
        elif n % 300 == 137:
            optin_text = "yesterday"
        else:
            ip = "300.1.2.3"
    source = ("form", "embed", "api", "import:legacy-list")[n % 4]
    return [
        email,
        name,
        status,
        optin_text,
        ip,
        confirmed,
        "203.0.113.9" if confirmed else "",
        left,
        source,
        f"https://old.example.org/unsubscribe/{n:x}",
    ]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(COLUMNS + "\r\n")
        writer = csv.writer(out)
        for n in range(rows):
            writer.writerow(row_of(n))


def expected(rows: int) -> dict:
    kinds = [kind_of(n) for n in range(rows)]
    return {k: kinds.count(k) for k in ("new", "listed", "invalid", "repeated")}


# The database before each turn: migrated, the newsletter, and the rows already listed.


def product_env(url: str) -> dict:
    return os.environ | {
        "NEWSLETTERS_DATABASE_URL": url,
        "NEWSLETTERS_SECRET_KEY": KEY,
        "NEWSLETTERS_BASE_URL": BASE_URL,
        "NEWSLETTERS_DEMO_NEWSLETTER": "false",
    }


def migrate_and_fill(url: str, rows: int) -> None:
    """Migrate the database at ``url``; add the newsletter and the addresses already listed."""
    import sqlalchemy as sa

    from newsletters import create_app, db, tokens
    from newsletters.migrations import upgrade

    app = create_app({"DATABASE_URL": url, "SECRET_KEY": KEY, "DEMO_NEWSLETTER": False})
    with app.app_context():
        upgrade()
        engine = db.engine()
        listed = [n for n in range(rows) if kind_of(n) == "listed"]
        now = datetime(2024, 1, 1)
        key_id = tokens.key_id(KEY)
        sqlite = url.startswith("sqlite")
        # As the product's time type stores them: text on SQLite.
        stamp = (
            (lambda moment: moment.isoformat(" ", "microseconds"))
            if sqlite
            else (lambda moment: moment)
        )
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO newsletter (id, slug, name, description, is_public,"
                    " allowed_origins, created_at) VALUES (1, 'bench', 'Bench', '', true, '', :at)"
                ),
                {"at": stamp(now)},
            )
            place = "?" if sqlite else "%s"
            connection.exec_driver_sql(
                f"INSERT INTO subscriber (id, email, created_at, mails_in_window)"
                f" VALUES ({place}, {place}, {place}, 0)",
                [(i + 1, email_of(n), stamp(now)) for i, n in enumerate(listed)],
            )
            connection.exec_driver_sql(
                "INSERT INTO token (id, purpose, subscriber_id, salt, key_id, digest, created_at)"
                f" VALUES ({', '.join([place] * 7)})",
                [
                    (
                        i + 1,
                        "unsubscribe",
                        i + 1,
                        f"{n:032x}",
                        key_id,
                        tokens.digest_of(tokens.mac(KEY.encode(), "unsubscribe", f"{n:032x}")),
                        stamp(now),
                    )
                    for i, n in enumerate(listed)
                ],
            )
            connection.exec_driver_sql(
                "INSERT INTO subscription (id, newsletter_id, subscriber_id, status, source,"
                " optin_at, unsubscribe_token_id, created_at)"
                f" VALUES ({', '.join([place] * 8)})",
                [
                    (i + 1, 1, i + 1, "confirmed", "form", stamp(now), i + 1, stamp(now))
                    for i, n in enumerate(listed)
                ],
            )
            if not sqlite:
                for table in ("newsletter", "subscriber", "token", "subscription"):
                    connection.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                        f" (SELECT max(id) FROM {table}))"
                    )
        # Closing the last connection checkpoints the WAL into the file, which is copied.
        engine.dispose()
    if not url.startswith("sqlite"):
        import psycopg

        with psycopg.connect(_libpq(url), autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE")  # as autovacuum leaves tables after a load


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def fresh_postgresql(admin_url: str, rows: int) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {BENCH_DB}")
    url = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    url = f"{url}/{BENCH_DB}"
    migrate_and_fill(url, rows)
    return url


def drop_postgresql(admin_url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


# The children: each times its own work from after its imports and writes it to a file.


def child_product(result: Path, arguments: list[str]) -> None:
    """Run the console script ``newsletters`` (its entry point) with ``arguments``.

    The time counts from the start of ``imports.import_csv`` to the command's end (the rows
    checked and written, the commit, the report printed), not the app's start-up before it.
    """
    from newsletters import imports
    from newsletters.cli import main

    began = {}
    import_csv = imports.import_csv

    def timed(*args, **kwargs):
        began["import"] = time.perf_counter()
        return import_csv(*args, **kwargs)

    imports.import_csv = timed
    sys.argv = ["newsletters", *arguments]
    began["main"] = time.perf_counter()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    end = time.perf_counter()
    result.write_text(
        json.dumps(
            {
                "seconds": end - began["import"],
                "code": code,
            }
        )
    )


def child_baseline(result: Path, url: str, path: Path) -> None:
    """Insert the rows the import would take as raw subscriber + subscription rows."""
    from newsletters.db import create_engine

    engine = create_engine(url)
    sqlite = url.startswith("sqlite")
    began = time.perf_counter()  # from the connection's opening to the commit
    connection = engine.raw_connection()
    cursor = connection.cursor()
    if sqlite:
        cursor.execute("BEGIN IMMEDIATE")  # the product's engine, without SQLAlchemy's begin
    place = "?" if sqlite else "%s"
    cursor.execute("SELECT coalesce(max(id), 0) FROM subscriber")
    next_id = cursor.fetchone()[0] + 1
    now = datetime.now(UTC).replace(tzinfo=None)
    stamp = (
        (lambda text: text and text.replace("T", " ").replace("Z", ".000000"))
        if sqlite
        else (lambda text: text or None)
    )
    created = now.isoformat(" ", "microseconds") if sqlite else now
    subscribers, subscriptions, taken = [], [], 0
    insert_subscribers = (
        f"INSERT INTO subscriber (id, email, created_at, mails_in_window)"
        f" VALUES ({place}, {place}, {place}, 0)"
    )
    insert_subscriptions = (
        "INSERT INTO subscription (newsletter_id, subscriber_id, status, name, source, optin_at,"
        " optin_ip, confirmed_at, confirm_ip, unsubscribed_at, created_at)"
        f" VALUES (1, {', '.join([place] * 10)})"
    )
    with path.open(encoding="utf-8", newline="") as source:
        reader = csv.reader(source)
        next(reader)
        for n, cells in enumerate(reader):
            if kind_of(n) != "new":
                continue
            subscribers.append((next_id, cells[0].lower(), created))
            subscriptions.append(
                (next_id, cells[2], cells[1] or None, cells[8], stamp(cells[3]),
                 cells[4] or None, stamp(cells[5]), cells[6] or None, stamp(cells[7]), created)
            )  # fmt: skip
            next_id += 1
            if len(subscribers) == BATCH:
                cursor.executemany(insert_subscribers, subscribers)
                cursor.executemany(insert_subscriptions, subscriptions)
                taken += len(subscribers)
                subscribers, subscriptions = [], []
    if subscribers:
        cursor.executemany(insert_subscribers, subscribers)
        cursor.executemany(insert_subscriptions, subscriptions)
        taken += len(subscribers)
    if sqlite:
        cursor.execute("COMMIT")
    else:
        connection.commit()
    connection.close()
    result.write_text(json.dumps({"seconds": time.perf_counter() - began, "taken": taken}))


def run_child(arguments: list[str], folder: Path, env: dict | None = None) -> dict:
    """Run this script as a child under GNU time; return its figures, wall time and peak RSS."""
    result, rss, output = folder / "child.json", folder / "child.rss", folder / "child.out"
    result.unlink(missing_ok=True)
    began = time.perf_counter()
    with output.open("wb") as out:
        child = subprocess.run(
            [TIME, "-f", "%M", "-o", str(rss), str(PYTHON), __file__, "--child", str(result),
             *arguments],
            stdout=out, stderr=subprocess.PIPE, env=env, cwd=ROOT,
        )  # fmt: skip
    wall = time.perf_counter() - began
    if child.returncode != 0 or not result.exists():
        raise RuntimeError(f"{arguments} failed: {child.stderr.decode(errors='replace')[-2000:]}")
    figures = json.loads(result.read_text())
    figures.update(wall=wall, rss=int(rss.read_text().split()[-1]) / 1024, out=output.read_text())
    return figures


# The turns.


def fresh(kind: str, folder: Path, template: Path | None, rows: int, admin_url: str) -> str:
    if kind == "sqlite":
        target = folder / "bench.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        shutil.copy(template, target)
        return f"sqlite:///{target}"
    return fresh_postgresql(admin_url, rows)


def check_report(output: str, rows: int) -> None:
    counts = expected(rows)
    want = (
        f"taken {counts['new']}, already on the list {counts['listed']}, "
        f"refused {counts['invalid'] + counts['repeated']}"
    )
    if not output.startswith(want):
        raise AssertionError(f"the import reported {output!r}, expected {want!r}")


def measure(kind: str, files: dict, folder: Path, repeats: int, admin_url: str) -> dict:
    rows, path = files["big"]
    templates = {}
    if kind == "sqlite":
        for label, (n, _) in files.items():
            templates[label] = folder / f"template-{label}.db"
            migrate_and_fill(f"sqlite:///{templates[label]}", n)
    figures = {"product": [], "baseline": [], "small": [], "confirm": [], "load": []}
    for turn in range(repeats):
        order = ["product", "baseline"] if turn % 2 == 0 else ["baseline", "product"]
        for label in order:
            url = fresh(kind, folder, templates.get("big"), rows, admin_url)
            figures["load"].append(os.getloadavg()[0])
            if label == "product":
                run = run_child(["import", "bench", str(path)], folder, product_env(url))
                check_report(run["out"], rows)
            else:
                run = run_child(["--baseline", url, str(path)], folder)
                assert run["taken"] == expected(rows)["new"], run
            figures[label].append(run)
            print(
                f"  {kind} {label}: {rows / run['seconds']:,.0f} rows/s "
                f"({run['seconds']:.2f} s, wall {run['wall']:.2f} s, {run['rss']:.0f} MiB)",
                file=sys.stderr,
            )
    small_rows, small_path = files["small"]
    for _ in range(2 if repeats > 2 else 1):
        url = fresh(kind, folder, templates.get("small"), small_rows, admin_url)
        run = run_child(["import", "bench", str(small_path)], folder, product_env(url))
        check_report(run["out"], small_rows)
        figures["small"].append(run)
    url = fresh(kind, folder, templates.get("big"), rows, admin_url)
    run = run_child(["import", "bench", str(path), "--send-confirmation"], folder, product_env(url))
    check_report(run["out"], rows)
    figures["confirm"].append(run)
    print(f"  {kind} --send-confirmation: {rows / run['seconds']:,.0f} rows/s", file=sys.stderr)
    if kind != "sqlite":
        drop_postgresql(admin_url)
    return figures


def machine() -> str:
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model or platform.processor()}, {os.cpu_count()} CPUs, {platform.platform()}"


def versions(admin_url: str | None) -> str:
    import psycopg
    import sqlalchemy

    found = [
        f"Python {platform.python_version()}",
        f"SQLAlchemy {sqlalchemy.__version__}",
        f"psycopg {psycopg.__version__}",
        f"SQLite {sqlite3.sqlite_version}",
    ]
    if admin_url:
        with psycopg.connect(admin_url) as connection:
            version = connection.execute("SHOW server_version").fetchone()[0]
        found.append(f"PostgreSQL {version.split()[0]}")
    return ", ".join(found)


def git_revision() -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return head + ("+changes" if dirty else "")


def report(results: dict, rows: int, args, machine_text: str, found: str) -> str:
    counts = expected(rows)
    lines = [
        SECTION,
        "",
        f"`bench/import.py --rows {rows}{' --quick' if args.quick else ''}`, "
        f"{datetime.now(UTC):%Y-%m-%d}, code at `{git_revision()}`; {machine_text}; {found}.",
        "",
        f"A CSV of {rows:,} rows in the export's format ({counts['new']:,} new, "
        f"{counts['listed']:,} already on the list, {counts['invalid']:,} invalid, "
        f"{counts['repeated']:,} repeating an earlier row's address; 70% confirmed, 20% "
        "pending, 10% unsubscribed, each with its evidence), imported with `newsletters import "
        "bench FILE` in turns with the baseline: the same file read with `csv` and the rows to "
        "be taken written as raw subscriber + subscription rows (`executemany`, batches of "
        "10k, one transaction, on a connection of the product's own engine, so SQLite's "
        "PRAGMAs are the product's). Each turn starts from a fresh database holding the "
        "addresses already listed. Each is a child process. rows/s is the file's rows over the "
        "time of the import itself: for the product from the start of `import_csv` to the "
        "command's end (rows checked and written, the commit, the report printed), for the "
        "baseline from opening its connection to its commit; the app's start-up before it "
        "(Python's imports, `create_app`) is in the wall column, shown apart. Medians of the "
        "turns, ratios of medians. Peak RSS from GNU time.",
        "",
        "| database | turns | product rows/s (range) | baseline rows/s (range) | ratio "
        f"| product wall s (start-up s) | product peak RSS, 10k rows | … {rows // 1000}k rows "
        "| with `--send-confirmation` | load avg (1 min) |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for kind, r in results.items():
        product = [rows / run["seconds"] for run in r["product"]]
        baseline = [rows / run["seconds"] for run in r["baseline"]]
        confirm = rows / r["confirm"][0]["seconds"]
        lines.append(
            f"| {kind} | {len(product)} | {statistics.median(product):,.0f} "
            f"({min(product):,.0f}–{max(product):,.0f}) | {statistics.median(baseline):,.0f} "
            f"({min(baseline):,.0f}–{max(baseline):,.0f}) "
            f"| {statistics.median(product) / statistics.median(baseline):.2f} "
            f"| {statistics.median(run['wall'] for run in r['product']):.1f} "
            f"({statistics.median(run['wall'] - run['seconds'] for run in r['product']):.1f}) "
            f"| {max(run['rss'] for run in r['small']):.0f} MiB "
            f"| {max(run['rss'] for run in r['product']):.0f} MiB "
            f"| {confirm:,.0f} rows/s "
            f"| {min(r['load']):.1f}–{max(r['load']):.1f} |"
        )
    lines += ["", *NOTES, ""]
    return "\n".join(lines)


NOTES = [
    "What each change bought, measured back to back on this machine on 2026-12-01 (the "
    "list above at 20k rows; `import_csv` and the commit in one process, a fresh database "
    "each run; medians of 3 runs in alternating order, so comparable with each other, not "
    "with the table above):",
    "",
    "| step | SQLite rows/s | PostgreSQL rows/s | what the profile (pyinstrument) showed |",
    "|---|---:|---:|---|",
    "| before: ORM objects per subscriber and token, multi-row INSERTs of 500 rows "
    "| 1,470 | 1,060 | 78% in `_insert`: the ORM flush of subscribers and tokens, and "
    "INSERT … RETURNING of subscriptions row by row on SQLite; 21% in `validate_email` "
    "and `ipaddress` |",
    "| a staging table (COPY on PostgreSQL, one executemany on SQLite) and one "
    "INSERT … SELECT per table, 5,000 rows a batch; addresses by `addresses.normalise` "
    "| 7,230 | 3,950 | PostgreSQL: the joins of the main statement planned as a hash of "
    "the whole `subscriber` table for every batch (the statistics do not know the rows "
    "the import is adding): a scan per batch, quadratic in the list |",
    "| lookups as scalar subqueries: one index probe a row whatever the statistics "
    "| (same) | 4,910 | the row checks: 60% of the time (`ipaddress`, formatting each "
    "time twice, the source label's character check) |",
    "| row checks: times in the export's form rearranged as text, addresses already in "
    "canonical form kept (checked by `inet_pton`/`inet_ntop` and a strict IPv4 pattern), "
    "source labels cached | 11,220 | 5,750 | SQLite: half in the row checks (the "
    "unsubscribe token's HMAC and digest about 5 µs, the address 2 µs), half in SQLite; "
    "PostgreSQL: 80% in the server, of that ~40% in the five foreign-key triggers a row "
    "sets off (subscription → newsletter, subscriber, token; token → subscriber; "
    "consent event → subscription), then the ten indexes of `subscription` |",
    "",
    "Other work shares the machine (the load average column): compare the figures of one "
    "run with each other rather than across runs. The raw baseline here is several times "
    "below what the same code reaches on an idle machine; the ratio is the figure to carry "
    "over.",
]


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


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        result, rest = Path(sys.argv[2]), sys.argv[3:]
        if rest[0] == "--baseline":
            child_baseline(result, rest[1], Path(rest[2]))
        else:
            child_product(result, rest)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="rows of the CSV (default 100,000)")
    parser.add_argument("--quick", action="store_true", help="20k rows, 2 turns")
    parser.add_argument("--repeats", type=int, help="turns of product and baseline")
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument("--no-write", action="store_true", help="leave RESULTS.md alone")
    args = parser.parse_args()
    rows = args.rows or (20_000 if args.quick else 100_000)
    repeats = args.repeats or (2 if args.quick else 5)
    admin_url = os.environ.get("NEWSLETTERS_BENCH_ADMIN_URL", ADMIN_URL)
    results = {}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        files = {"big": (rows, folder / "list.csv"), "small": (SMALL, folder / "small.csv")}
        for n, path in files.values():
            write_csv(path, n)
        if args.only != "postgresql":
            results["SQLite"] = measure("sqlite", files, folder, repeats, admin_url)
        if args.only != "sqlite":
            try:
                results["PostgreSQL"] = measure("postgresql", files, folder, repeats, admin_url)
            finally:
                drop_postgresql(admin_url)
    found = versions(admin_url if "PostgreSQL" in results else None)
    section = report(results, rows, args, machine(), found)
    section += f"\nWhole run: {(time.perf_counter() - began) / 60:.1f} minutes.\n"
    if not args.no_write:
        write_section(section)
    print(section)


if __name__ == "__main__":
    main()
