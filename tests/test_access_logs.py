"""Link secrets stay out of request logs: gunicorn's and nginx's as deployed, the dev server's.

Each test starts the real server the way the documentation does, opens real confirmation,
unsubscribe and preference links, and reads the log it wrote.
"""

import csv
import http.client
import io
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sysconfig
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from newsletters import create_app, db, logs
from newsletters.models import Newsletter

from .conftest import free_port
from .subscriptions.test_links import mailed_secrets

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sysconfig.get_path("scripts"))
BASE_URL = "https://news.example.org"
CONFIRM_LINK = re.compile(re.escape(BASE_URL) + r"/confirm/([A-Za-z0-9_-]+)")
SECRET_ROUTES = ("/confirm/", "/unsubscribe/", "/preferences/")


def request(port, method, path, headers=None, body=None, tls=False) -> int:
    """Send one request to loopback ``port``; return the status (redirects not followed)."""
    if tls:
        # The test's own self-signed certificate, for a name that is not 127.0.0.1.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def form(email: str) -> dict:
    return {
        "body": f"email={email.replace('@', '%40')}",
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
    }


def wait_until_answering(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited at start:\n{log.read_text()}")
        try:
            if request(port, "GET", "/healthz") == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the server did not answer /healthz in 60 s:\n{log.read_text()}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def assert_masked(log_text: str, secrets: list[str], routes=SECRET_ROUTES) -> None:
    for secret in secrets:
        assert secret not in log_text
    for route in routes:
        assert f"{route}[token]" in log_text, log_text


def test_every_route_that_carries_a_link_secret_is_masked(app):
    sample = "Zm9vYmFyYmF6cXV1eC0xMjM0NTY3ODkwX2FiY2RlZmdo"
    adapter = app.url_map.bind("localhost")
    paths = {
        adapter.build(rule.endpoint, {"token": sample})
        for rule in app.url_map.iter_rules()
        if "token" in rule.arguments
    }
    assert len(paths) >= 3
    for path in paths:
        for logged in (path, f"GET {path}?x=1 HTTP/1.1", f"{BASE_URL}{path}"):
            assert sample not in logs.mask_link_secrets(logged)
    assert logs.mask_link_secrets("/confirm%2F" + sample) == "/confirm%2F[token]"
    assert logs.mask_link_secrets("/n/briefing/subscribe") == "/n/briefing/subscribe"


@dataclass
class Deployment:
    """gunicorn started as deploy/newsletters-web.service does, with an app beside it."""

    port: int
    process: subprocess.Popen
    access_log: Path
    app: object

    def links(self, email: str) -> tuple[str, str]:
        """Sign ``email`` up through gunicorn; return its confirm and unsubscribe secrets."""
        assert request(self.port, "POST", "/n/briefing/subscribe", **form(email)) == 303
        [confirm] = mailed_secrets(self.app)
        exported = self.app.test_cli_runner().invoke(args=["export", "briefing", "--status", "all"])
        [row] = list(csv.DictReader(io.StringIO(exported.stdout)))
        return confirm, row["unsubscribe_url"].removeprefix(f"{BASE_URL}/unsubscribe/")

    def open_links(self, port: int, confirm: str, unsubscribe: str, tls=False) -> None:
        """Open each link as a reader would, through ``port``; the Referer carries one too."""
        assert request(port, "GET", f"/confirm/{confirm}", tls=tls) == 200
        assert request(port, "POST", f"/confirm/{confirm}", tls=tls) == 200
        assert request(port, "GET", f"/unsubscribe/{unsubscribe}", tls=tls) == 200
        assert request(port, "GET", f"/preferences/{unsubscribe}", tls=tls) == 200
        referer = {"Referer": f"{BASE_URL}/unsubscribe/{unsubscribe}"}
        assert request(port, "GET", "/n/briefing", headers=referer, tls=tls) == 200


def web_unit_command(port: int, access_log: Path) -> list[str]:
    """Return the web unit's ExecStart, for this checkout, on ``port``, with an access log."""
    unit = (ROOT / "deploy" / "newsletters-web.service").read_text().replace("\\\n", " ")
    [line] = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    words = shlex.split(line.removeprefix("ExecStart="))
    assert words[0] == "/srv/newsletters/venv/bin/gunicorn"
    words[0] = str(VENV_BIN / "gunicorn")
    words = [word.replace("/srv/newsletters/app", str(ROOT)) for word in words]
    words[words.index("--bind") + 1] = f"127.0.0.1:{port}"
    assert "--config" in words  # the masking lives in deploy/gunicorn.conf.py
    return [*words[:-1], "--access-logfile", str(access_log), words[-1]]


@pytest.fixture
def deployment(tmp_path, sqlite_template):
    """Run gunicorn as the web unit does, on a migrated SQLite file in ``tmp_path``."""
    database = tmp_path / "web.db"
    shutil.copy(sqlite_template, database)
    settings = {
        "DATABASE_URL": f"sqlite:///{database}",
        "SECRET_KEY": "a-long-random-secret",
        "BASE_URL": BASE_URL,
        "MAIL_URL": f"file://{tmp_path / 'mail'}",
    }
    app = create_app(settings | {"RATELIMIT_ENABLED": False})
    with app.app_context():
        db.session().add(Newsletter(slug="briefing", name="Morning Briefing"))
        db.session().commit()

    port = free_port()
    access_log = tmp_path / "access.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")}
    env |= {f"NEWSLETTERS_{name}": value for name, value in settings.items()}
    env |= {
        "NEWSLETTERS_ENV": "production",
        "NEWSLETTERS_TRUSTED_PROXIES": "1",
        "NEWSLETTERS_RATELIMIT_ENABLED": "false",
        "XDG_RUNTIME_DIR": str(tmp_path),  # gunicorn's control socket, as the unit's
    }
    output = tmp_path / "gunicorn.out"
    with output.open("w") as out:
        process = subprocess.Popen(
            web_unit_command(port, access_log),
            cwd=ROOT,  # the unit's WorkingDirectory, where wsgi.py is
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_answering(port, process, output)
        yield Deployment(port, process, access_log, app)
    finally:
        stop(process)
        with app.app_context():
            db.engine().dispose()


def test_gunicorn_as_deployed_keeps_link_secrets_out_of_its_access_log(deployment):
    confirm, unsubscribe = deployment.links("reader@example.com")
    deployment.open_links(deployment.port, confirm, unsubscribe)
    stop(deployment.process)  # every line written

    logged = deployment.access_log.read_text()
    assert_masked(logged, [confirm, unsubscribe])
    assert '"GET /confirm/[token] HTTP/1.1" 200' in logged
    assert '"POST /confirm/[token] HTTP/1.1" 200' in logged
    assert f'"{BASE_URL}/unsubscribe/[token]"' in logged  # the Referer
    assert '"POST /n/briefing/subscribe HTTP/1.1" 303' in logged  # other lines as they were


def nginx_site(deploy_conf: str, tmp_path: Path, http_port: int, https_port: int, app_port: int):
    """Return deploy/nginx.conf with test ports, a self-signed certificate and logs in tmp."""
    site = deploy_conf
    for old, new in (
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen [::]:80;", ""),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        ("listen [::]:443 ssl http2;", ""),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{app_port};"),
        ("/etc/letsencrypt/live/newsletters.example.org/", f"{tmp_path}/"),
        ("/var/log/nginx/", f"{tmp_path}/"),
    ):
        assert old in site, old
        site = site.replace(old, new)
    return site


def test_nginx_as_deployed_keeps_link_secrets_out_of_its_access_log(deployment, tmp_path):
    nginx, openssl = shutil.which("nginx"), shutil.which("openssl")
    if not nginx or not openssl:
        pytest.skip("nginx: not installed, so deploy/nginx.conf's access log was not tried")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=newsletters.example.org", "-keyout", str(tmp_path / "privkey.pem"),
         "-out", str(tmp_path / "fullchain.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    http_port, https_port = free_port(), free_port()
    site = nginx_site(
        (ROOT / "deploy" / "nginx.conf").read_text(), tmp_path, http_port, https_port,
        deployment.port,
    )  # fmt: skip
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/nginx.error.log;\n"
        "events {}\n"
        f"http {{\n    access_log {tmp_path}/default.access.log;\n"
        f"    include {tmp_path}/site.conf;\n}}\n"
    )
    command = [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    output = tmp_path / "nginx.out"
    with output.open("w") as out:
        process = subprocess.Popen(
            [*command, "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until_answering_tls(https_port, process, output)
        confirm, unsubscribe = deployment.links("reader@example.com")
        deployment.open_links(https_port, confirm, unsubscribe, tls=True)
        # Through the plain-HTTP site, which only redirects.
        assert request(http_port, "GET", f"/unsubscribe/{unsubscribe}") == 301
    finally:
        stop(process)

    logged = (tmp_path / "newsletters.access.log").read_text()
    assert_masked(logged, [confirm, unsubscribe])
    # "combined" with the masked target and referrer; no referrer is "-", as there.
    assert re.search(r'"GET /confirm/\[token\] HTTP/1\.1" 200 \d+ "-" "[^"]*"\n', logged)
    assert f'"{BASE_URL}/unsubscribe/[token]"' in logged  # the Referer
    assert '/unsubscribe/[token] HTTP/1.1" 301' in logged  # the redirecting site logs too
    # Nothing reached nginx's own access log, which the site's would leave unmasked.
    assert (tmp_path / "default.access.log").read_text() == ""


def wait_until_answering_tls(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"nginx exited at start:\n{log.read_text()}")
        try:
            if request(port, "GET", "/healthz", tls=True) == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"nginx did not answer /healthz in 30 s:\n{log.read_text()}")


def test_the_development_server_keeps_link_secrets_out_of_its_request_log(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")}
    env |= {
        "NEWSLETTERS_DATABASE_URL": f"sqlite:///{tmp_path / 'dev.db'}",
        "NEWSLETTERS_MAIL_URL": f"file://{tmp_path / 'mail'}",
        "NEWSLETTERS_SECRET_KEY": "dev-secret",
        # Set, so that this server leaves the checkout's instance folder alone.
        "NEWSLETTERS_BASE_URL": BASE_URL,
        "NEWSLETTERS_WORKER_POLL_SECONDS": "0.1",
        "PORT": str(port),  # as `PORT=… make run` gives it
    }
    requests_log, output = tmp_path / "dev.err", tmp_path / "dev.out"
    with requests_log.open("w") as err, output.open("w") as out:
        process = subprocess.Popen(
            [str(VENV_BIN / "newsletters"), "dev"], cwd=tmp_path, env=env, stdout=out, stderr=err
        )
    try:
        wait_until_answering(port, process, requests_log)
        assert request(port, "POST", "/n/demo/subscribe", **form("reader@example.com")) == 303
        deadline = time.monotonic() + 30
        while not list((tmp_path / "mail").glob("*.eml")) and time.monotonic() < deadline:
            time.sleep(0.1)
        [path] = (tmp_path / "mail").glob("*.eml")
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        [confirm] = set(CONFIRM_LINK.findall(mail.get_body(("plain",)).get_content()))
        assert request(port, "GET", f"/confirm/{confirm}") == 200
        request(port, "GET", f"/unsubscribe/{confirm}")  # the wrong link, logged all the same
    finally:
        stop(process)

    logged = requests_log.read_text()
    assert_masked(logged, [confirm], routes=("/confirm/", "/unsubscribe/"))
    assert "POST /n/demo/subscribe HTTP/1.1" in logged
