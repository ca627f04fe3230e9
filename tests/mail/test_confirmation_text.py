"""Editors write their own confirmation mail text; the signer's words never reach the mail."""

from newsletters.mail import worker
from tests.conftest import set_texts


def send_one(app, client, smtp_server, **signup):
    client.post("/n/briefing/subscribe", data={"email": "reader@example.com", **signup})
    app.config["MAIL_URL"] = smtp_server.url
    with app.app_context():
        assert worker.run(once=True)["sent"] == 1
    [mail] = smtp_server.messages
    return mail.get_body(("plain",)).get_content(), mail.get_body(("html",)).get_content()


def test_the_editors_text_replaces_the_standard_opening_in_both_parts(
    app, client, newsletter, session, smtp_server
):
    set_texts(session, confirm_body="Welcome to <Briefing>!\n\nOne click left.")
    text, html = send_one(app, client, smtp_server, name="Mallory")
    assert text.startswith("Welcome to <Briefing>!")
    assert "please confirm that you want" not in text
    assert "<p>Welcome to &lt;Briefing&gt;!</p>" in html and "<p>One click left.</p>" in html
    assert "https://news.example.org/confirm/" in text
    assert "Mallory" not in text + html


def test_without_a_text_the_standard_opening_is_sent(app, client, newsletter, smtp_server):
    text, _ = send_one(app, client, smtp_server)
    assert "please confirm that you want to receive Morning Briefing at this address" in text
