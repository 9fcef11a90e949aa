"""The job page's table of contents and parallel coordinates, and the "Compare jobs" page: each
job's report placement groups overlaid, and each job's leaders by the one ranking (the API's)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from regsearch.dashboard import charts, comparison, data, frames
from regsearch.store import jobs as job_store
from regsearch.store.db import Database
from tests.dashboard.conftest import FilledDb, run_app

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.xdist_group("dashboard")]
TOC = ["Evidence", "Generalization", "Convergence", "Placement comparison", "Search space", "Parallel coordinates",
       "Best configurations", "All trials"]


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    data.clear_caches()




def test_the_job_page_opens_with_a_table_of_contents(app_on_filled: FilledDb) -> None:
    app = run_app("app_pages/job.py", job=app_on_filled.jobs["digits-placements"])
    toc = next(m.value for m in app.markdown if str(m.value).startswith("**On this page:**"))
    assert toc == "**On this page:** " + " · ".join(f"[{s}](#{s.lower().replace(' ', '-')})" for s in TOC)
    assert [h.value for h in app.header] == [s for s in TOC if s != "Parallel coordinates"]
    assert [h.value for h in app.subheader] == ["Parallel coordinates"]


def test_parallel_coordinates_run_through_the_parameters_and_the_objective(filled_db: FilledDb) -> None:
    done = frames.complete(data.trials(filled_db.url, filled_db.jobs["digits-placements"]))
    fig = charts.parallel_coordinates(done, [("val_acc", "maximize")])
    (trace,) = fig.data
    assert trace.type == "parcoords"
    dims = {d.label: d for d in trace.dimensions}
    assert list(dims) == ["placement", "dropout", "bn_momentum (log)", "val_acc ↑"]
    assert list(trace.line.color) == list(done["val_acc"])
    assert list(dims["val_acc ↑"].values) == list(done["val_acc"])
    placements = dims["placement"]
    assert [placements.ticktext[int(c)] for c in placements.values] == list(done["placement"])
    # no dropout placed: the trial sits on the "none" tick below the dropout axis
    dropout = dims["dropout"]
    none_at = dropout.tickvals[list(dropout.ticktext).index("none")]
    for value, shown in zip(done["dropout"], dropout.values):
        assert shown == pytest.approx(none_at) if math.isnan(value) else shown == pytest.approx(value)
    momentum = dims["bn_momentum (log)"]
    for value, shown in zip(done["bn_momentum"], momentum.values):
        if not math.isnan(value):
            assert shown == pytest.approx(np.log10(value))
    pareto = charts.parallel_coordinates(frames.complete(data.trials(filled_db.url, filled_db.jobs["digits-pareto"])),
                                         [("val_acc", "maximize"), ("gap", "minimize")])
    assert [d.label for d in pareto.data[0].dimensions][-2:] == ["val_acc ↑", "gap ↓"]


def test_compare_overlays_the_reports_and_the_rankings(app_on_filled: FilledDb) -> None:
    ids = [app_on_filled.jobs["digits-placements"], app_on_filled.jobs["digits-confirmed"]]
    app = run_app("app_pages/compare.py", jobs=",".join(ids))
    assert [t.value for t in app.title] == ["Compare jobs"]
    assert [h.value for h in app.header] == ["Placement comparison", "Leaders"]
    assert app.multiselect[0].value == ids
    reports = {j: data.report(app_on_filled.url, j) for j in ids}
    labels = {ids[0]: "digits-placements", ids[1]: "digits-confirmed"}

    # the overlay: every (job, placement) group of each report, with the report's numbers
    overlay = comparison.placement_overlay(reports, labels, "val_acc")
    for job_id, report in reports.items():
        groups = next(g for g in report["groupings"] if g["by"] == "placement")["groups"]
        expected = {g["key"]: g["metrics"]["val_acc"]["mean"] for g in groups if g["metrics"]["val_acc"]["mean"] is not None}
        mine = overlay[overlay["job_id"] == job_id]
        assert dict(zip(mine["placement"], mine["mean"])) == pytest.approx(expected)
    table = app.dataframe[0].value
    assert list(table.columns) == ["placement", "digits-placements", "digits-confirmed"]
    assert set(table["placement"]) == set(overlay["placement"])
    fig = charts.jobs_placement_overlay(overlay, "val_acc")
    assert [t.name for t in fig.data] == ["digits-placements", "digits-confirmed"]
    for job_id, report in reports.items():
        assert any(report["recommendation"]["sentence"] in str(m.value) for m in app.markdown)

    # the leaders: each job's first 3 by the store's ranking (what GET /jobs/{id}/best answers)
    leaders = app.dataframe[1].value
    db = Database(app_on_filled.url)
    try:
        for job_id in ids:
            job = job_store.get_job(db, job_id=job_id)
            assert job is not None
            best = job_store.best_configurations(db, job=job, k=3)
            mine = leaders[leaders["job"] == labels[job_id]]
            assert list(mine["number"]) == [r.trial.number for r in best]
            assert list(mine["rank"]) == [1, 2, 3]
            assert list(mine["score"]) == pytest.approx([r.ranked.score for r in best])
    finally:
        db.dispose()
    confirmed = leaders[leaders["job"] == "digits-confirmed"].iloc[0]
    assert bool(confirmed["confirmed"]) and confirmed["runs"] == 3  # the search trial and 2 seeds
    assert confirmed["number"] == app_on_filled.numbers["confirmed/best"][0]


def test_compare_asks_for_two_jobs_and_explains_empty_ones(app_on_filled: FilledDb) -> None:
    app = run_app("app_pages/compare.py", jobs=app_on_filled.jobs["digits-placements"])
    assert [i.value for i in app.info] == ["Choose two or more jobs to compare their placements and their leaders."]
    app = run_app("app_pages/compare.py", jobs=",".join([app_on_filled.jobs["nothing-finished"],
                                                      app_on_filled.jobs["digits-pareto"]]))
    assert [h.value for h in app.header] == ["Placement comparison", "Leaders"]
    leaders = app.dataframe[-1].value
    assert set(leaders["job"]) == {"digits-pareto"}  # nothing finished: no leader
    # the default: the two newest jobs with a complete trial
    app = run_app("app_pages/compare.py")
    assert app.multiselect[0].value == [app_on_filled.jobs["digits-confirmed"], app_on_filled.jobs["digits-pareto"]]


def test_job_labels_tell_jobs_of_the_same_name_apart() -> None:
    assert comparison.job_labels(["a", "b", "c"], {"a": "x", "b": "x", "c": "y"}) == {"a": "x (a)", "b": "x (b)", "c": "y"}
    assert comparison.placement_table(pd.DataFrame(columns=comparison.OVERLAY_COLUMNS)).columns.tolist() == ["placement"]
