"""The data module's frames against the database they come from (a real small job), and the
figures built from them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from scipy import stats as scipy_stats
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from regsearch.config import Settings
from regsearch.dashboard import charts, data, frames
from regsearch.domain.metrics import EpochMetrics, summarize
from regsearch.store import jobs as job_store
from regsearch.store.db import Database
from tests.dashboard.conftest import FilledDb, make_settings

# one xdist worker builds the trained fixture database once for every dashboard test
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.xdist_group("dashboard")]


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    data.clear_caches()


def _main(filled: FilledDb) -> tuple[str, pd.DataFrame]:
    job_id = filled.jobs["digits-placements"]
    return job_id, data.trials(filled.url, job_id)


def _interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and Student-t 95% interval of an accuracy, cut at [0, 1], with numpy and scipy (not
    regsearch.domain.stats)."""
    data_ = np.asarray(values, dtype=float)
    low, high = scipy_stats.t.interval(0.95, len(data_) - 1, loc=data_.mean(), scale=data_.std(ddof=1) / math.sqrt(len(data_)))
    return float(data_.mean()), float(max(low, 0.0)), float(min(high, 1.0))


def test_the_report_agrees_with_the_trials_it_reads(filled_db: FilledDb) -> None:
    job_id, df = _main(filled_db)
    report = data.report(filled_db.url, job_id)
    assert report is not None and report["job_id"] == job_id and report["status"] == "completed"
    current = df[~df["retried"]]
    placements = {g["key"]: g for g in report["groupings"][0]["groups"]}
    for placement, group in current.groupby("placement"):
        done = group[group["state"] == "complete"]
        found = placements[placement]
        assert (found["n_trials"], found["n_complete"], found["n_pruned"], found["n_failed"]) == (
            len(group), len(done), int((group["state"] == "pruned").sum()), int((group["state"] == "failed").sum()))
        assert found["n_distinct"] == len(done)  # the fixture's configurations are all different
        stat = found["metrics"]["val_acc"]
        if len(done) >= 3:
            mean, low, high = _interval(list(done["val_acc"]))
            assert (stat["mean"], stat["low"], stat["high"]) == pytest.approx((mean, low, high))
        else:  # too few runs: no interval
            assert stat["too_few_runs"] and stat["low"] is None and stat["high"] is None
            assert found["metrics"]["gap"]["mean"] == pytest.approx(done["gap"].mean())
    table = frames.report_table(report, "placement")
    assert list(table["placement"]) == [g["key"] for g in report["groupings"][0]["groups"]]
    assert list(table["trials"]) == [g["n_complete"] for g in report["groupings"][0]["groups"]]
    intervals = frames.report_intervals(report)
    assert list(intervals["rank"]) == list(range(1, len(intervals) + 1))
    figure = charts.placement_intervals(intervals, "val_acc")
    assert len(figure.data) == len(intervals)
    for trace, row in zip(figure.data, intervals.itertuples()):
        assert trace.error_y.visible == (row.n >= 3), "a bar from 3 runs on; below: too few runs"
        if not trace.error_y.visible:
            assert "too few runs" in trace.hovertemplate
        if trace.error_y.visible:
            assert trace.error_y.array[0] == pytest.approx(row.high - row.mean)
            assert trace.error_y.arrayminus[0] == pytest.approx(row.mean - row.low)
    assert data.report(filled_db.url, "no-such-job") is None


def test_the_interval_chart_stays_inside_the_metrics_range() -> None:
    from regsearch.evidence import build_report

    values = {"act": [0.99, 1.0, 1.0], "act-drop": [0.2, 0.9, 0.95], "bn-act": [0.1, 0.9]}
    trials = [{"number": n, "state": "complete", "params": {"placement": p}, "seed": n, "confirm_of": None,
               "metrics": {"val_acc": v, "gap": 0.0, "epochs_to_95pct_best": 1, "seconds_per_epoch": 0.1}}
              for n, (p, v) in enumerate((p, v) for p, vs in values.items() for v in vs)]
    report = build_report({"name": "c", "dataset": {"name": "digits"}, "space": {"placement": list(values)}},
                          trials).model_dump(mode="json")
    intervals = frames.report_intervals(report)
    figure = charts.placement_intervals(intervals, "val_acc")
    bars = {t.name: t for t in figure.data}
    for row in intervals.itertuples():
        trace = bars[row.placement]
        if row.n >= 3:
            assert trace.error_y.visible and row.clipped, "Student-t alone runs past 1.0 (act) and below 0 (act-drop)"
            assert 0.0 <= row.mean - trace.error_y.arrayminus[0] and row.mean + trace.error_y.array[0] <= 1.0
            assert "cut at the metric's range" in trace.hovertemplate
        else:
            assert not trace.error_y.visible and "too few runs" in trace.hovertemplate


def test_the_report_of_a_confirmed_job_groups_its_seeds(filled_db: FilledDb) -> None:
    job_id = filled_db.jobs["digits-confirmed"]
    report = data.report(filled_db.url, job_id)
    assert report is not None
    best = filled_db.numbers["confirmed/best"][0]
    [config] = report["confirmation"]["configs"]
    assert config["number"] == best and config["numbers"] == [best, *filled_db.numbers["confirmed/confirm"]]
    assert config["seeds"] == [0, 1, 2]
    df = data.trials(filled_db.url, job_id).set_index("number")
    mean, low, high = _interval([df.loc[n, "val_acc"] for n in config["numbers"]])
    assert (config["metrics"]["val_acc"]["mean"], config["metrics"]["val_acc"]["low"],
            config["metrics"]["val_acc"]["high"]) == pytest.approx((mean, low, high))
    assert report["recommendation"]["basis"] == "confirmed" and report["recommendation"]["number"] == best
    assert sum(g["n_trials"] for g in report["groupings"][0]["groups"]) == len(filled_db.numbers["confirmed/search"]) == 6, \
        "confirmation runs stay out"
    table = frames.confirmation_table(report)
    assert list(table["runs"]) == [3] and list(table["seeds"]) == ["0, 1, 2"]


def test_gap_is_train_minus_val_accuracy_at_the_best_epoch(filled_db: FilledDb) -> None:
    job_id, df = _main(filled_db)
    done = frames.complete(df)
    assert sorted(done["number"]) == sorted(filled_db.numbers["main/complete"])
    curves = data.curves(filled_db.url, job_id, tuple(int(n) for n in done["number"]))
    for row in done.itertuples():
        epochs = curves[curves["number"] == row.number].sort_values("epoch")
        assert len(epochs) == row.epochs_recorded == row.epochs_run == 3
        # the best epoch as regsearch.domain.metrics defines it, recomputed from the stored epochs
        expected = summarize([EpochMetrics(**{k: getattr(e, k) for k in ("epoch", "train_loss", "train_acc",
                                                                          "val_loss", "val_acc", "seconds")})
                              for e in epochs.itertuples()], None)
        best = epochs[epochs["epoch"] == expected["best_epoch"]].iloc[0]
        assert row.best_epoch == expected["best_epoch"]
        assert row.val_acc == pytest.approx(best["val_acc"])
        assert row.train_acc == pytest.approx(best["train_acc"])
        assert row.gap == pytest.approx(best["train_acc"] - best["val_acc"])
        assert row.epochs_to_95pct_best == expected["epochs_to_95pct_best"]
        assert row.val_acc_so_far == pytest.approx(epochs["val_acc"].max())
    generalization = frames.generalization(df)
    assert (generalization["gap"] == generalization["train_acc"] - generalization["val_acc"]).all()
    assert list(generalization["val_acc"]) == sorted(generalization["val_acc"], reverse=True)


def test_counts_per_placement(filled_db: FilledDb) -> None:
    _, df = _main(filled_db)
    table = frames.placement_summary(df).set_index("placement")
    expected = {  # the fixture's trials; the lost attempt is replaced by its retry
        "bn-act-drop": (2, 2, 0, 0), "act-bn-drop": (2, 1, 1, 0), "bn-act": (2, 2, 0, 0),
        "act-drop": (3, 2, 0, 1), "act": (2, 1, 1, 0),
    }
    assert set(table.index) == set(expected)
    for placement, (trials, complete, pruned, failed) in expected.items():
        assert tuple(table.loc[placement, ["trials", "complete", "pruned", "failed"]]) == (trials, complete, pruned, failed)
    done = frames.complete(df)
    for placement, group in done.groupby("placement"):
        assert table.loc[placement, "val_acc_median"] == pytest.approx(group["val_acc"].median())
        assert table.loc[placement, "gap_mean"] == pytest.approx(group["gap"].mean())
    assert frames.counts(df) == {"queued": 0, "running": 0, "complete": 8, "pruned": 2, "failed": 1, "cancelled": 0}


def test_trials_without_metrics_are_nan_not_errors(filled_db: FilledDb) -> None:
    _, df = _main(filled_db)
    by_number = df.set_index("number")
    no_metrics = by_number.loc[filled_db.numbers["main/pruned"][1]]
    assert no_metrics["state"] == "pruned" and math.isnan(no_metrics["val_acc"]) and math.isnan(no_metrics["gap"])
    assert no_metrics["epochs_recorded"] is pd.NA
    failed = by_number.loc[filled_db.numbers["main/failed"][0]]
    assert failed["error"].startswith("NonFiniteLossError") and failed["epochs_recorded"] == 1
    assert math.isnan(failed["val_acc"]) and failed["val_acc_so_far"] > 0
    lost = by_number.loc[filled_db.numbers["main/lost"][0]]
    assert lost["retried"] and lost["superseded"] and lost["worker"] == "lost-host:1"
    retry = by_number.loc[filled_db.numbers["main/retry"][0]]
    assert retry["attempt"] == 2 and retry["retry_of"] == filled_db.numbers["main/lost"][0]


def test_jobs_frame(filled_db: FilledDb) -> None:
    jobs = data.jobs(filled_db.url).set_index("name")
    assert list(jobs.index) == ["digits-confirmed", "nothing-finished", "digits-pareto", "digits-placements"]  # newest first
    main = jobs.loc["digits-placements"]
    assert (main["status"], main["complete"], main["pruned"], main["failed"], main["n_trials"]) == ("completed", 8, 2, 1, 11)
    assert main["progress"] == 1.0 and main["elapsed_s"] > 0 and main["elapsed"] != "–"
    _, df = _main(filled_db)
    done = frames.complete(df)
    leader = done.sort_values(["val_acc", "number"], ascending=[False, True]).iloc[0]
    assert main["best_val_acc"] == pytest.approx(leader["val_acc"])
    assert main["test_acc"] == pytest.approx(leader["test_acc"])
    pareto = jobs.loc["digits-pareto"]
    assert (pareto["status"], pareto["complete"], pareto["running"], pareto["queued"]) == ("running", 5, 1, 1)
    assert pareto["progress"] == pytest.approx(5 / 8) and pareto["objective"] == "val_acc ↑, gap ↓"
    nothing = jobs.loc["nothing-finished"]
    assert math.isnan(nothing["best_val_acc"]) and nothing["finished"] == 2


@pytest.mark.parametrize("job_name", ["digits-placements", "digits-pareto", "digits-confirmed"])
def test_leaders_rank_like_the_api(filled_db: FilledDb, job_name: str) -> None:
    job_id = filled_db.jobs[job_name]
    info = data.job(filled_db.url, job_id)
    assert info is not None
    db = Database(filled_db.url)
    try:
        job = job_store.get_job(db, job_id=job_id)
        assert job is not None
        expected = job_store.best_configurations(db, job=job, k=20)
    finally:
        db.dispose()
    df = data.trials(filled_db.url, job_id)
    assert list(frames.leaders(df, info["objectives"], k=None)["number"]) == [r.trial.number for r in expected]
    done = frames.complete(df)
    on_front = frames.pareto_front(done, info["objectives"])
    assert set(done[on_front]["number"]) == {r.trial.number for r in expected if r.ranked.front == 0}
    board = frames.leaders(df, info["objectives"], k=3)
    assert list(board["rank"]) == [1, 2, 3] and list(board["number"]) == [r.trial.number for r in expected[:3]]
    assert list(board["runs"]) == [max(1, len(r.seed_runs)) for r in expected[:3]]
    if job_name == "digits-confirmed":  # the re-run leader: its three seeds, ranked by their mean
        assert board["confirmed"].iloc[0] and board["runs"].iloc[0] == 3
        assert board["score"].iloc[0] == pytest.approx(board["val_acc_mean"].iloc[0])


def test_pareto_front_and_history() -> None:
    points = [(0.9, 0.1), (0.8, 0.05), (0.85, 0.2), (None, 0.3), (0.9, 0.1)]  # a missing value ranks last
    rows = [{"trial_id": n, "number": n, "state": "complete", "attempt": 1, "params": {"placement": "act"},
             "metrics": {"val_acc": v, "gap": g}} for n, (v, g) in enumerate(points)]
    objectives = [("val_acc", "maximize"), ("gap", "minimize")]
    assert list(frames.pareto_front(frames.trials_frame(rows), objectives)) == [True, True, False, False, True]
    df = pd.DataFrame({"number": [0, 1, 2, 3], "state": ["complete"] * 4, "val_acc": [0.5, 0.7, 0.6, 0.8],
                       "placement": ["act"] * 4, "config": ["act"] * 4, "dropout": [np.nan] * 4,
                       "bn_momentum": [np.nan] * 4})
    assert list(frames.history(df, "val_acc", "maximize")["best_so_far"]) == [0.5, 0.7, 0.7, 0.8]
    assert list(frames.history(df, "val_acc", "minimize")["best_so_far"]) == [0.5, 0.5, 0.5, 0.5]


def test_trial_detail(filled_db: FilledDb) -> None:
    job_id = filled_db.jobs["digits-placements"]
    lost = data.trial(filled_db.url, job_id, filled_db.numbers["main/lost"][0])
    assert lost is not None and lost["state"] == "failed" and lost["retried_by"] == filled_db.numbers["main/retry"][0]
    assert lost["superseded_result"]["state"] == "complete" and lost["error"].startswith("heartbeat lost")
    assert list(lost["epochs"]["epoch"]) == [1]
    retry = data.trial(filled_db.url, job_id, filled_db.numbers["main/retry"][0])
    assert retry is not None and retry["retry_of"] == filled_db.numbers["main/lost"][0] and retry["retried_by"] is None
    assert retry["recipe"]["slots"] and retry["started_at"].tzinfo is not None
    assert data.trial(filled_db.url, job_id, 999) is None
    assert data.job(filled_db.url, "no-such-job") is None


def test_importance(filled_db: FilledDb) -> None:
    main = filled_db.jobs["digits-placements"]
    found = data.importance(filled_db.url, main, 8)
    assert found["message"] is None and found["n"] == 8
    assert set(found["importances"]) <= {"placement", "dropout", "bn_momentum"} and "placement" in found["importances"]
    assert sum(found["importances"].values()) == pytest.approx(1.0)
    pareto = data.importance(filled_db.url, filled_db.jobs["digits-pareto"], 5)
    assert pareto["message"] is None and pareto["importances"]
    few = data.importance(filled_db.url, filled_db.jobs["nothing-finished"], 0)
    assert few["importances"] == {} and "at least" in few["message"]


def test_reads_are_read_only(filled_db: FilledDb) -> None:
    with data.reader(filled_db.url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM regsearch_jobs")).scalar() == 4
        with pytest.raises(OperationalError, match="readonly|read-only|query_only"):
            conn.execute(text("DELETE FROM regsearch_jobs"))


def test_database_problems(tmp_path: Path, empty_db: Settings) -> None:
    missing = make_settings(tmp_path / "missing")
    assert "no database" in (data.database_problem(missing.sqlalchemy_url) or "")
    assert not (missing.data_dir / "regsearch.db").exists()  # looking did not create it
    bare = make_settings(tmp_path / "bare")
    Database(bare.sqlalchemy_url).ping()  # a file without tables
    assert "db upgrade" in (data.database_problem(bare.sqlalchemy_url) or "")
    assert data.database_problem(empty_db.sqlalchemy_url) is None
    assert data.jobs(empty_db.sqlalchemy_url).empty


def test_figures_build_from_real_and_empty_frames(filled_db: FilledDb) -> None:
    job_id, df = _main(filled_db)
    done = frames.complete(df)
    board = frames.leaders(df, [("val_acc", "maximize")], k=5)
    curves = data.curves(filled_db.url, job_id, tuple(int(n) for n in board["number"]))
    placements = dict(zip(df["number"], df["placement"]))
    for frame in (done, done.iloc[0:0]):
        figures = [
            charts.train_vs_val(frames.generalization(frame)), charts.gap_vs_dropout(frame),
            charts.by_momentum(frame, "epochs_to_95pct_best"), charts.box_by_placement(frame, "val_acc"),
            charts.dropout_momentum_map(frame, "val_acc"), charts.optimization_history(frames.history(frame, "val_acc", "maximize"), "val_acc"),
            charts.pareto_front(frame, [("val_acc", "maximize"), ("gap", "minimize")],
                                frames.pareto_front(frame, [("val_acc", "maximize"), ("gap", "minimize")])),
        ]
        assert all(isinstance(f, go.Figure) for f in figures)
    box = charts.box_by_placement(done, "val_acc")
    assert sorted(t.name for t in box.data) == sorted(f"{p} (n={n})" for p, n in done["placement"].value_counts().items())
    assert {t.marker.color for t in box.data} == {charts.placement_color(p) for p in done["placement"].unique()}
    overlay = charts.curves_overlay(curves, placements)
    assert len(overlay.data) == len(board) and all(len(t.x) == 3 for t in overlay.data)
    assert len(charts.leaders_accuracy(board).data) == 3
    assert len(charts.importance_bars({"placement": 0.7, "dropout": 0.3}).data[0].y) == 2
    epochs = data.trial(filled_db.url, job_id, int(board["number"].iloc[0]))["epochs"]  # type: ignore[index]
    assert len(charts.trial_curves(epochs).data) == 4
    assert charts.placement_color("bn-act-drop") != charts.placement_color("act") and charts.placement_color("??") == charts.OTHER


@pytest.mark.services
@pytest.mark.parametrize("job_name", ["digits-placements", "digits-pareto"])
def test_same_frames_on_postgresql(filled_db: FilledDb, pg_db: Database, job_name: str) -> None:
    """The dashboard's queries (JSON extraction, window functions) give the same frames on both."""
    from tests.dashboard.conftest import replay_job

    source = filled_db.jobs[job_name]
    copy = replay_job(filled_db.url, source, pg_db)
    columns = ["number", "state", "attempt", "retry_of", "retried", "worker", "error", "config", "placement",
               "dropout", "bn_momentum", "val_acc", "test_acc", "gap", "train_acc", "epochs_to_95pct_best",
               "epochs_recorded", "val_acc_so_far"]
    expected = data.trials(filled_db.url, source)[columns]
    found = data.trials(pg_db.url, copy)[columns]
    pd.testing.assert_frame_equal(found, expected)
    jobs_columns = ["name", "complete", "pruned", "failed", "running", "queued", "best_val_acc", "test_acc"]
    sqlite_jobs = data.jobs(filled_db.url).set_index("id").loc[[source], jobs_columns].reset_index(drop=True)
    pg_jobs = data.jobs(pg_db.url).set_index("id").loc[[copy], jobs_columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(pg_jobs, sqlite_jobs)
    number = int(expected["number"].iloc[0])
    pd.testing.assert_frame_equal(data.trial(pg_db.url, copy, number)["epochs"],  # type: ignore[index]
                                  data.trial(filled_db.url, source, number)["epochs"])  # type: ignore[index]
    with data.reader(pg_db.url).connect() as conn, pytest.raises(Exception, match="read-only"):
        conn.execute(text("DELETE FROM regsearch_jobs"))
