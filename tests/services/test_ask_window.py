"""TPE's window on the history (issue 27): past a threshold the coordinator's in-memory study
holds the best and the latest trials only, so an ask stops growing with the job, while no
configuration is trained twice however old it is, and the job's best stays in what TPE sees.

The real coordinator on a real database, trials "trained" as tests.services.test_duplicates does;
the window's sizes are made small so a short job crosses them several times.
"""

from __future__ import annotations

import pytest

from regsearch.domain.spec import JobSpec
from regsearch.services.coordinator import mirror
from regsearch.store import jobs as job_store
from regsearch.store.db import Database
from tests.services.test_duplicates import ISSUE_SPACE, configs, drive, make, search_rows, value_of


@pytest.fixture
def small_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mirror, "HISTORY_BEST", 3)
    monkeypatch.setattr(mirror, "HISTORY_RECENT", 8)
    monkeypatch.setattr(mirror, "TRIM_AT", 15)


def test_a_long_tpe_job_keeps_its_window_small_and_trains_no_configuration_twice(
        db: Database, small_window: None) -> None:
    coordinator, queue, job_id = make(db, ISSUE_SPACE, sampler="tpe", n_trials=60)
    seen: list[int] = []
    original = mirror.StudyMirror._trim

    def watched(self: mirror.StudyMirror) -> None:
        original(self)
        seen.append(len(self.memory.get_trials(deepcopy=False)))

    mirror.StudyMirror._trim = watched  # type: ignore[method-assign]
    try:
        assert drive(db, coordinator, queue, job_id) == "completed"
    finally:
        mirror.StudyMirror._trim = original  # type: ignore[method-assign]
    rows = search_rows(db, job_id)
    assert len(rows) == 60
    assert len(set(configs(rows))) == 60, "no configuration twice, the ones trimmed from the window included"
    assert sum(r.params == {"placement": "act"} for r in rows) == 1
    assert max(seen) <= 2 * 15, "the in-memory study stays bounded"
    assert min(seen[20:]) < 15, "and was trimmed"


def test_the_window_keeps_the_best_trials(db: Database, small_window: None) -> None:
    coordinator, queue, job_id = make(db, ISSUE_SPACE, sampler="tpe", n_trials=40)
    assert drive(db, coordinator, queue, job_id) == "completed"
    rows = search_rows(db, job_id)
    best = sorted((value_of(r) for r in rows), reverse=True)[:3]
    active = mirror.StudyMirror(db, f"regsearch-{job_id}", coordinator_spec(db, job_id))
    window = [t.value for t in active.memory.get_trials(deepcopy=False) if t.value is not None]
    assert len(window) <= 3 + 8 and sorted(window, reverse=True)[:3] == pytest.approx(best)


def coordinator_spec(db: Database, job_id: str) -> JobSpec:
    job = job_store.get_job(db, job_id=job_id)
    assert job is not None
    return JobSpec.model_validate(job.spec)
