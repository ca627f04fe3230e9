"""Measure the JSON API's signup throughput beside the form's, on SQLite and PostgreSQL.

Run from the repository's root (loopback only; PostgreSQL at 127.0.0.1:5432, user postgres):

    .venv/bin/python bench/api_signups.py            # the full run, about 3 minutes
    .venv/bin/python bench/api_signups.py --quick    # one round of 5 s phases: a smoke test

One product stack per database, set up as bench/signups.py sets up its product (it is
imported, not copied): ``newsletters db upgrade``, ``newsletters newsletter create bench``,
then an admin editor and an API key made with the CLI (``newsletters editor create … --admin``,
``newsletters apikey create … --name bench``), gunicorn ``-w 2`` on ``wsgi:app`` in production
mode with rate limits off (``API_RATE_LIMIT`` included), and one ``newsletters worker``
sending to an aiosmtpd sink inside this script. The PostgreSQL database is
``bench_api_signups``, created for the run and DROPPED after it; SQLite's file lives in a
temporary folder.

wrk (``-t2 -c16``) drives, in interleaved rounds (the order alternating from one round to the
next), the form (``POST /n/bench/subscribe``, form-encoded, as signups.py does) and the API
(``POST /api/v1/newsletters/bench/subscriptions``, a JSON body and the bearer key), a new
address per request. After each phase the script waits (bounded) until every accepted signup
is a subscription with its confirmation mail queued, then at the sink, times both from the
load's end and counts them. The figures replace the section "## Signups through the API
beside the form" of bench/RESULTS.md (``--no-write`` skips). See bench/README.md.
"""

import argparse
import json
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import signups as base  # noqa: E402  (bench/signups.py: the stacks, the sink, wrk, reporting)

SECTION = "## Signups through the API beside the form"
PG_DATABASE = "bench_api_signups"
ADMIN = "admin@bench.example"
FORM_PATH = f"/n/{base.SLUG}/subscribe"
API_PATH = f"/api/v1/newsletters/{base.SLUG}/subscriptions"
PATHS = {
    "form": f"`POST {FORM_PATH}`, form-encoded → 303",
    "api": f"`POST {API_PATH}`, JSON + bearer key → 202",
}


@dataclass(frozen=True)
class Profile:
    phase_seconds: int
    rounds: int
    drain_timeout: int  # longest wait after a phase, from the load's end


FULL = Profile(10, 3, 60)
QUICK = Profile(5, 1, 30)

# wrk's script for the API. Arguments: path, tag, key. Every request a new address,
# tag-thread-counter@domain, in a JSON body; done() prints the BENCH_JSON line of
# signups.WRK_SCRIPT (every request counted as new), which signups.run_wrk reads.
API_WRK_SCRIPT = r"""
threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

function init(args)
  path, tag, key = args[1], args[2], args[3]
  sent_new = 0
  statuses = {}
  headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}
end

function request()
  sent_new = sent_new + 1
  local body = '{"email": "' .. tag .. "-" .. tid .. "-" .. sent_new .. '@DOMAIN"}'
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local answered, new = {}, 0
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do
      answered[code] = (answered[code] or 0) + n
    end
    new = new + thread:get("sent_new")
  end
  local codes = {}
  for code, n in pairs(answered) do codes[#codes + 1] = string.format('"%s": %d', code, n) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "sent_new": %d, "sent_old": 0, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d, "errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d}, "statuses": {%s}}\n',
    summary.requests, summary.duration, new,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(codes, ", ")))
end
""".replace("DOMAIN", base.DOMAIN)


@dataclass
class Phase(base.Phase):
    """signups.Phase, with what the phase's addresses became once the wait was over."""

    subscriptions: int = 0
    sources: dict = field(default_factory=dict)  # the subscriptions' source: form, api
    queued: int = 0  # confirmation mails in the outbox


@dataclass
class Outcome:
    database: str
    server: str = ""
    engine_note: str = ""
    phases: list[Phase] = field(default_factory=list)
    log_problems: dict = field(default_factory=dict)
    exit_codes: dict = field(default_factory=dict)


# --- setting up --------------------------------------------------------------------------


def make_key(stack: base.Stack) -> str:
    """Create the admin editor and its API key with the CLI; return the key."""
    newsletters = str(base.BIN / "newsletters")
    password = secrets.token_urlsafe(18)
    done = subprocess.run(
        [newsletters, "editor", "create", ADMIN, "--admin"],
        cwd=base.ROOT, env=stack.env, input=password + "\n", capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        raise base.SetupFailed(f"editor create failed:\n{done.stdout}{done.stderr}")
    key = stack.run([newsletters, "apikey", "create", ADMIN, "--name", "bench"]).strip()
    if not key.startswith("nlk_") or len(key.split()) != 1:
        raise base.SetupFailed(f"apikey create printed no key: {key[:80]!r}")
    return key


def api_warm_up(port: int, key: str, tag: str, count: int = 30) -> None:
    """Send a few API signups one by one: the workers import lazily, a refusal shows here."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    for n in range(count):
        body = json.dumps({"email": f"{tag}-0-{n}@{base.DOMAIN}", "name": "Warm"})
        conn.request("POST", API_PATH, body, headers)
        response = conn.getresponse()
        content = response.read()
        if response.status != 202:
            raise base.SetupFailed(
                f"the API answered a signup {response.status}: {content[:300]!r}"
            )
    conn.close()


def count_phase(engine: sa.Engine, phase: Phase) -> None:
    """Count the phase's subscriptions (by source) and queued mails, once the wait is over."""
    window = base.between(phase.tag)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT sub.source, count(*) FROM subscription AS sub JOIN subscriber AS s"
                " ON s.id = sub.subscriber_id WHERE s.email >= :lo AND s.email < :hi"
                " GROUP BY sub.source"
            ),
            window,
        ).all()
        phase.queued = conn.execute(
            sa.text(
                "SELECT count(*) FROM outbox_message WHERE recipient >= :lo AND recipient < :hi"
            ),
            window,
        ).scalar_one()
    phase.sources = {str(source): n for source, n in rows}
    phase.subscriptions = sum(phase.sources.values())


# --- one database ------------------------------------------------------------------------


def measure(kind: str, profile: Profile, sink: base.MailSink, smtp_port: int, folder: Path):
    """Run the interleaved rounds on one kind of database; return the figures."""
    outcome = Outcome(kind)
    code = kind[0].lower()
    logs = Path(tempfile.mkdtemp(prefix=f"bench-api-signups-{code}-logs-"))
    print(f"{kind}: logs in {logs}", file=sys.stderr)
    if kind == "SQLite":
        url = f"sqlite:///{folder / 'product.db'}"
    else:
        url = f"{base.PG_SERVER}/{PG_DATABASE}"
        base.pg_recreate(create=True, names=[PG_DATABASE])
    form_script, api_script = folder / "form.lua", folder / "api.lua"
    form_script.write_text(base.WRK_SCRIPT)
    api_script.write_text(API_WRK_SCRIPT)
    keys: list[str] = []
    product: base.Stack | None = None
    driver = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        product = base.product_stack(
            url, smtp_port, secrets.token_hex(32), logs, lambda s: keys.append(make_key(s))
        )
        key = keys[0]
        if kind == "SQLite":
            pragmas = base.sqlite_pragmas(url)
            outcome.engine_note = ", ".join(f"{k}={v}" for k, v in pragmas.items())
            outcome.server = f"SQLite {base.sqlite_version()}"
        else:
            with driver.connect() as conn:
                version_text = conn.exec_driver_sql("SHOW server_version").scalar()
            outcome.server = f"PostgreSQL {version_text.split()[0]}"
        product.wait_until_serving()
        base.warm_up(product, f"{code}warmfo")
        api_warm_up(product.port, key, f"{code}warmap")
        # The API's requests go to the product's gunicorn: a Stack only for run_wrk's sake.
        api = base.Stack("api", API_PATH, "email", 202, product.env, logs)
        api.port = product.port

        def phase(repeat: int, name: str) -> None:
            tag = f"{code}{repeat}{name}"
            record = Phase(kind, "small", repeat, name, "unique", tag)
            print(f"{kind} #{repeat}: {name} …", file=sys.stderr, end=" ")
            if name == "form":
                base.run_wrk(product, record, profile.phase_seconds, form_script, None)
            else:
                args = [API_PATH, tag, key]
                base.run_wrk(api, record, profile.phase_seconds, api_script, None, args)
            ended = time.monotonic()
            base.wait_for_product(driver, record, sink, profile.drain_timeout, ended)
            record.mails = sink.count(tag)
            count_phase(driver, record)
            outcome.phases.append(record)
            print(
                f"{record.rps:,.0f} req/s, p99 {record.p99_ms:.0f} ms, answers"
                f" {record.statuses}, processed {record.processed_s}, mailed {record.mailed_s},"
                f" subscriptions {record.sources}, queued {record.queued}, mails"
                f" {record.mails} {record.left}",
                file=sys.stderr,
            )

        for repeat in range(1, profile.rounds + 1):
            # The order alternates, so that neither path always follows the other's backlog.
            order = ("form", "api") if repeat % 2 else ("api", "form")
            for name in order:
                phase(repeat, name)
    finally:
        if product is not None:
            outcome.exit_codes["product"] = product.stop()
            outcome.log_problems["product"] = dict(product.log_problems())
        driver.dispose()
        figures = [asdict(p) for p in outcome.phases]
        (logs / "figures.json").write_text(json.dumps(figures, indent=1, default=str))
        if kind == "PostgreSQL":
            base.pg_recreate(create=False, names=[PG_DATABASE])
    return outcome


# --- reporting ---------------------------------------------------------------------------


def of(outcome: Outcome, name: str) -> list[Phase]:
    return [p for p in outcome.phases if p.stack == name]


def fate(phases: list[Phase], source: str) -> str:
    """Say what the accepted signups became: subscriptions, mails queued, mails at the sink.

    wrk stops counting at the phase's end with a request in flight on each connection, which
    the server still completes: a phase has up to 16 subscriptions more than accepted answers,
    never more than the requests wrk sent.
    """
    accepted = sum(p.ok for p in phases)
    sent = sum(p.sent_new for p in phases)
    subscriptions = sum(p.subscriptions for p in phases)
    sourced = sum(p.sources.get(source, 0) for p in phases)
    queued = sum(p.queued for p in phases)
    mailed = sum(p.mails for p in phases)
    whole = accepted <= subscriptions <= sent and subscriptions == sourced == queued == mailed
    return (
        f"{'yes' if whole else 'NO'}: {accepted:,} accepted (+{subscriptions - accepted:,} in"
        f" flight when wrk stopped counting), {subscriptions:,} subscriptions ({sourced:,} with"
        f" source {source}), {queued:,} mails queued, {mailed:,} at the sink"
    )


def database_section(outcome: Outcome) -> list[str]:
    note = f" ({outcome.engine_note})" * bool(outcome.engine_note)
    lines = [
        f"### {outcome.server}{note}",
        "",
        "| path | runs | req/s | p50 ms | p99 ms | answers | load avg (1 min), start → end |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    medians = {}
    for name in ("form", "api"):
        phases = of(outcome, name)
        if not phases:
            continue
        medians[name] = base.median(p.rps for p in phases)
        answers = Counter()
        for p in phases:
            answers.update(p.statuses)
            answers.update({f"{k} errors": v for k, v in p.errors.items() if k != "status"})
        loadavg = ", ".join(f"{p.load_before:.1f} → {p.load_after:.1f}" for p in phases)
        lines.append(
            f"| {PATHS[name]} | {len(phases)} | {medians[name]:,.0f}"
            f" | {base.median(p.p50_ms for p in phases):.1f}"
            f" | {base.median(p.p99_ms for p in phases):.1f}"
            f" | {', '.join(f'{k}: {v:,}' for k, v in sorted(answers.items()))} | {loadavg} |"
        )
    form, api, m = of(outcome, "form"), of(outcome, "api"), medians.get
    per_round = [
        base.ratio(a.rps, f.rps) for f in form for a in api if a.repeat == f.repeat and f.rps
    ]
    lines += [
        "",
        "| figure | value |",
        "|---|---|",
        f"| API / form, req/s (medians) | {base.ratio(m('api', 0), m('form', 0))} |",
        f"| API / form, round by round | {', '.join(per_round) or '-'} |",
        f"| form: each accepted signup a subscription, its mail sent? | {fate(form, 'form')} |",
        f"| API: each accepted signup a subscription, its mail sent? | {fate(api, 'api')} |",
        "| every accepted signup a subscription with its mail queued, from the load's end:"
        f" median (form; API) | {base.seconds_cell(form, 'processed_s')};"
        f" {base.seconds_cell(api, 'processed_s')} |",
        "| … and every confirmation mail accepted by the SMTP sink (form; API) |"
        f" {base.seconds_cell(form, 'mailed_s')}; {base.seconds_cell(api, 'mailed_s')} |",
    ]
    problems = "; ".join(
        f"{stack}: " + ", ".join(f"{k} {v}" for k, v in found.items())
        for stack, found in outcome.log_problems.items()
        if found
    )
    lines.append(f"| tracebacks and errors in the logs | {problems or 'none'} |")
    unclean = {
        f"{stack} {name}": code
        for stack, codes in outcome.exit_codes.items()
        for name, code in codes.items()
        if code
    }
    if unclean:
        lines.append(f"| processes that did not stop cleanly (exit codes) | {unclean} |")
    for p in outcome.phases:
        if p.left:
            lines.append(f"| not done in time: {p.tag} | {p.left} |")
    lines += [
        "",
        "<details><summary>Every phase, in the order run</summary>",
        "",
        "| # | round | path | req/s | p50 ms | p99 ms | max ms | answers | subscriptions"
        " | mails queued | at the sink | processed | mailed | load avg |",
        "|---|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for n, p in enumerate(outcome.phases, 1):
        answers = ", ".join(f"{k}: {v:,}" for k, v in sorted(p.statuses.items()))
        if p.errors:
            answers += "; errors " + ", ".join(f"{k} {v}" for k, v in p.errors.items())
        processed = "-" if p.processed_s is None else f"{p.processed_s:.1f} s"
        mailed = "-" if p.mailed_s is None else f"{p.mailed_s:.1f} s"
        lines.append(
            f"| {n} | {p.repeat} | {p.stack} | {p.rps:,.0f} | {p.p50_ms:.1f} | {p.p99_ms:.1f}"
            f" | {p.max_ms:.0f} | {answers} | {p.subscriptions:,} | {p.queued:,} | {p.mails:,}"
            f" | {processed} | {mailed} | {p.load_before:.1f} → {p.load_after:.1f} |"
        )
    lines += ["", "</details>", ""]
    return lines


def report(outcomes: list[Outcome], profile: Profile, argv: list[str], began: float) -> str:
    command = " ".join(["bench/api_signups.py", *argv])
    lines = [
        SECTION,
        "",
        f"`{command}`, {datetime.now(UTC):%Y-%m-%d}, code at {base.revision()};"
        f" {base.machine()}; {base.versions(peer=False)}.",
        "",
        f"The product under `gunicorn -w {base.GUNICORN_WORKERS}` (sync workers) on 127.0.0.1"
        " in production mode with rate limits off (the API key's `API_RATE_LIMIT` too), one"
        " `newsletters worker` beside it sending to an SMTP sink (aiosmtpd) in the driving"
        " process, as in bench/signups.py. wrk"
        f" (`-t{base.THREADS} -c{base.CONNECTIONS}`, {profile.phase_seconds} s a phase) POSTs"
        " signups, each to a new address, through the hosted form (form-encoded, as"
        " signups.py's product phase) and through the API (`{\"email\": …}` with an admin's"
        " read-write key made by `newsletters apikey create`), in"
        f" {profile.rounds} interleaved rounds (form first in odd rounds, API first in even"
        " ones). Each row is the median of its rounds; req/s counts the answers that accept a"
        " signup (303 for the form, 202 for the API); p50/p99 are wrk's. After each phase the"
        " script waits until every accepted signup is a subscription with its mail queued, then"
        " at the sink, and counts them. Everything shares the machine's cores with whatever"
        " else runs on it: the load averages tell how busy it was.",
        "",
    ]
    for outcome in outcomes:
        lines += database_section(outcome)
    lines.append(f"Whole run: {(time.monotonic() - began) / 60:.1f} minutes.")
    lines.append("")
    return "\n".join(lines)


# --- the run -----------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Signup throughput of the JSON API beside the form's, on SQLite and"
        " PostgreSQL (loopback only).",
    )
    parser.add_argument("--quick", action="store_true", help="one round of 5 s phases")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument(
        "--only", choices=("sqlite", "postgresql"), help="measure on one kind of database"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    profile = QUICK if args.quick else FULL
    # As in signups.py: started in the background, this process and its children would
    # ignore SIGINT, which is how the mail worker is stopped.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if shutil.which("wrk") is None:
        raise base.SetupFailed("wrk is not installed (Debian: apt-get install -y wrk)")
    from aiosmtpd.controller import Controller

    began = time.monotonic()
    sink = base.MailSink()
    smtp = Controller(sink, hostname="127.0.0.1", port=base.free_port())
    smtp.start()
    kinds = {"sqlite": ["SQLite"], "postgresql": ["PostgreSQL"]}.get(
        args.only, ["SQLite", "PostgreSQL"]
    )
    outcomes = []
    try:
        for kind in kinds:
            with tempfile.TemporaryDirectory(prefix="bench-api-signups-") as folder:
                outcomes.append(measure(kind, profile, sink, smtp.port, Path(folder)))
    finally:
        smtp.stop()
    section = report(outcomes, profile, argv, began)
    print("\n" + section)
    if not args.no_write:
        base.write_section(section, SECTION)
        print(f"wrote {base.RESULTS.relative_to(base.ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except base.SetupFailed as exc:
        print(f"api_signups: cannot set up: {exc}", file=sys.stderr)
        sys.exit(2)
