"""``space.placement_balance: true``: the coordinator gives each placement an equal share of the
search trials (within one of each other), the sampler choosing the rest of each configuration.
The real coordinator on a real database, trials "trained" at once (tests.services.test_duplicates)."""

from __future__ import annotations

from collections import Counter

import pytest

from regsearch.domain.spec import validate_spec
from regsearch.services.coordinator.balance import placement_order
from regsearch.store.db import Database
from tests.services.test_duplicates import drive, make, search_rows

PLACEMENTS = ["bn-act-drop", "drop-bn-act", "act-drop", "bn-act", "act"]
SPACE = {"placement": PLACEMENTS, "lr": {"low": 1e-4, "high": 1e-1, "log": True}, "placement_balance": True}


@pytest.mark.parametrize("sampler", ["random", "tpe"])
@pytest.mark.parametrize("n_trials", [13, 20])
def test_balanced_placements_are_within_one_trial_of_each_other(db: Database, sampler: str, n_trials: int) -> None:
    coordinator, queue, job_id = make(db, SPACE, sampler=sampler, n_trials=n_trials)
    assert drive(db, coordinator, queue, job_id) == "completed"
    rows = search_rows(db, job_id)
    counts = Counter(r.params["placement"] for r in rows)
    assert len(rows) == n_trials and set(counts) == set(PLACEMENTS)
    assert max(counts.values()) - min(counts.values()) <= 1, counts
    assert all(1e-4 <= r.params["lr"] <= 1e-1 for r in rows), "the sampler still chooses the rest"


def test_a_used_up_placement_is_skipped(db: Database) -> None:
    # act has one configuration (no rate searched here): the others share what is left evenly
    coordinator, queue, job_id = make(db, {"placement": ["act", "act-drop", "bn-act"], "placement_balance": True},
                                      n_trials=9)
    assert drive(db, coordinator, queue, job_id) == "completed"
    counts = Counter(r.params["placement"] for r in search_rows(db, job_id))
    assert counts["act"] == 1 and abs(counts["act-drop"] - counts["bn-act"]) <= 1 and sum(counts.values()) == 9


def test_the_order_is_fewest_first_and_off_without_the_flag() -> None:
    spec = validate_spec({"name": "b", "dataset": {"name": "digits"}, "space": SPACE})
    assert placement_order(spec, [{"placement": "bn-act-drop"}, {"placement": "act"}])[:3] == [
        "drop-bn-act", "act-drop", "bn-act"]
    plain = validate_spec({"name": "b", "dataset": {"name": "digits"}, "space": {"placement": PLACEMENTS}})
    assert placement_order(plain, []) is None
