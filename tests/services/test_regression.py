"""A regression job end to end with a real worker (issue 28): scikit-learn's diabetes data written
as an npz, task: regression; its metrics (val_rmse, val_r2, test_rmse, test_r2, gap) in the API,
the CLI's best table (no accuracy column) and the report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from regsearch.config import Settings
from tests.services.stack import running_stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def test_a_regression_job_end_to_end(sqlite_settings: Settings, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.datasets import load_diabetes

    diabetes = load_diabetes()
    np.savez(sqlite_settings.data_dir / "diabetes.npz", x=diabetes.data, y=diabetes.target)
    spec = {"name": "diabetes", "task": "regression", "dataset": {"name": "npz", "path": "diabetes.npz"},
            "model": {"family": "mlp", "hidden": [32, 32]},
            "space": {"placement": ["bn-act-drop", "act-drop", "bn-act", "act"], "dropout": {"low": 0.0, "high": 0.3}},
            "training": {"epochs": 6, "batch_size": 32, "lr": 0.003},
            "budget": {"n_trials": 6, "parallelism": 2}, "sampler": "random", "pruner": "none",
            "confirm": {"top_k": 1, "seeds": 2}}
    with running_stack(sqlite_settings, tmp_path / "logs") as stack:
        job = stack.client.submit(spec)
        done = stack.wait_job(job["id"], 300)
        assert done["spec"]["objective"]["metrics"] == ["val_rmse"]  # a regression job's default objective
        assert done["status"] == "completed" and done["counts"]["complete"] >= 3, (done, stack.logs())

        top = stack.client.best(job["id"], 3)
        rmses = [item["metrics"]["val_rmse"] for item in top]
        assert rmses == sorted(rmses)  # the lowest error first
        metrics = top[0]["metrics"]
        assert 20 < metrics["val_rmse"] < 150 and 20 < metrics["test_rmse"] < 150, metrics
        assert metrics["test_r2"] <= 1 and metrics["val_r2"] <= 1 and metrics.get("val_acc") is None, metrics
        trial = stack.client.trial(job["id"], top[0]["number"])
        best_epoch = next(e for e in trial["epochs"] if e["epoch"] == trial["metrics"]["best_epoch"])
        assert metrics["gap"] == pytest.approx(best_epoch["val_loss"] - best_epoch["train_loss"])
        assert metrics["val_rmse"] == pytest.approx(best_epoch["val_loss"] ** 0.5)

        env = {k: v for k, v in os.environ.items() if not k.startswith("REGSEARCH_")}
        env["COLUMNS"] = "100"

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "regsearch", "--api-url", stack.settings.api_url, *args],
                                  capture_output=True, text=True, timeout=120, env=env, check=False)

        best = cli("best", job["id"], "--top", "3")
        assert best.returncode == 0, best.stderr
        assert "val_rmse" in best.stdout and "test_rmse" in best.stdout and "val_acc" not in best.stdout, best.stdout
        report = cli("report", job["id"], "--format", "md")
        assert report.returncode == 0, report.stderr
        assert "val_rmse" in report.stdout and "val_acc" not in report.stdout, report.stdout
        assert "Confirmation runs" in report.stdout and "test_rmse mean" in report.stdout, report.stdout
        # the gap (val_loss - train_loss) is cut at its regression range, not at [-1, 1]
        assert "[1.000, 1.000]" not in report.stdout and "[-1.000, -1.000]" not in report.stdout, report.stdout

    # the dashboard's job page renders, its evidence tables with the regression metrics
    from regsearch.config import get_settings
    from regsearch.dashboard import data
    from tests.dashboard.conftest import point_app_at, run_app

    point_app_at(monkeypatch, sqlite_settings)
    data.clear_caches()
    try:
        app = run_app("app_pages/job.py", job=job["id"])
        columns = [list(frame.value.columns) for frame in app.dataframe]
        assert any("val_rmse" in c and "test_r2" in c for c in columns), columns
        # the page's own cards and summary tables too (tests/dashboard/test_browser_regression.py in detail)
        cards = {m.label: m.value for m in app.metric}
        assert cards["Best val_rmse"] != "–" and "Its test_rmse" in cards, cards
        assert any("val_rmse_median" in c for c in columns), columns
    finally:
        get_settings.cache_clear()
