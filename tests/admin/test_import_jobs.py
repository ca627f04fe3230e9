"""Imports in the editors' area as jobs: queued by an upload, run by the worker, followed."""

import io
import re
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from newsletters import create_app, db, import_jobs, imports
from newsletters.db import utcnow
from newsletters.mail import worker
from newsletters.models import ImportJob, Newsletter, Status, Subscriber, Subscription

from .conftest import csrf_token, login

PAGE = "/admin/n/briefing/import"


def upload(client, content: bytes, filename="list.csv", **fields):
    """Post ``content`` to the import page as a browser does, CSRF token included."""
    return client.post(
        PAGE,
        data={
            "csrf_token": csrf_token(client, PAGE),
            "file": (io.BytesIO(content), filename),
            **fields,
        },
        content_type="multipart/form-data",
    )


def queued(client, content: bytes, **fields) -> int:
    """Upload ``content`` and return the id of the job it became."""
    response = upload(client, content, **fields)
    assert response.status_code == 303, response.get_data(as_text=True)
    match = re.fullmatch(r"/admin/n/briefing/imports/(\d+)", response.location)
    assert match, response.location
    return int(match.group(1))


def work(app) -> bool:
    """Run the worker's import part once, as its loop does."""
    with app.app_context():
        return import_jobs.run_round()


def count(session, model) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def job_of(session, job_id) -> ImportJob:
    session.expire_all()
    return session.get(ImportJob, job_id)


def rows(n: int, start: int = 0) -> str:
    return "".join(f"reader{i:05d}@example.com,Reader {i}\n" for i in range(start, start + n))


@pytest.fixture
def editor(client, newsletter, make_editor):
    login(client, make_editor("editor@example.org", "briefing"))
    return client


def test_an_upload_waits_as_a_job_then_the_worker_imports_it_and_the_page_reports(
    app, editor, session
):
    known = Subscriber(email="known@example.com")
    session.add(known)
    briefing = session.scalar(sa.select(Newsletter))
    session.add(Subscription(newsletter=briefing, subscriber=known, status=Status.CONFIRMED))
    session.commit()
    content = b"email,name,shoe size\nnew@example.com,New\nnot-an-address,\nknown@example.com,\n"

    job_id = queued(editor, content, send_confirmation="y")

    job = job_of(session, job_id)
    assert (job.state, job.size, job.lines, job.send_confirmation) == (
        "queued",
        len(content),
        4,
        True,
    )
    assert job.filename == "list.csv"
    assert count(session, Subscriber) == 1
    page = editor.get(f"/admin/n/briefing/imports/{job_id}").get_data(as_text=True)
    assert "waiting to start" in page
    assert 'http-equiv="refresh"' in page
    assert editor.get(f"/admin/n/briefing/imports/{job_id}.json").json == {
        "state": "queued",
        "ended": False,
        "lines": 4,
        "rows_done": 0,
        "refused": 0,
    }

    assert work(app) is True

    job = job_of(session, job_id)
    assert (job.state, job.rows_done, job.refused, job.attempts) == ("done", 4, 1, 1)
    assert job.content is None
    assert job.finished_at is not None and job.error is None
    assert job.report["taken"] == 1 and job.report["refused_total"] == 2
    assert count(session, Subscriber) == 2
    response = editor.get(f"/admin/n/briefing/imports/{job_id}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<b>1</b> rows taken" in page
    assert "<b>1</b> already on the list" in page
    assert "<b>1</b> refused" in page
    assert "1 confirmation mails queued" in page
    assert "<td>3</td><td>not-an-address</td>" in page
    assert "already on this list (confirmed)" in page
    assert "Columns ignored: shoe size." in page
    assert 'http-equiv="refresh"' not in page and "<script" not in page
    status = editor.get(f"/admin/n/briefing/imports/{job_id}.json").json
    assert (status["state"], status["ended"], status["rows_done"]) == ("done", True, 4)
    # The import page lists it and leads back to it.
    listing = editor.get(PAGE).get_data(as_text=True)
    assert f'href="/admin/n/briefing/imports/{job_id}"' in listing
    assert work(app) is False


def test_the_worker_loop_runs_import_jobs(app, editor, session):
    job_id = queued(editor, ("email,name\n" + rows(3)).encode())

    with app.app_context():
        worker.run(once=True, report=lambda line: None)

    assert job_of(session, job_id).state == "done"
    assert count(session, Subscription) == 3


REFUSED_AT_ONCE = [
    (b"\xff\xfee\x00m\x00a\x00i\x00l\x00\n\x00", "The file is not UTF-8 text."),
    (b"email,name\n" + b"a@example.com,\xe9\n", "The file is not UTF-8 text."),
    (b"", "The file is empty."),
    (b"mail;name\nx@example.com;X\n", "separated by semicolons"),
    (b"name,address\nX,x@example.com\n", "The header row has no “email”"),
]


def test_a_file_refused_at_once_is_a_400_with_why_and_queues_nothing(editor, session):
    for content, message in REFUSED_AT_ONCE:
        response = upload(editor, content)

        assert response.status_code == 400
        assert message in response.get_data(as_text=True)
    assert count(session, ImportJob) == 0


def test_a_file_the_worker_refuses_fails_its_job_with_why_and_changes_nothing(
    app, editor, session, monkeypatch
):
    monkeypatch.setattr(imports, "BATCH", 2)
    unclosed = '"' + "x" * 200_000
    content = ("email,name\n" + rows(5) + unclosed + "\n").encode()
    job_id = queued(editor, content)

    work(app)

    job = job_of(session, job_id)
    assert job.state == "failed"
    assert job.error.startswith("Line 7 cannot be read as CSV")
    assert job.content is None and job.report is None
    assert count(session, Subscriber) == 0
    page = editor.get(f"/admin/n/briefing/imports/{job_id}").get_data(as_text=True)
    assert "The import failed" in page
    assert "look for a quote that is never closed" in page
    assert "Nothing on the list changed." in page


def test_a_job_that_breaks_fails_with_a_worded_reason_and_changes_nothing(
    app, editor, session, monkeypatch
):
    job_id = queued(editor, ("email,name\n" + rows(3)).encode())

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(imports, "_store", broken)
    work(app)

    assert job_of(session, job_id).error == import_jobs.BROKEN
    assert count(session, Subscriber) == 0
    page = editor.get(f"/admin/n/briefing/imports/{job_id}").get_data(as_text=True)
    assert "The import stopped on an unexpected error; nothing was imported." in page


def stale(session, job_id):
    """Age the job's heartbeat as if its worker had died."""
    session.execute(
        sa.update(ImportJob)
        .where(ImportJob.id == job_id)
        .values(heartbeat_at=utcnow() - import_jobs.STALE_AFTER - timedelta(seconds=1))
    )
    session.commit()


def test_a_job_whose_worker_died_is_taken_again_and_the_old_run_cannot_finish_it(
    app, editor, session
):
    job_id = queued(editor, ("email,name\n" + rows(4)).encode())
    with app.app_context():
        assert import_jobs.claim(db.session()) == (job_id, 1)
        # A live worker's job is not taken.
        assert import_jobs.claim(db.session()) is None
    stale(session, job_id)

    with app.app_context():
        assert import_jobs.claim(db.session()) == (job_id, 2)
        # The first worker comes back: its import is rolled back, the job is not its own.
        assert import_jobs.run(db.session(), job_id, 1, report=lambda line: None) is None
    assert count(session, Subscriber) == 0
    assert job_of(session, job_id).state == "running"

    with app.app_context():
        assert import_jobs.run(db.session(), job_id, 2, report=lambda line: None) == "done"
    job = job_of(session, job_id)
    assert (job.state, job.attempts, job.report["taken"]) == ("done", 2, 4)
    assert count(session, Subscriber) == 4


def test_a_job_whose_worker_dies_every_time_is_given_up(app, editor, session):
    job_id = queued(editor, ("email,name\n" + rows(1)).encode())
    for attempt in range(1, import_jobs.MAX_ATTEMPTS + 1):
        with app.app_context():
            assert import_jobs.claim(db.session()) == (job_id, attempt)
        stale(session, job_id)

    assert work(app) is False

    job = job_of(session, job_id)
    assert (job.state, job.error, job.content) == ("failed", import_jobs.ABANDONED, None)
    page = editor.get(f"/admin/n/briefing/imports/{job_id}").get_data(as_text=True)
    assert "The import was started 3 times and stopped each time" in page


def test_two_workers_never_take_the_same_job(app, editor, session, settings):
    ids = [queued(editor, (f"email\nreader{n}@example.com\n").encode()) for n in range(6)]
    apps = [app, create_app(settings)]
    start = threading.Barrier(2)
    taken: list[list[tuple[int, int]]] = [[], []]

    def drain(number):
        with apps[number].app_context():
            start.wait()
            while (claimed := import_jobs.claim(db.session())) is not None:
                taken[number].append(claimed)

    threads = [threading.Thread(target=drain, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with apps[1].app_context():
        db.engine().dispose()

    claims = taken[0] + taken[1]
    assert sorted(claims) == [(job_id, 1) for job_id in ids]


def test_the_progress_is_seen_while_the_import_runs(app, editor, session, monkeypatch):
    if app.config["DATABASE_URL"].startswith("sqlite"):
        pytest.skip("on SQLite the import holds the only write lock: no count is written meanwhile")
    monkeypatch.setattr(imports, "BATCH", 100)
    monkeypatch.setattr(import_jobs, "PROGRESS_SECONDS", 0)
    content = ("email,name\n" + rows(450) + "bad,\n").encode()
    job_id = queued(editor, content)
    seen = []
    advance = import_jobs._Pulse.advance

    def watched(pulse, lines):
        advance(pulse, lines)
        # The page's view, from a thread of its own: another app context and connection.
        asking = threading.Thread(
            target=lambda: seen.append(editor.get(f"/admin/n/briefing/imports/{job_id}.json").json)
        )
        asking.start()
        asking.join()

    monkeypatch.setattr(import_jobs._Pulse, "advance", watched)
    work(app)

    assert [(s["state"], s["rows_done"]) for s in seen[:4]] == [
        ("running", 101),
        ("running", 201),
        ("running", 301),
        ("running", 401),
    ]
    # Nothing of the list is seen before the import commits.
    assert job_of(session, job_id).state == "done"
    assert count(session, Subscriber) == 450


def test_only_the_newsletters_editors_see_its_imports(
    app, client, editor, session, other_newsletter, make_editor
):
    job_id = queued(editor, ("email,name\n" + rows(1)).encode())
    other = ImportJob(
        newsletter_id=session.scalar(sa.select(Newsletter.id).where(Newsletter.slug == "other")),
        filename="theirs.csv",
        lines=1,
    )
    session.add(other)
    session.commit()

    # Another newsletter's job under this newsletter's address: not found.
    for suffix in ("", ".json"):
        assert editor.get(f"/admin/n/briefing/imports/{other.id}{suffix}").status_code == 404
        assert editor.get(f"/admin/n/briefing/imports/999{suffix}").status_code == 404
    assert "theirs.csv" not in editor.get(PAGE).get_data(as_text=True)

    stranger = app.test_client()
    login(stranger, make_editor("stranger@example.org", "other"))
    for suffix in ("", ".json"):
        assert stranger.get(f"/admin/n/briefing/imports/{job_id}{suffix}").status_code == 403
    assert stranger.get(f"/admin/n/other/imports/{job_id}").status_code == 404
    refused = stranger.post(
        PAGE,
        data={
            "csrf_token": csrf_token(stranger, "/admin/n/other/import"),
            "file": (io.BytesIO(b"email\nx@example.com\n"), "x.csv"),
        },
        content_type="multipart/form-data",
    )
    assert refused.status_code == 403
    assert count(session, ImportJob) == 2

    anonymous = app.test_client().get(f"/admin/n/briefing/imports/{job_id}.json")
    assert anonymous.status_code in (302, 303)
    assert "/admin/login" in anonymous.location


def test_a_job_whose_newsletter_was_deleted_meanwhile_is_dropped(app, editor, session):
    job_id = queued(editor, ("email,name\n" + rows(2)).encode())
    with app.app_context():
        claimed = import_jobs.claim(db.session())
    session.execute(sa.delete(Newsletter).where(Newsletter.slug == "briefing"))
    session.commit()

    with app.app_context():
        assert import_jobs.run(db.session(), *claimed, report=lambda line: None) is None

    assert job_of(session, job_id) is None
    assert count(session, Subscriber) == 0
