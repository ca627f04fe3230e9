"""The health check that load balancers and monitors poll."""

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify

from . import db, limits

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Answer 200 when the database answers, 503 when it does not; say where limits count.

    ``rate_limits`` is the storage the limits count in (``redis``, ``memory``, or ``off``),
    or ``fallback: per-process (redis unreachable)``: a degraded state, not a failure, since
    signups go on being taken and limited, per process.
    """
    db.session().execute(sa.text("SELECT 1"))
    return jsonify(status="ok", rate_limits=limits.storage_state(current_app))
