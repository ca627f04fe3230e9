"""A real Chromium (Debian's) driven by Playwright, and a publisher's site on another origin."""

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from ..conftest import skip_or_fail

CHROMIUM = "/usr/bin/chromium"
# A reader's desktop Chrome, not "HeadlessChrome": the server takes an automation user agent
# for a bot (BOT_USER_AGENTS) and silently stores nothing of its signups. Every context gets
# it; a test of the bot defence sets its own with new_context(user_agent=...).
READER_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36"
)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    f"--user-agent={READER_USER_AGENT}",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="session")
def browser():
    """Launch Debian's Chromium once per run (Playwright cannot download browsers here)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("browser tests: Playwright is not installed, so they were skipped")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        skip_or_fail(f"browser tests: no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            args=CHROMIUM_FLAGS,
        )
        yield browser
        browser.close()


@pytest.fixture
def settings(settings, request):
    """Return the test settings without the form's fill-time minimum (FORM_MIN_FILL_SECONDS).

    The scenarios here about other things type and press at a robot's speed; the tests of the
    bot defence name the minimum in their ``@pytest.mark.settings`` and keep it.
    """
    marker = request.node.get_closest_marker("settings")
    if marker and "FORM_MIN_FILL_SECONDS" in marker.kwargs:
        return settings
    return settings | {"FORM_MIN_FILL_SECONDS": 0}


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def artifacts():
    """Return the folder where browser tests keep screenshots (ignored by git)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def publisher_site(tmp_path):
    """Serve ``tmp_path/site`` on its own port: a page of another origin than the app."""
    root = tmp_path / "site"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # "localhost" rather than 127.0.0.1: a different host, so a different origin for sure.
    yield root, f"http://localhost:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join()
