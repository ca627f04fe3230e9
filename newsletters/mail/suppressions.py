"""Suppressions: addresses a mail server refused for good, per newsletter; no mail goes there."""

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import Suppression


def suppress(session: Session, email: str, newsletter_ids: Iterable[int], reason: str) -> None:
    """Stop mail to ``email`` for each of ``newsletter_ids``; the first reason given is kept."""
    newsletter_ids = set(newsletter_ids)
    for newsletter_id in newsletter_ids - suppressed(session, email, newsletter_ids):
        try:
            with session.begin_nested():
                session.add(
                    Suppression(email=email, newsletter_id=newsletter_id, reason=reason[:2000])
                )
        except IntegrityError:
            pass  # suppressed meanwhile by another worker: the goal is reached
    session.flush()


def suppressed(session: Session, email: str, newsletter_ids: Iterable[int]) -> set[int]:
    """Return which of ``newsletter_ids`` ``email`` is suppressed for."""
    newsletter_ids = list(newsletter_ids)
    if not newsletter_ids:
        return set()
    return set(
        session.scalars(
            sa.select(Suppression.newsletter_id).where(
                Suppression.email == email, Suppression.newsletter_id.in_(newsletter_ids)
            )
        )
    )


def lift(session: Session, email: str, newsletter_ids: Iterable[int]) -> None:
    """Let mail go to ``email`` again for each of ``newsletter_ids``."""
    newsletter_ids = list(newsletter_ids)
    if newsletter_ids:
        session.execute(
            sa.delete(Suppression).where(
                Suppression.email == email, Suppression.newsletter_id.in_(newsletter_ids)
            )
        )
