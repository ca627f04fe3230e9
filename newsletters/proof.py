"""First-party bot defence for browser signups: proof-of-work, render time, automation.

A browser's form (hosted page, iframe, widget, several at once) asks ``challenge`` for an
ALTCHA challenge (the `altcha` package's v1 format, which carries the fix of CVE-2025-68113:
the salt ends in a delimiter, so a number cannot be spliced into its parameters) bound to
its newsletters, the page's origin and an expiry, and solves it in a Web Worker while the
reader types (static/proof.js). ``judge`` reads what a signup carries:

- a filled honeypot, an automation user agent, a forged render time, a too-quick one with no
  solved challenge, or a challenge that is spliced, forged, bound elsewhere or already
  spent: a bot. It gets the normal answer, nothing is stored or mailed, and counters.py
  counts the defence that stopped it;
- no challenge at all (SPEC's plain form pasted years ago, a page without script), one that
  expired while the page stood open, or a solved one sent back quicker than a person types
  (autofill): unverified. The signup works, under the tighter UNVERIFIED_SIGNUP_RATE_LIMIT,
  and is marked so;
- a solved challenge, spent now (``spend``, in the signup's own transaction, in the
  database every worker shares): proof.

The package does the hashing and the signature; this module adds what it leaves to its
callers: the binding, the replay store, the difficulty and the cheap signals.
"""

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from urllib.parse import parse_qs

import altcha
import sqlalchemy as sa
from flask import current_app, request
from itsdangerous import BadSignature, TimestampSigner
from sqlalchemy.orm import Session

from . import db
from .db import insert_ignoring, utcnow
from .embed import origins
from .models import Newsletter, SignupRequest, SpentChallenge, Subscription, Verification

SPENT = SpentChallenge.__table__
# How long a process reuses the signup rate it read for a difficulty.
RATE_CACHE_SECONDS = 5.0
MAX_PAYLOAD_LENGTH = 2000


class Defence:
    """The names under which editors see what stopped a signup (counters.STOPPED + name)."""

    HONEYPOT = "honeypot"
    AUTOMATION = "automation"
    TOO_FAST = "too_fast"
    FORGED = "forged"
    PROOF = "proof"
    REPLAY = "replay"


@dataclass(frozen=True)
class Verdict:
    """What a signup proved: ``verification``, or the defence that ``stopped`` it."""

    verification: Verification | None
    stopped: str | None = None
    # A solved challenge to spend with the signup (its signature, until it expires).
    spend: str | None = None
    spend_until: datetime | None = None


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"newsletters proof-of-work", hashlib.sha256).digest()


def _secrets() -> list[str]:
    config = current_app.config
    return [config["SECRET_KEY"], *config["SECRET_KEY_FALLBACKS"]]


def _bound(newsletters: list[Newsletter]) -> str:
    return ".".join(str(n.id) for n in sorted(newsletters, key=lambda n: n.id))


def origin_of_request() -> str:
    """Return the origin of the page asking: its Origin or Referer, else this site's own."""
    return (
        origins.origin_of(request.headers.get("Origin") or "")
        or origins.origin_of(request.headers.get("Referer") or "")
        or request.host_url.rstrip("/")
    )


def challenge(newsletters: list[Newsletter]) -> dict:
    """Return a new challenge for a form of ``newsletters`` on the asking page's origin."""
    config = current_app.config
    expires = datetime.now(UTC) + timedelta(seconds=config["POW_EXPIRES_SECONDS"])
    made = altcha.create_challenge_v1(
        altcha.ChallengeOptionsV1(
            hmac_key=_key(config["SECRET_KEY"]),
            max_number=difficulty(newsletters),
            expires=expires,
            params={"n": _bound(newsletters), "o": origin_of_request()},
        )
    )
    body = made.to_dict()
    # ALTCHA's own widgets read "maxnumber" (older) or "maxNumber": a solver of either kind.
    body["maxnumber"] = body["maxNumber"]
    return body


def rendered(newsletters: list[Newsletter]) -> str:
    """Return the signed render time of a form of ``newsletters``, for its ``rendered`` field."""
    return (
        TimestampSigner(current_app.config["SECRET_KEY"], salt="form-rendered")
        .sign(_bound(newsletters))
        .decode()
    )


def difficulty(newsletters: list[Newsletter]) -> int:
    """Return the challenge's range: wider as these newsletters' recent signups run faster."""
    config = current_app.config
    rate = _signup_rate(tuple(sorted(n.id for n in newsletters)))
    factor = max(1.0, rate / config["POW_NORMAL_SIGNUPS_PER_MINUTE"])
    return int(min(config["POW_MAX_NUMBER"], config["POW_MIN_NUMBER"] * factor))


def _signup_rate(newsletter_ids: tuple[int, ...]) -> float:
    """Return the signups per minute to these newsletters over the last POW_WINDOW_MINUTES.

    Read at most every RATE_CACHE_SECONDS per process and set of newsletters: a flood of
    challenge requests costs the database one count each few seconds.
    """
    cache = current_app.extensions.setdefault("newsletters.signup_rate", {})
    now = time.monotonic()
    known = cache.get(newsletter_ids)
    if known is not None and now - known[0] < RATE_CACHE_SECONDS:
        return known[1]
    minutes = current_app.config["POW_WINDOW_MINUTES"]
    since = utcnow() - timedelta(minutes=minutes)
    session = db.session()
    processed = session.scalar(
        sa.select(sa.func.count())
        .select_from(Subscription)
        .where(Subscription.newsletter_id.in_(newsletter_ids), Subscription.optin_at >= since)
    )
    # Requests the worker has not processed yet: a flood outruns it. All of them, whichever
    # newsletter: the table is short (the worker empties it every second or so).
    waiting = session.scalar(
        sa.select(sa.func.count())
        .select_from(SignupRequest)
        .where(SignupRequest.created_at >= since)
    )
    if len(cache) > 1000:  # sets of newsletters a page may ask for: keep the memory bounded
        cache.clear()
    rate = (processed + waiting) / minutes
    cache[newsletter_ids] = (now, rate)
    return rate


@lru_cache(maxsize=8)
def _automation(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.IGNORECASE)


def judge(payload, newsletters: list[Newsletter], user_agent: str | None) -> Verdict:
    """Return what the signup in ``payload`` proves; see the module's docstring."""
    config = current_app.config
    if payload.get("website"):
        return Verdict(None, Defence.HONEYPOT)
    if user_agent and _automation(config["BOT_USER_AGENTS"]).search(user_agent):
        return Verdict(None, Defence.AUTOMATION)
    too_fast = False
    stamp = payload.get("rendered")
    if stamp:
        try:
            bound, at = _unsign(stamp)
        except BadSignature:
            return Verdict(None, Defence.FORGED)
        if not _covers(bound, newsletters):
            return Verdict(None, Defence.FORGED)
        too_fast = time.time() - at < config["FORM_MIN_FILL_SECONDS"]
    solution = payload.get("altcha")
    if not solution:
        return Verdict(None, Defence.TOO_FAST) if too_fast else Verdict(Verification.UNVERIFIED)
    verdict = _judge_solution(solution, newsletters)
    if too_fast and verdict.verification == Verification.PROOF:
        # Quicker than typing, but the browser did the work: a reader's autofill, perhaps.
        # Taken as unverified (the tighter limit), the solution spent all the same.
        return Verdict(
            Verification.UNVERIFIED, spend=verdict.spend, spend_until=verdict.spend_until
        )
    if too_fast and verdict.stopped is None:
        return Verdict(None, Defence.TOO_FAST)
    return verdict


def _unsign(stamp: str) -> tuple[str, float]:
    for secret in _secrets():
        try:
            value, at = TimestampSigner(secret, salt="form-rendered").unsign(
                stamp, return_timestamp=True
            )
        except BadSignature:
            continue
        return value.decode(), at.timestamp()
    raise BadSignature("not ours")


def _covers(bound: str, newsletters: list[Newsletter]) -> bool:
    """Tell whether a challenge or render time made for ``bound`` covers these newsletters."""
    ids = set(bound.split("."))
    return all(str(n.id) in ids for n in newsletters)


def _judge_solution(solution: str, newsletters: list[Newsletter]) -> Verdict:
    if len(solution) > MAX_PAYLOAD_LENGTH:
        return Verdict(None, Defence.PROOF)
    try:
        payload = altcha.PayloadV1.from_base64(solution)
        params = parse_qs(payload.salt.split("?", 1)[1]) if "?" in payload.salt else {}
        expires = int(params["expires"][0])
        bound, origin = params["n"][0], params["o"][0]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, UnicodeError):
        return Verdict(None, Defence.PROOF)
    solved = False
    for secret in _secrets():
        # Expiry aside (below): an honest reader whose tab stood open too long is no bot.
        ok, _error = altcha.verify_solution_v1(payload, _key(secret), check_expires=False)
        solved = solved or ok
    if not solved or not _covers(bound, newsletters):
        return Verdict(None, Defence.PROOF)
    posted_from = origins.origin_of(request.headers.get("Origin") or "") or origins.origin_of(
        request.headers.get("Referer") or ""
    )
    if posted_from and posted_from != origin:
        return Verdict(None, Defence.PROOF)
    if expires < time.time():
        return Verdict(Verification.UNVERIFIED)
    return Verdict(
        Verification.PROOF,
        spend=payload.signature,
        spend_until=datetime.fromtimestamp(expires, UTC),
    )


def spend(session: Session, verdict: Verdict) -> bool:
    """Record the verdict's challenge as spent; tell whether it was new (not a replay).

    In the caller's transaction: the signup and the spending commit together. Two requests
    with one solution race for the same key; the database lets one win.
    """
    if verdict.spend is None:
        return True
    # RETURNING tells whether the row went in: a rowcount is not reliable here (-1 through
    # psycopg for an INSERT … ON CONFLICT DO NOTHING).
    inserted = session.execute(
        insert_ignoring(session, SPENT, ["signature"]).returning(SPENT.c.signature),
        {"signature": verdict.spend, "expires_at": verdict.spend_until},
    ).first()
    return inserted is not None
