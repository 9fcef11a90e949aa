"""One denominator everywhere: search trials + confirmation runs, and search trials for groups."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from regsearch.dashboard import frames
from regsearch.domain.stored_spec import StoredSpec

SPEC = {"name": "d", "dataset": {"name": "digits"}, "budget": {"n_trials": 30},
        "confirm": {"top_k": 3, "seeds": 3}}


def test_progress_counts_search_trials_and_confirmation_runs() -> None:
    summary = frames.spec_summary(SPEC)
    assert (summary["n_trials"], summary["n_confirm"], summary["n_planned"]) == (30, 9, 39)
    assert StoredSpec.read(SPEC).n_confirm == 9 and StoredSpec.read({}).n_confirm == 0
    now = dt.datetime.now(dt.timezone.utc)
    row = {"id": "j", "name": "d", "status": "completed", "spec": SPEC, "created_at": now,
           "started_at": now, "finished_at": now, "error": None}
    table = frames.jobs_frame([row], {"j": {"complete": 39}}, [], now)
    assert table.loc[0, "finished"] == 39 and table.loc[0, "n_planned"] == 39
    assert table.loc[0, "progress"] == 1.0  # never "39 of 30"


def test_placement_groups_count_search_trials_only() -> None:
    df = pd.DataFrame({
        "number": [0, 1, 2, 3], "state": ["complete"] * 4, "val_acc": [0.6, 0.7, 0.71, 0.69],
        "confirm_of": [None, None, 1, 1], "placement": ["bn-act"] * 4,
    })
    assert list(frames.complete_search(df)["number"]) == [0, 1]
    assert len(frames.complete(df)) == 4
