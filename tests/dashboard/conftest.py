"""Databases for the dashboard tests, filled by a real small job (no hand-made metrics).

The filled database holds three jobs on sklearn's ``digits``, each trial asked from the job's
Optuna study and trained for real (``regsearch.worker.local.run_local_trial``, tiny MLP, 3 epochs, CPU),
its epochs and outcome written through ``regsearch.store.trials`` as a worker does, and told
to Optuna:

- ``digits-placements`` (completed, val_acc): 8 complete trials over 5 placements, 2 pruned (one
  with a partial summary, one with none), 1 failed after an epoch, and one trial lost with its
  worker (reaped, run again as attempt 2, its late result kept as superseded);
- ``digits-pareto`` (running, val_acc maximize + gap minimize): 5 complete, 1 running, 1 queued;
- ``nothing-finished`` (running): 1 failed without epochs, 1 pruned without metrics, 1 queued;
- ``digits-confirmed`` (completed, ``confirm: {top_k: 1, seeds: 2}``): 6 complete search trials
  over 2 placements and the best one re-run with training seeds 1 and 2, as the coordinator does.

A second database is migrated and empty. The app is pointed at either through
``REGSEARCH_DATA_DIR`` / ``REGSEARCH_DATABASE_URL`` and ``get_settings.cache_clear()``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from regsearch.config import Settings, get_settings
from regsearch.domain.metrics import EpochMetrics, summarize
from regsearch.domain.space import suggest_params
from regsearch.domain.spec import JobSpec
from regsearch.store import jobs as job_store
from regsearch.store import studies
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.store.migrate import upgrade
from regsearch.store.models import Trial

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
APP_TIMEOUT_S = 120  # the first run imports plotly, optuna, pandas: slow on a loaded CI machine


def run_app(page: str | None = None, **query: str) -> Any:
    """The dashboard run in streamlit's AppTest, on ``page`` with ``query``; no exception raised."""
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT_S)
    if page:
        app.run()
        app.switch_page(page)
    app.query_params.update(query)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app
WORKER = "test-host:4242"

BASE_SPEC: dict[str, Any] = {
    "dataset": {"name": "digits"},
    "model": {"family": "mlp", "hidden": [32, 32]},
    "space": {
        "placement": ["bn-act-drop", "act-bn-drop", "bn-act", "act-drop", "act"],
        "dropout": {"low": 0.0, "high": 0.5},
        "bn_momentum": {"low": 0.01, "high": 0.5, "log": True},
    },
    "training": {"epochs": 3, "batch_size": 64, "lr": 0.01, "seed": 0},
    "sampler": "random",
}

COMPLETE_PARAMS = [
    {"placement": "bn-act-drop", "dropout": 0.1, "bn_momentum": 0.1},
    {"placement": "bn-act-drop", "dropout": 0.4, "bn_momentum": 0.02},
    {"placement": "act-bn-drop", "dropout": 0.2, "bn_momentum": 0.3},
    {"placement": "bn-act", "bn_momentum": 0.05},
    {"placement": "act-drop", "dropout": 0.3},
    {"placement": "act-drop", "dropout": 0.05},
    {"placement": "act"},
]

CONFIRMED_EXTRA = [{"placement": "bn-act-drop", "dropout": 0.25, "bn_momentum": 0.05},
                   {"placement": "act-drop", "dropout": 0.15}]


@dataclass
class FilledDb:
    settings: Settings
    url: str
    jobs: dict[str, str] = field(default_factory=dict)  # name -> id
    numbers: dict[str, list[int]] = field(default_factory=dict)  # "<job>/<outcome>" -> trial numbers
    names: dict[str, str] = field(default_factory=dict)  # job id -> name


def make_settings(data_dir: Path) -> Settings:
    settings = Settings(data_dir=data_dir, database_url=None, broker_url=None, api_token=None)
    settings.ensure_dirs()
    return settings


class JobFiller:
    """Plays coordinator and worker for one job: ask, add, claim, train, record, finish, tell."""

    def __init__(self, db: Database, data_dir: Path, spec: JobSpec) -> None:
        self.db, self.data_dir, self.spec = db, data_dir, spec
        self.job = job_store.create_job(db, spec=spec).job
        self.study = studies.load_study(db.url, self.job.study_name, spec)
        job_store.set_job_status(db, job_id=self.job.id, status="running")
        self.summaries: dict[int, dict[str, Any]] = {}  # trial number -> its metrics (complete trials)

    def ask(self, params: dict[str, Any], *, attempt: int = 1, retry_of: int | None = None,
            seed: int | None = None, confirm_of: int | None = None) -> tuple[int, int]:
        self.study.enqueue_trial({k: v for k, v in params.items() if k in ("placement", "dropout", "bn_momentum")})
        asked = self.study.ask()
        full = suggest_params(asked, self.spec)
        trial_id = trial_store.add_trial(self.db, job_id=self.job.id, number=asked.number,
                                         optuna_trial_id=asked._trial_id, params=full, attempt=attempt,
                                         retry_of=retry_of, seed=seed, confirm_of=confirm_of)
        trial_store.mark_sent(self.db, trial_ids=[trial_id])
        return trial_id, asked.number

    def train(self, trial_id: int, params: dict[str, Any], *, worker: str = WORKER,
              stop_after: int | None = None) -> tuple[trial_store.Claim, list[EpochMetrics], dict[str, Any]]:
        from regsearch.worker.local import run_local_trial

        claim = trial_store.claim(self.db, trial_id=trial_id, worker=worker, device="cpu")
        assert claim is not None
        recorded: list[EpochMetrics] = []

        def on_epoch(metrics: EpochMetrics) -> bool:
            recorded.append(metrics)
            trial_store.record_epochs(self.db, trial_id=trial_id, lease=claim.lease, epochs=[metrics])
            return stop_after is not None and len(recorded) >= stop_after

        spec = self.spec  # a confirmation run trains with its own seed, on the same split
        if claim.seed is not None:
            spec = spec.model_copy(update={"training": spec.training.model_copy(update={"seed": claim.seed})})
        local = run_local_trial(spec, claim.params, self.data_dir, device="cpu", on_epoch=on_epoch)
        trial_store.record_epochs(self.db, trial_id=trial_id, lease=claim.lease, epochs=[], recipe=local.recipe)
        return claim, recorded, local.result.summary

    def complete(self, params: dict[str, Any], **ask: Any) -> int:
        trial_id, number = self.ask(params, **ask)
        claim, _, summary = self.train(trial_id, params)
        assert trial_store.finish(self.db, trial_id=trial_id, lease=claim.lease, state="complete", metrics=summary)
        self.study.tell(number, [float(summary[m]) for m in self.spec.objective.metrics])
        self.summaries[number] = summary
        return number

    def confirmed(self, number: int, seed: int) -> int:
        """Re-run search trial ``number``'s configuration with training seed ``seed``."""
        with self.db.read() as session:
            params = dict(session.scalars(select(Trial.params).where(Trial.job_id == self.job.id,
                                                                     Trial.number == number)).one())
        return self.complete(params, seed=seed, confirm_of=number)

    def pruned(self, params: dict[str, Any], *, with_metrics: bool) -> int:
        from optuna.trial import TrialState

        trial_id, number = self.ask(params)
        if with_metrics:
            claim, epochs, _ = self.train(trial_id, params, stop_after=1)
            metrics: dict[str, Any] | None = summarize(epochs, None)
        else:
            claim, metrics = trial_store.claim(self.db, trial_id=trial_id, worker=WORKER, device="cpu"), None
            assert claim is not None
        trial_store.finish(self.db, trial_id=trial_id, lease=claim.lease, state="pruned", metrics=metrics)
        self.study.tell(number, state=TrialState.PRUNED)
        return number

    def failed(self, params: dict[str, Any], *, error: str, train_epochs: int = 0) -> int:
        from optuna.trial import TrialState

        trial_id, number = self.ask(params)
        if train_epochs:
            claim, _, _ = self.train(trial_id, params, stop_after=train_epochs)
        else:
            claim = trial_store.claim(self.db, trial_id=trial_id, worker=WORKER, device="cpu")
            assert claim is not None
        trial_store.finish(self.db, trial_id=trial_id, lease=claim.lease, state="failed", error=error)
        self.study.tell(number, state=TrialState.FAIL)
        return number

    def lost_then_retried(self, params: dict[str, Any]) -> tuple[int, int]:
        """A worker dies after one epoch; the reaper fails it, a new attempt completes, and the
        presumed-dead worker's late result arrives and is kept aside as superseded."""
        from optuna.trial import TrialState

        trial_id, number = self.ask(params)
        claim, _, summary = self.train(trial_id, params, worker="lost-host:1", stop_after=1)
        future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)
        assert trial_store.fail_stale(self.db, trial_id=trial_id, older_than=future, reason="heartbeat lost (stale for 60s)")
        self.study.tell(number, state=TrialState.FAIL)
        assert trial_store.mark_retried(self.db, trial_id=trial_id)
        retry = self.complete(params, attempt=2, retry_of=number)
        assert not trial_store.finish(self.db, trial_id=trial_id, lease=claim.lease, state="complete", metrics=summary)
        return number, retry

    def running(self, params: dict[str, Any]) -> int:
        trial_id, number = self.ask(params)
        self.train(trial_id, params, stop_after=1)  # claimed, one epoch recorded, never finished
        return number

    def queued(self, params: dict[str, Any]) -> int:
        return self.ask(params)[1]


def build_filled(data_dir: Path) -> FilledDb:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is several times faster than contended ones
    try:
        return _build_filled(data_dir)
    finally:
        torch.set_num_threads(threads)


def _build_filled(data_dir: Path) -> FilledDb:
    settings = make_settings(data_dir)
    upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    filled = FilledDb(settings=settings, url=settings.sqlalchemy_url)
    try:
        main = JobFiller(db, data_dir, JobSpec.model_validate(
            {**BASE_SPEC, "name": "digits-placements", "budget": {"n_trials": 11}, "pruner": "median"}))
        filled.numbers["main/complete"] = [main.complete(p) for p in COMPLETE_PARAMS]
        filled.numbers["main/pruned"] = [
            main.pruned({"placement": "act-bn-drop", "dropout": 0.5, "bn_momentum": 0.01}, with_metrics=True),
            main.pruned({"placement": "act"}, with_metrics=False),
        ]
        filled.numbers["main/failed"] = [main.failed({"placement": "act-drop", "dropout": 0.45}, train_epochs=1,
                                                     error="NonFiniteLossError: training loss became nan in epoch 2")]
        lost, retry = main.lost_then_retried({"placement": "bn-act", "bn_momentum": 0.2})
        filled.numbers["main/lost"], filled.numbers["main/retry"] = [lost], [retry]
        filled.numbers["main/complete"].append(retry)
        job_store.set_job_status(db, job_id=main.job.id, status="completed")

        pareto = JobFiller(db, data_dir, JobSpec.model_validate({
            **BASE_SPEC, "name": "digits-pareto", "budget": {"n_trials": 8}, "pruner": "none",
            "objective": {"metrics": ["val_acc", "gap"], "directions": ["maximize", "minimize"]}}))
        filled.numbers["pareto/complete"] = [pareto.complete(p) for p in COMPLETE_PARAMS[:5]]
        filled.numbers["pareto/running"] = [pareto.running({"placement": "act"})]
        filled.numbers["pareto/queued"] = [pareto.queued({"placement": "bn-act", "bn_momentum": 0.1})]

        empty = JobFiller(db, data_dir, JobSpec.model_validate(
            {**BASE_SPEC, "name": "nothing-finished", "budget": {"n_trials": 5}}))
        filled.numbers["nothing/failed"] = [empty.failed({"placement": "act"}, error="DatasetError: dataset.path: gone")]
        filled.numbers["nothing/pruned"] = [empty.pruned({"placement": "act-drop", "dropout": 0.2}, with_metrics=False)]
        filled.numbers["nothing/queued"] = [empty.queued({"placement": "bn-act", "bn_momentum": 0.1})]

        confirmed = JobFiller(db, data_dir, JobSpec.model_validate({
            **BASE_SPEC, "name": "digits-confirmed", "budget": {"n_trials": 6}, "pruner": "none",
            "space": {**BASE_SPEC["space"], "placement": ["bn-act-drop", "act-drop"]},
            "confirm": {"top_k": 1, "seeds": 2}}))
        # three configurations per placement: the report's minimum for a recommendation
        search = [confirmed.complete(p) for p in (*(COMPLETE_PARAMS[i] for i in (0, 1, 4, 5)), *CONFIRMED_EXTRA)]
        best = max(search, key=lambda n: (confirmed.summaries[n]["val_acc"], -n))
        filled.numbers["confirmed/search"] = search
        filled.numbers["confirmed/confirm"] = [confirmed.confirmed(best, seed) for seed in (1, 2)]
        filled.numbers["confirmed/best"] = [best]
        job_store.set_job_status(db, job_id=confirmed.job.id, status="completed")

        for filler in (main, pareto, empty, confirmed):
            filled.jobs[filler.spec.name] = filler.job.id
            filled.names[filler.job.id] = filler.spec.name
    finally:
        db.dispose()
    return filled


@pytest.fixture(scope="session")
def filled_db(tmp_path_factory: pytest.TempPathFactory) -> FilledDb:
    """The database of a real small job (built once per test session, a few seconds on CPU)."""
    pytest.importorskip("torch")
    return build_filled(tmp_path_factory.mktemp("dashboard-filled"))


def replay_job(src_url: str, job_id: str, dst: Database) -> str:
    """Copy one job of ``src_url`` into ``dst`` through the store and Optuna, trial by trial, as
    the coordinator and a worker would have written it (real epochs, real outcomes)."""
    from optuna.trial import TrialState
    from sqlalchemy import select

    from regsearch.store.models import Epoch, Job, Trial

    src = Database(src_url)
    try:
        with src.session() as session:
            spec = JobSpec.model_validate(session.get(Job, job_id).spec)  # type: ignore[union-attr]
            rows = list(session.scalars(select(Trial).where(Trial.job_id == job_id).order_by(Trial.number)))
            epochs = {r.id: [EpochMetrics(**{k: getattr(e, k) for k in ("epoch", "train_loss", "train_acc",
                                                                         "val_loss", "val_acc", "seconds")})
                             for e in session.scalars(select(Epoch).where(Epoch.trial_id == r.id).order_by(Epoch.epoch))]
                      for r in rows}
    finally:
        src.dispose()
    job = job_store.create_job(dst, spec=spec).job
    job_store.set_job_status(dst, job_id=job.id, status="running")
    study = studies.load_study(dst.url, job.study_name, spec)
    for row in rows:
        asked = study.ask()
        assert asked.number == row.number
        trial_id = trial_store.add_trial(dst, job_id=job.id, number=row.number, optuna_trial_id=asked._trial_id,
                                         params=dict(row.params), attempt=row.attempt, retry_of=row.retry_of,
                                         seed=row.seed, confirm_of=row.confirm_of)
        if row.state == "queued":
            continue
        claim = trial_store.claim(dst, trial_id=trial_id, worker=row.worker or WORKER, device=row.device or "cpu")
        assert claim is not None
        if epochs[row.id]:
            trial_store.record_epochs(dst, trial_id=trial_id, lease=claim.lease, epochs=epochs[row.id])
        if row.recipe:
            trial_store.record_epochs(dst, trial_id=trial_id, lease=claim.lease, epochs=[], recipe=dict(row.recipe))
        if row.state == "running":
            continue
        trial_store.finish(dst, trial_id=trial_id, lease=claim.lease, state=row.state, metrics=row.metrics,
                           error=row.error)
        if row.retried:
            trial_store.mark_retried(dst, trial_id=trial_id)
        if row.state == "complete":
            study.tell(row.number, [float((row.metrics or {})[m]) for m in spec.objective.metrics])
        else:
            study.tell(row.number, state=TrialState.PRUNED if row.state == "pruned" else TrialState.FAIL)
    return job.id


@pytest.fixture(scope="session")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A migrated database without any job."""
    settings = make_settings(tmp_path_factory.mktemp("dashboard-empty"))
    upgrade(settings.sqlalchemy_url)
    return settings


def point_app_at(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """Make ``get_settings()`` (what the app reads) return ``settings``' database."""
    monkeypatch.setenv("REGSEARCH_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("REGSEARCH_DATABASE_URL", settings.sqlalchemy_url)
    monkeypatch.delenv("REGSEARCH_API_TOKEN", raising=False)  # a token would put every page behind its form
    get_settings.cache_clear()


@pytest.fixture
def app_on_filled(monkeypatch: pytest.MonkeyPatch, filled_db: FilledDb) -> Iterator[FilledDb]:
    point_app_at(monkeypatch, filled_db.settings)
    yield filled_db
    get_settings.cache_clear()


@pytest.fixture
def app_on_empty(monkeypatch: pytest.MonkeyPatch, empty_db: Settings) -> Iterator[Settings]:
    point_app_at(monkeypatch, empty_db)
    yield empty_db
    get_settings.cache_clear()
