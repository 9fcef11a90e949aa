"""Published families: workers' rows, GET /families, and model.family checked against them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from regsearch.config import Settings
from regsearch.domain import families as domain
from regsearch.domain.published import knobs_model
from regsearch.services.api.main import create_app
from regsearch.store import families as store
from regsearch.store.db import Database
from regsearch.store.models import PublishedFamily, utcnow

WIDE_SCHEMA = {
    "title": "Knobs",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "width": {"title": "Width", "type": "integer", "default": 32, "minimum": 1},
        "kind": {"title": "Kind", "enum": ["a", "b"], "type": "string", "default": "a"},
    },
}
PLUGIN = {"name": "widenet", "knobs": WIDE_SCHEMA, "slots_doc": "one per hidden Linear", "source": "plugin"}
BUILTIN_ROW = {"name": "mlp", "knobs": {"type": "object"}, "slots_doc": "x", "source": "builtin"}


def spec(model: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "fam", "dataset": {"name": "digits"}, "model": model,
        "space": {"placement": ["bn-act", "act"], "dropout_layers": ["all"]},
        "training": {"epochs": 1}, "budget": {"n_trials": 1},
    }  # fmt: skip


@pytest.fixture
def client(sqlite_settings: Settings, db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(sqlite_settings, db=db, broker_ping=lambda: None, notify=lambda *_: None)) as c:
        yield c


def test_a_worker_publishes_refreshes_and_withdraws_its_rows(db: Database) -> None:
    assert store.publish(db, "w1@host", [PLUGIN, BUILTIN_ROW]) == 2
    assert store.publish(db, "w1@host", [PLUGIN]) == 1  # replaced, not added
    store.publish(db, "w2@host", [PLUGIN])
    offered = store.offered(db)
    assert set(offered) == {"widenet"} and sorted(offered["widenet"]["workers"]) == ["w1@host", "w2@host"]
    assert offered["widenet"]["knobs"] == WIDE_SCHEMA

    old = utcnow() - dt.timedelta(seconds=store.LIVE_S + 5)
    with db.session() as session:
        session.execute(update(PublishedFamily).values(seen_at=old))
    assert store.offered(db) == {}, "rows not refreshed within LIVE_S are not offered"
    assert set(store.offered(db, live_s=None)) == {"widenet"}
    assert store.touch(db, "w1@host") == 1
    assert store.offered(db)["widenet"]["workers"] == ["w1@host"]
    store.withdraw(db, "w1@host")
    assert store.offered(db) == {}, "a stopped worker's families are not offered"
    assert set(store.offered(db, live_s=None)) == {"widenet"}, "but kept as the record of their knobs"
    store.publish(db, "w3@host", [PLUGIN])  # a new worker's row supersedes the dead ones
    assert store.offered(db, live_s=None)["widenet"]["workers"] == ["w3@host"]


def test_get_families_lists_the_built_ins_before_any_worker_and_then_live_plugins(
    client: TestClient, db: Database
) -> None:
    items = client.get("/families").json()["items"]
    builtin = sorted(domain.BUILTIN)
    assert [i["name"] for i in items] == builtin and {"mlp", "cnn", "resnet", "vgg"} <= set(builtin)
    assert all(i["source"] == "builtin" and i["slots_doc"] for i in items)
    by_name = {i["name"]: i for i in items}
    assert by_name["mlp"]["knobs"]["properties"]["hidden"]["type"] == "array"

    store.publish(db, "w1@host", [PLUGIN, BUILTIN_ROW])
    items = client.get("/families").json()["items"]
    assert [i["name"] for i in items] == [*builtin, "widenet"]
    assert items[-1] == PLUGIN
    mlp = next(i for i in items if i["name"] == "mlp")
    assert mlp["source"] == "builtin" and mlp["knobs"] == by_name["mlp"]["knobs"], "a worker cannot redefine it"


def test_built_in_families_are_accepted_with_no_worker_up(client: TestClient) -> None:
    response = client.post("/jobs", json=spec({"family": "cnn", "channels": [8]}))
    assert response.status_code == 201, response.text


def test_a_family_no_live_worker_offers_is_refused_naming_the_offered_ones(client: TestClient, db: Database) -> None:
    response = client.post("/jobs", json=spec({"family": "widenet"}))
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["field"] == "model.family"
    assert "widenet" in detail[0]["message"] and "mlp" in detail[0]["message"]

    store.publish(db, "w1@host", [PLUGIN])
    # the app's catalog caches for 2 s: a fresh app reads the new rows at once
    with TestClient(create_app(client.app.state.settings, db=db, broker_ping=lambda: None,
                               notify=lambda *_: None)) as fresh:
        created = fresh.post("/jobs", json=spec({"family": "widenet", "width": 8}))
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        assert fresh.get(f"/jobs/{created.json()['id']}").json()["spec"]["model"] == {
            "family": "widenet", "width": 8, "kind": "a"}

        for model, field in (({"family": "widenet", "width": 0}, "model.width"),
                             ({"family": "widenet", "kind": "c"}, "model.kind"),
                             ({"family": "widenet", "widht": 3}, "model.widht")):
            bad = fresh.post("/jobs", json=spec(model))
            assert bad.status_code == 422, model
            assert bad.json()["detail"][0]["field"] == field, bad.json()
        misspelt = fresh.post("/jobs", json=spec({"family": "widenet", "widht": 3})).json()["detail"][0]
        assert "width" in misspelt["message"]

        old = utcnow() - dt.timedelta(seconds=store.LIVE_S + 5)
        with db.session() as session:
            session.execute(update(PublishedFamily).values(seen_at=old))
    with TestClient(create_app(client.app.state.settings, db=db, broker_ping=lambda: None,
                               notify=lambda *_: None)) as later:
        gone = later.post("/jobs", json=spec({"family": "widenet"}))
        assert gone.status_code == 422 and gone.json()["detail"][0]["field"] == "model.family"
        assert later.get(f"/jobs/{job_id}").status_code == 200, "an accepted plugin job still reads back"
        assert later.get(f"/jobs/{job_id}/best").status_code == 200


def test_a_published_schema_is_checked_without_jsonschema_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_jsonschema(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "jsonschema":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jsonschema)
    model = knobs_model("widenet", WIDE_SCHEMA)
    assert model.model_validate({}).model_dump() == {"width": 32, "kind": "a"}
    for bad in ({"width": 0}, {"width": "x"}, {"kind": "c"}, {"other": 1}):
        with pytest.raises(ValueError):
            model.model_validate(bad)
    assert model.model_json_schema() == WIDE_SCHEMA
