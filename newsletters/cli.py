"""The ``newsletters`` command line: a Flask CLI group with the operators' commands."""

import io
import re
import sys
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlsplit

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from werkzeug.serving import run_simple

from . import config, db, editors, exports, imports, migrations
from .db import utcnow
from .embed.origins import parse_origins
from .embed.snippets import snippets
from .mail import transports, worker
from .mail.commands import outbox_group
from .models import Newsletter, Status, Subscription, Token

SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")  # whole string: fullmatch()


def main() -> None:
    """Run the ``newsletters`` console script."""
    from . import create_app

    group = FlaskGroup(create_app=create_app, add_default_commands=True, help="Manage newsletters.")
    try:
        group(prog_name="newsletters")
    except config.ConfigError as exc:
        # A missing setting at start-up: one line that names it, not a traceback.
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)


def register(app: Flask) -> None:
    """Add this module's commands to ``app.cli``."""
    for command in (
        db_group,
        newsletter_group,
        editor_group,
        export,
        import_command,
        worker_command,
        purge,
        outbox_group,
        dev,
    ):
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
    if not SLUG.fullmatch(slug):
        raise click.BadParameter(
            "use lower-case letters, digits and hyphens, starting with a letter or digit",
            param_hint="SLUG",
        )
    name = name.strip()
    longest = Newsletter.__table__.c.name.type.length
    if not name or len(name) > longest:
        raise click.BadParameter(f"give a name of 1 to {longest} characters", param_hint="--name")
    session = db.session()
    if session.scalar(sa.select(Newsletter).where(Newsletter.slug == slug)):
        raise click.ClickException(f"a newsletter {slug!r} exists already")
    session.add(Newsletter(slug=slug, name=name, description=description))
    session.commit()
    click.echo(f"created {slug}: {current_app.config['BASE_URL']}/n/{slug}")


@newsletter_group.command("embed")
@click.argument("slug")
@with_appcontext
def newsletter_embed(slug):
    """Print the three ways to put SLUG's signup form on another site."""
    shown = snippets(_newsletter(slug))
    click.echo("1. Plain HTML form (works without JavaScript):\n" + shown["form"] + "\n")
    click.echo("2. iframe:\n" + shown["iframe"] + "\n")
    click.echo("3. JavaScript widget:\n" + shown["widget"])


@newsletter_group.command("origins")
@click.argument("slug")
@click.argument("origins", nargs=-1)
@with_appcontext
def newsletter_origins(slug, origins):
    """Set the sites (https://www.example.com …) allowed to embed SLUG; none: any site."""
    newsletter = _newsletter(slug)
    try:
        newsletter.allowed_origins = " ".join(parse_origins(" ".join(origins)))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="ORIGINS") from None
    db.session().commit()
    click.echo(f"{slug}: embeddable on {newsletter.allowed_origins or 'any site'}")


@click.group("editor", help="Manage the editors' accounts.")
def editor_group():
    pass


@editor_group.command("create")
@click.argument("email")
@click.option("--admin", "is_admin", is_flag=True, help="Sees every newsletter, manages editors.")
@click.option("--newsletter", "slugs", multiple=True, help="A newsletter this editor edits.")
@with_appcontext
def editor_create(email, is_admin, slugs):
    """Add an editor; the password is read from stdin when it is not a terminal."""
    newsletters = [_newsletter(slug) for slug in slugs]
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    session = db.session()
    try:
        editor = editors.create(
            session, email, password, is_admin=is_admin, newsletters=newsletters
        )
    except editors.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    session.commit()
    role = "admin" if is_admin else f"editor of {', '.join(slugs) or 'no newsletter yet'}"
    click.echo(f"created {editor.email} ({role})")


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
    session = db.session()
    entry = exports.record(session, newsletter, None, "cli", status, fmt)
    session.commit()
    rows = exports.counted(exports.records(session, newsletter, status), entry, session)
    to_screen = output.name in ("-", "<stdout>") and sys.stdout.isatty()
    total = _count(newsletter, status) if _on_terminal() and not to_screen else None
    with _progress(total, f"exporting {slug}", every=exports.BATCH) as advance:
        for chunk in exports.WRITERS[fmt](_advancing(rows, advance)):
            output.write(chunk)
    output.flush()


@click.command("import")
@click.argument("slug")
@click.argument("file", type=click.File("rb"))
@click.option(
    "--send-confirmation",
    is_flag=True,
    help="Mail a confirmation link to each pending row (the signup throttles apply).",
)
@with_appcontext
def import_command(slug, file, send_confirmation):
    """Import FILE, a CSV in the export's format, into SLUG's list ('-' reads stdin).

    Columns are matched by the header row's names; 'email' is required. Prints how many rows
    were taken and, on stderr, each row not taken with why. Nothing is imported when the
    file as a whole cannot be read.
    """
    newsletter = _newsletter(slug)
    session = db.session()
    total = _count_lines(file) if _on_terminal() and file.seekable() else None
    text = io.TextIOWrapper(file, encoding="utf-8-sig", newline="")
    try:
        with _progress(total, f"importing into {slug}") as advance:
            report = imports.import_csv(
                session, newsletter, text, send_confirmation=send_confirmation, progress=advance
            )
    except imports.ImportRefused as exc:
        session.rollback()
        raise click.ClickException(f"{file.name}: {exc} Nothing was imported.") from None
    finally:
        # Leave closing the file (or not closing stdin) to click.
        text.detach()
    session.commit()
    for refused in report.refused:
        click.echo(f"line {refused.line}: {refused.email}: {refused.reason}", err=True)
    if report.ignored_columns:
        click.echo(f"columns ignored: {', '.join(report.ignored_columns)}", err=True)
    summary = (
        f"taken {report.taken}, already on the list {report.already}, refused {report.invalid}"
    )
    if send_confirmation:
        summary += f", confirmation mails queued {report.mails_queued}"
    click.echo(summary)


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
        if set(total) - {"sent"}:
            sys.exit(1)


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
    shown = transports.from_url(app.config["MAIL_URL"]).shows_links
    click.echo(
        f"mail: {_mail_target()}" + ("; confirmation links are printed below" if shown else "")
    )
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


def _on_terminal() -> bool:
    """Tell whether a person watches stderr, so that a progress bar is worth drawing."""
    return sys.stderr.isatty()


@contextmanager
def _progress(length: int | None, label: str, every: int = 1):
    """Yield a function that advances a progress bar on stderr, or None without a length."""
    if length is None:
        yield None
        return
    with click.progressbar(
        length=length, label=label, file=sys.stderr, update_min_steps=every
    ) as bar:
        yield bar.update


def _advancing(rows, advance):
    """Pass ``rows`` through, advancing the progress bar (if any) by one per row."""
    if advance is None:
        yield from rows
        return
    for row in rows:
        yield row
        advance(1)


def _count(newsletter: Newsletter, status: str) -> int:
    """Return how many rows an export of ``newsletter`` with ``status`` will have."""
    query = (
        sa.select(sa.func.count())
        .select_from(Subscription)
        .where(Subscription.newsletter_id == newsletter.id)
    )
    if status != "all":
        query = query.where(Subscription.status == Status(status))
    return db.session().scalar(query)


def _count_lines(file) -> int:
    """Count the lines of a seekable binary file, and rewind it."""
    lines, last = 0, b"\n"
    while chunk := file.read(1 << 20):
        lines += chunk.count(b"\n")
        last = chunk[-1:]
    file.seek(0)
    return lines + (last != b"\n")


def _mail_target() -> str:
    url = current_app.config["MAIL_URL"]
    password = urlsplit(url).password
    return url.replace(f":{password}@", ":***@") if password else url


def _safe_url() -> str:
    return sa.engine.make_url(current_app.config["DATABASE_URL"]).render_as_string()
