"""Every page through ``streamlit.testing.v1.AppTest``: the filled database, the empty one, a
missing one, and jobs whose trials failed, were pruned, or have not finished."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from regsearch.config import Settings, get_settings
from regsearch.dashboard import data, frames
from tests.dashboard.conftest import FilledDb, make_settings, point_app_at, run_app

# one xdist worker builds the trained fixture database once for every dashboard test
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.xdist_group("dashboard")]
SECTIONS = ["Evidence", "Generalization", "Convergence", "Placement comparison", "Search space", "Best configurations"]




def texts(app: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(app, kind)]


def metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    data.clear_caches()


def test_jobs_page_lists_every_job(app_on_filled: FilledDb) -> None:
    app = run_app()
    assert texts(app, "title") == ["Search jobs"]
    assert metrics(app) == {"Jobs": "4", "Queued or running": "2", "Trials finished": "26", "Trials running": "1"}
    table = app.dataframe[0].value.set_index("name")
    assert list(table.index) == ["digits-confirmed", "nothing-finished", "digits-pareto", "digits-placements"]
    assert table.loc["digits-placements", "status"] == "completed"
    assert table.loc["digits-placements", "model"] == "mlp hidden=[32,32] activation=relu"
    assert table.loc["digits-placements", "trials"] == "11/11" and table.loc["digits-pareto", "trials"] == "5/8"
    assert table.loc["digits-placements", "open"] == f"job?job={app_on_filled.jobs['digits-placements']}"


def test_root_with_a_job_id_opens_the_job_page(app_on_filled: FilledDb) -> None:
    app = run_app(job=app_on_filled.jobs["digits-placements"])  # the link `regsearch demo` prints
    assert texts(app, "title") == ["digits-placements"]


def test_job_page_compares_the_configurations(app_on_filled: FilledDb) -> None:
    job_id = app_on_filled.jobs["digits-placements"]
    app = run_app("app_pages/job.py", job=job_id)
    assert texts(app, "title") == ["digits-placements"]
    assert "model `mlp hidden=[32,32] activation=relu`" in texts(app, "caption")[0]
    assert texts(app, "header")[:6] == SECTIONS
    assert {k: metrics(app)[k] for k in ("Complete", "Pruned", "Failed", "Running")} == {
        "Complete": "8", "Pruned": "2", "Failed": "1", "Running": "0"}
    expected_best = data.trials(app_on_filled.url, job_id).query("state == 'complete'")["val_acc"].max()
    assert metrics(app)["Best val_acc"] == f"{expected_best:.4f}"
    assert not app.error
    report = data.report(app_on_filled.url, job_id)
    assert report is not None and len(app.warning) == 1  # the report's warnings, in one box
    assert all(w["message"] in app.warning[0].value for w in report["warnings"])
    # two complete configurations per placement: below the recommendation's minimum, the page says
    # what is missing (the report's sentence) as information, not as a recommendation
    assert report["recommendation"]["decided_by"] == "insufficient" and not texts(app, "success")
    assert report["recommendation"]["sentence"] in texts(app, "info")
    pd.testing.assert_frame_equal(app.dataframe[0].value.reset_index(drop=True),
                                  frames.report_table(report, "placement"), check_dtype=False)
    assert [t.label for t in app.tabs] == ["By placement", "By dropout band", "By BN momentum band",
                                           "Confirmation runs"]
    assert "Not requested" in " ".join(texts(app, "info"))
    [markdown_code] = [c for c in app.code if c.language == "markdown"]
    assert markdown_code.value.startswith("## Report: digits-placements")
    recipes = [json.loads(c.value) for c in app.code if c.language == "json"]
    assert len(recipes) == 5 and all(r["slots"] and r["version"] == 2 for r in recipes)
    markdown = " ".join(texts(app, "markdown"))
    for chart in ("train_acc vs val_acc", "gap vs dropout", "epochs_to_95pct_best by placement",
                  "epochs_to_95pct_best by bn_momentum", "seconds_per_epoch by placement", "val_acc per placement",
                  "dropout × bn_momentum", "Parameter importance", "Optimization history"):
        assert chart in markdown
    assert "Pareto front" not in markdown  # single objective
    assert len(app.multiselect[0].value) == 5  # the leaders' validation curves by default

    app.multiselect[0].set_value(app.multiselect[0].value[:2]).run()  # choose the curves
    assert not app.exception
    app.sidebar.slider[0].set_value(2).run()  # fewer leaders
    assert not app.exception and len([c for c in app.code if c.language == "json"]) == 2


def test_multi_objective_job_shows_its_pareto_front(app_on_filled: FilledDb) -> None:
    app = run_app("app_pages/job.py", job=app_on_filled.jobs["digits-pareto"])
    assert texts(app, "title") == ["digits-pareto"]
    assert texts(app, "header")[:6] == SECTIONS
    assert "Pareto front: val_acc and gap" in " ".join(texts(app, "markdown"))
    assert metrics(app)["Running"] == "1" and metrics(app)["Complete"] == "5"
    assert any("Pareto front" in c for c in texts(app, "caption"))  # importance of reaching the front


def test_job_without_finished_trials_explains_itself(app_on_filled: FilledDb) -> None:
    app = run_app("app_pages/job.py", job=app_on_filled.jobs["nothing-finished"])
    assert texts(app, "title") == ["nothing-finished"]
    assert texts(app, "header")[:6] == SECTIONS
    assert metrics(app)["Best val_acc"] == "–" and metrics(app)["Failed"] == "1" and metrics(app)["Pruned"] == "1"
    infos = " ".join(texts(app, "info"))
    assert "No complete trial yet" in infos and "No epoch recorded yet" in infos
    assert "No recommendation yet" in infos
    assert not [c for c in app.code if c.language == "json"]


def test_job_page_shows_the_confirmation_runs(app_on_filled: FilledDb) -> None:
    job_id = app_on_filled.jobs["digits-confirmed"]
    app = run_app("app_pages/job.py", job=job_id)
    report = data.report(app_on_filled.url, job_id)
    assert report is not None and report["recommendation"]["basis"] == "confirmed"
    assert texts(app, "success") == [f"**Recommendation.** {report['recommendation']['sentence']}"]
    assert "over 3 seeds" in texts(app, "success")[0]
    confirmed = next(d.value for d in app.dataframe if "seeds" in d.value.columns)
    pd.testing.assert_frame_equal(confirmed.reset_index(drop=True), frames.confirmation_table(report),
                                  check_dtype=False)
    assert "Mean val_acc per placement with its 95% interval" in " ".join(texts(app, "markdown"))


def test_job_page_without_or_with_an_unknown_job(app_on_filled: FilledDb) -> None:
    app = run_app("app_pages/job.py")
    assert texts(app, "title") == ["Job"] and app.selectbox[0].label == "Job"
    app.selectbox[0].set_value(app_on_filled.jobs["digits-pareto"]).run()
    assert texts(app, "title") == ["digits-pareto"]
    app = run_app("app_pages/job.py", job="nope")
    assert "no job with id `nope`" in texts(app, "warning")[0]


def test_trial_page_shows_curves_parameters_recipe_and_history(app_on_filled: FilledDb) -> None:
    job_id = app_on_filled.jobs["digits-placements"]
    number = app_on_filled.numbers["main/retry"][0]
    trial = data.trial(app_on_filled.url, job_id, number)
    assert trial is not None
    app = run_app("app_pages/trial.py", job=job_id, trial=str(number))
    assert texts(app, "title") == [f"Trial {number} · digits-placements"]
    assert texts(app, "header") == ["Curves", "Parameters", "Where it ran", "Slots", "Recipe", "State history"]
    assert "model `mlp hidden=[32,32] activation=relu`" in texts(app, "caption")
    slots = next(d.value for d in app.dataframe if "layer" in d.value.columns)  # mlp: no layer names, indices
    assert list(slots["layer"]) == ["slot 0", "slot 1"] and list(slots["order"]) == [
        "-".join(s["order"]) for s in trial["recipe"]["slots"]]
    assert metrics(app)["State"] == "complete" and metrics(app)["val_acc"] == f"{trial['metrics']['val_acc']:.4f}"
    params, recipe = (json.loads(c.value) for c in app.code)
    assert params == trial["params"] and recipe == trial["recipe"]
    assert "test-host:4242" in " ".join(texts(app, "markdown")) and "attempt 2" in " ".join(texts(app, "markdown"))
    history = app.dataframe[-1].value
    assert list(history["event"]) == ["created", "enqueued", "started", "last heartbeat", "finished"]
    assert not history["at"].eq("–").any()


def test_trial_page_for_lost_failed_pruned_running_and_missing_trials(app_on_filled: FilledDb) -> None:
    main, pareto = app_on_filled.jobs["digits-placements"], app_on_filled.jobs["digits-pareto"]
    lost = run_app("app_pages/trial.py", job=main, trial=str(app_on_filled.numbers["main/lost"][0]))
    assert "heartbeat lost" in texts(lost, "error")[0] and "late result" in texts(lost, "warning")[0]
    assert len(lost.code) == 3  # params, recipe, the superseded result
    failed = run_app("app_pages/trial.py", job=main, trial=str(app_on_filled.numbers["main/failed"][0]))
    assert "NonFiniteLossError" in texts(failed, "error")[0] and metrics(failed)["test_acc"] == "–"
    assert metrics(failed)["val_acc (from its epochs)"] != "–"  # it ran one epoch before failing
    pruned = run_app("app_pages/trial.py", job=main, trial=str(app_on_filled.numbers["main/pruned"][1]))
    assert metrics(pruned)["State"] == "pruned"
    assert "No epoch recorded for this trial." in texts(pruned, "info")
    running = run_app("app_pages/trial.py", job=pareto, trial=str(app_on_filled.numbers["pareto/running"][0]))
    assert metrics(running)["State"] == "running" and not running.info  # one epoch: the curve shows
    epoch = data.trial(app_on_filled.url, pareto, app_on_filled.numbers["pareto/running"][0])["epochs"].iloc[0]  # type: ignore[index]
    assert metrics(running)["val_acc (so far)"] == f"{epoch['val_acc']:.4f}"
    assert metrics(running)["gap (so far)"] == f"{epoch['train_acc'] - epoch['val_acc']:.4f}"
    missing = run_app("app_pages/trial.py", job=main, trial="999")
    assert "has no trial 999" in texts(missing, "warning")[0]
    picker = run_app("app_pages/trial.py")
    assert texts(picker, "title") == ["Trial"] and picker.selectbox[0].label == "Job"


def test_pages_on_an_empty_database(app_on_empty: Settings) -> None:
    jobs = run_app()
    assert "No jobs yet" in texts(jobs, "info")[0]
    job = run_app("app_pages/job.py", job="abc")
    assert "No jobs yet" in " ".join(texts(job, "info"))
    trial = run_app("app_pages/trial.py", job="abc", trial="1")
    assert "No jobs yet" in " ".join(texts(trial, "info"))


def test_job_page_shows_an_early_end_as_information_and_a_failure_as_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from regsearch.domain.spec import validate_spec
    from regsearch.store import jobs as job_store
    from regsearch.store.db import Database
    from regsearch.store.migrate import upgrade
    from tests.dashboard.conftest import BASE_SPEC

    settings = make_settings(tmp_path / "ended")
    upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    exhausted, broken = "search space exhausted: 5 distinct configurations", "NetworkError: model.network: 'x'"
    ids = {}
    for name, status, error in (("exhausted", "completed", exhausted), ("broken", "failed", broken)):
        ids[name] = job_store.create_job(db, spec=validate_spec({**BASE_SPEC, "name": name})).job.id
        job_store.set_job_status(db, job_id=ids[name], status=status, error=error)
    db.dispose()
    point_app_at(monkeypatch, settings)
    try:
        ended = run_app("app_pages/job.py", job=ids["exhausted"])
        assert f"The job ended: {exhausted}" in texts(ended, "info") and not ended.error
        failed = run_app("app_pages/job.py", job=ids["broken"])
        assert texts(failed, "error") == [f"The job failed: {broken}"]
        assert not any(broken in t for t in texts(failed, "info"))
    finally:
        get_settings.cache_clear()


@pytest.fixture
def app_on_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Settings]:
    settings = make_settings(tmp_path / "nothing-here")
    point_app_at(monkeypatch, settings)
    yield settings
    get_settings.cache_clear()


def test_pages_without_a_database(app_on_missing: Settings) -> None:
    settings = app_on_missing
    for page in (None, "app_pages/job.py", "app_pages/trial.py"):
        app = run_app(page)
        assert "no database" in texts(app, "info")[0]
    assert not (settings.data_dir / "regsearch.db").exists()
