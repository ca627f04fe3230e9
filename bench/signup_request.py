"""Measure what issue 12 costs a signup's request: the address checks and the language.

Run from the repository's root:

    .venv/bin/python bench/signup_request.py            # 3 rounds of 3,000 requests each
    .venv/bin/python bench/signup_request.py --quick    # 2 rounds of 1,000
    .venv/bin/python bench/signup_request.py --before REV --no-write

The same request is timed on two checkouts of the product, in turns, each in a process of its
own: this tree, and ``--before`` (default 4a8da0d, the commit before issue 12) checked out
into a temporary git worktree. Each process builds the app on a fresh SQLite file, adds one
newsletter and posts form signups of new addresses through Flask's test client (in process:
no server, so what differs is the product's own code), with a Ukrainian browser's
Accept-Language. The request is what production's does: parse, check, one INSERT of the
signup request, commit (SIGNUP_PROCESSING "worker"; no worker runs). Requests a second,
median of the rounds; the ratio says what the change costs. Then the address check alone,
per address: ``addresses.normalise`` (before) against ``services.check_signup`` (now), over
10,000 addresses of 500 domains, a few of them typos, disposable or role addresses.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, write_section  # noqa: E402

TITLE = "## Issue 12: what the address checks and languages cost a signup's request"

CHILD = r"""
import json, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
from newsletters import create_app, db, migrations
from newsletters.models import Newsletter
n = int(sys.argv[2])
folder = tempfile.mkdtemp(prefix="bench-signup-request-")
app = create_app({"DATABASE_URL": f"sqlite:///{folder}/b.db", "SECRET_KEY": "bench",
                  "RATELIMIT_ENABLED": False, "SIGNUP_PROCESSING": "worker"})
with app.app_context():
    migrations.upgrade()
    db.session().add(Newsletter(slug="bench", name="Bench"))
    db.session().commit()
client = app.test_client()
headers = {"Accept-Language": "uk-UA,uk;q=0.9,en;q=0.8"}
for i in range(100):  # warm up: caches, the first connection, the catalogue
    client.post("/n/bench/subscribe", data={"email": f"warm{i}@d{i % 50}.example.com"},
                headers=headers)
started = time.perf_counter()
for i in range(n):
    r = client.post("/n/bench/subscribe", data={"email": f"r{i}@d{i % 500}.example.com"},
                    headers=headers)
    assert r.status_code == 303, r.status_code
print(json.dumps({"per_second": n / (time.perf_counter() - started)}))
"""

CHECKS = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from newsletters import addresses, create_app
if sys.argv[2:] != ["normalise-only"]:
    from newsletters.subscriptions import services
app = create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "bench"})
emails = [f"r{i}@d{i % 500}.example.com" for i in range(10_000)]
emails[::97] = [f"t{i}@gmial.com" for i in range(len(emails[::97]))]
emails[::89] = [f"x{i}@mailinator.com" for i in range(len(emails[::89]))]
emails[::83] = ["info@example.org"] * len(emails[::83])
def timed(check):
    started = time.perf_counter()
    for email in emails:
        check(email)
    return (time.perf_counter() - started) / len(emails) * 1e6
with app.app_context(), app.test_request_context():
    checks = {"normalise_us": addresses.normalise}
    if sys.argv[2:] != ["normalise-only"]:
        checks["check_us"] = lambda email: services.check_signup(email, None, accept_typo=True)
    for check in checks.values():
        timed(check)  # the per-domain caches, warmed as a running process has them
    print(json.dumps({name: timed(check) for name, check in checks.items()}))
"""


def run(script: str, tree: Path, *args) -> dict:
    """Run ``script`` with the product of ``tree`` importable; return its JSON line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")}
    out = subprocess.run(
        [sys.executable, "-c", script, str(tree), *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--before", default="4a8da0d")
    args = parser.parse_args(argv)
    rounds, n = (2, 1000) if args.quick else (3, 3000)
    with tempfile.TemporaryDirectory(prefix="bench-before-") as folder:
        before = Path(folder) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(before), args.before],
            check=True,
            cwd=ROOT,
            capture_output=True,
        )
        try:
            speeds = {"before": [], "now": []}
            load = []
            for _ in range(rounds):
                for name, tree in (("before", before), ("now", ROOT)):
                    load.append(os.getloadavg()[0])
                    speeds[name].append(run(CHILD, tree, n)["per_second"])
            checks = run(CHECKS, ROOT)
            normalise = run(CHECKS, before, "normalise-only")
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, check=False
            )
    median = {name: statistics.median(found) for name, found in speeds.items()}
    ratio = median["now"] / median["before"]
    rows = "\n".join(
        f"| {name} | {' · '.join(f'{s:,.0f}' for s in found)} | {median[name]:,.0f} |"
        for name, found in speeds.items()
    )
    section = f"""{TITLE}

`bench/signup_request.py{" " + " ".join(argv or sys.argv[1:]) if (argv or sys.argv[1:]) else ""}`,
{time.strftime("%Y-%m-%d")}, {machine()}, load average {min(load):.2f}–{max(load):.2f} while it
ran. In-process form signups (Flask's test client, SQLite, one INSERT a request, a Ukrainian
browser's Accept-Language), {n:,} a round, {rounds} rounds, the two trees in turns.

| tree | requests/s, each round | median |
|---|---|---|
{rows}

**Ratio now / before: {ratio:.2f}.** The address check alone, per address over 10,000 of 500
domains (warm caches, as in a running process): `addresses.normalise` {checks["normalise_us"]:.1f}
µs (before's own: {normalise["normalise_us"]:.1f} µs), `services.check_signup` (normal form,
typo, disposable and role checks) {checks["check_us"]:.1f} µs.
"""
    print(section)
    if not args.no_write:
        write_section(TITLE, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
