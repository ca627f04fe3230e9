"""Measure how long a reader's browser takes to solve a signup form's proof-of-work challenge.

Run from the repository's root:

    .venv/bin/python bench/solve_time.py            # 3 interleaved rounds
    .venv/bin/python bench/solve_time.py --rounds 1

Debian's Chromium (/usr/bin/chromium), driven by Playwright, opens a page on a loopback HTTP
server that serves this tree's ``static/proof-worker.js``, the solver the forms use, and
times solutions of ALTCHA v1 challenges made by the ``altcha`` package, salted as
newsletters/proof.py salts them (expiry, newsletter, page origin). A challenge's number is
drawn uniformly from [0, maxnumber], so a reader's expected work is maxnumber / 2 hashes:
each challenge here is made with that number, and the time shown is the expected one (the
worst case, the number maxnumber, takes twice as long). maxnumber is POW_MIN_NUMBER (100,000:
a normal signup rate) and POW_MAX_NUMBER (10,000,000: a flood).

Four ways to solve, each at CPU throttling rate 1 (this machine) and 4 (CDP
``Emulation.setCPUThrottlingRate``: a phone-sized CPU):

- ``worker``: a dedicated worker, as static/proof.js and the widget run it (warm: the worker
  is started before the timing, which runs from postMessage to the answer). Chromium applies
  the throttling rate to pages only ("Operation is only supported for pages, not workers"
  when sent to a worker's target); a worker slows down by less, so its rate-4 figure flatters
  a phone;
- ``page thread``: the same search on the page's main thread in one go, where the rate
  applies in full: the figure to read for a phone;
- ``page thread, slices``: the widget's fallback when the host page's CSP refuses a blob:
  worker (templates/embed/widget.js): ``NewslettersProof.solveInSlices``, slices of about
  20 ms with a message to itself between them.

Rounds are interleaved (every variant once per round, the order reversed every other round);
each cell is the median of the rounds, with the fastest and slowest. The table is printed and
written into RESULTS.md (``--no-write``: printed only).
"""

import argparse
import http.server
import os
import statistics
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import altcha

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, write_section  # noqa: E402

TITLE = "## Proof of work: how long a reader's browser solves a challenge"

CHROMIUM = "/usr/bin/chromium"
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36"
)
MAX_NUMBERS = (100_000, 10_000_000)
RATES = (1, 4)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAYS = ("worker", "page thread", "page thread, slices")
# A publisher's origin as the challenge binds it (proof.py's "o" parameter).
ORIGIN = "https://www.example-news.org"

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>solve time</title>
<script src="/proof-worker.js"></script>
<script src="/bench.js"></script>
</head><body>solve time</body></html>
"""

# The three ways; each resolves with [number found, milliseconds].
BENCH_JS = b"""
var worker = new Worker("/proof-worker.js");
function inWorker(c) {
  return new Promise(function (resolve) {
    var began = performance.now();
    worker.onmessage = function (e) { resolve([e.data.number, performance.now() - began]); };
    worker.postMessage({ salt: c.salt, challenge: c.challenge, maxnumber: c.maxNumber });
  });
}
function onPage(c) {
  var began = performance.now();
  var number = NewslettersProof.solve(c.salt, c.challenge, c.maxNumber);
  return [number, performance.now() - began];
}
function inSlices(c) {  // as templates/embed/widget.js solves without a worker
  var began = performance.now();
  return NewslettersProof.solveInSlices(c.salt, c.challenge, c.maxNumber).then(function (number) {
    return [number, performance.now() - began];
  });
}
var ways = { "worker": inWorker, "page thread": onPage, "page thread, slices": inSlices };
"""


class Handler(http.server.BaseHTTPRequestHandler):
    """Serve the bench page, its script and this tree's solver."""

    files = {
        "/": (PAGE, "text/html"),
        "/bench.js": (BENCH_JS, "text/javascript"),
        "/proof-worker.js": ((ROOT / "static" / "proof-worker.js").read_bytes(), "text/javascript"),
    }

    def do_GET(self):
        body, kind = self.files.get(self.path, (b"", "text/plain"))
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def challenge(max_number: int) -> dict:
    """Return a challenge salted as proof.py salts it, whose number is max_number // 2."""
    made = altcha.create_challenge_v1(
        altcha.ChallengeOptionsV1(
            hmac_key=b"bench",
            max_number=max_number,
            number=max_number // 2,
            expires=datetime.now(UTC) + timedelta(minutes=30),
            params={"n": "1", "o": ORIGIN},
        )
    )
    return made.to_dict()


def run(rounds: int) -> tuple[dict, list[float], str]:
    """Time every (maxnumber, rate, way) once per round.

    Return the times, the load averages (at the start and after each round) and Chromium's
    version.
    """
    from playwright.sync_api import sync_playwright

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    variants = [(m, r, w) for m in MAX_NUMBERS for r in RATES for w in WAYS]
    times = {v: [] for v in variants}
    loads = [os.getloadavg()[0]]
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=CHROMIUM_FLAGS,
            )
            version = browser.version
            page = browser.new_page(user_agent=USER_AGENT)
            page.goto(f"http://127.0.0.1:{server.server_port}/")
            cdp = page.context.new_cdp_session(page)
            for turn in range(rounds):
                for max_number, rate, way in variants if turn % 2 == 0 else variants[::-1]:
                    task = challenge(max_number)
                    cdp.send("Emulation.setCPUThrottlingRate", {"rate": rate})
                    number, ms = page.evaluate(
                        "([way, c]) => Promise.resolve(ways[way](c))", [way, task]
                    )
                    cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
                    assert number == max_number // 2, (way, number)
                    times[(max_number, rate, way)].append(ms / 1000)
                    print(
                        f"round {turn + 1}: {max_number:>10,} ×{rate} {way:<20} {ms / 1000:7.3f} s",
                        file=sys.stderr,
                    )
                loads.append(os.getloadavg()[0])
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return times, loads, version


def table(times: dict, loads: list[float], rounds: int, version: str) -> str:
    """Return the printed section: the machine, the load, a row per (maxnumber, rate, way)."""
    lines = [
        TITLE,
        "",
        f"Machine: {machine()}; Chromium {version}; {rounds} interleaved rounds, "
        f"{datetime.now(UTC):%Y-%m-%d}. One-minute load average: "
        + " → ".join(f"{x:.1f}" for x in loads)
        + ". Expected work (number = maxnumber / 2); the worst case takes twice as long.",
        "",
        "| maxnumber | hashes (expected) | CPU | solved in | median s | fastest–slowest s "
        "| M hashes/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for (max_number, rate, way), found in times.items():
        median = statistics.median(found)
        cpu = "this machine" if rate == 1 else f"throttled ×{rate}"
        lines.append(
            f"| {max_number:,} | {max_number // 2:,} | {cpu} | {way} | {median:.3f} "
            f"| {min(found):.3f}–{max(found):.3f} | {max_number / 2 / median / 1e6:.2f} |"
        )
    lines += [
        "",
        "Chromium throttles pages only: the worker rows at ×4 are slowed by less than ×4 (a "
        "phone's worker is as slow as its page), so read a phone's time off the page-thread "
        "row at ×4.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print, do not write RESULTS.md")
    args = parser.parse_args()
    times, loads, version = run(args.rounds)
    section = table(times, loads, args.rounds, version)
    print(section)
    if not args.no_write:
        write_section(TITLE, section)


if __name__ == "__main__":
    main()
