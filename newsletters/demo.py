"""The demo of ``make run``: a publisher's article, on a port of its own, with the forms in it.

Another port is another origin, so the page shows what a publisher's site sees: each of the
three embeds (plain form, iframe with resize.js, widget) of the demo newsletters, whose
allow-lists name the demo's origin. The page is the publisher's, not the product's: its words
are sample copy in English, not product texts to translate.
"""

import threading
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Flask, render_template
from sqlalchemy.orm import Session
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from . import catalogue, db
from .embed.snippets import snippets
from .models import Newsletter

# The demo newsletters: slug, name, language, description, accent (None: the product's).
NEWSLETTERS = (
    ("demo", "Morning Briefing", "en", "The day's top stories, every morning.", None),
    ("demo-uk", "Ранковий брифінг", "uk", "Головні новини дня щоранку.", "#ffd500"),
    (
        "demo-explainer",
        "Explaining the News",
        "en",
        "One story a week, explained from the start.",
        "#8a1538",
    ),
)
SLUGS = tuple(slug for slug, *_ in NEWSLETTERS)


def origins(port: int) -> list[str]:
    """Return the demo page's origin under both loopback names a reader may type."""
    return [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]


def add_newsletters(session: Session, port: int) -> None:
    """Add the demo newsletters, each allowing the demo page (on ``port``) to embed it."""
    for slug, name, language, description, accent in NEWSLETTERS:
        catalogue.create(
            session,
            slug,
            name,
            description=description,
            language=language,
            accent_color=accent,
            allowed_origins=" ".join(origins(port)),
            site_url=origins(port)[0] + "/",
        )


def allow(session: Session, port: int) -> None:
    """Let the demo page on ``port`` embed the demo newsletters that list their sites.

    ``PORT`` may differ from the first start: a demo newsletter with an allow-list gets this
    port's demo origins added (a list left empty already allows every site), and a site URL
    that is a demo page on loopback follows the port.
    """
    found = session.scalars(sa.select(Newsletter).where(Newsletter.slug.in_(SLUGS)))
    for newsletter in found:
        listed = newsletter.origins()
        missing = [o for o in origins(port) if o not in listed]
        changes = {}
        if listed and missing:
            changes["allowed_origins"] = " ".join(listed + missing)
        site = urlsplit(newsletter.site_url or "")
        if site.hostname in ("127.0.0.1", "localhost") and site.port != port:
            changes["site_url"] = origins(port)[0] + "/"
        if changes:
            catalogue.update(session, newsletter, **changes)


def article(session: Session, app_url: str, demo_url: str) -> str:
    """Render the article page with the demo newsletters embedded (others if none is left)."""
    newsletters = (
        session.scalars(
            sa.select(Newsletter).where(Newsletter.slug.in_(SLUGS)).order_by(Newsletter.id)
        ).all()
        or catalogue.published().public[:3]
    )
    if not newsletters:
        return render_template("demo/article.html", boxes=None, app_url=app_url, demo_url=demo_url)
    # The three ways, each with its own newsletter while there are enough of them: the
    # widget takes the English one with an accent, the plain form (in its newsletter's
    # language, as the snippet is) the Ukrainian one.
    kinds = ("iframe", "form", "widget")
    boxes = {
        kind: (newsletters[i % len(newsletters)], snippets(newsletters[i % len(newsletters)])[kind])
        for i, kind in enumerate(kinds)
    }
    return render_template("demo/article.html", boxes=boxes, app_url=app_url, demo_url=demo_url)


def server(app: Flask, port: int) -> BaseWSGIServer:
    """Return a threaded server of the article page on loopback ``port`` (0: any free one)."""

    def page(environ, start_response):
        request = Request(environ)
        if request.path != "/":
            answer = Response(f"Not found: the demo has one page, {request.host_url}\n", status=404)
            return answer(environ, start_response)
        with app.app_context():
            html = article(db.session(), app.config["BASE_URL"], request.host_url.rstrip("/"))
        # A publisher's page: no Content-Security-Policy of the product's, as most have none.
        return Response(html, mimetype="text/html")(environ, start_response)

    return make_server("127.0.0.1", port, page, threaded=True)


def serve(app: Flask, port: int) -> str:
    """Serve the article page on ``port`` in a thread beside the app; return its URL."""
    demo = server(app, port)
    threading.Thread(target=demo.serve_forever, name="demo-page", daemon=True).start()
    return f"http://127.0.0.1:{demo.server_port}/"
