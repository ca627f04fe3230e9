"""The wheel: templates and migrations inside the package, and an installed copy that works."""

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from .conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the project's wheel once for this module, as `pip install .` would."""
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out)]
    if importlib.util.find_spec("hatchling"):
        # The build backend is at hand: no need to fetch it from PyPI into an isolated env.
        command.append("--no-build-isolation")
    subprocess.run([*command, str(ROOT)], check=True, capture_output=True, timeout=600)
    [built] = out.glob("newsletters-*.whl")
    return built


@pytest.fixture(scope="module")
def names(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_carries_every_template_inside_the_package(names):
    templates = {
        f"newsletters/templates/{path.relative_to(ROOT / 'templates').as_posix()}"
        for path in (ROOT / "templates").rglob("*")
        if path.is_file()
    }
    assert "newsletters/templates/base.html" in templates
    assert "newsletters/templates/mail/confirm.txt" in templates
    assert "newsletters/templates/mail/confirm.html" in templates
    assert templates <= names


def test_wheel_carries_the_migrations(names):
    migrations = {
        f"newsletters/{path.relative_to(ROOT / 'newsletters').as_posix()}"
        for path in (ROOT / "newsletters" / "migrations").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert {
        "newsletters/migrations/env.py",
        "newsletters/migrations/script.py.mako",
        "newsletters/migrations/versions/0001_initial_schema.py",
    } <= migrations
    assert migrations <= names


def test_wheel_declares_the_console_script_and_leaves_out_tests_and_caches(wheel, names):
    with zipfile.ZipFile(wheel) as archive:
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "newsletters = newsletters.cli:main" in archive.read(entry_points).decode()
    assert not any(
        n.startswith("tests/") or "__pycache__" in n or n.endswith(".pyc") for n in names
    )
    assert not any(n.endswith((".db", ".eml")) or "secret_key" in n for n in names)


def test_installed_wheel_migrates_and_renders_pages_from_its_own_files(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet"]
        + ["--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # Runs in a fresh interpreter where the installed copy comes first on the path, far from
    # the source tree: it must find its templates and migrations inside itself.
    script = textwrap.dedent(
        f"""
        from pathlib import Path

        import newsletters
        from newsletters import create_app, db, migrations
        from newsletters.models import Newsletter

        site = Path({str(site)!r})
        assert Path(newsletters.__file__).is_relative_to(site), newsletters.__file__
        app = create_app({{
            "DATABASE_URL": "sqlite:///{tmp_path / "installed.db"}",
            "SECRET_KEY": "x",
            "RATELIMIT_ENABLED": False,
        }})
        assert Path(app.template_folder).is_relative_to(site), app.template_folder
        with app.app_context():
            migrations.upgrade()
            db.session().add(Newsletter(slug="briefing", name="Morning Briefing"))
            db.session().commit()
        client = app.test_client()
        page = client.get("/n/briefing")
        assert page.status_code == 200 and "Morning Briefing" in page.text, page.text
        with app.app_context():
            db.engine().dispose()
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")}
    env["PYTHONPATH"] = str(site)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


def readme_session() -> str:
    """Return the README's command-line session: the ``sh`` block of its "Command line"."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def fresh_shell(tmp_path) -> dict:
    """Return the environment of a new login's shell, in a folder with this suite's .venv.

    Nothing of the test run leaks in: no virtualenv on the PATH, no NEWSLETTERS_* but a
    database, mail folder and key of the test's own.
    """
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").is_file():
        skip_or_fail("README's commands: pytest does not run from a virtualenv to activate")
    (tmp_path / ".venv").symlink_to(venv)
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "NEWSLETTERS_DATABASE_URL": f"sqlite:///{tmp_path / 'newsletters.db'}",
        "NEWSLETTERS_MAIL_URL": f"file://{tmp_path / 'mail'}",
        "NEWSLETTERS_SECRET_KEY": "readme-secret",
    }


def test_readme_command_line_runs_as_written_in_a_fresh_shell(tmp_path, fresh_shell):
    def shell(script: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-x", "-c", script],
            cwd=tmp_path,
            env=fresh_shell,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )

    # What the tester met: without the virtualenv the script is not there.
    assert shell("newsletters --help").returncode == 127

    result = shell(readme_session())

    assert result.returncode == 0, result.stderr[-4000:]
    assert "briefing\tMorning Briefing" in result.stdout
    assert "ed@example.org\teditor of briefing" in result.stdout
    assert (tmp_path / "list.csv").read_text(encoding="utf-8").startswith("email,name,status,")


def test_wheel_carries_the_compiled_ukrainian_catalogue(wheel, names):
    from io import BytesIO

    from babel.messages.mofile import read_mo

    path = "newsletters/translations/uk/LC_MESSAGES/messages.mo"
    assert path in names
    with zipfile.ZipFile(wheel) as archive:
        catalogue = read_mo(BytesIO(archive.read(path)))
    assert catalogue.get("Subscribe").string == "Підписатися"
