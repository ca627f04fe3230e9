"""Measure what issue 13 costs a form's page view and a signup: counting views, the bot defence.

Run from the repository's root:

    .venv/bin/python bench/form_views.py            # 10 rounds of 1,000 requests (about 10 min)
    .venv/bin/python bench/form_views.py --quick    # 2 rounds of 500
    .venv/bin/python bench/form_views.py --before REV --no-write --no-profile

Every variant runs in a process of its own, the variants in turns (another first each
round), several rounds; each figure is the median of its rounds, and each ratio is against a
baseline of the same run: of the requests a second over the whole loop, and (in brackets) of
the fastest block of 50 requests in each process, which the other programs sharing the
machine disturb less (timeit's rule).
Each process builds the app on a fresh database (SQLite file in a temporary folder), adds one
newsletter and sends requests through Flask's test client (in process: no server, so what
differs is the product's own code) with a Chrome User-Agent. Rate limits are off
(RATELIMIT_ENABLED False), as in bench/signup_request.py.

1. Page views (SQLite): GET of the hosted page ``/n/bench`` and of the iframe page
   ``/n/bench/embed?page=…`` (50 embedding pages), requests a second, on three variants:
   ``before`` (``--before``, default 472f3f9, the commit before issue 13, checked out into a
   temporary git worktree), ``now`` (this tree, COUNT_FLUSH_SECONDS 10, the default) and
   ``now, counting off`` (this tree with ``newsletters.counters.view`` patched to a no-op in
   the process). "This tree" is a copy of the working tree made at the start (tracked,
   changed and new files), since others edit and commit in it while the bench runs.
   now / before is the whole cost of issue 13 on a view; now / counting off is the count's
   alone. The widget's challenge (``GET /n/bench/challenge?form=widget``, which
   counts the widget's views) is timed on the two now-variants too (before has no such
   route). Then the flush: one ``Tally.flush`` of 150 distinct keys (50 pages x 3 forms) and
   of one key, timed on its own (the first one inserts the day's rows, the next ones update
   them, as every later flush of the day does).
2. The same view count on PostgreSQL, if it answers at 127.0.0.1:5432 (user postgres): now
   vs counting off, and the flush. In a database of its own, ``bench_form_views``, created
   and dropped through the ``postgres`` database for each process (dropped first if a killed
   run left it); no other database is touched.
3. Signup posts (SQLite, SIGNUP_PROCESSING "worker": one INSERT of the signup request, as in
   production; no worker runs): ``before`` with the plain form's post (the address alone),
   ``now`` with the same plain post (no challenge: unverified), and ``now`` with what the
   hosted page's form posts once its script solved the challenge: ``lang``, the empty
   honeypot, ``form``, ``page``, ``rendered`` and ``altcha`` (a challenge fetched from
   ``GET /n/bench/challenge?form=hosted`` and solved with ``altcha.solve_challenge_v1`` for
   each request, all before the timing; FORM_MIN_FILL_SECONDS 0 and POW_MIN_NUMBER =
   POW_MAX_NUMBER = 1000 so that preparing is quick: verifying costs one hash whatever the
   range). The before tree has no challenge: its baseline is the plain post. Addresses at
   50 domains, which the warm-up's posts cover (issue 12's typo check caches per domain).

Last, unless ``--no-profile``, pyinstrument (install it into .venv; it is not a dependency)
profiles this tree's hosted page GET and its solved-signup POST; the shares of the parts
named in the section come from the profile's call tree, the trees themselves are printed
(and kept in a temporary folder, whose path is printed).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, write_section  # noqa: E402

TITLE = "## Issue 13: what counting views and the bot defence cost"
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/"
PG_DATABASE = "bench_form_views"
RATIO_HEAD = (
    "| page | now / before: the whole of issue 13 | counting off / before "
    "| now / counting off: the count |\n|---|---|---|---|"
)
FLUSH_HEAD = (
    "| database | first flush of the day, 150 keys (50 pages × 3 forms), ms "
    "| next ones, 150 keys: median (fastest), ms | first, 1 key, ms "
    "| next ones, 1 key: median (fastest), ms |\n|---|---|---|---|---|"
)

CHILD = r"""
import base64, json, os, statistics, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
task = json.loads(sys.argv[2])
mode, n = task["mode"], task["n"]
if task.get("counting_off"):
    import newsletters.counters
    newsletters.counters.view = lambda *args, **kwargs: None
from newsletters import create_app, db, migrations
from newsletters.models import Newsletter

url = task.get("database") or (
    f"sqlite:///{tempfile.mkdtemp(prefix='bench-form-views-')}/b.db"
)
app = create_app({
    "DATABASE_URL": url, "SECRET_KEY": "bench", "RATELIMIT_ENABLED": False,
    "SIGNUP_PROCESSING": "worker", "COUNT_FLUSH_SECONDS": 10.0,
    "FORM_MIN_FILL_SECONDS": 0, "POW_MIN_NUMBER": 1000, "POW_MAX_NUMBER": 1000,
})
with app.app_context():
    migrations.upgrade()
    newsletter = Newsletter(slug="bench", name="Bench")
    db.session().add(newsletter)
    db.session().commit()
    newsletter_id = newsletter.id
client = app.test_client()
CHROME = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
headers = {"User-Agent": CHROME, "Accept-Language": "en-GB,en;q=0.9"}
tally = app.extensions.get("newsletters.counts")  # None before issue 13
BLOCK = 50
out = {}


def profiled(name, run):
    # pyinstrument over ``run``; the call tree as text, and the share of each part named.
    from pyinstrument import Profiler
    profiler = Profiler(interval=0.001)
    profiler.start()
    run()
    session = profiler.stop()
    root = session.root_frame()
    # Each part: a path of (file, function) matchers, outer to inner (function None: any).
    parts = {
        "counters.view": [("counters.py", "view")],
        "counters.flush": [("counters.py", "flush")],
        "attribution": [("attribution.py", None)],
        "form_guard": [("entry.py", "form_guard")],
        "form_guard url_for": [("entry.py", "form_guard"), ("helpers.py", "url_for")],
        "proof.rendered": [("proof.py", "rendered")],
        "render_template": [("templating.py", "render_template")],
        "proof.judge": [("proof.py", "judge")],
        "altcha verify": [("altcha/v1.py", "verify_solution")],
        "proof.spend": [("proof.py", "spend")],
        # The session's first statement takes its connection and BEGIN IMMEDIATE.
        "spend connection": [("proof.py", "spend"), ("session.py", "_connection_for_bind")],
        "check_signup": [("services.py", "check_signup")],
        "services.signup": [("services.py", "signup")],
        "session.commit": [("session.py", "commit")],
        "refuse_undecodable_form": [("negotiation.py", "refuse_undecodable_form")],
        "signup_payload": [("entry.py", "signup_payload")],
        "evidence": [("entry.py", "evidence")],
    }

    def spent(frame, matchers):
        where, function = matchers[0]
        if where in (frame.file_path or "") and function in (None, frame.function):
            if len(matchers) == 1:
                return frame.time
            return sum(spent(child, matchers[1:]) for child in frame.children)
        return sum(spent(child, matchers) for child in frame.children)

    shares = {part: spent(root, matchers) / root.time for part, matchers in parts.items()}
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    return {"total_s": root.time, "shares": shares, "text": text}


def timed(label, send, prepare=lambda i: None):
    # Warm up (caches, the first connection, the catalogue), then time ``n`` requests.
    for i in range(100):
        send(*prepare(-1 - i) or ())
    written = tally.written if tally else None
    if task.get("profile"):
        out[label] = profiled(label, lambda: [send(*prepare(i) or ()) for i in range(n)])
        return
    started = time.perf_counter()
    blocks = []
    for i in range(n):
        if i % BLOCK == 0:
            blocks.append(time.perf_counter())
        send(*prepare(i) or ())
    ended = time.perf_counter()
    out[label] = n / (ended - started)
    # The fastest block of BLOCK requests (timeit's rule: the least disturbed by the other
    # programs sharing the machine).
    blocks.append(ended)
    out[label + ":best"] = BLOCK / min(b - a for a, b in zip(blocks, blocks[1:]))
    if tally is not None:
        out[label + ":flushed"] = tally.written != written


def get(path, status=200):
    response = client.get(path, headers=headers)
    assert response.status_code == status, (path, response.status_code)
    response.close()


if mode == "views":
    pages = task.get("pages", ["hosted", "iframe", "widget"])
    if "hosted" in pages:
        timed("hosted", lambda: get("/n/bench"))
    if "iframe" in pages:
        timed("iframe", lambda i: get(
            f"/n/bench/embed?page=https%3A%2F%2Fblog.example.com%2Fpost-{i % 50}"),
            prepare=lambda i: (i,))
    if "widget" in pages and "subscriptions.challenge" in app.view_functions:
        timed("widget", lambda i: get(
            "/n/bench/challenge?form=widget"
            f"&page=https%3A%2F%2Fblog.example.com%2Fpost-{i % 50}"),
            prepare=lambda i: (i,))

elif mode in ("plain", "solved"):
    import altcha
    prepared = {}
    if mode == "solved":
        # One solved challenge a request, warm-up included, fetched and solved beforehand.
        for i in range(-100, n):
            answer = client.get("/n/bench/challenge?form=hosted", headers=headers).get_json()
            c = answer["challenge"]
            solution = altcha.solve_challenge_v1(c["challenge"], c["salt"],
                                                 max_number=c["maxNumber"])
            payload = {k: c[k] for k in ("algorithm", "challenge", "salt", "signature")}
            payload["number"] = solution.number
            prepared[i] = {
                "lang": "en", "website": "", "form": "hosted",
                "page": "http://127.0.0.1:5000/n/bench",
                "rendered": answer["rendered"],
                "altcha": base64.b64encode(json.dumps(payload).encode()).decode(),
            }

    def post(i):
        data = {"email": f"r{i}@d{i % 50}.example.com", **prepared.get(i, {})}
        response = client.post("/n/bench/subscribe", data=data, headers=headers)
        assert response.status_code == 303, response.status_code
        response.close()

    timed(mode, post, prepare=lambda i: (i,))
    if mode == "solved" and not task.get("profile"):
        import sqlalchemy as sa
        with app.app_context():
            session = db.session()
            out["spent"] = session.scalar(sa.text("SELECT count(*) FROM spent_challenge"))
            out["proved"] = session.scalar(sa.text(
                "SELECT count(*) FROM signup_request WHERE verification = 'proof'"))

elif mode == "flush":
    import sqlalchemy as sa
    from newsletters.counters import VIEW, today
    day = today()
    many = [(day, newsletter_id, VIEW, form, f"https://blog.example.com/post-{p}")
            for form in ("hosted", "iframe", "widget") for p in range(50)]
    one = [(day, newsletter_id, VIEW, "hosted", "http://127.0.0.1:5000/n/bench")]
    expected = 0

    def flush(keys):
        global expected
        for j, key in enumerate(keys):
            tally.counts[key] += 1 + j % 7
            expected += 1 + j % 7
        started = time.perf_counter()
        tally.flush()
        elapsed = (time.perf_counter() - started) * 1000
        assert not tally.counts
        return elapsed

    out["first_150_ms"] = flush(many)
    out["first_1_ms"] = flush(one)
    for name, keys in (("150", many), ("1", one)):
        found = [flush(keys) for _ in range(n)]
        out[f"next_{name}_ms"] = statistics.median(found)
        out[f"fastest_{name}_ms"] = min(found)
    with app.app_context():
        written = db.session().scalar(sa.text("SELECT sum(count) FROM daily_count"))
    assert written == expected, (written, expected)
    # One view's count alone, as a page calls it (in a request), microseconds a call.
    from newsletters import counters
    with app.test_request_context("/n/bench"):
        calls = 20 * n * 1000
        started = time.perf_counter()
        for _ in range(calls):
            counters.view([newsletter_id], "hosted", "http://127.0.0.1:5000/n/bench")
        out["view_us"] = (time.perf_counter() - started) / calls * 1e6

print(json.dumps(out))
"""


def run(tree: Path, task: dict) -> dict:
    """Run the child on the product of ``tree`` with ``task``; return its JSON line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree), json.dumps(task)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,
    )
    if out.returncode:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"the {task['mode']} process on {tree} failed ({out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def postgres(statement: str | None = None) -> bool:
    """Run ``statement`` in the ``postgres`` database (autocommit); tell whether it answered."""
    try:
        import psycopg
    except ImportError:
        return False
    try:
        with psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=3
        ) as connection:
            if statement:
                connection.execute(statement)
    except psycopg.OperationalError:
        return False
    return True


def fresh_pg_database() -> str:
    """(Re)create ``bench_form_views``; return its URL."""
    postgres(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
    postgres(f"CREATE DATABASE {PG_DATABASE}")
    return POSTGRES + PG_DATABASE


def snapshot(into: Path) -> str:
    """Copy this tree as it is now (uncommitted and new files too) into ``into``; describe it.

    Others edit and commit in this tree while the bench runs: every "now" process runs the
    same copy, made at the start.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
        cwd=ROOT,
    ).stdout.decode()
    names = [name for name in listed.split("\0") if name]
    # The compiled catalogues are git-ignored build output; copied, not compiled again.
    names += [str(mo.relative_to(ROOT)) for mo in (ROOT / "newsletters").rglob("*.mo")]
    for name in names:
        source = ROOT / name
        if source.is_file():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], check=True, capture_output=True, cwd=ROOT
    ).stdout.decode()
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", "newsletters", "templates", "static"],
        check=True,
        capture_output=True,
        cwd=ROOT,
    ).stdout.decode()
    changes = len(changed.splitlines())
    return f"{head.strip()}" + (
        f" with {changes} uncommitted or new files of the product" if changes else ""
    )


def rotated(variants: list, r: int) -> list:
    """Return ``variants`` starting at the ``r``-th: each round another one goes first."""
    r %= len(variants)
    return variants[r:] + variants[:r]


def median(found: list) -> float:
    return statistics.median(found)


def each(found: list) -> str:
    return " · ".join(f"{s:,.0f}" for s in found)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--before", default="472f3f9")
    args = parser.parse_args(argv)
    argv_text = " ".join(argv if argv is not None else sys.argv[1:])
    rounds, n, flushes = (2, 500, 10) if args.quick else (10, 1000, 30)
    with_pg = not args.no_postgres and postgres()
    load: list[float] = []
    views = {name: {} for name in ("before", "off", "now")}
    pg_views = {name: {} for name in ("off", "now")}
    posts = {name: [] for name in ("before", "plain", "solved")}
    posts |= {name + ":best": [] for name in ("before", "plain", "solved")}
    flushed = []  # whether a flush fell inside a timed loop of "now"
    solved_check = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-before-") as folder:
        before = Path(folder) / "tree"
        now = Path(folder) / "now"
        this_tree = snapshot(now)
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(before), args.before],
            check=True,
            cwd=ROOT,
            capture_output=True,
        )
        try:
            for r in range(rounds):
                print(f"round {r + 1} of {rounds}", file=sys.stderr)
                # Page views, SQLite: before, counting off, now.
                # The variants in turns, starting with another one each round.
                for name, tree, off in rotated(
                    [("before", before, False), ("off", now, True), ("now", now, False)], r
                ):
                    load.append(os.getloadavg()[0])
                    found = run(tree, {"mode": "views", "n": n, "counting_off": off})
                    for page, value in found.items():
                        if page.endswith(":flushed"):
                            flushed.append(value)
                        else:
                            views[name].setdefault(page, []).append(value)
                # Page views, PostgreSQL: counting off, now.
                if with_pg:
                    for name, off in rotated([("off", True), ("now", False)], r):
                        load.append(os.getloadavg()[0])
                        found = run(
                            now,
                            {
                                "mode": "views",
                                "n": n,
                                "counting_off": off,
                                "database": fresh_pg_database(),
                            },
                        )
                        for page, value in found.items():
                            if not page.endswith(":flushed"):
                                pg_views[name].setdefault(page, []).append(value)
                # Signup posts, SQLite: before (plain), now plain, now solved.
                for name, tree, mode in rotated(
                    [
                        ("before", before, "plain"),
                        ("plain", now, "plain"),
                        ("solved", now, "solved"),
                    ],
                    r,
                ):
                    load.append(os.getloadavg()[0])
                    found = run(tree, {"mode": mode, "n": n})
                    posts[name].append(found[mode])
                    posts[name + ":best"].append(found[mode + ":best"])
                    if mode == "solved":
                        solved_check.append((found["spent"], found["proved"]))
            # The flush alone, SQLite then PostgreSQL.
            load.append(os.getloadavg()[0])
            flush_sqlite = run(now, {"mode": "flush", "n": flushes})
            flush_pg = None
            if with_pg:
                flush_pg = run(
                    now, {"mode": "flush", "n": flushes, "database": fresh_pg_database()}
                )
            profiles = {}
            if not args.no_profile:
                load.append(os.getloadavg()[0])
                profiles["hosted"] = run(
                    now, {"mode": "views", "n": n, "pages": ["hosted"], "profile": True}
                )["hosted"]
                profiles["solved"] = run(now, {"mode": "solved", "n": n, "profile": True})["solved"]
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, check=False
            )
            if with_pg:
                postgres(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
    minutes = (time.monotonic() - started) / 60

    # What the solved posts did: one spent challenge and one proved signup each.
    for spent, proved in solved_check:
        assert spent == proved == n + 100, (spent, proved)

    page_names = {"hosted": "hosted page `/n/bench`", "iframe": "iframe `/n/bench/embed`"}

    def cell(found: dict, name: str, page: str) -> str:
        if page not in found[name]:
            return "(no such route)"
        return f"{each(found[name][page])} → **{median(found[name][page]):,.0f}**"

    def ratio(found: dict, a: str, b: str, page: str) -> str:
        """``a`` / ``b`` of the medians; in brackets of the fastest blocks' medians."""
        if page not in found[b]:
            return ""
        wall = median(found[a][page]) / median(found[b][page])
        best = median(found[a][page + ":best"]) / median(found[b][page + ":best"])
        return f"**{wall:.3f}** ({best:.3f})"

    pages = [*page_names.items(), ("widget", "widget's challenge `?form=widget`")]
    view_rows = "\n".join(
        f"| {label} | {cell(views, 'before', page)} | {cell(views, 'off', page)} "
        f"| {cell(views, 'now', page)} |"
        for page, label in pages
    )
    view_ratios = "\n".join(
        f"| {label} | {ratio(views, 'now', 'before', page)} "
        f"| {ratio(views, 'off', 'before', page)} | {ratio(views, 'now', 'off', page)} |"
        for page, label in pages
    )

    def spread(*found: dict) -> float:
        """The rounds' median absolute deviation from their median, in % of it (median of all)."""
        deviations = []
        for variants in found:
            for name, rounds_found in variants.items():
                if name.endswith(":best") or not isinstance(rounds_found, list):
                    continue
                m = median(rounds_found)
                deviations.append(median([abs(x - m) for x in rounds_found]) / m * 100)
        return median(deviations)

    pages_spread = spread(*views.values(), *pg_views.values())
    posts_spread = spread(posts)
    pg_text = ""
    if with_pg:
        pg_rows = "\n".join(
            f"| {label} | {cell(pg_views, 'off', page)} | {cell(pg_views, 'now', page)} "
            f"| {ratio(pg_views, 'now', 'off', page)} |"
            for page, label in pages
        )
        pg_text = f"""
PostgreSQL 15 (this tree, in its own database `{PG_DATABASE}`, made afresh for each process):

| page | counting off, req/s | now (counting), req/s | now / counting off (fastest blocks) |
|---|---|---|---|
{pg_rows}
"""
    else:
        pg_text = "\nPostgreSQL did not answer at 127.0.0.1:5432 (or `--no-postgres`): not run.\n"

    def flush_line(name: str, f: dict) -> str:
        return (
            f"| {name} | {f['first_150_ms']:.2f} | {f['next_150_ms']:.2f} "
            f"({f['fastest_150_ms']:.2f}) | {f['first_1_ms']:.2f} | {f['next_1_ms']:.2f} "
            f"({f['fastest_1_ms']:.2f}) |"
        )

    flush_rows = flush_line("SQLite", flush_sqlite)
    if flush_pg:
        flush_rows += "\n" + flush_line("PostgreSQL", flush_pg)
    hosted_now = median(views["now"]["hosted"])
    per_view_us = flush_sqlite["next_150_ms"] * 1000 / (hosted_now * 10)

    def post_ratio(a: str, b: str) -> str:
        wall = median(posts[a]) / median(posts[b])
        best = median(posts[a + ":best"]) / median(posts[b + ":best"])
        return f"**{wall:.3f}** ({best:.3f})"

    post_rows = "\n".join(
        f"| {label} | {each(posts[name])} → **{median(posts[name]):,.0f}** "
        f"| {post_ratio(name, 'before')} | {post_ratio(name, 'plain')} |"
        for name, label in (
            ("before", f"before ({args.before}): plain post, the address alone"),
            ("plain", "now: the same plain post (no challenge: unverified)"),
            ("solved", "now: the hosted form's post with a solved challenge"),
        )
    )

    profile_text = ""
    if profiles:

        def share(which: str, part: str) -> str:
            return f"{profiles[which]['shares'][part] * 100:.1f} %"

        hosted_ms = profiles["hosted"]["total_s"] / n * 1000
        solved_ms = profiles["solved"]["total_s"] / n * 1000
        count_share = profiles["hosted"]["shares"]["counters.view"] * 100
        shows = (
            "does not show: under 1 % of the page"
            if count_share < 1
            else f"shows: {count_share:.1f} % of the page"
        )
        post_parts = {
            "session.commit": "the commit",
            "proof.spend": "`proof.spend`",
            "proof.judge": "`proof.judge`",
            "evidence": "the consent evidence",
            "services.signup": "`services.signup`",
        }
        largest = max(post_parts, key=lambda part: profiles["solved"]["shares"][part])
        defence = (
            profiles["solved"]["shares"]["proof.judge"]
            + profiles["solved"]["shares"]["proof.spend"]
            - profiles["solved"]["shares"]["spend connection"]
        )
        template = profiles["hosted"]["shares"]["render_template"]
        profile_text = f"""
**Profile** (pyinstrument, 1 ms interval, {n:,} requests of this tree after the warm-up,
in a process of its own; shares of the profiled time, which includes the test client's own
work and the profiler's overhead):

- hosted page GET ({hosted_ms:.2f} ms a request under the profiler): rendering the template,
  `render_template`, {template * 100:.1f} %{" dominates" if template > 0.4 else ""}; of it the
  form's guard fields (`form_guard`, issue 13: the page, the signed render time, the
  challenge's URL) {share("hosted", "form_guard")}, of which `url_for`
  {share("hosted", "form_guard url_for")} and `proof.rendered`
  {share("hosted", "proof.rendered")}; `attribution` (the page's URL, twice: the count's and
  the guard's) {share("hosted", "attribution")}. Counting the view,
  `counters.view`, {share("hosted", "counters.view")}, `Tally.flush`
  {share("hosted", "counters.flush")}: the count {shows}.
- solved-signup POST ({solved_ms:.2f} ms): `services.check_signup` (issue 12's address
  checks) {share("solved", "check_signup")}, `session.commit` {share("solved", "session.commit")},
  `services.signup` (the signup request's INSERT) {share("solved", "services.signup")},
  the consent evidence {share("solved", "evidence")}, reading the body
  (`signup_payload` {share("solved", "signup_payload")}, and `refuse_undecodable_form`'s own
  parse of it {share("solved", "refuse_undecodable_form")}). The defence: `proof.judge`
  {share("solved", "proof.judge")} (of it ALTCHA's `verify_solution`
  {share("solved", "altcha verify")}), `proof.spend` {share("solved", "proof.spend")}, of
  which {share("solved", "spend connection")} is the session taking its connection and
  `BEGIN IMMEDIATE`, which the signup's INSERT would otherwise do (spend is the
  transaction's first statement): the INSERT into spent_challenge itself is the rest.
  The largest of these parts: {post_parts[largest]}. What the defence adds to a post:
  judge and spend less the connection, about {defence * 100:.0f} % of it.
"""

    section = f"""{TITLE}

`bench/form_views.py{" " + argv_text if argv_text else ""}`, {time.strftime("%Y-%m-%d")},
{machine()}, load average {min(load):.2f}–{max(load):.2f} while it ran ({minutes:.0f} min).
In-process requests (Flask's test client, a Chrome User-Agent, rate limits off), {n:,} a
round after 100 of warm-up, {rounds} rounds; each variant a process of its own, the variants
in turns, another first each round; requests a second over the whole loop, each round →
**median**. Ratios are of the medians, and in brackets of the medians of each process's
fastest block of 50 requests, which the other programs sharing the machine disturb less.
`before` is {args.before} (the commit before issue 13) in a temporary worktree; "now" is this
tree, copied at the start of the run ({this_tree}); "counting off" is that copy with
`newsletters.counters.view` patched to a no-op; "now" counts (COUNT_FLUSH_SECONDS 10, the
default).

Page views (SQLite; the iframe's `page` and the widget's one of 50 embedding pages),
requests a second:

| page | before | now, counting off | now (counting) |
|---|---|---|---|
{view_rows}

{RATIO_HEAD}
{view_ratios}

How far apart the rounds of one variant lie (the machine is shared): their median absolute
deviation is {pages_spread:.0f} % of their median for the page views, {posts_spread:.0f} % for
the posts; a ratio is resolved only where it is well away from 1 by more than that.

A flush fell inside a timed loop of "now" in {sum(flushed)} of {len(flushed)} loops (each loop
lasts a few seconds, the flush is due every 10 s): the req/s above are the counting's
`add` alone. Timed on its own, `counters.view` of one newsletter inside a request costs
**{flush_sqlite["view_us"]:.2f} µs** a call ({20 * flushes * 1000:,} calls; it touches no
database), against {1e6 / hosted_now:,.0f} µs of the hosted page: by itself the count would
make now / counting off {1 / (1 + flush_sqlite["view_us"] * hosted_now / 1e6):.4f}; what the
ratios above differ from that by is the shared machine's noise. The flush, timed on its own:

{FLUSH_HEAD}
{flush_rows}

({flushes} flushes after the first; a flush commits, so the disk's fsync, shared with the
other programs, is most of its time and of its spread). A flush happens once every 10 s in
each process, in whichever request finds it due, on a connection of its own: at the hosted
page's {hosted_now:,.0f} req/s in one process that is {flush_sqlite["next_150_ms"]:.2f} ms
spread over about {hosted_now * 10:,.0f} views, {per_view_us:.2f} µs a view on SQLite
({per_view_us * hosted_now / 1e4:.2f} % of a view's time), but one request every 10 s waits
that long for it (and on SQLite holds the write lock for that long, which a signup's INSERT
waits for).
{pg_text}
Signup posts (SQLite, SIGNUP_PROCESSING "worker": one INSERT of the signup request a post,
plus the INSERT into spent_challenge for a solved one; challenge range 1000,
FORM_MIN_FILL_SECONDS 0; addresses at 50 domains, which the warm-up's posts cover):

| post | requests/s, each round → median | / before (fastest blocks) | / now's plain post |
|---|---|---|---|
{post_rows}

Every solved post was checked afterwards: one spent challenge and one `proof` signup request
each.
{profile_text}"""
    print(section)
    if profiles:
        keep = Path(tempfile.mkdtemp(prefix="bench-form-views-profiles-"))
        for which, found in profiles.items():
            (keep / f"{which}.txt").write_text(found["text"], encoding="utf-8")
            print(f"\n--- profile: {which} ---\n{found['text']}")
        print(f"profiles kept in {keep}", file=sys.stderr)
    if not args.no_write:
        write_section(TITLE, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
