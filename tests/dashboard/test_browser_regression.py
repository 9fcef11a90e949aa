"""A regression job (``task: regression``) in the dashboard: its pages show the task's metrics from
the metric table (regsearch.domain.metrics: val_rmse, test_rmse ...), never accuracy columns or a
"Best val_rmse" card left at "–". Checked on the pages' elements (Streamlit's AppTest) and in the
real dashboard in Debian's chromium (as ``test_browser_pages.py``); the screenshot goes to
``test-artifacts/dashboard-regression-job.png``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from regsearch.config import Settings, get_settings
from regsearch.dashboard import data
from regsearch.domain.spec import JobSpec
from regsearch.store import jobs as job_store
from regsearch.store.db import Database
from regsearch.store.migrate import upgrade
from tests.dashboard.browsing import ROOT, WIDTH, chromium, serve, wait_until_drawn
from tests.dashboard.conftest import JobFiller, make_settings, point_app_at, run_app

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.xdist_group("dashboard")]
PARAMS = [{"placement": "bn-act-drop", "dropout": 0.1, "bn_momentum": 0.1}, {"placement": "act-drop", "dropout": 0.2},
          {"placement": "bn-act", "bn_momentum": 0.1}, {"placement": "act"},
          {"placement": "bn-act-drop", "dropout": 0.3, "bn_momentum": 0.05}, {"placement": "act-drop", "dropout": 0.05}]


@pytest.fixture(scope="module")
def regression_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, str]:
    """A completed regression job on scikit-learn's diabetes data: six trials trained for real."""
    pytest.importorskip("torch")
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    settings = make_settings(tmp_path_factory.mktemp("dashboard-regression"))
    diabetes = sklearn_datasets.load_diabetes()
    np.savez(settings.data_dir / "diabetes.npz", x=diabetes.data, y=diabetes.target)
    upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    try:
        filler = JobFiller(db, settings.data_dir, JobSpec.model_validate({
            "name": "diabetes", "task": "regression", "dataset": {"name": "npz", "path": "diabetes.npz"},
            "model": {"family": "mlp", "hidden": [16, 16]},
            "space": {"placement": ["bn-act-drop", "act-drop", "bn-act", "act"], "dropout": {"low": 0.0, "high": 0.3}},
            "training": {"epochs": 3, "batch_size": 32, "lr": 0.003},
            "budget": {"n_trials": len(PARAMS)}, "sampler": "random", "pruner": "none"}))
        for params in PARAMS:
            filler.complete(params)
        job_store.set_job_status(db, job_id=filler.job.id, status="completed")
        return settings, filler.job.id
    finally:
        db.dispose()


@pytest.fixture
def app_on_regression(monkeypatch: pytest.MonkeyPatch, regression_job: tuple[Settings, str]) -> Iterator[str]:
    point_app_at(monkeypatch, regression_job[0])
    data.clear_caches()
    yield regression_job[1]
    get_settings.cache_clear()


def test_the_job_page_shows_the_tasks_metrics(app_on_regression: str) -> None:
    app = run_app("app_pages/job.py", job=app_on_regression)
    assert not app.exception, app.exception
    cards = {m.label: m.value for m in app.metric}
    assert "Its test_rmse" in cards and "Its test_acc" not in cards, cards
    best = float(cards["Best val_rmse"])  # the ranking's first (it showed "–": no val_rmse column)
    assert math.isfinite(best) and best > 0 and float(cards["Its test_rmse"]) > 0
    columns = [list(frame.value.columns) for frame in app.dataframe]
    summary = next(c for c in columns if "val_rmse_median" in c)  # the placement summary
    assert "val_rmse_best" in summary and "val_acc_median" not in summary
    trials = next(c for c in columns if "worker" in c and "attempt" in c)  # all trials
    assert {"val_rmse", "val_r2", "test_rmse", "test_r2", "gap"} <= set(trials) and "val_acc" not in trials
    table = next(frame.value for frame in app.dataframe if "val_rmse_median" in frame.value.columns)
    medians = table["val_rmse_median"].dropna()
    assert len(medians) == 4 and list(medians) == sorted(medians)  # the lowest error first


def test_the_jobs_table_names_the_tasks_metrics(app_on_regression: str) -> None:
    app = run_app()
    table = app.dataframe[0]
    assert "best_score" in list(table.proto.column_order) and "best_test" in list(table.proto.column_order)
    row = table.value.set_index("id").loc[app_on_regression]
    assert row["best_score"].startswith("val_rmse ") and row["best_test"].startswith("test_rmse "), row
    assert math.isnan(row["best_val_acc"]) and math.isnan(row["test_acc"])


@pytest.fixture
def browser() -> Iterator[Any]:
    yield from chromium()


@pytest.fixture
def dashboard(regression_job: tuple[Settings, str], tmp_path: Path) -> Iterator[str]:
    yield from serve(regression_job[0], tmp_path / "dashboard.log")


@pytest.mark.browser
def test_a_regression_job_page_in_the_browser(browser: Any, dashboard: str, regression_job: tuple[Settings, str]) -> None:
    page = browser.new_page(viewport={"width": WIDTH, "height": 1400})
    page.set_default_timeout(90_000)
    page.goto(f"{dashboard}/job?job={regression_job[1]}")
    page.get_by_role("heading", name="diabetes").wait_for()
    page.locator("[data-testid='stMetric']", has_text="Best val_rmse").wait_for()
    page.get_by_role("heading", name="All trials").wait_for()  # the last section: the page is all there
    wait_until_drawn(page)
    cards = page.locator("[data-testid='stMetric']").all_inner_texts()
    best = next((c for c in cards if c.startswith("Best val_rmse")), f"missing from {cards}")
    assert "–" not in best and float(best.split()[-1]) > 0, cards
    assert any(c.startswith("Its test_rmse") for c in cards) and not any("test_acc" in c for c in cards), cards
    body = page.inner_text("body")
    assert "val_rmse per placement" in body and "The gap is val_loss − train_loss" in body
    assert "train_acc vs val_acc" not in body  # no accuracy chart on a regression job
    shot = ROOT / "test-artifacts" / "dashboard-regression-job.png"
    shot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
