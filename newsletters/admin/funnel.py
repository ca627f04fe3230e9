"""A newsletter's signup funnel over a period: the page, and its CSV by form, page or campaign."""

from flask import Response, render_template, request, stream_with_context
from flask_babel import gettext as _
from werkzeug.exceptions import BadRequest

from .. import counters, db
from ..funnel import DIMENSIONS, PERIODS, chart, csv_chunks, csv_rows, measure, period_of
from ..models import Newsletter
from ..stats import period
from . import bp, editable_newsletter


@bp.get("/n/<slug>/funnel")
def funnel(slug):
    """Show views → signups → mail accepted → confirmed by form, page and campaign, and stops."""
    newsletter = editable_newsletter(slug)
    # This process's views and stops not yet written (counters.py) count too.
    counters.flush()
    numbers = measure(db.session(), newsletter, chosen_period())
    return render_template(
        "admin/funnel.html",
        newsletter=newsletter,
        funnel=numbers,
        chart=chart(numbers.forms),
        periods=PERIODS,
        dimensions=DIMENSIONS,
    )


@bp.get("/n/<slug>/funnel.csv")
def funnel_csv(slug):
    """Stream the funnel of the period by form, page or campaign (``by``) as a CSV download."""
    newsletter = editable_newsletter(slug)
    days = chosen_period()
    by = request.args.get("by", "form")
    if by not in DIMENSIONS:
        raise BadRequest(_("by must be one of: %(choices)s.", choices=", ".join(DIMENSIONS)))

    def chunks():
        # The session of the stream's own context, which closes it when the stream ends: the
        # request's session is closed before the first chunk goes out.
        yield from csv_chunks(csv_rows(db.session(), newsletter, days, by))

    return Response(
        stream_with_context(chunks()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename(newsletter, days, by)}"'},
    )


def chosen_period() -> int:
    """Return the days of ``?days=`` (the default period without it); 400 for any other."""
    try:
        return period_of(request.args.get("days"))
    except ValueError:
        raise BadRequest(
            _("days must be one of: %(choices)s.", choices=", ".join(map(str, PERIODS)))
        ) from None


def filename(newsletter: Newsletter, days: int, by: str) -> str:
    """Return the download's name: the newsletter, the grouping and the period's UTC days."""
    span = period(days)
    return f"{newsletter.slug}-funnel-by-{by}-{span[0].isoformat()}-to-{span[-1].isoformat()}.csv"
