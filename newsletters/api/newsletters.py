"""Newsletters through the API: which a key reaches, the streamed export, the change feed."""

from flask import Response, stream_with_context

from .. import apikeys, catalogue, changes, db, export_presets, exports, limits
from ..models import Status
from . import auth, bp, queries, schemas
from .errors import ApiError
from .responses import documented

JSONL = "application/x-ndjson"


@bp.route("/newsletters", methods=["GET"])
@limits.api
@bp.response(200, schemas.NewsletterList)
@documented()
def list_newsletters():
    """Return the newsletters this key may reach, with their subscriptions counted by status."""
    session = db.session()
    found = apikeys.newsletters_of(session, auth.current_key())
    counts = catalogue.counts(session, [n.id for n in found])
    return {
        "newsletters": [
            {
                "slug": n.slug,
                "name": n.name,
                "description": n.description or "",
                "is_public": n.is_public,
                "subscriptions": {str(s): counts[n.id][s] for s in Status},
            }
            for n in found
        ]
    }


@bp.route("/newsletters/<slug>/export", methods=["GET"])
@limits.api
@bp.arguments(schemas.ExportArgs, location="query", error_status_code=400)
@bp.alt_response(
    200,
    success=True,
    content_type=JSONL,
    schema={"type": "string"},
    description=(
        "JSON Lines: one object per subscription, with the CSV's columns as fields (SPEC's,"
        " then the consent columns). With `preset`, a CSV (text/csv) in that tool's layout."
    ),
)
@documented(400, 403, 404)
def export(args: dict, slug: str):
    """Stream the list as JSON Lines, as the editors' download does; recorded as an export.

    With `preset`, a CSV laid out for that tool's importer instead (docs/exports.md).
    """
    newsletter = auth.newsletter(slug)
    editor = auth.current_key().editor
    session = db.session()
    if "preset" not in args:
        chunks = exports.export(session, newsletter, args["status"], "jsonl", editor, via="api")
        return Response(stream_with_context(chunks), mimetype=JSONL)
    try:
        chunks = export_presets.export(
            session, newsletter, args["preset"], args["status"], editor, via="api"
        )
    except ValueError as exc:
        raise ApiError(400, "invalid_fields", str(exc), {"status": str(exc)}) from None
    return Response(stream_with_context(chunks), mimetype="text/csv")


@bp.route("/newsletters/<slug>/changes", methods=["GET"])
@limits.api
@bp.arguments(schemas.ChangeArgs, location="query", error_status_code=400)
@bp.response(200, schemas.ChangePage)
@documented(400, 403, 404)
def list_changes(args: dict, slug: str):
    """Return the newsletter's subscription changes after a cursor, oldest first.

    Poll with each answer's `next_cursor`: it is the last change's place, or the cursor
    sent when nothing is new. A change committed late never falls behind a cursor.
    """
    newsletter = auth.newsletter(slug)
    try:
        after = changes.Position.parse(args.get("cursor"))
    except changes.CursorError as exc:
        raise ApiError(
            400, "bad_cursor", str(exc), {"cursor": "Pass a next_cursor, as it was."}
        ) from None
    found = changes.since(
        db.session(), [newsletter.id], after, queries.page_size(args.get("limit"))
    )
    return {
        "changes": [change.body() for change in found],
        "next_cursor": str(found[-1].position if found else after),
    }
