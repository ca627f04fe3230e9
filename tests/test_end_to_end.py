"""A reader's whole path over real HTTP and real SMTP: signup, mail, confirm, export, leave."""

import csv
import io
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest

from newsletters.mail import worker


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


http = urllib.request.build_opener(NoRedirect)


def request(url, data=None, method=None):
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    # A browser's agent: urllib's own is refused as automation (proof.py).
    req = urllib.request.Request(
        url, data=body, method=method, headers={"User-Agent": "Mozilla/5.0 Chrome/131.0"}
    )
    try:
        with http.open(req, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


@pytest.fixture
def mail_over_smtp(app, smtp_server):
    app.config["MAIL_URL"] = smtp_server.url
    return smtp_server


def test_reader_signs_up_confirms_by_mail_is_exported_and_unsubscribes_in_one_click(
    app, runner, live_server, mail_over_smtp
):
    created = runner.invoke(args=["newsletter", "create", "briefing", "--name", "Morning Briefing"])
    assert created.exit_code == 0, created.output

    status, headers, _ = request(
        f"{live_server}/n/briefing/subscribe", {"email": "reader@example.com", "name": "Ada"}
    )
    assert (status, headers["Location"]) == (303, "/n/briefing/thanks")
    status, _, page = request(live_server + headers["Location"])
    assert "Successfully subscribed" in page

    with app.app_context():
        assert worker.run(once=True)["sent"] == 1
    [mail] = mail_over_smtp.messages
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "Ada" not in mail.as_string()
    link = re.search(r"https://news\.example\.org/confirm/[\w-]+", text).group(0)
    assert link in html

    # The link points at BASE_URL; the reader's browser reaches the same path on this server.
    confirm_url = live_server + urllib.parse.urlsplit(link).path
    status, _, page = request(confirm_url)
    assert status == 200 and "Confirm subscription" in page
    assert export(runner, "--status", "all")[0]["status"] == "pending"

    status, _, page = request(confirm_url, data={})
    assert status == 200 and "Subscription confirmed" in page

    [row] = export(runner)
    assert row["email"] == "reader@example.com"
    assert row["name"] == "Ada"
    assert row["status"] == "confirmed"
    assert row["optin_ip"] == row["confirm_ip"] == "127.0.0.1"
    assert row["optin_at"].endswith("Z") and row["confirmed_at"].endswith("Z")
    assert row["source"] == "plain"
    assert row["unsubscribe_url"].startswith("https://news.example.org/unsubscribe/")

    unsubscribe_url = live_server + urllib.parse.urlsplit(row["unsubscribe_url"]).path
    status, headers, _ = request(unsubscribe_url, data={"List-Unsubscribe": "One-Click"})
    assert status == 200 and "Location" not in headers
    [row] = export(runner, "--status", "all")
    assert row["status"] == "unsubscribed"
    assert row["unsubscribed_at"].endswith("Z")
    assert export(runner) == []


def export(runner, *options):
    result = runner.invoke(args=["export", "briefing", *options])
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.output)))
