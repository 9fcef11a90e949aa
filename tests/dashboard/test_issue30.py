"""Issue 30's dashboard points, in streamlit's AppTest (the browser checks are in
``test_browser_issue30.py``): the train_acc vs val_acc caption agrees with the chart's axes, the
jobs table shows the job id and created time first, the job page's "Delete job" deletes through
``regsearch.store.deletion.delete_job`` after a confirmation (a running job: cancel it first), and
the server's middleware names the server's address in every HTML page it serves."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

from regsearch.config import Settings, get_settings
from regsearch.dashboard import charts, data, frames
from regsearch.dashboard.address import ServerAddress, with_address
from regsearch.dashboard.delete import delete_job
from regsearch.store.db import Database
from regsearch.store.migrate import upgrade
from regsearch.store.models import Job, Trial
from tests.dashboard.conftest import FilledDb, make_settings, point_app_at, replay_job, run_app


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    data.clear_caches()


def _texts(app: Any, kind: str) -> list[str]:
    return [e.value for e in getattr(app, kind)]


def test_train_vs_val_caption_agrees_with_the_chart(app_on_filled: FilledDb) -> None:
    job_id = app_on_filled.jobs["digits-placements"]
    gen = frames.generalization(data.trials(app_on_filled.url, job_id))
    figure = charts.train_vs_val(gen)
    assert figure.layout.yaxis.title.text == charts.label("train_acc")  # train_acc up
    assert figure.layout.xaxis.title.text == charts.label("val_acc")  # val_acc across
    # each configuration is drawn at (val_acc, train_acc): its height above the diagonal is its gap
    points = {(x, y) for trace in figure.data if trace.name != "no gap" for x, y in zip(trace.x, trace.y)}
    assert points == set(zip(gen["val_acc"], gen["train_acc"]))
    assert (gen["train_acc"] - gen["val_acc"] - gen["gap"]).abs().max() < 1e-9
    assert (gen["gap"] > 0).any()  # so some points are above it: the caption's case

    app = run_app("app_pages/job.py", job=job_id)
    [caption] = [c for c in _texts(app, "caption") if "diagonal" in c]
    assert "above the dashed diagonal generalize worse" in caption and "train_acc up" in caption
    assert "below" not in caption


def test_jobs_table_shows_id_and_created_first(app_on_filled: FilledDb) -> None:
    app = run_app()
    table = app.dataframe[0]
    shown = list(table.proto.column_order)
    assert shown[:2] == ["open", "name"] and "created_at" in shown  # "open" is the id, as a link
    assert len(shown) <= 8  # the others from the column menu (the browser test measures the width)
    value = table.value.set_index("id")
    for name, job_id in app_on_filled.jobs.items():
        assert value.loc[job_id, "name"] == name and value.loc[job_id, "open"] == f"job?job={job_id}"
        assert value.loc[job_id, "created_at"] is not None
    assert "(or its id)" in _texts(app, "caption")[-1]


@pytest.fixture
def own_db(monkeypatch: pytest.MonkeyPatch, filled_db: FilledDb, tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str]]]:
    """A database of its own (deletions must not touch the shared one): a completed and a
    running job, replayed from the filled database; the app pointed at it."""
    settings = make_settings(tmp_path / "own")
    upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    try:
        ids = {name: replay_job(filled_db.url, filled_db.jobs[name], db) for name in ("digits-placements", "digits-pareto")}
        from regsearch.store import jobs as job_store

        job_store.set_job_status(db, job_id=ids["digits-placements"], status="completed")
    finally:
        db.dispose()
    point_app_at(monkeypatch, settings)
    yield settings, ids
    get_settings.cache_clear()


def _rows(settings: Settings, job_id: str) -> tuple[Job | None, int]:
    db = Database(settings.sqlalchemy_url)
    try:
        with db.read() as session:
            return session.get(Job, job_id), session.query(Trial).filter(Trial.job_id == job_id).count()
    finally:
        db.dispose()


def test_delete_button_asks_then_deletes_through_the_store(own_db: tuple[Settings, dict[str, str]]) -> None:
    settings, ids = own_db
    job_id = ids["digits-placements"]
    job, n_trials = _rows(settings, job_id)
    assert job is not None and n_trials > 0
    study = job.study_name

    app = run_app("app_pages/job.py", job=job_id)
    assert not app.button(key="delete_job").disabled
    app.button(key="delete_job").click().run()
    # asked first: nothing deleted yet; "Keep it" goes back
    assert any("for good" in w for w in _texts(app, "warning"))
    assert _rows(settings, job_id)[0] is not None
    app.button(key="delete_job_no").click().run()
    assert not any("for good" in w for w in _texts(app, "warning")) and _rows(settings, job_id)[0] is not None

    app.button(key="delete_job").click().run()
    app.button(key="delete_job_yes").click().run()
    assert not app.exception
    assert _rows(settings, job_id) == (None, 0)
    assert study not in optuna.get_all_study_names(settings.sqlalchemy_url)
    assert _texts(app, "title") == ["Search jobs"]  # back on the jobs list, which says so once
    assert any(f"Deleted job digits-placements (`{job_id}`)" in s for s in _texts(app, "success"))
    assert job_id not in set(app.dataframe[0].value["id"])


def test_a_running_job_says_cancel_first(own_db: tuple[Settings, dict[str, str]]) -> None:
    settings, ids = own_db
    job_id = ids["digits-pareto"]
    app = run_app("app_pages/job.py", job=job_id)
    assert app.button(key="delete_job").disabled
    assert any(f"cancel it first (`regsearch cancel {job_id}`)" in c for c in _texts(app, "caption"))
    # and the function behind the button refuses it too, naming why
    problem = delete_job(settings, job_id)
    assert problem is not None and "cancel it first" in problem
    assert _rows(settings, job_id)[0] is not None


def _serve(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[dict[str, Any], bytes]:
    """One GET through ``app`` (ASGI): the response's start message and its body."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "method": "GET", "path": path, "headers": headers}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_the_middleware_names_the_server_address_in_html_pages_only() -> None:
    page = b"<!doctype html><html><head><script type=module src=./static/js/index.js></script></head></html>"
    seen: list[list[tuple[bytes, bytes]]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(list(scope["headers"]))
        html = scope["path"] in ("/", "/job")
        body = page if html else b"console.log(1)"
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/html; charset=utf-8" if html else b"text/javascript"),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body[:10], "more_body": True})
        await send({"type": "http.response.body", "body": body[10:]})

    middleware = ServerAddress(inner)
    start, body = _serve(middleware, "/job", [(b"accept-encoding", b"gzip"), (b"host", b"x")])
    assert body == with_address(page, "")
    assert body.index(b"BACKEND_BASE_URL") < body.index(b"index.js")  # before Streamlit's own script
    assert dict(start["headers"])[b"content-length"] == str(len(body)).encode()
    assert seen[-1] == [(b"host", b"x")]  # asked uncompressed, so that it can be edited

    start, body = _serve(middleware, "/static/js/index.js", [(b"accept-encoding", b"gzip")])
    assert body == b"console.log(1)" and seen[-1] == [(b"accept-encoding", b"gzip")]  # untouched
    assert b'window.location.origin+"/dash"' in with_address(page, "/dash/")
