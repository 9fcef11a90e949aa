"""The coordinator's bookkeeping on a real database; only the broker is replaced (a process edge)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import optuna
import pytest

from regsearch.config import Settings
from regsearch.domain.spec import validate_spec
from regsearch.messaging.queue import TrialQueue
from regsearch.services.coordinator import Coordinator
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.store.studies import optuna_storage


class RecordingQueue(TrialQueue):
    def __init__(self) -> None:
        self.sent: list[int] = []

    def send(self, trial_id: int, queue: str = "regsearch") -> None:
        self.sent.append(trial_id)


class Clock:
    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += dt.timedelta(seconds=seconds)


PLACEMENTS = ["act", "bn-act"]


def make(db: Database, **budget: Any) -> tuple[Coordinator, RecordingQueue, Clock, str]:
    spec = validate_spec({"name": "c", "dataset": {"name": "digits"}, "budget": {"n_trials": 4, "parallelism": 2, **budget},
                          "space": {"placement": PLACEMENTS},
                          "sampler": "random", "pruner": "none"})
    job = job_store.create_job(db, spec=spec).job
    queue, clock = RecordingQueue(), Clock()
    settings = Settings(heartbeat_grace_s=30, resend_after_s=60)
    return Coordinator(db, queue, settings, clock=clock), queue, clock, job.id


def study_of(db: Database, job_id: str) -> optuna.Study:
    return optuna.load_study(study_name=f"regsearch-{job_id}", storage=optuna_storage(db.url))


def run_to_completion(db: Database, coordinator: Coordinator, job_id: str, trial_id: int, value: float = 0.5) -> None:
    claim = trial_store.claim(db, trial_id=trial_id, worker="w", device="cpu")
    assert claim is not None
    trial_store.finish(db, trial_id=trial_id, lease=claim.lease, state="complete", metrics={"val_acc": value})
    study_of(db, job_id).tell(claim.number, value)


def test_keeps_parallelism_running_one_more_waiting_and_finishes_at_the_budget(db: Database) -> None:
    coordinator, queue, _, job_id = make(db)  # n_trials 4, parallelism 2, prepare_ahead 1
    coordinator.tick()
    assert len(queue.sent) == 3, "parallelism, plus one waiting in the broker"
    assert job_store.get_job(db, job_id=job_id).status == "running"  # type: ignore[union-attr]
    coordinator.tick()
    assert len(queue.sent) == 3, "nothing more while three are out"

    first, second, third = (trial_store.claim(db, trial_id=i, worker="w", device="cpu") for i in queue.sent)
    assert isinstance(first, trial_store.Claim) and isinstance(second, trial_store.Claim)
    assert isinstance(third, trial_store.Deferred), "the claim enforces parallelism"
    waiting = next(r for r in trial_store.job_trials(db, job_id=job_id) if r.id == queue.sent[2])
    assert (waiting.state, waiting.enqueued_at) == ("queued", None), "refused: marked unsent"
    coordinator.tick()
    assert len(queue.sent) == 3, "held while the job runs its parallelism: an idle worker refused it"

    for claim in (first, second):
        trial_store.finish(db, trial_id=claim.trial_id, lease=claim.lease, state="complete", metrics={"val_acc": 0.5})
        study_of(db, job_id).tell(claim.number, 0.5)
    coordinator.tick()
    assert queue.sent[3] == waiting.id, "sent again once a slot freed, first in line"
    assert len(queue.sent) == 5, "and the budget's last trial"
    for trial_id in (waiting.id, queue.sent[4]):
        run_to_completion(db, coordinator, job_id, trial_id)
    coordinator.tick()
    assert len(queue.sent) == 5
    assert job_store.get_job(db, job_id=job_id).status == "completed"  # type: ignore[union-attr]
    assert len(trial_store.job_trials(db, job_id=job_id)) == 4


def test_a_stale_trial_fails_and_runs_again_up_to_the_retry_limit(db: Database) -> None:
    coordinator, queue, clock, job_id = make(db, n_trials=1, parallelism=1, max_retries=1)
    coordinator.tick()
    first = queue.sent[0]
    assert trial_store.claim(db, trial_id=first, worker="w", device="cpu")
    clock.advance(31)
    coordinator.tick()
    rows = trial_store.job_trials(db, job_id=job_id)
    assert [(r.state, r.attempt, r.retried) for r in rows] == [("failed", 1, True), ("queued", 2, False)]
    assert rows[1].params == rows[0].params and rows[1].retry_of == rows[0].number
    assert "no heartbeat" in (rows[0].error or "")
    assert trial_store.claim(db, trial_id=rows[1].id, worker="w", device="cpu")
    clock.advance(31)
    coordinator.tick()
    rows = trial_store.job_trials(db, job_id=job_id)
    assert [(r.state, r.attempt) for r in rows] == [("failed", 1), ("failed", 2)], "no third attempt"
    assert job_store.get_job(db, job_id=job_id).status == "failed"  # type: ignore[union-attr]
    assert [t.state.name for t in study_of(db, job_id).trials] == ["FAIL", "FAIL"]


def test_an_orphan_optuna_trial_gets_a_row_and_is_retried(db: Database) -> None:
    coordinator, queue, _, job_id = make(db, n_trials=1, parallelism=1)
    orphan = study_of(db, job_id).ask()  # the coordinator died right after ask()
    orphan.suggest_categorical("placement", PLACEMENTS)
    coordinator.tick()
    rows = trial_store.job_trials(db, job_id=job_id)
    assert [(r.number, r.state, r.attempt) for r in rows] == [(0, "failed", 1), (1, "queued", 2)]
    assert rows[1].params["placement"] == rows[0].params["placement"]
    assert [t.state.name for t in study_of(db, job_id).trials] == ["FAIL", "RUNNING"]
    assert queue.sent == [rows[1].id]


def test_a_committed_but_unsent_trial_is_sent_and_a_lost_message_resent(db: Database) -> None:
    coordinator, queue, clock, job_id = make(db, n_trials=1, parallelism=1)
    study = study_of(db, job_id)
    trial = study.ask()
    trial.suggest_categorical("placement", PLACEMENTS)
    trial_id = trial_store.add_trial(db, job_id=job_id, number=trial.number, optuna_trial_id=trial._trial_id, params={"placement": "act"})
    coordinator.tick()
    assert queue.sent == [trial_id], "the row without a message is sent"
    coordinator.tick()
    assert queue.sent == [trial_id], "not again before resend_after_s"
    clock.advance(61)
    coordinator.tick()
    assert queue.sent == [trial_id, trial_id], "an unclaimed message is presumed lost and re-sent"


def test_a_result_written_but_not_told_reaches_optuna(db: Database) -> None:
    coordinator, queue, _, job_id = make(db, n_trials=1, parallelism=1)
    coordinator.tick()
    claim = trial_store.claim(db, trial_id=queue.sent[0], worker="w", device="cpu")
    assert claim is not None
    trial_store.finish(db, trial_id=claim.trial_id, lease=claim.lease, state="complete", metrics={"val_acc": 0.7})
    coordinator.tick()  # the worker died before study.tell()
    (frozen,) = study_of(db, job_id).trials
    assert frozen.state.name == "COMPLETE" and frozen.value == pytest.approx(0.7)
    assert job_store.get_job(db, job_id=job_id).status == "completed"  # type: ignore[union-attr]


def test_cancel_fails_queued_trials_and_ends_the_job(db: Database) -> None:
    coordinator, _, _, job_id = make(db)
    coordinator.tick()
    job_store.request_cancel(db, job_id=job_id)
    coordinator.tick()
    rows = trial_store.job_trials(db, job_id=job_id)
    assert {(r.state, r.error) for r in rows} == {("cancelled", "job cancelled")}
    assert job_store.get_job(db, job_id=job_id).status == "cancelled"  # type: ignore[union-attr]
    assert {t.state.name for t in study_of(db, job_id).trials} == {"FAIL"}


def test_the_timeout_stops_asking_and_fails_what_never_started(db: Database) -> None:
    coordinator, queue, clock, job_id = make(db, timeout_s=10)
    coordinator.tick()
    for trial_id in queue.sent[:2]:
        run_to_completion(db, coordinator, job_id, trial_id)
    clock.advance(11)
    coordinator.tick()
    assert len(queue.sent) == 3, "no trial asked after the timeout"
    waiting = next(r for r in trial_store.job_trials(db, job_id=job_id) if r.id == queue.sent[2])
    assert (waiting.state, waiting.error) == ("failed", "not started: the job's timeout passed")
    assert trial_store.claim(db, trial_id=waiting.id, worker="w", device="cpu") is None, "its message is a no-op"
    assert job_store.get_job(db, job_id=job_id).status == "completed"  # type: ignore[union-attr]
    assert {t.state.name for t in study_of(db, job_id).trials} == {"COMPLETE", "FAIL"}


def test_a_job_whose_step_keeps_failing_is_failed_and_the_others_go_on(db: Database) -> None:
    from regsearch.services.coordinator.coordinator import FAIL_JOB_AFTER

    coordinator, _, _, broken = make(db)
    healthy_spec = validate_spec({"name": "ok", "dataset": {"name": "digits"}, "budget": {"n_trials": 1, "parallelism": 1},
                                  "space": {"placement": PLACEMENTS}, "sampler": "random", "pruner": "none"})
    healthy = job_store.create_job(db, spec=healthy_spec).job.id
    coordinator.tick()  # both jobs get trials in flight
    step = coordinator.step

    def step_or_raise(job: Any, **kwargs: Any) -> None:
        if job.id == broken:
            raise ImportError("the sampler needs torch")  # what a torch-free coordinator meets with gp
        step(job, **kwargs)

    coordinator.step = step_or_raise  # type: ignore[method-assign]
    for _ in range(FAIL_JOB_AFTER - 1):
        coordinator.tick()
    assert job_store.get_job(db, job_id=broken).status == "running"  # type: ignore[union-attr]
    coordinator.tick()
    job = job_store.get_job(db, job_id=broken)
    assert job is not None and job.status == "failed" and "ImportError: the sampler needs torch" in (job.error or "")
    assert job.cancel_requested, "its running trials stop at their next epoch"
    assert {r.state for r in trial_store.job_trials(db, job_id=broken)} == {"failed"}, "nothing had claimed them"
    assert {t.state.name for t in study_of(db, broken).trials} == {"FAIL"}, "Optuna's record agrees"

    (trial_id,) = [r.id for r in trial_store.job_trials(db, job_id=healthy)]
    run_to_completion(db, coordinator, healthy, trial_id)
    coordinator.tick()
    assert job_store.get_job(db, job_id=healthy).status == "completed"  # type: ignore[union-attr]


def test_a_database_outage_in_optunas_storage_never_fails_the_job(db: Database) -> None:
    """Optuna wraps a lost connection in StorageInternalError; like our own StoreUnavailable it
    is an outage the tick waits out, however long, not an error counted against the job."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import OperationalError

    from regsearch.services.coordinator.coordinator import FAIL_JOB_AFTER

    coordinator, _, _, job_id = make(db)
    coordinator.tick()
    step = coordinator.step

    def outage(job: Any, **kwargs: Any) -> None:
        try:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
        except OperationalError as exc:
            raise StorageInternalError("An exception is raised during the commit.") from exc

    coordinator.step = outage  # type: ignore[method-assign]
    for _ in range(FAIL_JOB_AFTER + 2):
        coordinator.tick()
    assert job_store.get_job(db, job_id=job_id).status == "running"  # type: ignore[union-attr]
    coordinator.step = step  # type: ignore[method-assign]
    coordinator.tick()
    assert job_store.get_job(db, job_id=job_id).status == "running"  # type: ignore[union-attr]


def test_the_docstrings_list_the_tick_in_the_codes_order() -> None:
    """The tick is read from its docstrings: they name the steps of TICK, in TICK's order."""
    import re

    from regsearch.services.coordinator import coordinator, steps

    names = [step.name for step in steps.TICK]
    assert re.findall(r"^\s*\d+\.\s+(\w+)", steps.__doc__ or "", re.MULTILINE) == names
    assert " -> ".join(names) in " ".join((coordinator.__doc__ or "").split())
    marked = re.findall(r"^\s*\d+\.\s+(\w+)\s+\(maintenance\)", steps.__doc__ or "", re.MULTILINE)
    assert marked == [step.name for step in steps.TICK if step.maintenance] == ["sync", "reap", "resend"]


def test_a_tick_reads_the_rows_once_and_only_what_can_have_changed(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    coordinator, queue, _, _ = make(db)
    coordinator.tick()
    reads: list[str] = []
    for name in ("job_trials", "changed_trials"):
        original = getattr(trial_store, name)
        monkeypatch.setattr(trial_store, name,
                            lambda *a, _f=original, _n=name, **k: reads.append(_n) or _f(*a, **k))
    coordinator.tick(maintenance=True)
    assert reads == ["changed_trials"], "one incremental read while nothing changed"
    claim = trial_store.claim(db, trial_id=queue.sent[0], worker="w", device="cpu")
    assert isinstance(claim, trial_store.Claim)
    trial_store.finish(db, trial_id=claim.trial_id, lease=claim.lease, state="complete",
                       metrics={"val_acc": 0.5})
    reads.clear()
    coordinator.tick(maintenance=False)
    assert reads == ["changed_trials"], "asking and sending the next trial needs no second read"
    assert len(queue.sent) == 4
