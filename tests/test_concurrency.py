"""Simultaneous requests to a real gunicorn with four worker processes: nothing lost, nothing
double, no 500s.

The end state of racing links is defined: an unsubscription always wins over a confirmation
racing it. Whichever commits first, the subscription ends ``unsubscribed`` with its
``unsubscribed_at``; the confirmation link confirms at most once, and if it did, its consent
event comes before the unsubscription's and ``confirmed_at`` stays as history. The events'
order is the order of the commits; the two timestamps are each request's own clock, read
before it waited for the other's lock, so they may be a few milliseconds out of that order.
"""

import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletters.models import (
    ConsentEvent,
    Newsletter,
    OutboxMessage,
    Status,
    Subscriber,
    Subscription,
    Token,
    TokenPurpose,
)

from .conftest import free_port, process_signups
from .subscriptions.test_links import mailed_secrets, unsubscribe_secret

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"


@pytest.fixture
def server(app, newsletter, tmp_path):
    """Serve the test database with gunicorn (4 workers); yield its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")} | {
        "NEWSLETTERS_DATABASE_URL": app.config["DATABASE_URL"],
        "NEWSLETTERS_SECRET_KEY": app.config["SECRET_KEY"],
        "NEWSLETTERS_BASE_URL": app.config["BASE_URL"],
        "NEWSLETTERS_MAIL_URL": app.config["MAIL_URL"],
        "NEWSLETTERS_RATELIMIT_ENABLED": "false",
    }
    log = tmp_path / "gunicorn.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            # --preload: import once and fork, so four workers start in a second or two
            # rather than each importing the app side by side.
            [str(GUNICORN), "-w", "4", "--preload", "-b", f"127.0.0.1:{port}", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
    # Every failure answers without a traceback: a logged one is a 500 somebody got.
    assert "Traceback" not in log.read_text(), log.read_text()


def wait_until_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited at start:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"gunicorn did not answer /healthz in 30 s:\n{log.read_text()}")


def post(url: str, body: dict | None = None) -> urllib.request.Request:
    """Return a POST of ``body`` as JSON (or an empty form), asking for a JSON answer."""
    data, content_type = (
        (json.dumps(body).encode(), "application/json")
        if body is not None
        else (b"", "application/x-www-form-urlencoded")
    )
    return urllib.request.Request(
        url,
        data=data,
        method="POST",
        # A browser's agent: urllib's own is refused as automation (proof.py).
        headers={
            "Content-Type": content_type,
            "Accept": "application/json",
            "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0",
        },
    )


ALREADY = "already"  # a 200 that says "You are already subscribed": the link was used before


def all_at_once(requests: list[urllib.request.Request]) -> list[int | str]:
    """Send every request from its own thread, released together; return the statuses.

    A 200 whose answer says the reader is already subscribed is counted as ``ALREADY``.
    """
    barrier = threading.Barrier(len(requests))
    statuses: list[int | None] = [None] * len(requests)

    def send(i: int) -> None:
        barrier.wait()
        try:
            with urllib.request.urlopen(requests[i], timeout=120) as response:
                already = b"You are already subscribed" in response.read()
                statuses[i] = ALREADY if already else response.status
        except urllib.error.HTTPError as error:
            statuses[i] = error.code

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def count(session, model, *where) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def add_newsletters(session, *slugs: str) -> None:
    for slug in slugs:
        session.add(Newsletter(slug=slug, name=slug.title()))
    session.commit()


def test_60_simultaneous_signups_of_one_address_store_one_subscription_and_one_mail(
    app, server, session
):
    # Spelled differently, as people and bots do: it is one address all the same.
    spellings = ["race@example.com", "Race@Example.com", "RACE@EXAMPLE.COM", " race@example.com"]
    requests = [
        post(f"{server}/n/briefing/subscribe", {"email": spellings[i % len(spellings)]})
        for i in range(60)
    ]
    assert Counter(all_at_once(requests)) == {200: 60}
    # Accepted by four web processes, then processed by the worker, as deployed.
    assert process_signups(app) == 60
    assert session.scalars(sa.select(Subscriber.email)).all() == ["race@example.com"]
    assert count(session, Subscription) == 1
    assert count(session, OutboxMessage) == 1
    assert count(session, Token, Token.purpose == TokenPurpose.CONFIRM) == 1
    assert count(session, Token, Token.purpose == TokenPurpose.UNSUBSCRIBE) == 1
    assert session.scalars(sa.select(Subscription.status)).one() == Status.PENDING


def test_30_simultaneous_signups_to_several_newsletters_store_each_once_and_one_mail(
    app, server, session
):
    add_newsletters(session, "other", "third")
    body = {"email": "race@example.com", "newsletters": ["briefing", "other", "third"]}
    assert Counter(all_at_once([post(f"{server}/subscribe", body) for _ in range(30)])) == {200: 30}
    assert process_signups(app) == 30
    assert count(session, Subscriber) == 1
    assert count(session, Subscription) == 3
    assert count(session, OutboxMessage) == 1
    [token] = session.scalars(sa.select(Token).where(Token.purpose == TokenPurpose.CONFIRM))
    assert len(token.subscriptions) == 3


def signed_up(app, server, session, email="r@example.com") -> tuple[str, str]:
    """Sign ``email`` up through the server; return its confirm and unsubscribe secrets."""
    [status] = all_at_once([post(f"{server}/n/briefing/subscribe", {"email": email})])
    assert status == 200
    process_signups(app)
    [confirm] = mailed_secrets(app)
    return confirm, unsubscribe_secret(app, session, email)


def events(session, status: Status) -> int:
    return count(session, ConsentEvent, ConsentEvent.status == status)


def test_a_confirmation_link_posted_40_times_at_once_confirms_once(app, server, session):
    confirm, _ = signed_up(app, server, session)
    statuses = all_at_once([post(f"{server}/confirm/{confirm}") for _ in range(40)])
    # One confirmed; the others found it done and say so (the link's holder owns the inbox).
    assert Counter(statuses) == {200: 1, ALREADY: 39}
    assert events(session, Status.CONFIRMED) == 1
    subscription = session.scalars(sa.select(Subscription)).one()
    assert subscription.status == Status.CONFIRMED and subscription.confirmed_at is not None


def test_an_unsubscribe_link_posted_40_times_at_once_unsubscribes_once(app, server, session):
    _, unsubscribe = signed_up(app, server, session)
    statuses = all_at_once([post(f"{server}/unsubscribe/{unsubscribe}") for _ in range(40)])
    assert Counter(statuses) == {200: 40}
    assert events(session, Status.UNSUBSCRIBED) == 1
    subscription = session.scalars(sa.select(Subscription)).one()
    assert subscription.status == Status.UNSUBSCRIBED and subscription.unsubscribed_at is not None


def test_confirming_and_unsubscribing_at_once_ends_unsubscribed(app, server, session):
    for round_ in range(3):  # three shuffles, three readers
        email = f"r{round_}@example.com"
        confirm, unsubscribe = signed_up(app, server, session, email)
        requests = [post(f"{server}/confirm/{confirm}") for _ in range(20)] + [
            post(f"{server}/unsubscribe/{unsubscribe}") for _ in range(20)
        ]
        random.Random(round_).shuffle(requests)
        statuses = all_at_once(requests)
        answers = Counter(
            (request.full_url.split("/")[3], status)
            for request, status in zip(requests, statuses, strict=True)
        )
        assert answers[("unsubscribe", 200)] == 20, answers
        # At most one confirmation went through; the others found it done, the link used, or
        # the subscription cancelled.
        assert answers[("confirm", 200)] <= 1, answers
        confirms = answers[("confirm", 200)] + answers[("confirm", ALREADY)]
        assert confirms + answers[("confirm", 410)] == 20, answers
        subscription = session.scalars(
            sa.select(Subscription).join(Subscription.subscriber).where(Subscriber.email == email)
        ).one()
        assert subscription.status == Status.UNSUBSCRIBED
        assert subscription.unsubscribed_at is not None
        order = [e.status for e in sorted(subscription.events, key=lambda e: e.id)]
        history = Counter(order)
        assert history[Status.UNSUBSCRIBED] == 1, order
        assert history[Status.CONFIRMED] == answers[("confirm", 200)], (order, answers)
        assert order[-1] == Status.UNSUBSCRIBED, order
        if history[Status.CONFIRMED]:
            assert subscription.confirmed_at is not None
        else:
            assert subscription.confirmed_at is None
        [used] = session.scalars(
            sa.select(Token.used_at).where(
                Token.purpose == TokenPurpose.CONFIRM,
                Token.subscriber_id == subscription.subscriber_id,
            )
        )
        assert (used is not None) == bool(history[Status.CONFIRMED])


def test_signups_racing_a_confirmation_never_undo_it(app, server, session):
    confirm, _ = signed_up(app, server, session)
    requests = [
        post(f"{server}/n/briefing/subscribe", {"email": "r@example.com"}) for _ in range(20)
    ]
    requests.insert(10, post(f"{server}/confirm/{confirm}"))
    assert Counter(all_at_once(requests)) == {200: 21}
    # The worker processes them after the confirmation committed: it must not undo it.
    assert process_signups(app) == 20
    subscription = session.scalars(sa.select(Subscription)).one()
    assert subscription.status == Status.CONFIRMED
    assert subscription.confirmed_at is not None
    assert events(session, Status.CONFIRMED) == 1
    assert count(session, OutboxMessage) == 1
