"""Bot defence of browser signups: proof-of-work, render time, automation, the unverified limit.

The browser's side (solving in a Web Worker while the reader types) is in
tests/browser/test_bot_defence_in_a_browser.py; here the server's rules, with challenges
solved by the `altcha` package as a browser would.
"""

import base64
import json
import time

import altcha
import pytest
import sqlalchemy as sa

from newsletters import apikeys, create_app, db, editors
from newsletters.ledger import Evidence
from newsletters.models import (
    DailyCount,
    Newsletter,
    OutboxMessage,
    SignupRequest,
    Subscriber,
    Subscription,
)
from newsletters.subscriptions import processing

ARTICLE = "https://news.example.org/2026/12/05/story?utm_source=site&utm_campaign=winter&id=7"
# What a reader's browser says it is; automation's own agents are refused (BOT_USER_AGENTS).
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"


def get_challenge(client, slug="briefing", origin=None, **args):
    headers = {"User-Agent": BROWSER} | ({"Origin": origin} if origin else {})
    response = client.get(f"/n/{slug}/challenge", query_string=args, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def solved(answer: dict) -> str:
    """Return the `altcha` field of a solved challenge, as static/proof-worker.js sends it."""
    challenge = answer["challenge"]
    solution = altcha.solve_challenge_v1(
        challenge["challenge"], challenge["salt"], max_number=challenge["maxNumber"]
    )
    payload = {key: challenge[key] for key in ("algorithm", "challenge", "salt", "signature")}
    return base64.b64encode(json.dumps(payload | {"number": solution.number}).encode()).decode()


def sign_up(client, email, answer=None, slug="briefing", origin=None, ip="203.0.113.7", **fields):
    data = {"email": email, "form": "hosted", "page": ARTICLE} | fields
    if answer is not None:
        data |= {"rendered": answer["rendered"], "altcha": solved(answer)}
    headers = {"User-Agent": BROWSER, "Accept": "application/json"}
    if origin:
        headers["Origin"] = origin
    return client.post(
        f"/n/{slug}/subscribe", data=data, headers=headers, environ_base={"REMOTE_ADDR": ip}
    )


def stored(session):
    return {s.subscriber.email: s for s in session.scalars(sa.select(Subscription)).all()}


def stops(session) -> dict[str, int]:
    rows = session.execute(
        sa.select(DailyCount.metric, sa.func.sum(DailyCount.count))
        .where(DailyCount.metric.like("stopped:%"))
        .group_by(DailyCount.metric)
    )
    return {metric.removeprefix("stopped:"): int(n) for metric, n in rows}


# A test's one settings marker (conftest reads the closest): the render time checked apart.
quick = pytest.mark.settings(FORM_MIN_FILL_SECONDS=0)


@quick
def test_a_solved_challenge_signs_up_with_proof(client, newsletter, session):
    response = sign_up(client, "reader@example.com", get_challenge(client))
    assert response.status_code == 200
    subscription = stored(session)["reader@example.com"]
    assert subscription.verification == "proof"
    assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 1


@quick
def test_a_solved_challenge_is_refused_on_replay_by_another_worker(
    app, client, newsletter, session, settings
):
    """Two apps on one database stand for two workers: the spent challenge is shared."""
    answer = get_challenge(client)
    assert sign_up(client, "first@example.com", answer).status_code == 200
    other = create_app(settings)
    try:
        again = other.test_client().post(
            "/n/briefing/subscribe",
            data={
                "email": "second@example.com",
                "rendered": answer["rendered"],
                "altcha": solved(answer),
            },
            headers={"User-Agent": BROWSER, "Accept": "application/json"},
        )
    finally:
        with other.app_context():
            db.engine().dispose()
    # The same answer as a signup's, so a bot learns nothing; but nothing stored or mailed.
    assert again.status_code == 200
    assert again.get_json()["status"] == "ok"
    assert set(stored(session)) == {"first@example.com"}
    assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 1
    assert stops(session) == {"replay": 1}


@quick
def test_a_spliced_challenge_is_refused(client, newsletter, session):
    """CVE-2025-68113: digits of the number moved into the salt's expiry must not verify."""
    answer = get_challenge(client)
    payload = json.loads(base64.b64decode(solved(answer)))
    number = str(payload["number"]).rjust(2, "0")
    spliced = payload | {"salt": payload["salt"].rstrip("&") + number[0], "number": number[1:]}
    response = sign_up(
        client,
        "bot@example.com",
        None,
        rendered=answer["rendered"],
        altcha=base64.b64encode(json.dumps(spliced).encode()).decode(),
    )
    assert response.status_code == 200
    assert stored(session) == {}
    assert stops(session) == {"proof": 1}


@quick
def test_a_challenge_with_a_forged_binding_or_for_another_newsletter_is_refused(
    client, newsletter, session
):
    with client.application.app_context():
        db.session().add(Newsletter(slug="other", name="Other"))
        db.session().commit()
    answer = get_challenge(client, slug="other")
    # Solved for "other", sent to "briefing".
    assert sign_up(client, "a@example.com", answer).status_code == 200
    # Its binding rewritten: the signature no longer matches.
    answer = get_challenge(client)
    payload = json.loads(base64.b64decode(solved(answer)))
    forged = payload | {"salt": payload["salt"].replace("n=", "n=99.")}
    sign_up(
        client,
        "b@example.com",
        None,
        rendered=answer["rendered"],
        altcha=base64.b64encode(json.dumps(forged).encode()).decode(),
    )
    # Not base64, not JSON, not a payload.
    for junk in ("%%%", base64.b64encode(b"[1, 2]").decode(), "e30=", "x" * 5000):
        sign_up(client, "c@example.com", None, rendered=answer["rendered"], altcha=junk)
    assert stored(session) == {}
    # The first one's render time was made for "other" too, and is caught first.
    assert stops(session) == {"forged": 1, "proof": 5}


@quick
def test_a_challenge_solved_for_one_site_is_refused_from_another(client, newsletter, session):
    answer = get_challenge(client, origin="https://news.example.org")
    sign_up(client, "a@example.com", answer, origin="https://elsewhere.example.net")
    assert stored(session) == {}
    sign_up(client, "b@example.com", answer, origin="https://news.example.org")
    assert stored(session)["b@example.com"].verification == "proof"


@pytest.mark.settings(FORM_MIN_FILL_SECONDS=0, POW_EXPIRES_SECONDS=0)
def test_an_expired_challenge_proves_nothing_and_the_signup_is_unverified(
    client, newsletter, session
):
    """A reader whose page stood open too long is no bot: the signup is kept, unverified."""
    answer = get_challenge(client)
    time.sleep(1.1)
    assert sign_up(client, "slow@example.com", answer).status_code == 200
    assert stored(session)["slow@example.com"].verification == "unverified"


def test_a_form_sent_back_faster_than_a_person_types_is_ignored(client, newsletter, session):
    answer = get_challenge(client)
    response = sign_up(client, "quick@example.com", None, rendered=answer["rendered"])
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"
    assert stored(session) == {}
    assert stops(session) == {"too_fast": 1}


def test_a_quick_form_that_solved_its_challenge_is_kept_unverified(client, newsletter, session):
    """Autofill and a quick click: the browser did the work, so no bot, but no proof either."""
    assert sign_up(client, "autofill@example.com", get_challenge(client)).status_code == 200
    assert stored(session)["autofill@example.com"].verification == "unverified"
    assert stops(session) == {}


@quick
def test_a_forged_render_time_an_automation_agent_and_the_honeypot_are_ignored(
    client, newsletter, session
):
    sign_up(client, "a@example.com", None, rendered="1.forged.signature")
    sign_up(client, "b@example.com", None, website="https://spam.example")
    client.post(
        "/n/briefing/subscribe",
        data={"email": "c@example.com"},
        headers={"User-Agent": "Mozilla/5.0 HeadlessChrome/131.0", "Accept": "application/json"},
    )
    assert stored(session) == {}
    assert stops(session) == {"forged": 1, "honeypot": 1, "automation": 1}


def test_a_post_without_challenge_or_render_time_is_unverified_not_a_bot(
    client, newsletter, session
):
    """SPEC's plain form pasted years ago, or one built by hand, keeps working."""
    response = client.post("/n/briefing/subscribe", data={"email": "old@example.com"})
    assert response.status_code == 303
    assert stored(session)["old@example.com"].verification == "unverified"


@pytest.mark.settings(
    FORM_MIN_FILL_SECONDS=0,
    RATELIMIT_ENABLED=True,
    SIGNUP_RATE_LIMIT="20 per minute",
    UNVERIFIED_SIGNUP_RATE_LIMIT="2 per minute",
)
def test_unverified_signups_meet_a_tighter_limit_than_solved_ones(client, newsletter, session):
    for n in range(2):
        assert sign_up(client, f"plain{n}@example.com").status_code == 200
    refused = sign_up(client, "plain2@example.com")
    assert refused.status_code == 429
    assert "JavaScript" in refused.get_json()["message"]
    assert "plain2@example.com" not in stored(session)
    # The same network, with the form's check solved: still welcome.
    assert sign_up(client, "solved@example.com", get_challenge(client)).status_code == 200
    assert stored(session)["solved@example.com"].verification == "proof"


@pytest.mark.settings(POW_MIN_NUMBER=1000, POW_MAX_NUMBER=50_000, POW_NORMAL_SIGNUPS_PER_MINUTE=2)
def test_difficulty_rises_with_the_signup_rate_of_the_last_minutes(
    app, client, newsletter, session
):
    def max_number():
        # A new slot of the per-process cache (proof.RATE_CACHE_SECONDS) each time.
        app.extensions.pop("newsletters.signup_rate", None)
        return get_challenge(client)["challenge"]["maxNumber"]

    assert max_number() == 1000
    briefing = session.scalar(sa.select(Newsletter))

    def flood(count: int, start: int):
        with app.app_context():
            requests = [
                processing.Request.of(
                    [briefing.id],
                    f"flood{start + n}@example.com",
                    None,
                    Evidence(ip=None, user_agent=None, source="plain"),
                )
                for n in range(count)
            ]
            processing.process(db.session(), requests)
            db.session().commit()

    flood(50, 0)  # 50 in 5 minutes: 10 a minute, five times the normal rate
    assert max_number() == 5000
    flood(100, 50)  # 30 a minute
    assert max_number() == 15_000
    # Requests the worker has not processed yet count too: a flood outruns the worker.
    with app.app_context():
        for n in range(500):
            db.session().add(
                SignupRequest(
                    email=f"w{n}@example.com", newsletter_ids=[briefing.id], source="plain"
                )
            )
        db.session().commit()
    assert max_number() == 50_000  # capped at POW_MAX_NUMBER


@pytest.mark.settings(CONFIRM_MAILS_PER_DAY=3, CONFIRM_THROTTLE_MINUTES=0)
def test_a_flood_from_many_networks_through_every_route_stays_within_the_mail_budget(
    app, client, newsletter, session
):
    """The per-address budget holds whatever the route, the network or the newsletter."""
    with app.app_context():
        for n in range(4):
            db.session().add(Newsletter(slug=f"n{n}", name=f"N{n}"))
        editor = editors.create(db.session(), "ed@example.org", "a long password", is_admin=True)
        _, api_key = apikeys.create(db.session(), editor, "flood")
        db.session().commit()
    victim = "victim@example.com"
    slugs = ["briefing", "n0", "n1", "n2", "n3"]
    for round_ in range(3):
        for i, slug in enumerate(slugs):
            ip = f"198.51.100.{round_ * 10 + i}"
            env = {"REMOTE_ADDR": ip}
            headers = {"User-Agent": BROWSER}
            client.post(
                f"/n/{slug}/subscribe", data={"email": victim}, headers=headers, environ_base=env
            )
            client.post(
                f"/n/{slug}/embed", data={"email": victim}, headers=headers, environ_base=env
            )
            client.post(
                "/subscribe",
                data={"email": victim, "newsletter": slugs},
                headers=headers,
                environ_base=env,
            )
            client.post(
                f"/n/{slug}/subscribe",
                json={"email": victim, "form": "widget"},
                headers=headers,
                environ_base=env,
            )
            client.post(
                f"/api/v1/newsletters/{slug}/subscriptions",
                json={"email": victim},
                headers={"Authorization": f"Bearer {api_key}"},
                environ_base=env,
            )
    mails = session.scalar(
        sa.select(sa.func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.recipient == victim)
    )
    assert mails == 3
    subscriber = session.scalar(sa.select(Subscriber).where(Subscriber.email == victim))
    assert subscriber.mails_in_window == 3


@quick
def test_one_solution_sent_many_times_at_once_signs_up_once(
    app, client, newsletter, session, settings
):
    """Requests racing with one solution, on two apps (workers) of one database: one wins."""
    import threading
    import urllib.parse
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from werkzeug.serving import make_server

    answer = get_challenge(client)
    body = {"rendered": answer["rendered"], "altcha": solved(answer)}
    other = create_app(settings)
    servers = [make_server("127.0.0.1", 0, each, threaded=True) for each in (app, other)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def post(n: int) -> int:
        port = servers[n % 2].server_port
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/n/briefing/subscribe",
            data=urllib.parse.urlencode(body | {"email": f"racer{n}@example.com"}).encode(),
            headers={"User-Agent": BROWSER, "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status

    try:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(post, range(16)))
    finally:
        for server in servers:
            server.shutdown()
        with other.app_context():
            db.engine().dispose()
    assert statuses == [200] * 16
    assert len(stored(session)) == 1
    assert stops(session) == {"replay": 15}
