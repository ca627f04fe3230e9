"""Mails that look like the publisher's: its name as sender, its colour and logo, a test to self.

The look in a browser (widths, the button, the wrapping link) is checked in
tests/browser/test_mails_in_a_browser.py; here: the colours' contrast, the HTML's frame, the
From header, and the editors' preview and test mail through the real outbox and SMTP.
"""

import itertools
import re
from email import message_from_bytes, policy

import pytest
import sqlalchemy as sa

from newsletters import colors, db
from newsletters.admin import mail_preview
from newsletters.mail import messages, worker
from newsletters.models import Newsletter, OutboxKind, OutboxMessage
from tests.admin.conftest import (
    csrf_token,
    login,
    make_editor,  # noqa: F401 - a fixture
)
from tests.conftest import set_texts

EDITOR = "editor@example.com"
# Outlook's own markup, in conditional comments that every other reader and validator skips.
MSO_ONLY = re.compile(r"<!--\[if mso\]>.*?<!\[endif\]-->", re.S)
BUTTON = re.compile(
    r'<td style="border-radius: 6px; background-color: (#[0-9a-f]{6});">\s*<a [^>]*'
)


# The contrast of a button's label on the accent (colors.text_on), at WCAG AA.


def test_luminance_and_contrast_follow_wcag():
    assert colors.luminance("#ffffff") == pytest.approx(1)
    assert colors.luminance("#000000") == 0
    assert colors.contrast("#ffffff", "#000000") == pytest.approx(21)
    assert colors.contrast("#000000", "#ffffff") == pytest.approx(21)
    # WebAIM's checker: #767676 on white is 4.54:1, the lightest grey that passes AA.
    assert colors.contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)
    assert colors.contrast("#0b57d0", "#0b57d0") == 1


@pytest.mark.parametrize(
    "accent, text",
    [
        ("#0b57d0", colors.LIGHT_TEXT),  # the product's blue
        ("#ffd400", colors.DARK_TEXT),  # yellow
        ("#ffffff", colors.DARK_TEXT),
        ("#000000", colors.LIGHT_TEXT),
        ("#777777", "#000000"),  # a mid grey: 4.48 with white, 3.8 with near-black
        (None, colors.LIGHT_TEXT),
    ],
)
def test_the_label_on_the_accent_is_white_or_dark_as_reads_best(accent, text):
    assert colors.text_on(accent) == text


def test_every_accent_gets_a_label_of_at_least_aa_contrast():
    steps = range(0, 256, 17)  # 16 steps a channel: 4096 colours, every grey among them
    for r, g, b in itertools.product(steps, repeat=3):
        accent = f"#{r:02x}{g:02x}{b:02x}"
        assert colors.contrast(colors.text_on(accent), accent) >= 4.5, accent
    for grey in range(256):
        accent = f"#{grey:02x}{grey:02x}{grey:02x}"
        assert colors.contrast(colors.text_on(accent), accent) >= 4.5, accent


@pytest.mark.parametrize("accent", ["#0b57d0", "#ffd400", "#777777", "#00ff66", "#1a1a1a"])
def test_a_mails_links_read_on_the_light_and_the_dark_card(accent):
    colours = messages.palette(accent)
    assert colors.contrast(colours["on_accent"], accent) >= 4.5
    assert colors.contrast(colours["link"], "#ffffff") >= 4.5
    assert colors.contrast(colours["link_dark"], messages.DARK_CARD) >= 4.5


# The From header.


def test_the_from_name_is_the_newsletters_unless_its_editors_named_a_sender():
    sender = messages.Address("Product", "news", "mail.example.org")
    one = Newsletter(slug="a", name="Morning Brief")
    other = Newsletter(slug="b", name="Evening Brief")
    assert str(messages.from_address([one], sender)) == "Morning Brief <news@mail.example.org>"
    # A name with a comma is quoted, or it would read as two addresses.
    comma = Newsletter(slug="c", name="News, Daily")
    assert str(messages.from_address([comma], sender)) == '"News, Daily" <news@mail.example.org>'
    assert str(messages.from_address([one, other], sender)) == "Product <news@mail.example.org>"


def test_an_editors_sender_name_wins_and_any_script_is_encoded(
    app, client, newsletter, smtp_server, session
):
    set_texts(session, sender_name="Ранкові новини, «щодня»")
    app.config["MAIL_FROM"] = "News Desk <news@mail.example.org>"
    mail = signed_up_and_sent(app, client, smtp_server)
    assert mail["From"].addresses[0].display_name == "Ранкові новини, «щодня»"
    assert mail["From"].addresses[0].addr_spec == "news@mail.example.org"
    # On the wire: RFC 2047 words, no raw UTF-8 in the header.
    raw = smtp_server.envelopes[0].original_content.split(b"\r\n\r\n")[0]
    [header] = [line for line in raw.split(b"\r\n") if line.startswith(b"From:")]
    assert header.isascii() and b"=?utf-8?" in header.lower()


# The HTML part: a frame mail clients and validators accept, in the newsletter's look.


def sample(app, kind, newsletter, language="en"):
    with app.app_context(), app.test_request_context():
        return messages.sample(
            kind,
            newsletter,
            messages.sender(),
            language,
            recipient=EDITOR,
            date="Sat, 05 Dec 2026 18:00:00 +0000",
            message_id="<sample@localhost>",
        )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("kind", messages.SAMPLES)
def test_every_mails_html_is_a_titled_responsive_dark_ready_document(app, kind):
    branded = Newsletter(
        slug="brief",
        name="Morning Brief",
        language="en",
        accent_color="#ffd400",
        logo_url="https://publisher.example/logo.png",
        site_url="https://www.publisher.example/news",
    )
    mail = sample(app, kind, branded)
    html = mail.get_body(("html",)).get_content()
    text = mail.get_body(("plain",)).get_content()
    assert html.startswith('<!doctype html>\n<html lang="en">')
    assert '<meta charset="utf-8">' in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert "@media (prefers-color-scheme: dark)" in html
    [title] = re.findall(r"<title>(.*)</title>", html)
    assert title == str(mail["Subject"]).removeprefix("[Test] ")
    assert "max-width: 600px" in html
    # No attribute HTML5 made obsolete (the Nu checker refuses them).
    outside_outlook = MSO_ONLY.sub("", html)
    assert not re.search(
        r"<(?:table|td)[^>]* (?:cellpadding|cellspacing|bgcolor|align|border)=", outside_outlook
    )
    if kind != OutboxKind.WEBHOOK_PAUSED:  # editors' own mail: the product's look
        assert 'src="https://publisher.example/logo.png" alt="Morning Brief" width="120"' in html
        assert '<a class="link" href="https://www.publisher.example/news"' in html
        assert mail["From"].addresses[0].display_name == "Morning Brief"
    if kind == OutboxKind.WELCOME:
        # No link to act on: the way on is the publisher's site.
        [(accent, link)] = [(m.group(1), m.group(0)) for m in BUTTON.finditer(html)]
        assert (
            'href="https://www.publisher.example/news"' in link
            and ">Visit publisher.example<" in html
        )
    else:
        # The main action: a button in the accent, its label dark (yellow reads badly white).
        [(accent, link)] = [(m.group(1), m.group(0)) for m in BUTTON.finditer(html)]
        expected = "#0b57d0" if kind == OutboxKind.WEBHOOK_PAUSED else "#ffd400"
        assert accent == expected
        assert f"color: {colors.text_on(expected)};" in link
        [url] = re.findall(r'href="([^"]+)"', link)
        assert url in text  # the text part carries the same link
        assert f">{url}</a>" in html  # written out too, breaking anywhere
        assert "word-break: break-all; overflow-wrap: anywhere;" in html
    assert "[Test]" in mail["Subject"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_without_branding_a_mail_has_the_products_look_and_the_name_on_top(app):
    plain = Newsletter(slug="plain", name="Plain <News>", language="en")
    html = sample(app, OutboxKind.CONFIRM, plain).get_body(("html",)).get_content()
    assert "<img" not in html
    assert ">Plain &lt;News&gt;</p>" in html
    assert f"background-color: {colors.DEFAULT_ACCENT};" in html
    assert "publisher" not in html


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_stored_colour_or_logo_that_is_no_colour_or_https_never_reaches_the_mail(app):
    # Saved before the catalogue checked them, or written behind its back.
    odd = Newsletter(
        slug="odd",
        name="Odd",
        language="en",
        accent_color="red;x:y",
        logo_url="javascript:alert(1)",
        site_url="javascript:alert(2)",
    )
    html = sample(app, OutboxKind.CONFIRM, odd).get_body(("html",)).get_content()
    assert "red;x" not in html and "javascript:" not in html and "<img" not in html


def test_the_confirmation_a_reader_gets_wears_the_newsletters_colour(
    app, client, newsletter, smtp_server, session
):
    session.execute(sa.update(Newsletter).values(accent_color="#c2185b"))
    mail = signed_up_and_sent(app, client, smtp_server)
    html = mail.get_body(("html",)).get_content()
    [(accent, link)] = [(m.group(1), m.group(0)) for m in BUTTON.finditer(html)]
    assert accent == "#c2185b" and "color: #ffffff;" in link
    assert mail["From"] == "Morning Briefing <newsletters@localhost>"
    assert "please confirm that you want to receive" in mail.get_body(("plain",)).get_content()


def signed_up_and_sent(app, client, smtp_server):
    """Sign reader@example.com up to 'briefing', send the confirmation over SMTP; return it."""
    assert client.post("/n/briefing/subscribe", data={"email": "reader@example.com"}).status_code
    app.config["MAIL_URL"] = smtp_server.url
    with app.app_context():
        assert worker.run(once=True)["sent"] == 1
    [mail] = smtp_server.messages
    return mail


# The editors' preview and test mail.


@pytest.fixture
def editor(client, newsletter, make_editor):  # noqa: F811 - the fixture imported above
    make_editor(EDITOR, "briefing")
    login(client, EDITOR)
    return client


def test_an_editor_previews_each_mail_in_each_language(editor, session):
    session.execute(sa.update(Newsletter).values(accent_color="#c2185b"))
    settings = editor.get("/admin/n/briefing/settings").get_data(as_text=True)
    assert 'id="mails"' in settings
    for kind in messages.SAMPLES:
        assert f"/admin/n/briefing/mails?kind={kind}" in settings
        for language, hello in (("en", "Hello,"), ("uk", "Доброго дня,")):
            page = editor.get(f"/admin/n/briefing/mails?kind={kind}&lang={language}")
            assert page.status_code == 200
            shown = page.get_data(as_text=True)
            assert f'src="/admin/n/briefing/mails/{kind}.html?lang={language}"' in shown
            assert '<pre class="mail-text">' in shown and hello in shown
            frame = editor.get(f"/admin/n/briefing/mails/{kind}.html?lang={language}")
            assert frame.status_code == 200 and frame.mimetype == "text/html"
            html = frame.get_data(as_text=True)
            assert f'<html lang="{language}">' in html
            # Editors' own mail (a webhook paused) wears the product's colour.
            assert ("#c2185b" in html) == (kind != OutboxKind.WEBHOOK_PAUSED)
            policy_ = frame.headers["Content-Security-Policy"]
            assert "script-src" not in policy_ and "default-src 'none'" in policy_
            assert "sandbox" in policy_ and "frame-ancestors 'self'" in policy_
            assert frame.headers["Cache-Control"] == "no-store"
            assert frame.headers["Referrer-Policy"] == "no-referrer"
            assert frame.headers["X-Content-Type-Options"] == "nosniff"


def test_the_preview_refuses_what_it_cannot_show(editor, client, make_editor, session):  # noqa: F811
    unknown = editor.get("/admin/n/briefing/mails?kind=newsletter")
    assert unknown.status_code == 404 and "There is no mail called" in unknown.get_data(True)
    assert editor.get("/admin/n/briefing/mails/secret.html").status_code == 404
    language = editor.get("/admin/n/briefing/mails?kind=confirm&lang=xx")
    assert language.status_code == 400 and "There is no language" in language.get_data(True)
    assert editor.get("/admin/n/nothing/mails").status_code == 404
    # Another newsletter's editor sees nothing of this one's mails, nor sends its tests.
    session.add(Newsletter(slug="other", name="Other News"))
    session.commit()
    make_editor("other@example.com", "other")
    token = csrf_token(editor, "/admin/n/briefing/settings")
    assert editor.post("/admin/logout", data={"csrf_token": token}).status_code == 303
    login(editor, "other@example.com")
    assert editor.get("/admin/n/briefing/mails").status_code == 403
    assert editor.get("/admin/n/briefing/mails/confirm.html").status_code == 403
    token = csrf_token(editor, "/admin/n/other/settings")
    sent = editor.post(
        "/admin/n/briefing/mails/test", data={"kind": "confirm", "csrf_token": token}
    )
    assert sent.status_code == 403
    assert session.scalars(sa.select(OutboxMessage)).all() == []


def test_a_test_mail_arrives_over_smtp_to_the_editor_as_readers_get_it(
    app, editor, smtp_server, session
):
    session.execute(
        sa.update(Newsletter).values(
            accent_color="#c2185b", logo_url="https://publisher.example/logo.png"
        )
    )
    token = csrf_token(editor, "/admin/n/briefing/settings")
    # Without the CSRF token: refused, nothing queued.
    refused = editor.post("/admin/n/briefing/mails/test", data={"kind": "confirm"})
    assert refused.status_code == 400
    bad = editor.post("/admin/n/briefing/mails/test", data={"kind": "x", "csrf_token": token})
    assert bad.status_code == 404
    sent = editor.post(
        "/admin/n/briefing/mails/test",
        data={
            "kind": "reminder",
            "lang": "uk",
            "csrf_token": token,
            "next": "/admin/n/briefing/settings#mails",
        },
    )
    assert sent.status_code == 303
    assert sent.headers["Location"] == "/admin/n/briefing/settings#mails"
    page = editor.get("/admin/n/briefing/settings").get_data(as_text=True)
    assert f"is on its way to {EDITOR}" in page
    app.config["MAIL_URL"] = smtp_server.url
    with app.app_context():
        assert worker.run(once=True) == {"sent": 1}
    [mail] = smtp_server.messages
    assert smtp_server.envelopes[0].rcpt_tos == [EDITOR]
    assert mail["From"] == "Morning Briefing <newsletters@localhost>"
    assert mail["Subject"].startswith("[Тест] ")  # in the language asked for
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    [link] = re.findall(r"https://news\.example\.org/confirm/[\w-]{43}", text)
    assert f'href="{link}"' in html and '<html lang="uk">' in html
    assert 'alt="Morning Briefing"' in html and "#c2185b" in html
    # The link opens no one's subscription.
    assert editor.get(link.removeprefix("https://news.example.org")).status_code in (400, 404)


def test_test_mails_are_limited_per_editor_and_hour(app, editor, session):
    token = csrf_token(editor, "/admin/n/briefing/settings")
    for _ in range(mail_preview.TEST_MAILS_PER_HOUR):
        sent = editor.post(
            "/admin/n/briefing/mails/test", data={"kind": "confirm", "csrf_token": token}
        )
        assert sent.status_code == 303
        assert sent.headers["Location"] == "/admin/n/briefing/mails?kind=confirm&lang=en"
    refused = editor.post(
        "/admin/n/briefing/mails/test", data={"kind": "confirm", "csrf_token": token}
    )
    assert refused.status_code == 429
    assert "test mails in the last hour" in refused.get_data(as_text=True)
    rows = session.scalars(sa.select(OutboxMessage)).all()
    assert len(rows) == mail_preview.TEST_MAILS_PER_HOUR
    assert {(r.kind, r.recipient) for r in rows} == {(OutboxKind.SAMPLE, EDITOR)}


def test_a_test_mail_whose_newsletter_is_gone_is_parked_with_a_reason(app, session):
    with app.app_context():
        session_ = db.session()
        from newsletters.mail import outbox

        outbox.enqueue(
            session_, OutboxKind.SAMPLE, EDITOR, {"of": "confirm", "newsletter_ids": [999]}
        )
        session_.commit()
        assert worker.run(once=True) == {"failed": 1}
    [row] = session.scalars(sa.select(OutboxMessage)).all()
    assert "no longer exists" in row.last_error


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_raw_mail_of_a_test_parses_back(app):
    # Built as the worker sends it: bytes with CRLF, read back by the email package.
    newsletter = Newsletter(slug="x", name="Щоранку", language="uk")
    mail = sample(app, OutboxKind.WELCOME, newsletter, "uk")
    parsed = message_from_bytes(messages.wire(mail, utf8=False), policy=policy.default)
    assert parsed["From"].addresses[0].display_name == "Щоранку"
    assert "Розсилка" in parsed.get_body(("plain",)).get_content()
