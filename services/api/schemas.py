"""What the API answers: ``XPublic`` models and the functions that build them from store rows.

Every JSON blob read back from the database goes through ``finite_or_none`` first: a diverged
trial may have left a non-finite number behind, and one NaN must not turn a listing into a 500.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from regsearch.domain.confirm import group_interval
from regsearch.domain.jsonsafe import finite_or_none
from regsearch.domain.metrics import task_metrics
from regsearch.domain.model_label import model_label
from regsearch.domain.ranking import RankedConfig
from regsearch.domain.states import JobState, TrialState, WeightsState
from regsearch.domain.stats import Interval
from regsearch.domain.stored_spec import StoredSpec
from regsearch.store.jobs import elapsed_seconds
from regsearch.store.models import Job, Trial, as_utc


class FieldError(BaseModel):
    field: str = Field(description="dotted location, e.g. space.dropout.low")
    message: str


class ValidationErrorPublic(BaseModel):
    detail: list[FieldError]


class ErrorPublic(BaseModel):
    detail: str


class HealthPublic(BaseModel):
    status: Literal["ok"] = "ok"


class TrialCounts(BaseModel):
    # One field per regsearch.domain.states.COUNTED_TRIAL_STATES (tests/regsearch/test_states.py).
    queued: int = 0
    running: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    cancelled: int = Field(default=0, description="stopped or never started because the job was cancelled")


class JobPublic(BaseModel):
    id: str
    name: str
    status: JobState
    n_trials: int | None = Field(description="the job's trial budget")
    n_confirm: int = Field(
        default=0, description="confirmation runs planned after the search (confirm.top_k x confirm.seeds)"
    )
    counts: TrialCounts
    cancel_requested: bool
    error: str | None
    data: dict[str, Any] | None = Field(
        default=None, description="what a worker loaded: {n_train, n_val, n_test, sample_shape, n_classes}")
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class TrialSummary(BaseModel):
    number: int
    params: dict[str, Any]
    metrics: dict[str, Any] | None


BEST_DOC = ("the first configuration of the job's ranking, what `/best` lists first (regsearch.domain.ranking: "
            "confirmed ones by their seed-group mean, several objectives: Pareto front first); "
            "`metrics` are its search trial's own run")


class JobItemPublic(JobPublic):
    """A job as ``GET /jobs`` lists it: its counts and its best configuration so far."""

    model: str = Field(description="the job's model in one line, its family then every knob "
                                   "(`resnet depth=20 width=16 activation=relu`; regsearch.domain.model_label)")
    best: TrialSummary | None = Field(description=BEST_DOC)


class JobsPublic(BaseModel):
    items: list[JobItemPublic]
    count: int = Field(description="all jobs, not only this page")


class JobDetailPublic(JobItemPublic):
    spec: dict[str, Any]
    elapsed_s: float | None


class JobCancelPublic(BaseModel):
    id: str
    status: JobState
    cancel_requested: bool


class TrialPublic(BaseModel):
    number: int
    state: TrialState
    params: dict[str, Any]
    metrics: dict[str, Any] | None
    attempt: int
    worker: str | None
    device: str | None
    error: str | None
    role: Literal["search", "confirm"] = Field(
        description="confirm: a re-run of search trial `confirm_of`'s configuration with another seed"
    )
    seed: int | None = Field(description="the training seed, when it differs from the spec's")
    confirm_of: int | None = Field(description="the search trial whose configuration this re-runs")
    weights: WeightsState | None = Field(default=None, description=(
        "a complete trial's trained weights: kept (GET .../weights serves them), evicted (outside the "
        "job's top budget.keep_weights), evicting, or not saved; null for a trial that did not complete"))


class TrialsPublic(BaseModel):
    items: list[TrialPublic]
    count: int = Field(description="all matching trials, not only this page")


class EpochPublic(BaseModel):
    epoch: int
    train_loss: float | None
    train_acc: float | None
    val_loss: float | None
    val_acc: float | None
    seconds: float | None


class TrialDetailPublic(TrialPublic):
    recipe: dict[str, Any] | None
    retry_of: int | None = Field(description="the number of the lost attempt this one repeats")
    superseded_result: dict[str, Any] | None
    created_at: dt.datetime
    enqueued_at: dt.datetime | None
    started_at: dt.datetime | None
    heartbeat_at: dt.datetime | None
    finished_at: dt.datetime | None
    epochs: list[EpochPublic]


class BestMetrics(BaseModel):
    # The six metrics the contract names; anything else the worker reports passes through.
    model_config = ConfigDict(extra="allow")

    val_acc: float | None = None
    test_acc: float | None = None
    gap: float | None = None
    epochs_to_95pct_best: int | float | None = None
    mean_val_acc: float | None = None
    seconds_per_epoch: float | None = None


class ConfirmationPublic(BaseModel):
    """A configuration's seed group: the search run and its confirmation runs, summarized."""

    n: int = Field(description="complete runs in the group, the search trial included")
    numbers: list[int] = Field(description="the trial numbers of the group, the search trial first")
    seeds: list[int | None] = Field(description="their training seeds (None: the spec's seed)")
    metrics: dict[str, Interval] = Field(description="per metric: mean, std and 95% interval, cut at the metric's range "
                                                    "(n >= 3; regsearch.domain.stats.mean_interval)")


class BestConfigPublic(BaseModel):
    number: int
    params: dict[str, Any]
    recipe: dict[str, Any] | None
    metrics: BestMetrics = Field(description="the search trial's own run")
    confirmation: ConfirmationPublic | None = Field(
        default=None, description="over the seed re-runs when the spec asked for `confirm`; the ranking uses its mean"
    )
    weights: WeightsState | None = Field(default=None, description="the search trial's trained weights (kept: "
                                         "GET /jobs/{id}/trials/{number}/weights serves them)")


class BestConfigsPublic(BaseModel):
    items: list[BestConfigPublic]
    count: int


def _blob(value: dict[str, Any] | None) -> dict[str, Any] | None:
    return finite_or_none(value) if value is not None else None


def _finite(value: float | None) -> float | None:
    return finite_or_none(value)


def job_public(job: Job, counts: dict[str, int]) -> JobPublic:
    """A job row as listed (no spec, no best)."""
    spec = StoredSpec.read(job.spec)
    return JobPublic(
        id=job.id,
        name=job.name,
        status=job.status,
        n_trials=spec.n_trials,
        n_confirm=spec.n_confirm,
        counts=TrialCounts(**counts),
        cancel_requested=bool(job.cancel_requested),
        error=job.error,
        data=job.data,
        created_at=as_utc(job.created_at),
        started_at=as_utc(job.started_at),
        finished_at=as_utc(job.finished_at),
    )


def trial_summary(best: RankedConfig | None) -> TrialSummary | None:
    """The ``best`` of a job: the first of its ranking (``regsearch.store.jobs.best_of_jobs``)."""
    if best is None:
        return None
    return TrialSummary(number=best.number, params=_blob(best.trial.get("params")) or {},
                        metrics=_blob(best.trial.get("metrics")))


def job_model(job: Job) -> str:
    """The job's model line (``regsearch.domain.model_label``: a stored spec that no longer
    validates is written as stored); ``-`` for a row without a spec."""
    return model_label(job.spec or {}) or "-"


def job_item(job: Job, counts: dict[str, int], best: RankedConfig | None) -> JobItemPublic:
    """A job as listed: its model line, its counts and its best configuration so far."""
    return JobItemPublic(**job_public(job, counts).model_dump(), model=job_model(job), best=trial_summary(best))


def job_detail(job: Job, counts: dict[str, int], best: RankedConfig | None) -> JobDetailPublic:
    """A job with its spec, its best configuration so far and its running time."""
    return JobDetailPublic(
        **job_public(job, counts).model_dump(),
        spec=_blob(job.spec) or {},
        model=job_model(job),
        best=trial_summary(best),
        elapsed_s=_finite(elapsed_seconds(job)),
    )


def trial_public(trial: Trial) -> TrialPublic:
    return TrialPublic(
        number=trial.number,
        state=trial.state,
        params=_blob(trial.params) or {},
        metrics=_blob(trial.metrics),
        attempt=trial.attempt,
        worker=trial.worker,
        device=trial.device,
        error=trial.error,
        role="confirm" if trial.confirm_of is not None else "search",
        seed=trial.seed,
        confirm_of=trial.confirm_of,
        weights=trial.weights,
    )


def trial_detail(trial: Trial, epochs: Sequence[Any]) -> TrialDetailPublic:
    """One trial with its recipe, its lineage and its per-epoch curve."""
    return TrialDetailPublic(
        **trial_public(trial).model_dump(),
        recipe=_blob(trial.recipe),
        retry_of=trial.retry_of,
        superseded_result=_blob(trial.superseded_result),
        created_at=as_utc(trial.created_at),
        enqueued_at=as_utc(trial.enqueued_at),
        started_at=as_utc(trial.started_at),
        heartbeat_at=as_utc(trial.heartbeat_at),
        finished_at=as_utc(trial.finished_at),
        epochs=[
            EpochPublic(
                epoch=e.epoch,
                train_loss=_finite(e.train_loss),
                train_acc=_finite(e.train_acc),
                val_loss=_finite(e.val_loss),
                val_acc=_finite(e.val_acc),
                seconds=_finite(e.seconds),
            )
            for e in epochs
        ],
    )


def confirmation(seed_runs: Sequence[Trial]) -> ConfirmationPublic | None:
    if not seed_runs:
        return None
    runs = [{"metrics": _blob(t.metrics) or {}} for t in seed_runs]
    task = str((_blob(seed_runs[0].recipe) or {}).get("task", "classification"))
    return ConfirmationPublic(
        n=len(seed_runs),
        numbers=[t.number for t in seed_runs],
        seeds=[t.seed for t in seed_runs],
        metrics={
            # the task's metrics, each cut at its range on that task: a regression recipe says so
            # (regsearch.domain.metrics.task_metrics, metric_bounds)
            name: group_interval(runs, name, task)
            for name in task_metrics(task)
        },
    )


def best_config(trial: Trial, seed_runs: Sequence[Trial] = ()) -> BestConfigPublic:
    return BestConfigPublic(
        number=trial.number,
        params=_blob(trial.params) or {},
        recipe=_blob(trial.recipe),
        metrics=BestMetrics.model_validate(_blob(trial.metrics) or {}),
        confirmation=confirmation(seed_runs),
        weights=trial.weights,
    )
