"""The ``newsletters`` command line: a Flask CLI group with the operators' commands."""

import re
import sys
from datetime import timedelta
from urllib.parse import urlsplit

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from werkzeug.serving import run_simple

from . import config, db, exports, migrations
from .db import utcnow
from .mail import outbox, worker
from .models import Newsletter, Status, Subscription, Token

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def main() -> None:
    """Run the ``newsletters`` console script."""
    from . import create_app

    FlaskGroup(create_app=create_app, add_default_commands=True, help="Manage newsletters.")(
        prog_name="newsletters"
    )


def register(app: Flask) -> None:
    """Add this module's commands to ``app.cli``."""
    for command in (db_group, newsletter_group, export, worker_command, purge, outbox_group, dev):
        app.cli.add_command(command)


@click.group("db", help="Create or migrate the database schema.")
def db_group():
    pass


@db_group.command("upgrade")
@click.argument("revision", default="head")
@with_appcontext
def db_upgrade(revision):
    """Create or migrate the schema to REVISION (default: the newest)."""
    migrations.upgrade(revision)
    click.echo(f"database at {migrations.current()} ({_safe_url()})")


@db_group.command("revision")
@click.option("-m", "--message", required=True, help="What the migration changes.")
@with_appcontext
def db_revision(message):
    """Write a migration for the models' changes (for developers; review it before committing)."""
    migrations.revision(message)


@click.group("newsletter", help="Add and list newsletters.")
def newsletter_group():
    pass


@newsletter_group.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="The name readers see.")
@click.option("--description", default="", help="One line under the name.")
@with_appcontext
def newsletter_create(slug, name, description):
    """Add a newsletter with the URL name SLUG."""
    if not SLUG.match(slug):
        raise click.BadParameter(
            "use lower-case letters, digits and hyphens, starting with a letter or digit",
            param_hint="SLUG",
        )
    session = db.session()
    if session.scalar(sa.select(Newsletter).where(Newsletter.slug == slug)):
        raise click.ClickException(f"a newsletter {slug!r} exists already")
    session.add(Newsletter(slug=slug, name=name.strip(), description=description))
    session.commit()
    click.echo(f"created {slug}: {current_app.config['BASE_URL']}/n/{slug}")


@newsletter_group.command("list")
@with_appcontext
def newsletter_list():
    """List the newsletters with their subscription counts."""
    session = db.session()
    counts = dict(
        session.execute(
            sa.select(Subscription.newsletter_id, sa.func.count())
            .where(Subscription.status == Status.CONFIRMED)
            .group_by(Subscription.newsletter_id)
        ).all()
    )
    for newsletter in session.scalars(sa.select(Newsletter).order_by(Newsletter.slug)):
        click.echo(
            f"{newsletter.slug}\t{newsletter.name}\t{counts.get(newsletter.id, 0)} confirmed"
        )


@click.command("export")
@click.argument("slug")
@click.option(
    "--status", type=click.Choice(exports.STATUSES), default="confirmed", show_default=True
)
@click.option(
    "--format", "fmt", type=click.Choice(sorted(exports.WRITERS)), default="csv", show_default=True
)
@click.option("-o", "--output", type=click.File("w", encoding="utf-8", lazy=True), default="-")
@with_appcontext
def export(slug, status, fmt, output):
    """Stream the subscriptions of SLUG to stdout or to a file."""
    newsletter = _newsletter(slug)
    rows = exports.records(db.session(), newsletter, status)
    for chunk in exports.WRITERS[fmt](rows):
        output.write(chunk)
    output.flush()


@click.command("worker")
@click.option("--once", is_flag=True, help="Drain the outbox and exit.")
@with_appcontext
def worker_command(once):
    """Send the mail outbox, polling for new messages until stopped."""
    click.echo(f"worker: sending through {_mail_target()}", err=True)
    try:
        total = worker.run(once=once, report=lambda line: click.echo(line, err=True))
    except KeyboardInterrupt:
        return
    if once:
        click.echo(f"worker: {dict(total) or 'nothing due'}", err=True)
        if total["retry"] or total["failed"]:
            sys.exit(1)


@click.group("outbox", help="Inspect the mail outbox.")
def outbox_group():
    pass


@outbox_group.command("status")
@with_appcontext
def outbox_status():
    """Show how many messages are in each state and the oldest due one."""
    session = db.session()
    for state, n in sorted(outbox.counts(session).items()):
        click.echo(f"{state}\t{n}")
    oldest = outbox.oldest_due(session)
    click.echo(f"oldest due\t{oldest.isoformat() if oldest else '-'}")


@click.command("purge")
@with_appcontext
def purge():
    """Remove expired confirmation tokens and pending signups past their life."""
    session = db.session()
    now = utcnow()
    cutoff = now - timedelta(hours=current_app.config["CONFIRM_TTL_HOURS"])
    pending = session.execute(
        sa.delete(Subscription).where(
            Subscription.status == Status.PENDING, Subscription.optin_at < cutoff
        )
    ).rowcount
    expired = session.execute(
        sa.delete(Token).where(Token.expires_at.is_not(None), Token.expires_at < now)
    ).rowcount
    session.commit()
    click.echo(f"purged {pending} pending signups and {expired} expired tokens")


@click.command("dev")
@click.option("--port", default=5000, envvar="PORT", show_default=True)
@with_appcontext
def dev(port):
    """Migrate, add a demo newsletter, then serve with the mail worker running (make run)."""
    migrations.upgrade("head")
    session = db.session()
    if current_app.config["DEMO_NEWSLETTER"] and not session.scalar(sa.select(Newsletter.id)):
        session.add(
            Newsletter(
                slug="demo",
                name="Morning Briefing",
                description="The day's top stories, every morning.",
            )
        )
        session.commit()
        click.echo("added the demo newsletter 'demo'")
    # Release this command's transaction: on SQLite it would hold the write lock while serving.
    session.close()
    app = current_app._get_current_object()
    if app.config["BASE_URL"] == config.DEFAULTS["BASE_URL"]:
        app.config["BASE_URL"] = f"http://127.0.0.1:{port}"
    click.echo(f"mail: {_mail_target()}; confirmation links are printed below")
    worker.start_in_thread(app, report=lambda line: click.echo(f"[mail] {line}"))
    # app.run() refuses to block inside a Flask CLI command; werkzeug's server is what it runs.
    run_simple("127.0.0.1", port, app, threaded=True)


def _newsletter(slug: str) -> Newsletter:
    newsletter = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == slug))
    if newsletter is None:
        raise click.ClickException(
            f"there is no newsletter {slug!r} (see 'newsletters newsletter list')"
        )
    return newsletter


def _mail_target() -> str:
    url = current_app.config["MAIL_URL"]
    password = urlsplit(url).password
    return url.replace(f":{password}@", ":***@") if password else url


def _safe_url() -> str:
    return sa.engine.make_url(current_app.config["DATABASE_URL"]).render_as_string()
