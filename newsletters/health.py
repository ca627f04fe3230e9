"""The health check that load balancers and monitors poll."""

import sqlalchemy as sa
from flask import Blueprint, jsonify

from . import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Answer 200 when the database answers, 503 when it does not."""
    db.session().execute(sa.text("SELECT 1"))
    return jsonify(status="ok")
