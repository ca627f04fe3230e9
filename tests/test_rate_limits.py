"""Rate limits: put on views by their mark, shared through Redis, and kept while Redis is away."""

import contextlib
import logging
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from flask import Flask

from newsletters import create_app, db, limits

from .conftest import free_port, skip_or_fail

REDIS_SERVER = Path("/usr/bin/redis-server")
# The unverified signups' tighter limit (proof.py) is opened wide: these tests are about the
# one every entry point shares.
LIMITED = {
    "RATELIMIT_ENABLED": True,
    "SIGNUP_RATE_LIMIT": "3 per minute",
    "UNVERIFIED_SIGNUP_RATE_LIMIT": "100 per minute",
}
FALLBACK = "fallback: per-process (redis unreachable)"


class RedisServer:
    """A redis-server of the test's own on a free loopback port, which the test may kill."""

    def __init__(self, port: int, folder: Path):
        self.port = port
        self.folder = folder
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server on its port; return once it answers PING."""
        command = [str(REDIS_SERVER), "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"redis-server did not answer on port {self.port} in 10 s")

    def kill(self) -> None:
        """Kill the server at once, as a crash would (SIGKILL: nothing saved, nothing said)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path):
    """Run a redis-server of this test's own; kill it afterwards."""
    if not REDIS_SERVER.exists() and not shutil.which("redis-server"):
        skip_or_fail("Redis: no redis-server installed, so the Redis outage tests were skipped")
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def apps():
    """Return a function that builds an app and disposes of its engine after the test."""
    built = []

    def build(settings):
        built.append(create_app(settings))
        return built[-1]

    yield build
    for app in built:
        with app.app_context():
            db.engine().dispose()


def sign_up(app, email, ip="127.0.0.1") -> int:
    response = app.test_client().post(
        "/n/briefing/subscribe", data={"email": email}, environ_base={"REMOTE_ADDR": ip}
    )
    return response.status_code


def rate_limits_of(app) -> str:
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    return response.json["rate_limits"]


def wait_for(predicate, seconds: float = 40) -> None:
    # Flask-Limiter checks a lost storage again at growing intervals (1, 2, 4 … 32 s).
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"not so after {seconds} s")
        time.sleep(0.2)


def test_any_view_marked_as_a_signup_gets_the_signup_limit():
    # A new entry point needs only its mark: nothing lists endpoint names.
    app = Flask(__name__)
    app.config.update(RATELIMIT_STORAGE_URL="memory://", RATELIMIT_ENABLED=True)
    app.config.update(SIGNUP_RATE_LIMIT="2 per minute")

    @app.post("/another/way/in")
    @limits.signup
    def another_way_in():
        return "taken"

    @app.post("/not/a/signup")
    def not_a_signup():
        return "fine"

    limits.init_app(app)
    client = app.test_client()
    assert [client.post("/another/way/in").status_code for _ in range(3)] == [200, 200, 429]
    assert [client.post("/not/a/signup").status_code for _ in range(3)] == [200, 200, 200]


def test_every_signup_view_of_the_app_carries_the_signup_mark(app):
    marked = {
        endpoint
        for endpoint, view in app.view_functions.items()
        if getattr(view, limits.MARK, None) == limits.SIGNUP
    }
    assert marked == {
        "subscriptions.subscribe",
        "subscriptions.subscribe_many",
        "embed.frame_subscribe",
        "preferences.send_link",  # "send me my link": mails an address, as a signup does
    }
    assert getattr(app.view_functions["admin.login"], limits.MARK) == limits.LOGIN


def test_healthz_names_the_rate_limit_storage(client):
    # The test settings turn limits off.
    assert client.get("/healthz").json == {"status": "ok", "rate_limits": "off"}


@pytest.mark.settings(RATELIMIT_ENABLED=True)
def test_healthz_says_limits_count_in_memory_by_default(client):
    assert client.get("/healthz").json == {"status": "ok", "rate_limits": "memory"}


def test_signups_keep_being_taken_while_redis_is_down_and_share_limits_again_once_it_is_back(
    settings, newsletter, redis_server, apps, caplog
):
    shared = settings | LIMITED | {"RATELIMIT_STORAGE_URL": redis_server.url}
    shared["RATELIMIT_KEY_PREFIX"] = f"test-{uuid.uuid4().hex}"
    first, second = apps(shared), apps(shared)
    assert rate_limits_of(first) == "redis"

    redis_server.kill()
    with caplog.at_level(logging.WARNING, logger="newsletters.limits"):
        down = [sign_up(first, f"down{i}@example.com") for i in range(3)]
        down.append(sign_up(second, "down-second@example.com"))
        # Each process still limits, with its own count.
        over = sign_up(first, "down-over@example.com")
        health = rate_limits_of(first), rate_limits_of(second)
    assert down == [303] * 4
    assert over == 429
    assert health == (FALLBACK, FALLBACK)
    warnings = [r for r in caplog.records if r.name == "newsletters.limits"]
    assert len(warnings) == 2  # once per app (worker process), not once per request
    assert all("storage is unreachable" in r.getMessage() for r in warnings)
    assert all(r.levelno == logging.WARNING for r in warnings)

    caplog.clear()
    redis_server.start()
    wait_for(lambda: rate_limits_of(first) == "redis" and rate_limits_of(second) == "redis")
    # Shared again: three signups through one app use up the budget of the other.
    ip = "203.0.113.50"
    assert [sign_up(first, f"back{i}@example.com", ip) for i in range(3)] == [303] * 3
    assert sign_up(second, "back-second@example.com", ip) == 429
    assert any("answers again" in r.getMessage() for r in caplog.records)


@pytest.fixture
def silent_redis():
    """Return a redis:// URL where connections are accepted and never answered (a hung host)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_a_signup_does_not_wait_long_for_a_rate_limit_store_that_hangs(
    settings, newsletter, silent_redis, apps
):
    app = apps(settings | LIMITED | {"RATELIMIT_STORAGE_URL": silent_redis})
    began = time.monotonic()
    assert sign_up(app, "reader@example.com") == 303
    assert time.monotonic() - began < 3
    assert rate_limits_of(app) == FALLBACK
