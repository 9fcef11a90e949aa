"""``auto``'s bad input: a network no live worker has, or one that does not load, is a 422 at
submit (torch-free, from the rows workers published); what only a worker can tell with the data's
shape (``make`` raises, it does not trace, no slot) ends the job at its first trial, failed with
the reason, and the worker goes on."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from regsearch.config import Settings
from regsearch.services.api.main import create_app
from regsearch.store import families as store
from regsearch.store.db import Database
from regsearch.store.models import PublishedFamily, utcnow
from tests.services.books import assert_books_agree
from tests.services.stack import running_stack, small_spec

AUTO_SCHEMA = {"title": "AutoKnobs", "type": "object", "properties": {"network": {"type": "string"}}}
NETWORKS = {
    "vgg_seq": {"entry_point": "regsearch_example_networks:vgg_seq", "error": None},
    "broken_import": {"entry_point": "no_such_package.nets:make",
                      "error": "ModuleNotFoundError: No module named 'no_such_package'"},
}


def auto_row(networks: dict[str, Any] | None = NETWORKS) -> dict[str, Any]:
    row = {"name": "auto", "knobs": AUTO_SCHEMA, "slots_doc": "found by tracing", "source": "builtin"}
    return row if networks is None else {**row, "networks": networks}


def spec(network: str) -> dict[str, Any]:
    return {
        "name": "auto", "dataset": {"name": "digits"}, "model": {"family": "auto", "network": network},
        "space": {"placement": ["bn-act"]}, "training": {"epochs": 1}, "budget": {"n_trials": 1},
    }  # fmt: skip


@pytest.fixture
def app_for(sqlite_settings: Settings, sqlite_db: Database) -> Iterator[Any]:
    """A fresh app each call: its catalog reads the rows published so far (it caches for 2 s)."""
    clients: list[TestClient] = []

    def make() -> TestClient:
        client = TestClient(create_app(sqlite_settings, db=sqlite_db, broker_ping=lambda: None, notify=lambda *_: None))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_a_network_no_live_worker_has_is_a_422_listing_the_installed_ones(app_for: Any, sqlite_db: Database) -> None:
    store.publish(sqlite_db, "w1@host", [auto_row()])
    response = app_for().post("/jobs", json=spec("not_installed"))
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == [{
        "field": "model.network",
        "message": "'not_installed' is not an installed regsearch.networks entry point on any live worker "
                   "(installed: broken_import, vgg_seq)"}]


def test_a_network_whose_entry_point_does_not_load_is_a_422_with_the_reason(app_for: Any, sqlite_db: Database) -> None:
    store.publish(sqlite_db, "w1@host", [auto_row()])
    response = app_for().post("/jobs", json=spec("broken_import"))
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == [{
        "field": "model.network",
        "message": "'broken_import' (no_such_package.nets:make) does not load on the workers: "
                   "ModuleNotFoundError: No module named 'no_such_package'"}]
    # it loads on a second worker: offered
    store.publish(sqlite_db, "w2@host", [auto_row({"broken_import": {"entry_point": "x:make", "error": None}})])
    assert app_for().post("/jobs", json=spec("broken_import")).status_code == 201


def test_an_installed_network_is_accepted_and_unknown_networks_are_left_to_the_worker(
    app_for: Any, sqlite_db: Database
) -> None:
    assert app_for().post("/jobs", json=spec("anything")).status_code == 201, "no worker up yet: unknown"
    store.publish(sqlite_db, "old@host", [auto_row(None)])  # a worker of an earlier version: no networks
    assert app_for().post("/jobs", json=spec("anything")).status_code == 201, "a worker that did not say"
    store.publish(sqlite_db, "w1@host", [auto_row()])
    assert app_for().post("/jobs", json=spec("anything")).status_code == 201, "old@host may have it"
    store.withdraw(sqlite_db, "old@host")
    client = app_for()
    assert client.post("/jobs", json=spec("anything")).status_code == 422
    created = client.post("/jobs", json=spec("vgg_seq"))
    assert created.status_code == 201, created.text

    old = utcnow() - dt.timedelta(seconds=store.LIVE_S + 5)
    with sqlite_db.session() as session:
        session.execute(update(PublishedFamily).values(seen_at=old))
    later = app_for()
    assert later.get(f"/jobs/{created.json()['id']}").status_code == 200, "reads back with its workers gone"
    assert later.post("/jobs", json=spec("anything")).status_code == 201, "no live worker: unknown again"


def test_get_families_lists_auto_s_networks_once_a_worker_published_them(app_for: Any, sqlite_db: Database) -> None:
    items = {i["name"]: i for i in app_for().get("/families").json()["items"]}
    assert "networks" not in items["auto"], "unknown before any worker said"
    store.publish(sqlite_db, "w1@host", [auto_row()])
    items = {i["name"]: i for i in app_for().get("/families").json()["items"]}
    assert items["auto"]["networks"] == [{"name": name, **NETWORKS[name]} for name in sorted(NETWORKS)]
    assert items["auto"]["knobs"]["properties"]["network"]["type"] == "string"
    assert "networks" not in items["mlp"] and "x-regsearch-networks" not in items["auto"]["knobs"]
    assert store.offered(sqlite_db)["auto"]["knobs"] == AUTO_SCHEMA, "offered() takes them out of knobs"


def test_regsearch_families_json_shows_auto_s_networks(app_for: Any, sqlite_db: Database,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from regsearch.cli.app import app
    from regsearch.client import Client

    store.publish(sqlite_db, "w1@host", [auto_row()])
    document = app_for().get("/families").json()
    monkeypatch.setattr(Client, "families", lambda self: document["items"])
    result = CliRunner().invoke(app, ["families", "--json"])
    assert result.exit_code == 0, result.output
    shown = {i["name"]: i for i in json.loads(result.output)["items"]}
    assert [n["name"] for n in shown["auto"]["networks"]] == ["broken_import", "vgg_seq"]
    table = CliRunner().invoke(app, ["families"], env={"COLUMNS": "80"})
    assert table.exit_code == 0 and "auto" in table.output, table.output


def test_the_api_s_network_check_imports_no_torch() -> None:
    code = ("import sys; import regsearch.services.api.main, regsearch.store.families, regsearch.domain.families; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def auto_spec(name: str, network: str, **overrides: Any) -> dict[str, Any]:
    job = small_spec(name, **overrides)
    job["model"] = {"family": "auto", "network": network}
    return job


def _wait_networks(stack: Any) -> dict[str, Any]:
    def published() -> Any:
        return (store.offered(stack.db).get("auto") or {}).get("networks")

    return stack.wait_for(published, 120, "the worker to publish its networks")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bad_networks_through_a_real_worker(embedded_settings: Settings, tmp_path: Path) -> None:
    from tests.example_packages import install_example

    install_example("networks", "regsearch-example-networks")  # the worker processes see it too
    budget = {"n_trials": 12, "parallelism": 2, "max_retries": 2}
    with running_stack(embedded_settings, tmp_path / "logs", start=False) as stack:
        stack.start("api", "coordinator")
        early = stack.client.submit(auto_spec("early", "not_installed", budget=budget))  # no worker said yet
        stack.start("worker")
        networks = _wait_networks(stack)
        assert {"vgg_seq", "broken_make", "untraceable", "no_slots"} <= set(networks)
        assert all(net["error"] is None for net in networks.values()), networks

        def refused() -> httpx.Response | None:
            response = httpx.post(f"{stack.settings.api_url}/jobs", json=auto_spec("late", "not_installed"), timeout=10)
            return response if response.status_code == 422 else None

        (detail,) = stack.wait_for(refused, 30, "a 422 (the API's catalog caches 2 s)").json()["detail"]
        assert detail["field"] == "model.network" and "vgg_seq" in detail["message"], detail

        jobs = {"not_installed": early["id"]}
        for network in ("broken_make", "untraceable", "no_slots"):
            jobs[network] = stack.client.submit(auto_spec(network, network, budget=budget))["id"]
        expected = {
            "not_installed": "model.network: 'not_installed' is not an installed regsearch.networks entry point",
            "broken_make": "model.network: 'broken_make': make([1, 8, 8], 2) failed: RuntimeError: this network is broken",
            "untraceable": "model.network: 'untraceable' does not trace (torch.fx): in gate (Gate)",
            "no_slots": "model.network: 'no_slots': no slot found",
        }
        for network, job_id in jobs.items():
            done = stack.wait_job(job_id, 120)
            assert done["status"] == "failed", (network, done)
            assert done["error"].startswith(expected[network]), (network, done["error"])
            rows = assert_books_agree(stack.db, stack.client, job_id)
            started = [r for r in rows if r.started_at is not None]
            assert 1 <= len(started) <= 4, f"{network}: the job ended at its first trial, not after 12"
            assert all(not r.retryable for r in rows)
        assert not stack.supervisor.dead(), stack.logs()
        ok = stack.client.submit(auto_spec("ok", "vgg_seq", training={"epochs": 1}, budget={"n_trials": 1}))
        assert stack.wait_job(ok["id"], 180)["status"] == "completed", "the worker goes on"


def test_regsearch_trial_prints_a_plain_network_error_and_exits_2(data_dir: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``run_local_trial`` raises the plain NetworkError (no DatasetError subclass); the CLI catches it."""
    pytest.importorskip("torch")
    import yaml
    from typer.testing import CliRunner

    from regsearch.cli.app import app
    from regsearch.domain.spec import JobSpec
    from regsearch.worker import local
    from regsearch.worker.datasets import DatasetError
    from regsearch.worker.families.auto import NetworkError

    job = JobSpec.model_validate(spec("not_installed_xyz"))
    with pytest.raises(NetworkError, match="^model.network: 'not_installed_xyz' is not an installed") as info:
        local.run_local_trial(job, {"placement": "bn-act", "bn_momentum": 0.1}, data_dir, device="cpu")
    assert type(info.value) is NetworkError and not isinstance(info.value, DatasetError)
    assert not hasattr(local, "UnusableNetwork")

    monkeypatch.setenv("REGSEARCH_DATA_DIR", str(data_dir))
    path = tmp_path / "auto.yaml"
    path.write_text(yaml.safe_dump(spec("vgg_seq")))
    message = "model.network: 'vgg_seq': no slot found"

    def no_slot(*_: Any, **__: Any) -> Any:
        raise NetworkError(message)

    monkeypatch.setattr(local, "run_local_trial", no_slot)
    result = CliRunner().invoke(app, ["trial", str(path), "--device", "cpu", "--params",
                                      '{"placement": "bn-act", "bn_momentum": 0.1}'])
    assert result.exit_code == 2, (result.output, result.exception)
    assert f"error: {message}" in " ".join(result.output.split()) and "Traceback" not in result.output
