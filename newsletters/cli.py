"""The ``newsletters`` command line: a Flask CLI group with the operators' commands."""

import io
import sys
from contextlib import contextmanager
from urllib.parse import urlsplit

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from werkzeug.serving import run_simple

from . import (
    apikeys,
    catalogue,
    config,
    db,
    demo,
    editors,
    erasure,
    export_presets,
    exports,
    imports,
    ledger,
    migrations,
    retention,
    webhooks,
)
from .db import utcnow
from .embed.snippets import snippets
from .mail import transports, worker
from .mail.commands import outbox_group
from .models import Newsletter, Status, Subscription


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
        erase,
        consent_group,
        outbox_group,
        apikeys.apikey_group,
        webhooks.webhook_group,
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
@click.option(
    "--language",
    default="en",
    show_default=True,
    help="Its pages' and mails' language unless the reader's is known: en or uk.",
)
@with_appcontext
def newsletter_create(slug, name, description, language):
    """Add a newsletter with the URL name SLUG."""
    session = db.session()
    with _catalogue_errors(
        slug="SLUG", name="--name", description="--description", language="--language"
    ):
        catalogue.create(session, slug, name, description=description, language=language)
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
    with _catalogue_errors(allowed_origins="ORIGINS"):
        catalogue.set_origins(db.session(), newsletter, " ".join(origins))
    db.session().commit()
    click.echo(f"{slug}: embeddable on {newsletter.allowed_origins or 'any site'}")


@newsletter_group.command("brand")
@click.argument("slug")
@click.option("--accent", help="Accent colour of buttons and links, #rrggbb ('' for none).")
@click.option("--logo", help="The https:// address of its logo ('' for none).")
@click.option("--site", help="The publisher's site, linked from the thank-you page ('' for none).")
@with_appcontext
def newsletter_brand(slug, accent, logo, site):
    """Set SLUG's branding on its pages, embeds and mails; print what it now has."""
    newsletter = _newsletter(slug)
    given = {"accent_color": accent, "logo_url": logo, "site_url": site}
    with _catalogue_errors(accent_color="--accent", logo_url="--logo", site_url="--site"):
        catalogue.update(
            db.session(), newsletter, **{k: v for k, v in given.items() if v is not None}
        )
    db.session().commit()
    for name in given:
        click.echo(f"{name}\t{getattr(newsletter, name) or '-'}")


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


@editor_group.command("list")
@with_appcontext
def editor_list():
    """List the editors: address, role, newsletters, and whether the account is disabled."""
    for editor in editors.listing(db.session()):
        click.echo(f"{editor.email}\t{_editor_access(editor)}\t{_editor_state(editor)}")


@editor_group.command("disable")
@click.argument("email")
@with_appcontext
def editor_disable(email):
    """Disable EMAIL's account: it cannot log in, and its sessions end at once."""
    editor = _change_editor(email, editors.disable)
    click.echo(f"{editor.email}: {_editor_state(editor)}")


@editor_group.command("enable")
@click.argument("email")
@with_appcontext
def editor_enable(email):
    """Let EMAIL log in again after a disable."""
    editor = _change_editor(email, editors.enable)
    click.echo(f"{editor.email}: {_editor_state(editor)}")


@editor_group.command("remove")
@click.argument("email")
@click.confirmation_option(prompt="Remove this editor's account for good?")
@with_appcontext
def editor_remove(email):
    """Delete EMAIL's account (to keep it but stop it, use 'editor disable')."""
    editor = _change_editor(email, editors.remove)
    click.echo(f"removed {editor.email}")


@editor_group.command("set")
@click.argument("email")
@click.option(
    "--admin/--no-admin", "is_admin", default=None, help="Make an admin, or take the role away."
)
@click.option(
    "--newsletter",
    "slugs",
    multiple=True,
    help="A newsletter this editor edits; those given replace the ones before.",
)
@click.option("--no-newsletters", is_flag=True, help="Take every newsletter away.")
@with_appcontext
def editor_set(email, is_admin, slugs, no_newsletters):
    """Change what EMAIL may do: admin or not, and which newsletters they edit."""
    if slugs and no_newsletters:
        raise click.UsageError("give either --newsletter SLUG or --no-newsletters, not both")
    if is_admin is None and not slugs and not no_newsletters:
        raise click.UsageError(
            "say what to change: --admin or --no-admin, --newsletter SLUG or --no-newsletters"
        )
    newsletters = [_newsletter(slug) for slug in slugs]

    def change(session, editor):
        if is_admin is not None:
            editors.set_admin(session, editor, is_admin)
        if slugs or no_newsletters:
            editors.set_newsletters(session, editor, newsletters)

    editor = _change_editor(email, change)
    click.echo(f"{editor.email}: {_editor_access(editor)}")


def _change_editor(email: str, change):
    """Find the editor EMAIL, apply ``change`` to them and commit; a refusal ends the command."""
    session = db.session()
    try:
        editor = editors.find(session, email)
        change(session, editor)
    except editors.AccountError as exc:
        session.rollback()
        raise click.ClickException(str(exc)) from None
    session.commit()
    return editor


def _editor_access(editor) -> str:
    if editor.is_admin:
        return "admin (every newsletter)"
    return "editor of " + (", ".join(n.slug for n in editor.newsletters) or "no newsletter")


def _editor_state(editor) -> str:
    if editor.is_active:
        return "active"
    return f"disabled since {editor.disabled_at:%Y-%m-%d %H:%M} UTC"


@newsletter_group.command("list")
@with_appcontext
def newsletter_list():
    """List the newsletters with their subscription counts."""
    session = db.session()
    newsletters = catalogue.everything(session)
    counts = catalogue.counts(session, [n.id for n in newsletters])
    for newsletter in newsletters:
        confirmed = counts[newsletter.id][Status.CONFIRMED]
        click.echo(f"{newsletter.slug}\t{newsletter.name}\t{confirmed} confirmed")


@click.command("export")
@click.argument("slug")
@click.option(
    "--status", type=click.Choice(exports.STATUSES), default="confirmed", show_default=True
)
@click.option(
    "--format", "fmt", type=click.Choice(sorted(exports.FORMATS)), default="csv", show_default=True
)
@click.option(
    "--preset",
    type=click.Choice(list(export_presets.PRESETS)),
    default=export_presets.DEFAULT,
    show_default=True,
    help="A CSV laid out for the tool that sends the newsletter (docs/exports.md); "
    "'spreadsheet' is SPEC's columns, formula-safe, for Excel or LibreOffice.",
)
@click.option("-o", "--output", type=click.File("wb", lazy=True), default="-")
@with_appcontext
def export(slug, status, fmt, preset, output):
    """Stream the subscriptions of SLUG to stdout or to a file."""
    newsletter = _newsletter(slug)
    if fmt != "csv" and preset != export_presets.DEFAULT:
        raise click.BadParameter(
            "a preset is a CSV layout: leave --format csv", param_hint="--preset"
        )
    try:
        export_presets.get(preset).check(status)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--status") from None
    to_screen = output.name in ("-", "<stdout>") and sys.stdout.isatty()
    total = _count(newsletter, status) if _on_terminal() and not to_screen else None
    with _progress(total, f"exporting {slug}") as advance:
        if fmt == "csv":
            chunks = export_presets.export(
                db.session(), newsletter, preset, status, via="cli", progress=advance
            )
        else:
            chunks = exports.export(
                db.session(), newsletter, status, fmt, via="cli", progress=advance
            )
        for chunk in chunks:
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
    """Remove expired tokens and stale pending signups, apply the retention settings, record it."""
    session = db.session()
    summary = retention.purge(session, utcnow())
    session.commit()
    click.echo(retention.describe(summary))


@click.command("erase")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_appcontext
def erase(email, yes):
    """Erase a person: their data gone everywhere, a keyed hash kept on the suppression list."""
    from .subscriptions import services

    try:
        address = services.normalise_address(email)
    except services.InvalidSignup as exc:
        raise click.BadParameter(exc.message, param_hint="EMAIL") from None
    if not yes:
        click.confirm(f"Erase {address} everywhere? This cannot be undone", abort=True)
    session = db.session()
    found = erasure.erase(
        session,
        address,
        ledger.Evidence(ip=None, user_agent=None, source="cli"),
        "erased at the person's request, by an operator (newsletters erase)",
    )
    session.commit()
    if found:
        click.echo(f"erased {address}; its hash is on the suppression list")
    else:
        click.echo(f"{address} was not on any list; its hash is on the suppression list")


@click.group("consent", help="Check the consent ledger.")
def consent_group():
    pass


@consent_group.command("verify")
@with_appcontext
def consent_verify():
    """Check every subscription's ledger chain; exit non-zero and name each break."""
    checked, breaks = ledger.verify(db.session())
    for found in breaks:
        click.echo(f"break: {found}")
    if breaks:
        click.echo(f"{len(breaks)} breaks in {checked} ledger rows", err=True)
        sys.exit(1)
    click.echo(f"the consent ledger holds: {checked} rows checked, no break")


@click.command("dev")
@click.option("--port", default=5000, envvar="PORT", show_default=True)
@with_appcontext
def dev(port):
    """Migrate, add demo newsletters, then serve with the mail worker and the demo page."""
    migrations.upgrade("head")
    session = db.session()
    # The demo: a publisher's article on the next port, another origin (demo.py).
    demo_port = port + 1
    if current_app.config["DEMO_NEWSLETTER"]:
        if not session.scalar(sa.select(Newsletter.id)):
            # One in Ukrainian, whose pages and mails are Ukrainian unless the reader's
            # browser asks for English; each allows the demo page to embed it.
            demo.add_newsletters(session, demo_port)
            click.echo(f"added the demo newsletters {', '.join(demo.SLUGS)}")
        demo.allow(session, demo_port)
        session.commit()
    # Release this command's transaction: on SQLite it would hold the write lock while serving.
    session.close()
    app = current_app._get_current_object()
    if not app.config["BASE_URL_IS_SET"]:
        # Links in mails and those the commands print in another shell (newsletter embed,
        # export) lead to this server, whatever PORT it was given.
        app.config["BASE_URL"] = f"http://127.0.0.1:{port}"
        config.write_dev_base_url(app, app.config["BASE_URL"])
    shown = transports.from_url(app.config["MAIL_URL"]).shows_links
    click.echo(
        f"mail: {_mail_target()}" + ("; confirmation links are printed below" if shown else "")
    )
    worker.start_in_thread(app, report=lambda line: click.echo(f"[mail] {line}"))
    if app.config["DEMO_NEWSLETTER"]:
        try:
            served = demo.serve(app, demo_port)
            click.echo(f"demo: a publisher's article with the forms embedded: {served}")
        except OSError as exc:
            click.echo(f"demo: not served, port {demo_port} is taken ({exc.strerror})", err=True)
    # app.run() refuses to block inside a Flask CLI command; werkzeug's server is what it runs.
    run_simple("127.0.0.1", port, app, threaded=True)


def _newsletter(slug: str) -> Newsletter:
    newsletter = catalogue.find(db.session(), slug)
    if newsletter is None:
        raise click.ClickException(
            f"there is no newsletter {slug!r} (see 'newsletters newsletter list')"
        )
    return newsletter


@contextmanager
def _catalogue_errors(**params: str):
    """Turn a ``CatalogueError`` into an error that names the parameter (``params[field]``)."""
    try:
        yield
    except catalogue.CatalogueError as exc:
        if exc.field in params:
            raise click.BadParameter(exc.message, param_hint=params[exc.field]) from None
        raise click.ClickException(exc.message) from None


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
