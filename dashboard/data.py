"""All of the dashboard's data access: the store's read functions, short TTL caches, pandas frames out.

Every page goes through these functions and nothing else touches the database. They read through
the store's functions (``regsearch.store.jobs``: the ones the API answers with, and
``regsearch.store.trial_reads``), each a fixed number of aggregate queries (never one per trial),
cached for a few seconds with ``st.cache_data`` and keyed by the database URL, so a page that
reruns every few seconds while a job runs costs the database almost nothing.

The store reads through a read-only ``Database`` of the dashboard's own (``store``): no
``BEGIN IMMEDIATE`` (the store's writers take SQLite's write lock that way; a reader must not),
``PRAGMA query_only`` on SQLite and ``default_transaction_read_only`` on PostgreSQL, so the
dashboard cannot write by accident.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Engine, inspect
from sqlalchemy import inspect as orm_inspect
from sqlalchemy.engine import make_url

from regsearch.config import get_settings
from regsearch.dashboard import frames
from regsearch.dashboard.catalog import published
from regsearch.domain.families import validation_context
from regsearch.domain.model_label import model_label
from regsearch.domain.ranking import objectives_of
from regsearch.domain.space import suggest_params
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import TrialState
from regsearch.domain.trial_end import trial_end
from regsearch.store import jobs as job_store
from regsearch.store import trial_reads
from regsearch.store.db import Database, is_sqlite, normalize_url
from regsearch.store.models import Job, Trial, as_utc, utcnow

log = logging.getLogger("regsearch.dashboard")

TTL_S = 3  # live pages rerun every few seconds; the database sees at most one read per TTL
IMPORTANCE_TTL_S = 60  # importance is also keyed by the number of finished trials
MAX_JOBS = 500
MAX_CURVES = 30  # overlaid curves: more than this is unreadable and slow to draw
MAX_IMPORTANCE_TRIALS = 500  # a fixed-seed sample beyond this (PED-ANOVA still sees 50 top-10% trials)
MIN_IMPORTANCE_TRIALS = 5
JOB_FIELDS = ("id", "name", "status", "spec", "study_name", "error", "cancel_requested", "created_at",
              "started_at", "finished_at")


def database_url() -> str:
    """The URL the dashboard reads, from ``REGSEARCH_DATABASE_URL`` / ``REGSEARCH_DATA_DIR``."""
    return get_settings().sqlalchemy_url


@st.cache_resource(show_spinner=False)
def store(url: str) -> Database:
    """One read-only database per URL and process: what the store's read functions take."""
    return Database(normalize_url(url), read_only=True)


def reader(url: str) -> Engine:
    """The read-only engine under :func:`store` (its connections refuse writes)."""
    return store(url).engine


def database_url_or_stop(title: str) -> str:
    """The database URL; when it cannot be shown, the page says why (under ``title``) and stops."""
    url = database_url()
    problem = database_problem(url)
    if problem:
        st.title(title)
        st.info(problem)
        st.stop()
    return url


@st.cache_data(ttl=TTL_S, show_spinner=False)
def database_problem(url: str) -> str | None:
    """Why the database cannot be shown (a sentence for the user), or None when it can."""
    url = normalize_url(url)
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:" and not Path(database).exists():
            # connecting would create an empty file: say what to do instead
            return (f"There is no database at `{database}` yet. Start the service with "
                    "`regsearch up` (or run `regsearch db upgrade`), then submit a job.")
    try:
        with reader(url).connect() as conn:
            if not inspect(conn).has_table(Job.__tablename__):
                return ("The database has no regsearch tables yet: run `regsearch db upgrade` "
                        "(`regsearch up` does it for you).")
    except Exception as exc:  # noqa: BLE001 - any driver error means "cannot read now"
        return f"The database cannot be read right now ({type(exc).__name__}: {exc})."
    return None


def _job_row(job: Job) -> dict[str, Any]:
    return {field: getattr(job, field) for field in JOB_FIELDS}


@st.cache_data(ttl=TTL_S, show_spinner=False)
def jobs(url: str) -> pd.DataFrame:
    """Every job (newest first) with trial counts per state, progress and its leader so far: the
    store's ``list_jobs``, ``trial_counts`` and ``best_of_jobs``, what ``GET /jobs`` answers."""
    db = store(url)
    rows, _ = job_store.list_jobs(db, limit=MAX_JOBS)
    counts = job_store.trial_counts(db, job_ids=[job.id for job in rows])
    best = job_store.best_of_jobs(db, jobs=rows)
    leaders = [(job_id, top.number, m if isinstance(m := top.trial.get("metrics"), dict) else {})
               for job_id, top in best.items() if top is not None]
    return frames.jobs_frame([_job_row(job) for job in rows], counts, leaders, now=utcnow())


@st.cache_data(ttl=TTL_S, show_spinner=False)
def job(url: str, job_id: str) -> dict[str, Any] | None:
    """One job's row as a dict (``spec`` parsed into ``objectives``, ``n_trials``), or None."""
    found = job_store.get_job(store(url), job_id=job_id)
    return None if found is None else frames.job_info(_job_row(found), now=utcnow())


@st.cache_data(ttl=TTL_S, show_spinner=False)
def trials(url: str, job_id: str) -> pd.DataFrame:
    """One row per trial of a job: state, parameters, summary metrics, epochs recorded so far
    (``regsearch.store.trial_reads.trials_overview``: one statement)."""
    return frames.trials_frame(trial_reads.trials_overview(store(url), job_id=job_id))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def curves(url: str, job_id: str, numbers: tuple[int, ...]) -> pd.DataFrame:
    """Per-epoch metrics of the given trials of a job (long format: one row per trial and epoch)."""
    numbers = tuple(sorted(set(numbers)))[:MAX_CURVES]
    rows = trial_reads.epoch_curves(store(url), job_id=job_id, numbers=numbers)
    return frames.float_frame(rows, ["number", *trial_reads.EPOCH_COLUMNS])


@st.cache_data(ttl=TTL_S, show_spinner=False)
def all_curves(url: str, job_id: str, numbers: tuple[int, ...]) -> pd.DataFrame:
    """Per-epoch metrics of every given trial (no cap: the per-placement means and bands need them all)."""
    rows = trial_reads.epoch_curves(store(url), job_id=job_id, numbers=sorted(set(numbers)))
    return frames.float_frame(rows, ["number", *trial_reads.EPOCH_COLUMNS])


@st.cache_data(ttl=TTL_S, show_spinner=False)
def recipes(url: str, job_id: str, numbers: tuple[int, ...]) -> dict[int, dict[str, Any] | None]:
    """The recipes of the given trials (only the leaders'; recipes are the bulky column)."""
    return trial_reads.trial_recipes(store(url), job_id=job_id, numbers=numbers)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def trial(url: str, job_id: str, number: int) -> dict[str, Any] | None:
    """One trial with its job's name, the attempt it retried and the attempt that replaced it
    (the store's ``get_trial``, what ``GET /jobs/{id}/trials/{number}`` answers)."""
    db = store(url)
    found = job_store.get_trial(db, job_id=job_id, number=number)
    parent = job_store.get_job(db, job_id=job_id)
    if found is None or parent is None:
        return None
    row, epochs = found
    detail = {attr.columns[0].name: getattr(row, attr.key) for attr in orm_inspect(Trial).column_attrs}
    detail = {k: (as_utc(v) if k.endswith("_at") else v) for k, v in detail.items()}
    detail.update(job_name=parent.name, job_status=parent.status, job_model=model_label(parent.spec or {}),
                  retried_by=trial_reads.retried_by(db, job_id=job_id, number=number))
    detail["epochs"] = frames.float_frame(epochs, list(trial_reads.EPOCH_COLUMNS))
    return detail


@st.cache_data(ttl=TTL_S, show_spinner=False)
def report(url: str, job_id: str) -> dict[str, Any] | None:
    """The job's report (``regsearch.evidence.build_report`` over ``trial_reads.report_trials``:
    what ``GET /jobs/{id}/report`` answers) as plain JSON, or None for an unknown job."""
    from regsearch.evidence import build_report

    db = store(url)
    found = job_store.get_job(db, job_id=job_id)
    if found is None:
        return None
    trials_, recipe = trial_reads.report_trials(db, job_id=job_id)
    return build_report(found.spec or {}, trials_, job_id=job_id, status=found.status,
                        recipe=recipe).model_dump(mode="json")


class _Recorder:
    """A stand-in for ``optuna.trial.Trial`` that answers with a trial's stored parameters and
    records the distribution each one was suggested from (``regsearch.domain.space`` asks it)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.distributions: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        from optuna.distributions import CategoricalDistribution

        self.distributions[name] = CategoricalDistribution(list(choices))
        return self.params[name]

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        from optuna.distributions import FloatDistribution

        self.distributions[name] = FloatDistribution(low, high, step=step, log=log)
        return float(self.params[name])


def _frozen_trials(spec: JobSpec, df: pd.DataFrame) -> list[Any]:
    """The job's complete trials as Optuna trials: parameters, distributions and objective values."""
    from optuna.trial import TrialState as OptunaTrialState
    from optuna.trial import create_trial

    metrics = list(spec.objective.metrics)
    done = frames.complete_search(df)  # a confirmation run repeats a configuration: no new evidence
    if len(done) > MAX_IMPORTANCE_TRIALS:
        done = done.sample(MAX_IMPORTANCE_TRIALS, random_state=0)
    out = []
    for row in done[[*frames.PARAM_COLUMNS, *metrics]].to_dict("records"):
        values = trial_end(TrialState.COMPLETE, row, metrics).values
        if values is None:
            continue  # an objective without a finite value is no evidence: not a complete trial
        params = {k: row[k] for k in frames.PARAM_COLUMNS if row.get(k) is not None and row[k] == row[k]}
        recorder = _Recorder(params)
        try:
            suggest_params(recorder, spec)
            out.append(create_trial(
                state=OptunaTrialState.COMPLETE, values=values,
                params={k: params[k] for k in recorder.distributions}, distributions=recorder.distributions,
            ))
        except (KeyError, TypeError, ValueError):
            continue  # parameters that no longer fit the spec's space
    return out


@st.cache_data(ttl=IMPORTANCE_TTL_S, show_spinner=False)
def importance(url: str, job_id: str, n_complete: int) -> dict[str, Any]:
    """Optuna's parameter importance for a job: ``{importances, n, message}``.

    ``optuna.importance.get_param_importances`` (PED-ANOVA, Optuna's default: it handles the
    conditional parameters, no ``dropout`` without ``drop``; a multi-objective job gets the
    importance of reaching the Pareto front) runs on an in-memory study holding the job's
    complete trials with the distributions ``regsearch.domain.space`` suggests them from. Loading the
    job's stored study instead would read every intermediate value (4-5 s at 2,000 trials);
    the parameters and objective values are the same. Beyond ``MAX_IMPORTANCE_TRIALS`` a
    fixed-seed sample is used. ``n_complete`` keys the cache: one computation per finished trial.
    """
    info = job(url, job_id)
    if n_complete < MIN_IMPORTANCE_TRIALS or info is None:
        return {"importances": {}, "n": n_complete,
                "message": f"Parameter importance needs at least {MIN_IMPORTANCE_TRIALS} complete trials "
                           f"({n_complete} so far)."}
    try:
        import optuna

        # the whole spec, a plugin family's too: the families workers published are its context
        spec = JobSpec.model_validate(info["spec"], context=validation_context(published(url, store(url))))
        trials_ = _frozen_trials(spec, trials(url, job_id))
        if not any(t.params for t in trials_):
            return {"importances": {}, "n": len(trials_),
                    "message": "Nothing is searched in this job (every parameter is fixed)."}
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(directions=spec.directions)
        study.add_trials(trials_)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "few trials in some regime": the caption says how many
            values = optuna.importance.get_param_importances(study)
        return {"importances": dict(values), "n": len(trials_), "message": None}
    except Exception as exc:  # noqa: BLE001 - importance is a nicety: explain, never break the page
        log.info("parameter importance unavailable: %s", exc)
        return {"importances": {}, "n": n_complete,
                "message": f"Parameter importance is not available yet ({type(exc).__name__}: {exc})."}


@st.cache_data(ttl=TTL_S, show_spinner=False)
def leaders_of_jobs(url: str, job_ids: tuple[str, ...], k: int = 5) -> pd.DataFrame:
    """The first ``k`` configurations of each job by the one ranking (``regsearch.store.jobs.
    ranked_jobs``: the API's ``/best``), for the jobs compared side by side; two queries whatever their number."""
    from regsearch.dashboard.comparison import job_labels, leaders_frame

    db = store(url)
    found = job_store.jobs_by_id(db, job_ids=list(job_ids))
    chosen = [job.id for job in found]
    objectives = {job.id: objectives_of(job.spec) for job in found}
    labels = job_labels(chosen, {job.id: job.name for job in found})
    return leaders_frame(job_store.ranked_jobs(db, jobs=found, k=k), labels, objectives)


def clear_caches() -> None:
    """Forget every cached read (tests; a 'Refresh' button)."""
    st.cache_data.clear()


__all__ = [
    "MAX_CURVES", "TTL_S", "clear_caches", "curves", "database_problem", "database_url",
    "importance", "job", "jobs", "leaders_of_jobs", "reader", "recipes", "report", "store", "trial", "trials",
]
