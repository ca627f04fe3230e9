"""Time the editors' subscriber list and dashboard at 1,000,000 subscriptions of one newsletter.

    .venv/bin/python bench/admin_list.py [--rows 1000000] [--keep]

Runs on a fresh SQLite file, and on PostgreSQL too when NEWSLETTERS_BENCH_DATABASE_URL is set.
That database's schema is dropped and rebuilt: give the bench a database of its own (it refuses
one that holds any newsletter but its own). Each figure is set beside a baseline measured in
the same run on the same data: a count of the newsletter's rows, and the same deep page taken
with OFFSET. The figures and query plans go to bench/RESULTS.md, under their own heading.
"""

import argparse
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from newsletters import create_app, db, editors, stats
from newsletters.migrations import upgrade
from newsletters.models import Newsletter, Source, Status, Subscriber, Subscription
from newsletters.subscribers import PAGE_SIZE, list_page

HEADING = "## Subscriber list at 1M rows"
RESULTS = Path(__file__).with_name("RESULTS.md")
BATCH = 10_000
SLUG = "bench"
FIRST = ["anna", "ben", "carla", "dev", "emma", "felix", "gina", "hugo", "ines", "jan"]
LAST = ["smith", "jones", "garcia", "muller", "rossi", "dubois", "novak", "silva"]
DOMAINS = ["example.com", "example.org", "mail.example.net", "post.example.de"]
# Indexes the dashboard's date ranges could use; the bench adds them after the main timings.
CANDIDATE_INDEXES = {
    "ix_subscription_optin_at": ("newsletter_id", "optin_at", "confirmed_at"),
    "ix_subscription_confirmed_at": ("newsletter_id", "confirmed_at"),
    "ix_subscription_unsubscribed_at": ("newsletter_id", "unsubscribed_at"),
}
# Shares of the statuses among the rows, as on a list some years old.
STATUS_WEIGHTS = ((Status.CONFIRMED, 60), (Status.PENDING, 25), (Status.UNSUBSCRIBED, 15))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the SQLite file")
    args = parser.parse_args()
    sections = []
    with tempfile.TemporaryDirectory(prefix="newsletters-bench-") as tmp:
        path = Path(tmp) / "bench.db"
        sections.append(run(f"sqlite:///{path}", args.rows))
        if args.keep:
            kept = Path(tempfile.gettempdir()) / "newsletters-bench.db"
            path.replace(kept)
            print(f"kept {kept}")
    postgres = os.environ.get("NEWSLETTERS_BENCH_DATABASE_URL")
    if postgres:
        sections.append(run(postgres, args.rows))
    else:
        print("PostgreSQL skipped: NEWSLETTERS_BENCH_DATABASE_URL is not set")
    write_results(args.rows, sections)


def run(url: str, rows: int) -> str:
    """Fill a fresh database at ``url`` with ``rows`` subscriptions, time the queries."""
    backend = sa.make_url(url).get_backend_name()
    if backend == "postgresql":
        reset_postgres(url)
    app = create_app(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "bench",
            "BASE_URL": "http://bench.invalid",
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": False,
            "DEMO_NEWSLETTER": False,
        }
    )
    with app.app_context():
        upgrade()
        started = time.perf_counter()
        fill(db.session(), rows)
        filled = time.perf_counter() - started
        print(f"{backend}: {rows:,} subscriptions in {filled:.1f} s")
        if backend == "postgresql":
            # What autovacuum would soon do after such a load: statistics and visibility map.
            with db.engine().connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.exec_driver_sql("VACUUM ANALYZE")
        load = os.getloadavg()[0]
        timings = measure(app, rows)
        load = max(load, os.getloadavg()[0])
        version = db.session().scalar(
            sa.text("SELECT sqlite_version()" if backend == "sqlite" else "SHOW server_version")
        )
        db.session().close()
        db.engine().dispose()
    return render(backend, version, rows, filled, timings, load)


def reset_postgres(url: str) -> None:
    """Empty the bench's PostgreSQL database, unless it holds newsletters of someone else."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        if sa.inspect(connection).has_table("newsletter"):
            others = connection.scalar(
                sa.text("SELECT count(*) FROM newsletter WHERE slug <> :slug"), {"slug": SLUG}
            )
            if others:
                sys.exit(f"{url}: holds other newsletters; give the bench a database of its own")
        connection.execute(sa.text("DROP SCHEMA public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


def fill(session, rows: int) -> None:
    """Insert one newsletter with ``rows`` subscribers, each subscribed to it, in batches."""
    newsletter = Newsletter(slug=SLUG, name="Bench Weekly")
    session.add(newsletter)
    editors.create(session, "bench@example.org", "bench password", is_admin=True)
    session.commit()
    rng = random.Random(20261124)
    now = datetime.now(UTC)
    statuses = [s for s, weight in STATUS_WEIGHTS for _ in range(weight)]
    for start in range(1, rows + 1, BATCH):
        people, subscriptions = [], []
        for n in range(start, min(start + BATCH, rows + 1)):
            email = f"{rng.choice(FIRST)}.{rng.choice(LAST)}{n}@{rng.choice(DOMAINS)}"
            optin = now - timedelta(seconds=rng.randrange(3 * 365 * 86400))
            status = rng.choice(statuses)
            confirmed = optin + timedelta(minutes=rng.randrange(1, 600))
            people.append({"id": n, "email": email, "created_at": optin})
            subscriptions.append(
                {
                    "id": n,
                    "newsletter_id": newsletter.id,
                    "subscriber_id": n,
                    "status": status,
                    "source": Source.FORM,
                    "optin_at": optin,
                    "optin_ip": f"198.51.{n % 256}.{n // 256 % 256}",
                    "optin_user_agent": "Mozilla/5.0 (bench)",
                    "confirmed_at": None if status == Status.PENDING else confirmed,
                    "unsubscribed_at": (
                        confirmed + timedelta(days=rng.randrange(1, 300))
                        if status == Status.UNSUBSCRIBED
                        else None
                    ),
                    "created_at": optin,
                    "address_flags": _flags(n),
                }
            )
        session.execute(sa.insert(Subscriber), people)
        # render_nulls: rows whose NULL columns differ still go in one batch, not one by one.
        session.execute(sa.insert(Subscription).execution_options(render_nulls=True), subscriptions)
        session.commit()
    if session.get_bind().dialect.name == "postgresql":
        # The ids were given explicitly; move the sequences past them for later inserts.
        for table in ("subscriber", "subscription"):
            session.execute(
                sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {rows})")
            )
        session.commit()


def _flags(n: int) -> str | None:
    """Return the address flags of row ``n``: a few common, one rare, one on no row at all."""
    if n % 33 == 0:
        return "disposable"  # 3 % of the rows
    if n % 97 == 0:
        return "role"
    if n % 50_000 == 7:
        return "typo"  # 20 rows in 1,000,000
    return None


def measure(app, rows: int) -> list[tuple[str, list[float], str]]:
    """Time each case; return its name, its durations in ms and the plan of its query."""
    session = db.session()
    newsletter = session.scalar(sa.select(Newsletter).where(Newsletter.slug == SLUG))
    near_end = 3 * PAGE_SIZE + 1
    someone = session.scalar(
        sa.select(Subscriber.email).where(Subscriber.id == rows // 2)
    ).partition("@")[0]
    offset_page = (
        sa.select(Subscription)
        .join(Subscription.subscriber)
        .where(Subscription.newsletter_id == newsletter.id)
        .order_by(Subscription.id.desc())
        .limit(PAGE_SIZE + 1)
        .offset(rows - near_end + 1)
    )
    cases = {
        "baseline: count(*) of the newsletter's rows": lambda: session.scalar(
            sa.select(sa.func.count())
            .select_from(Subscription)
            .where(Subscription.newsletter_id == newsletter.id)
        ),
        "baseline: deep page by OFFSET (same rows as the keyset deep page)": lambda: (
            session.scalars(offset_page).all()
        ),
        "first page": lambda: list_page(session, newsletter),
        "deep page (after= an id near the end)": lambda: list_page(
            session, newsletter, after=near_end
        ),
        "status=unsubscribed, first page": lambda: list_page(
            session, newsletter, status="unsubscribed"
        ),
        "status=unsubscribed, deep page": lambda: list_page(
            session, newsletter, status="unsubscribed", after=near_end
        ),
        f"prefix search q={someone!r} (one match)": lambda: list_page(
            session, newsletter, prefix=someone
        ),
        "prefix search q='carla.novak5' (~1,400 match, most among older rows)": lambda: list_page(
            session, newsletter, prefix="carla.novak5"
        ),
        "prefix search q='anna.' (1 in 10 rows match)": lambda: list_page(
            session, newsletter, prefix="anna."
        ),
        "flag=disposable (3 % of rows)": lambda: list_page(session, newsletter, flag="disposable"),
        "flag=typo (20 rows), first page": lambda: list_page(session, newsletter, flag="typo"),
        "flag=unchecked (no row)": lambda: list_page(session, newsletter, flag="unchecked"),
    }
    pages = {
        "whole page: subscribers, first page (HTTP)": f"/admin/n/{SLUG}/subscribers",
        "whole page: subscribers, deep page (HTTP)": (
            f"/admin/n/{SLUG}/subscribers?after={near_end}"
        ),
    }
    results = time_queries(session, cases) + time_pages(app, session, pages)
    results += time_dashboard(app, session, newsletter, "")
    # Not in the schema: what the dashboard would gain from them, measured on the same data.
    for name, columns in CANDIDATE_INDEXES.items():
        sa.Index(name, *(Subscription.__table__.c[c] for c in columns)).create(session.connection())
    session.commit()
    return results + time_dashboard(app, session, newsletter, " + candidate date indexes")


def time_dashboard(app, session, newsletter, label):
    """Time the dashboard's queries and its whole page."""
    days = stats.period()
    cases = {
        "dashboard: counts per status": lambda: stats.counts(session, newsletter),
        "dashboard: per-day series, 90 days": lambda: stats.daily(session, newsletter, days),
        "dashboard: confirmation rate, 90 days": lambda: stats.confirmation_rate(
            session, newsletter, days
        ),
    }
    page = {"whole page: dashboard (HTTP)": f"/admin/n/{SLUG}/"}
    results = time_queries(session, cases) + time_pages(app, session, page)
    return [(name + label, durations, how) for name, durations, how in results]


def time_queries(session, cases):
    """Time each case and take the plan of its last statement."""
    results = []
    for name, case in cases.items():
        with captured(db.engine()) as statements:
            case()
        session.rollback()  # short transactions: SQLite's BEGIN IMMEDIATE takes the write lock
        durations = timed(case, session)
        results.append((name, durations, plan(session, statements[-1])))
        print(f"  {name}: median {statistics.median(durations):.2f} ms")
    return results


def time_pages(app, session, pages):
    """Time whole pages through the test client, logged in as the bench's admin."""
    client = app.test_client()
    client.post("/admin/login", data={"email": "bench@example.org", "password": "bench password"})
    results = []
    for name, path in pages.items():

        def get(path=path):
            response = client.get(path)
            assert response.status_code == 200, response.status_code

        durations = timed(get, session)
        results.append((name, durations, ""))
        print(f"  {name}: median {statistics.median(durations):.2f} ms")
    return results


def timed(case, session, budget: float = 3.0, most: int = 25) -> list[float]:
    """Run ``case`` once to warm up, then up to ``most`` times within ``budget`` seconds."""
    case()
    session.rollback()
    durations = []
    deadline = time.perf_counter() + budget
    while len(durations) < 3 or (len(durations) < most and time.perf_counter() < deadline):
        started = time.perf_counter()
        case()
        durations.append((time.perf_counter() - started) * 1000)
        session.rollback()
    return durations


@contextmanager
def captured(engine):
    """Collect the SQL statements and parameters that ``engine`` runs meanwhile."""
    statements = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", keep)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", keep)


def plan(session, statement) -> str:
    """Return the database's plan for a captured statement, on one line."""
    sql, parameters = statement
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters).all()
        text = "; ".join(row[-1] for row in rows)
    else:
        rows = connection.exec_driver_sql(f"EXPLAIN (COSTS OFF) {sql}", parameters).all()
        text = "; ".join(re.sub(r"\s+", " ", row[0].replace("->", "")).strip() for row in rows)
    session.rollback()
    return text


def render(backend, version, rows, filled, timings, load) -> str:
    """Return the Markdown of one backend's figures."""
    lines = [
        f"### {'SQLite' if backend == 'sqlite' else 'PostgreSQL'} {version}",
        "",
        f"{rows:,} subscriptions (and subscribers) inserted in {filled:.0f} s, "
        f"in batches of {BATCH:,}. One-minute load average while timing: up to {load:.1f} "
        "(other programs shared the machine; medians resist that better than maxima).",
        "",
        "| case | median ms | max ms | runs | plan |",
        "|---|---:|---:|---:|---|",
    ]
    for name, durations, how in timings:
        how = how.replace("|", "\\|")
        lines.append(
            f"| {name} | {statistics.median(durations):.2f} | {max(durations):.2f} "
            f"| {len(durations)} | {f'`{how}`' if how else ''} |"
        )
    return "\n".join(lines)


def write_results(rows: int, sections: list[str]) -> None:
    """Put this bench's section into RESULTS.md, replacing only its own earlier one."""
    body = "\n".join(
        [
            HEADING,
            "",
            f"`bench/admin_list.py`, {datetime.now(UTC):%Y-%m-%d}, {rows:,} rows, "
            f"Python {platform.python_version()} on {platform.machine()} "
            f"({os.cpu_count()} CPUs). Keyset pages (`ORDER BY id DESC`, `after=<id>`, "
            f"{PAGE_SIZE} a page) against two baselines from the same run. SQLite without "
            "ANALYZE, as the app leaves it; PostgreSQL after VACUUM ANALYZE, as autovacuum "
            "leaves it. Whole pages go through the Flask test client, templates included.",
            "",
            "\n\n".join(sections),
            "",
        ]
    )
    text = RESULTS.read_text() if RESULTS.exists() else "# Bench results\n"
    start = text.find(HEADING + "\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        following = text.find("\n## ", start + len(HEADING))
        text = text[:start] + body + ("" if following == -1 else text[following:])
    RESULTS.write_text(text)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
