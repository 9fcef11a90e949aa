"""The dashboard names each job's model (family and knobs) and each slot by the user's layer name,
also for a job whose family is a plugin that only a worker knows (published in the database)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from regsearch.config import Settings, get_settings
from regsearch.dashboard import data, frames
from regsearch.dashboard.catalog import published as published_families
from regsearch.domain import families
from regsearch.domain.metrics import EpochMetrics, summarize
from regsearch.domain.spec import JobSpec
from regsearch.store import families as published
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.store.migrate import upgrade
from tests.dashboard.conftest import make_settings, point_app_at, run_app

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.xdist_group("dashboard")]

PLUGIN = {
    "name": "twinnet", "source": "plugin", "slots_doc": "each conv of the conv branch, then each MLP Linear",
    "knobs": {"type": "object", "properties": {"channels": {"type": "array", "default": [16, 16]},
                                               "hidden": {"type": "array", "default": [64]}}},
}  # fmt: skip
PLUGIN_LABEL = "twinnet channels=[8,8] hidden=[64]"
MLP_LABEL = "mlp hidden=[32,32] activation=relu"
SPACE = {"placement": ["bn-act-drop", "act-drop"], "dropout": {"low": 0.0, "high": 0.5}}
DROPOUTS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.45)
LAYERS = ["branch.conv1", "head.0"]  # the third slot has no name: "slot 2"
_OPTUNA_IDS = itertools.count(10_000)


def _recipe(params: dict[str, Any], named: bool) -> dict[str, Any]:
    slot = {"order": ["bn", "act", "drop"], "dropout": params["dropout"], "bn_momentum": params.get("bn_momentum")}
    if params["placement"] == "act-drop":
        slot = {"order": ["act", "drop"], "dropout": params["dropout"], "bn_momentum": None}
    return {"version": 2, "family": "twinnet", "knobs": {"channels": [8, 8], "hidden": [64]},
            "input_shape": [64], "n_classes": 10,
            "slots": [{**slot, "name": LAYERS[0]}, {**slot, "name": LAYERS[1]}, dict(slot)] if named else [slot] * 2}


def _complete(db: Database, job_id: str, number: int, params: dict[str, Any], val_acc: float, named: bool) -> None:
    trial_id = trial_store.add_trial(db, job_id=job_id, number=number, optuna_trial_id=next(_OPTUNA_IDS),
                                     params=params)
    trial_store.mark_sent(db, trial_ids=[trial_id])
    claim = trial_store.claim(db, trial_id=trial_id, worker="w1@host", device="cpu")
    assert claim is not None
    epochs = [EpochMetrics(epoch=1, train_loss=1.0, train_acc=val_acc + 0.05, val_loss=1.1, val_acc=val_acc,
                           seconds=0.1)]
    trial_store.record_epochs(db, trial_id=trial_id, lease=claim.lease, epochs=epochs, recipe=_recipe(params, named))
    assert trial_store.finish(db, trial_id=trial_id, lease=claim.lease, state="complete",
                              metrics=summarize(epochs, val_acc - 0.01))


@pytest.fixture(scope="module")
def plugin_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, str]]:
    """A plugin job (family published by a worker that has since gone) and a built-in one."""
    settings = make_settings(tmp_path_factory.mktemp("dashboard-plugin"))
    upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    try:
        published.publish(db, "w1@host", [PLUGIN])
        published.withdraw(db, "w1@host")  # the worker stopped: old jobs must still read back
        base = {"dataset": {"name": "digits"}, "space": SPACE, "training": {"epochs": 1}, "pruner": "none",
                "budget": {"n_trials": len(DROPOUTS)}}
        plugin = JobSpec.model_validate({**base, "name": "plugin-job", "model": {"family": "twinnet", "channels": [8, 8]}},
                                        context=families.validation_context(published.catalog(db, live_s=None)))
        builtin = JobSpec.model_validate({**base, "name": "mlp-job", "model": {"family": "mlp", "hidden": [32, 32]}})
        ids = {}
        for spec in (plugin, builtin):
            job = job_store.create_job(db, spec=spec).job
            job_store.set_job_status(db, job_id=job.id, status="running")
            for number, dropout in enumerate(DROPOUTS):
                placement = SPACE["placement"][number % 2]
                params = {"placement": placement, "dropout": dropout, "dropout_layers": "all",
                          **({"bn_momentum": 0.1, "bn_layers": "all"} if placement == "bn-act-drop" else {})}
                _complete(db, job.id, number, params, 0.6 + dropout / 2, named=spec is plugin)
            job_store.set_job_status(db, job_id=job.id, status="completed")
            ids[spec.name] = job.id
    finally:
        db.dispose()
    return settings, ids


@pytest.fixture
def app_on_plugin(monkeypatch: pytest.MonkeyPatch,
                  plugin_db: tuple[Settings, dict[str, str]]) -> Iterator[tuple[Settings, dict[str, str]]]:
    point_app_at(monkeypatch, plugin_db[0])
    data.clear_caches()
    yield plugin_db
    get_settings.cache_clear()




def test_the_plugin_spec_needs_the_published_catalog(plugin_db: tuple[Settings, dict[str, str]],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    settings, ids = plugin_db
    assert "twinnet" not in families.names()  # as a fresh dashboard process starts
    spec = data.job(settings.sqlalchemy_url, ids["plugin-job"])["spec"]  # type: ignore[index]
    with pytest.raises(ValueError, match="twinnet"):
        JobSpec.model_validate(spec)  # this process alone does not know the family
    catalog = published_families(settings.sqlalchemy_url, data.store(settings.sqlalchemy_url))
    assert JobSpec.model_validate(spec, context=families.validation_context(catalog)).model.describe() == PLUGIN_LABEL


def test_data_names_the_model_of_a_plugin_job(app_on_plugin: tuple[Settings, dict[str, str]]) -> None:
    settings, ids = app_on_plugin
    url, job_id = settings.sqlalchemy_url, ids["plugin-job"]
    jobs = data.jobs(url).set_index("name")
    assert jobs.loc["plugin-job", "model"] == PLUGIN_LABEL and jobs.loc["mlp-job", "model"] == MLP_LABEL
    assert data.job(url, job_id)["model"] == PLUGIN_LABEL  # type: ignore[index]
    report = data.report(url, job_id)
    assert report is not None and (report["family"], report["model"]) == ("twinnet", PLUGIN_LABEL)
    assert report["slots"] == [*LAYERS, "slot 2"]
    assert data.report(url, ids["mlp-job"])["slots"] is None  # type: ignore[index]
    # the spec parses, so what needs the parsed spec works for a plugin job too
    found = data.importance(url, job_id, len(DROPOUTS))
    assert found["message"] is None and found["importances"], found
    trial = data.trial(url, job_id, 0)
    assert trial is not None and trial["job_model"] == PLUGIN_LABEL
    slots = frames.slots_table(trial["recipe"])
    assert list(slots["layer"]) == [*LAYERS, "slot 2"] and list(slots["slot"]) == [0, 1, 2]
    assert list(slots["order"]) == ["bn-act-drop"] * 3 and list(slots["dropout"]) == [0.05] * 3


def test_slots_table_without_a_recipe_or_names() -> None:
    assert frames.slots_table(None).empty and list(frames.slots_table({}).columns) == list(frames.SLOT_COLUMNS)
    plain = frames.slots_table({"slots": [{"order": ["act"], "dropout": None, "bn_momentum": None}]})
    assert list(plain["layer"]) == ["slot 0"] and plain["dropout"].isna().all()


def test_pages_show_the_model_and_the_layer_names(app_on_plugin: tuple[Settings, dict[str, str]]) -> None:
    _, ids = app_on_plugin
    jobs = run_app()
    table = jobs.dataframe[0].value.set_index("name")
    assert table.loc["plugin-job", "model"] == PLUGIN_LABEL and table.loc["mlp-job", "model"] == MLP_LABEL

    job = run_app("app_pages/job.py", job=ids["plugin-job"])
    assert f"model `{PLUGIN_LABEL}`" in str(job.caption[0].value)
    assert any(f"Model: `{PLUGIN_LABEL}`" in str(c.value) and "`branch.conv1`" in str(c.value) for c in job.code)

    trial = run_app("app_pages/trial.py", job=ids["plugin-job"], trial="1")
    assert f"model `{PLUGIN_LABEL}`" in [str(c.value) for c in trial.caption]
    assert "Slots" in [str(h.value) for h in trial.header]
    slots = next(d.value for d in trial.dataframe if "layer" in d.value.columns)
    assert list(slots["layer"]) == [*LAYERS, "slot 2"] and list(slots["order"]) == ["act-drop"] * 3

    compare = run_app("app_pages/compare.py", jobs=f"{ids['plugin-job']},{ids['mlp-job']}")
    models = next(str(c.value) for c in compare.caption if str(c.value).startswith("Models:"))
    assert f"`{PLUGIN_LABEL}`" in models and f"`{MLP_LABEL}`" in models
    assert any(f"(`{PLUGIN_LABEL}`)" in str(m.value) for m in compare.markdown)

