"""What ``newsletters purge`` removes and cuts, and its record of having done so.

Every run removes what has no use left: expired tokens, pending signups past their life
(RETENTION_PENDING_DAYS, or else once their confirmation link has expired) and old API retry
answers. With RETENTION_EVIDENCE_DAYS it also cuts the IP addresses of older consent events
and subscriptions to their network and drops their user agents. A removed signup leaves a
ledger row (``expired``) first: the ledger outlives it, as every subscription; an address
left with no subscription that never agreed to anything goes too. Each run is recorded
(``PurgeRun``) with what it did.
"""

from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from . import ledger
from .ledger import Action, Evidence
from .models import (
    ConsentEvent,
    IdempotentRequest,
    PurgeRun,
    SpentChallenge,
    Status,
    Subscriber,
    Subscription,
    Token,
)

SUBSCRIPTIONS = Subscription.__table__
SUBSCRIBERS = Subscriber.__table__
TOKENS = Token.__table__
EVENTS = ConsentEvent.__table__
# The ledger's actions that show an address agreed to something, or that an editor acted on
# it: such an address is kept (its evidence is found by it) even with no subscription left.
CONSENTED = [
    str(a)
    for a in (Action.CONFIRMED, Action.JOINED, Action.IMPORTED, Action.EDITED, Action.DELETED)
]
# Rows one statement of the purge reads or changes at most: a first run on a large database
# holds no lock for long, nor a statement with tens of thousands of parameters.
BATCH = 1000
EXPIRED = Evidence(ip=None, user_agent=None, source="purge")


def purge(session: Session, now: datetime) -> dict[str, int]:
    """Apply every retention rule as of ``now``, record the run, and return what it did.

    The summary counts ``pending_signups`` removed, ``expired_tokens`` and ``api_answers``
    deleted, and (with RETENTION_EVIDENCE_DAYS) the ``events_cut`` and
    ``subscriptions_cut`` whose IP and user agent were cut. Flushes, never commits.
    """
    config = current_app.config
    pending_days = config["RETENTION_PENDING_DAYS"]
    if pending_days is None:
        pending_cutoff = now - timedelta(hours=config["CONFIRM_TTL_HOURS"])
    else:
        pending_cutoff = now - timedelta(days=pending_days)
    # Tokens first: an address removed below takes its tokens with it, uncounted.
    expired_tokens = session.execute(
        sa.delete(Token).where(Token.expires_at.is_not(None), Token.expires_at < now)
    ).rowcount
    summary = {"pending_signups": remove_pending(session, pending_cutoff)}
    summary["expired_tokens"] = expired_tokens
    kept_since = now - timedelta(hours=config["API_IDEMPOTENCY_HOURS"])
    summary["api_answers"] = session.execute(
        sa.delete(IdempotentRequest).where(IdempotentRequest.created_at < kept_since)
    ).rowcount
    # A spent proof-of-work challenge is kept only until it would have expired (proof.py).
    summary["spent_challenges"] = session.execute(
        sa.delete(SpentChallenge).where(SpentChallenge.expires_at < now)
    ).rowcount
    evidence_days = config["RETENTION_EVIDENCE_DAYS"]
    if evidence_days is not None:
        cutoff = now - timedelta(days=evidence_days)
        summary["events_cut"] = ledger.truncate_before(session, cutoff)
        summary["subscriptions_cut"] = cut_evidence(session, cutoff)
    settings = {"pending_days": pending_days, "evidence_days": evidence_days}
    session.add(PurgeRun(at=now, summary={**summary, "settings": settings}))
    session.flush()
    return summary


def remove_pending(session: Session, cutoff: datetime) -> int:
    """Remove the pending subscriptions signed up before ``cutoff``; return how many.

    Each first gets its ledger row (``expired``, leaving it unsubscribed), then goes with its
    unsubscribe token once no other subscription shares it. A batch at a time; on PostgreSQL
    the rows are locked, skipping any another transaction holds (a confirmation under way
    wins, and the next purge looks at the row again).
    """
    postgresql = session.get_bind().dialect.name == "postgresql"
    removed = 0
    while True:
        query = (
            sa.select(
                SUBSCRIPTIONS.c.id,
                SUBSCRIPTIONS.c.subscriber_id,
                SUBSCRIPTIONS.c.newsletter_id,
                SUBSCRIPTIONS.c.unsubscribe_token_id,
            )
            .where(
                SUBSCRIPTIONS.c.status == Status.PENDING.value,
                SUBSCRIPTIONS.c.optin_at < cutoff,
            )
            .order_by(SUBSCRIPTIONS.c.id)
            .limit(BATCH)
        )
        if postgresql:
            query = query.with_for_update(skip_locked=True)
        rows = session.execute(query).all()
        if not rows:
            return removed
        ledger.record(
            session,
            [
                ledger.Entry(
                    subscription_id=row.id,
                    subscriber_id=row.subscriber_id,
                    newsletter_id=row.newsletter_id,
                    action=Action.EXPIRED,
                    status=Status.UNSUBSCRIBED,
                    evidence=EXPIRED,
                    detail="never confirmed, removed by newsletters purge",
                )
                for row in rows
            ],
        )
        ids = [row.id for row in rows]
        session.execute(
            sa.delete(SUBSCRIPTIONS)
            .where(SUBSCRIPTIONS.c.id.in_(ids))
            .execution_options(synchronize_session=False)
        )
        _forget_addresses(session, sorted({row.subscriber_id for row in rows}))
        token_ids = sorted({row.unsubscribe_token_id for row in rows} - {None})
        if token_ids:
            session.execute(
                sa.delete(TOKENS)
                .where(
                    TOKENS.c.id.in_(token_ids),
                    ~sa.exists().where(SUBSCRIPTIONS.c.unsubscribe_token_id == TOKENS.c.id),
                )
                .execution_options(synchronize_session=False)
            )
        removed += len(rows)
        if len(rows) < BATCH:
            return removed


def _forget_addresses(session: Session, subscriber_ids: list[int]) -> None:
    """Delete those addresses that no subscription keeps and that never agreed to anything.

    An address whose every signup went unconfirmed is personal data kept without consent.
    Its tokens go with it (ON DELETE CASCADE); the ledger keeps its rows, without the
    address. An address with a confirmation, an import or an editor's action in the ledger
    stays: it is how that evidence is found.
    """
    session.execute(
        sa.delete(SUBSCRIBERS)
        .where(
            SUBSCRIBERS.c.id.in_(subscriber_ids),
            ~sa.exists().where(SUBSCRIPTIONS.c.subscriber_id == SUBSCRIBERS.c.id),
            ~sa.exists().where(
                EVENTS.c.subscriber_id == SUBSCRIBERS.c.id, EVENTS.c.action.in_(CONSENTED)
            ),
        )
        .execution_options(synchronize_session=False)
    )


def cut_evidence(session: Session, cutoff: datetime) -> int:
    """Cut the IPs of subscriptions' opt-ins and confirmations before ``cutoff``; count rows.

    As the ledger keeps old rows (``ledger.truncate_before``): an IP becomes its network
    (/24 or /48) and the opt-in's user agent is dropped. A value cut already (a network, with
    its "/") is left as it is, so running the purge again changes nothing.
    """
    optin_old = sa.and_(
        SUBSCRIPTIONS.c.optin_at < cutoff,
        sa.or_(_uncut(SUBSCRIPTIONS.c.optin_ip), SUBSCRIPTIONS.c.optin_user_agent.is_not(None)),
    )
    confirm_old = sa.and_(SUBSCRIPTIONS.c.confirmed_at < cutoff, _uncut(SUBSCRIPTIONS.c.confirm_ip))
    changed, after = 0, 0
    while True:
        rows = session.execute(
            sa.select(
                SUBSCRIPTIONS.c.id,
                SUBSCRIPTIONS.c.optin_at,
                SUBSCRIPTIONS.c.optin_ip,
                SUBSCRIPTIONS.c.optin_user_agent,
                SUBSCRIPTIONS.c.confirmed_at,
                SUBSCRIPTIONS.c.confirm_ip,
            )
            .where(SUBSCRIPTIONS.c.id > after, sa.or_(optin_old, confirm_old))
            .order_by(SUBSCRIPTIONS.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return changed
        session.execute(
            sa.update(SUBSCRIPTIONS)
            .where(SUBSCRIPTIONS.c.id == sa.bindparam("b_id"))
            .values(
                optin_ip=sa.bindparam("b_optin_ip"),
                optin_user_agent=sa.bindparam("b_optin_user_agent"),
                confirm_ip=sa.bindparam("b_confirm_ip"),
            )
            .execution_options(synchronize_session=False),
            [_cut_row(row, cutoff) for row in rows],
        )
        changed += len(rows)
        after = rows[-1].id


def _uncut(column) -> sa.ColumnElement[bool]:
    """Return the condition of an IP column that holds a whole address, not yet a network."""
    return sa.and_(column.is_not(None), ~column.contains("/"))


def _cut_row(row, cutoff: datetime) -> dict:
    """Return the parameters of the UPDATE of one subscription's old evidence."""
    optin_old = row.optin_at is not None and row.optin_at < cutoff
    confirm_old = row.confirmed_at is not None and row.confirmed_at < cutoff
    return {
        "b_id": row.id,
        "b_optin_ip": _network(row.optin_ip) if optin_old else row.optin_ip,
        "b_optin_user_agent": None if optin_old else row.optin_user_agent,
        "b_confirm_ip": _network(row.confirm_ip) if confirm_old else row.confirm_ip,
    }


def _network(ip: str | None) -> str | None:
    if ip is None or "/" in ip:
        return ip
    return ledger.network_of(ip)


def describe(summary: dict[str, int]) -> str:
    """Return the one line ``newsletters purge`` prints about a run's ``summary``."""
    line = (
        f"purged {summary['pending_signups']} pending signups, "
        f"{summary['expired_tokens']} expired tokens and "
        f"{summary['api_answers']} API answers kept for retries"
    )
    if summary.get("spent_challenges"):
        line += f"; forgot {summary['spent_challenges']} expired proof-of-work challenges"
    if "events_cut" in summary:
        line += (
            f"; cut the IP addresses and user agents of {summary['events_cut']} consent events"
            f" and {summary['subscriptions_cut']} subscriptions"
        )
    return line
