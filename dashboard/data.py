"""All of the dashboard's data access: read-only SQL, short TTL caches, pandas frames out.

Every page goes through these functions and nothing else touches the database. Each one is a
fixed number of aggregate queries (one per table a page needs, never one per trial), cached
for a few seconds with ``st.cache_data`` and keyed by the database URL, so a page that reruns
every few seconds while a job runs costs the database almost nothing.

Reads use an engine of their own (``reader``): no ``BEGIN IMMEDIATE`` (the store's writers
take SQLite's write lock that way; a reader must not), ``PRAGMA query_only`` on SQLite and
``default_transaction_read_only`` on PostgreSQL, so the dashboard cannot write by accident.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Engine, create_engine, event, func, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import aliased

from regsearch.config import get_settings
from regsearch.dashboard import frames
from regsearch.dashboard.catalog import published
from regsearch.domain.families import validation_context
from regsearch.domain.model_label import model_label
from regsearch.domain.ranking import RankedConfig, objectives_of, rank_jobs
from regsearch.domain.space import suggest_params
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import TrialState
from regsearch.domain.trial_end import trial_end
from regsearch.store.db import SQLITE_BUSY_TIMEOUT_MS, engine_kwargs, is_sqlite, normalize_url
from regsearch.store.jobs import ranking_query
from regsearch.store.models import Epoch, Job, Trial, as_utc, utcnow

log = logging.getLogger("regsearch.dashboard")

TTL_S = 3  # live pages rerun every few seconds; the database sees at most one read per TTL
IMPORTANCE_TTL_S = 60  # importance is also keyed by the number of finished trials
MAX_JOBS = 500
MAX_CURVES = 30  # overlaid curves: more than this is unreadable and slow to draw
MAX_IMPORTANCE_TRIALS = 500  # a fixed-seed sample beyond this (PED-ANOVA still sees 50 top-10% trials)
MIN_IMPORTANCE_TRIALS = 5


def database_url() -> str:
    """The URL the dashboard reads, from ``REGSEARCH_DATABASE_URL`` / ``REGSEARCH_DATA_DIR``."""
    return get_settings().sqlalchemy_url


@st.cache_resource(show_spinner=False)
def reader(url: str) -> Engine:
    """One read-only engine per database URL and process."""
    url = normalize_url(url)
    kwargs = engine_kwargs(url)
    if not is_sqlite(url):
        connect_args = {**kwargs.get("connect_args", {}), "options": "-c default_transaction_read_only=on"}
        kwargs = {**kwargs, "connect_args": connect_args}
    engine = create_engine(url, **kwargs)
    if is_sqlite(url):

        @event.listens_for(engine, "connect")
        def _read_only(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA query_only=ON")
            cursor.close()

    return engine


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


@st.cache_data(ttl=TTL_S, show_spinner=False)
def jobs(url: str) -> pd.DataFrame:
    """Every job (newest first) with trial counts per state, progress and its leader so far (the
    first of its ranking, as ``GET /jobs`` answers it: one query for every listed job's complete trials)."""
    job_ids = select(Job.id).order_by(Job.created_at.desc(), Job.id).limit(MAX_JOBS).scalar_subquery()
    with reader(url).connect() as conn:
        job_rows = conn.execute(
            select(Job.id, Job.name, Job.status, Job.spec, Job.error, Job.cancel_requested,
                   Job.created_at, Job.started_at, Job.finished_at)
            .order_by(Job.created_at.desc(), Job.id).limit(MAX_JOBS)
        ).mappings().all()
        counts = conn.execute(
            select(Trial.job_id, Trial.state, func.count())
            .where(Trial.retried.is_(False), Trial.job_id.in_(job_ids))
            .group_by(Trial.job_id, Trial.state)
        ).all()
        candidates = [dict(r) for r in conn.execute(ranking_query(job_ids)).mappings()]
        # each job's leader: the first of its ranking (regsearch.domain.ranking), GET /jobs' `best`
        best = rank_jobs(candidates, {r["id"]: objectives_of(r["spec"]) for r in job_rows}, k=1)
        leaders = [(job_id, top[0].number, _metric(top[0], "val_acc"), _metric(top[0], "test_acc"))
                   for job_id, top in best.items() if top]
        return frames.jobs_frame([dict(r) for r in job_rows], counts, leaders, now=utcnow())


def _metric(ranked: RankedConfig, name: str) -> Any:
    metrics = ranked.trial.get("metrics")
    return metrics.get(name) if isinstance(metrics, dict) else None


@st.cache_data(ttl=TTL_S, show_spinner=False)
def job(url: str, job_id: str) -> dict[str, Any] | None:
    """One job's row as a dict (``spec`` parsed into ``objectives``, ``n_trials``), or None."""
    with reader(url).connect() as conn:
        row = conn.execute(
            select(Job.id, Job.name, Job.status, Job.spec, Job.study_name, Job.error, Job.cancel_requested,
                   Job.created_at, Job.started_at, Job.finished_at).where(Job.id == job_id)
        ).mappings().first()
    return None if row is None else frames.job_info(dict(row), now=utcnow())


@st.cache_data(ttl=TTL_S, show_spinner=False)
def trials(url: str, job_id: str) -> pd.DataFrame:
    """One row per trial of a job: state, parameters, summary metrics, epochs recorded so far.

    One statement: the trials joined to an aggregate of their epochs (count, best val_acc so
    far), which is what running trials and trials that ended without a summary can show.
    """
    per_trial = (
        select(Epoch.trial_id, func.count().label("epochs_recorded"), func.max(Epoch.val_acc).label("val_acc_so_far"))
        .where(Epoch.trial_id.in_(select(Trial.id).where(Trial.job_id == job_id)))
        .group_by(Epoch.trial_id)
        .subquery()
    )
    stmt = (
        select(Trial.id.label("trial_id"), Trial.number, Trial.state, Trial.params, Trial.metrics, Trial.attempt,
               Trial.retry_of, Trial.retried, Trial.confirm_of, Trial.seed, Trial.worker, Trial.device, Trial.error,
               Trial.superseded_result.is_not(None).label("superseded"),
               Trial.created_at, Trial.started_at, Trial.heartbeat_at, Trial.finished_at,
               per_trial.c.epochs_recorded, per_trial.c.val_acc_so_far)
        .outerjoin(per_trial, per_trial.c.trial_id == Trial.id)
        .where(Trial.job_id == job_id)
        .order_by(Trial.number)
    )
    with reader(url).connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    return frames.trials_frame([dict(r) for r in rows])


@st.cache_data(ttl=TTL_S, show_spinner=False)
def curves(url: str, job_id: str, numbers: tuple[int, ...]) -> pd.DataFrame:
    """Per-epoch metrics of the given trials of a job (long format: one row per trial and epoch)."""
    numbers = tuple(sorted(set(numbers)))[:MAX_CURVES]
    columns = ["number", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]
    if not numbers:
        return pd.DataFrame(columns=columns)
    with reader(url).connect() as conn:
        rows = conn.execute(
            select(Trial.number, Epoch.epoch, Epoch.train_loss, Epoch.train_acc, Epoch.val_loss, Epoch.val_acc,
                   Epoch.seconds)
            .join(Trial, Trial.id == Epoch.trial_id)
            .where(Trial.job_id == job_id, Trial.number.in_(numbers))
            .order_by(Trial.number, Epoch.epoch)
        ).all()
    return frames.float_frame(rows, columns)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def recipes(url: str, job_id: str, numbers: tuple[int, ...]) -> dict[int, dict[str, Any] | None]:
    """The recipes of the given trials (only the leaders'; recipes are the bulky column)."""
    if not numbers:
        return {}
    with reader(url).connect() as conn:
        rows = conn.execute(
            select(Trial.number, Trial.recipe).where(Trial.job_id == job_id, Trial.number.in_(numbers))
        ).all()
    return {int(number): recipe for number, recipe in rows}


@st.cache_data(ttl=TTL_S, show_spinner=False)
def trial(url: str, job_id: str, number: int) -> dict[str, Any] | None:
    """One trial with its job's name, the attempt it retried and the attempt that replaced it."""
    later = aliased(Trial)
    with reader(url).connect() as conn:
        row = conn.execute(
            select(Trial.__table__, Job.name.label("job_name"), Job.status.label("job_status"),
                   Job.spec.label("job_spec"), later.number.label("retried_by"))
            .join(Job, Job.id == Trial.job_id)
            .outerjoin(later, (later.job_id == Trial.job_id) & (later.retry_of == Trial.number))
            .where(Trial.job_id == job_id, Trial.number == number)
            .limit(1)
        ).mappings().first()
        if row is None:
            return None
        epochs = conn.execute(
            select(Epoch.epoch, Epoch.train_loss, Epoch.train_acc, Epoch.val_loss, Epoch.val_acc, Epoch.seconds)
            .where(Epoch.trial_id == row["id"]).order_by(Epoch.epoch)
        ).all()
    detail = {k: (as_utc(v) if k.endswith("_at") else v) for k, v in dict(row).items()}
    detail["job_model"] = model_label(detail.pop("job_spec") or {})
    detail["epochs"] = frames.float_frame(
        epochs, ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]
    )
    return detail


@st.cache_data(ttl=TTL_S, show_spinner=False)
def report(url: str, job_id: str) -> dict[str, Any] | None:
    """The job's report (``regsearch.evidence.build_report``, what ``GET /jobs/{id}/report``
    answers) as plain JSON, or None for an unknown job. One query for the trials."""
    from regsearch.domain.jsonsafe import finite_or_none
    from regsearch.evidence import build_report

    with reader(url).connect() as conn:
        row = conn.execute(select(Job.spec, Job.status).where(Job.id == job_id)).first()
        if row is None:
            return None
        rows = conn.execute(
            select(Trial.number, Trial.state, Trial.params, Trial.metrics, Trial.seed, Trial.confirm_of,
                   Trial.retried)
            .where(Trial.job_id == job_id).order_by(Trial.number)
        ).mappings().all()
        recipe = conn.execute(select(Trial.recipe).where(Trial.job_id == job_id, Trial.state == TrialState.COMPLETE)
                              .order_by(Trial.number).limit(1)).scalar()  # the job's slots: any trial's
    trials = [finite_or_none(dict(r)) for r in rows]
    return build_report(row.spec or {}, trials, job_id=job_id, status=row.status,
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
        spec = JobSpec.model_validate(info["spec"], context=validation_context(published(url, reader(url))))
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
    """The first ``k`` configurations of each job by the one ranking (``regsearch.domain.ranking``,
    the API's ``/best``), for the jobs compared side by side; two queries whatever their number."""
    from regsearch.dashboard.comparison import job_labels, leaders_frame
    from regsearch.domain.ranking import objectives_of, rank_jobs
    from regsearch.store.jobs import ranking_query

    with reader(url).connect() as conn:
        found = {r.id: r for r in conn.execute(select(Job.id, Job.name, Job.spec).where(Job.id.in_(job_ids)))}
        rows = [dict(r) for r in conn.execute(ranking_query(list(found))).mappings()] if found else []
        chosen = [j for j in job_ids if j in found]
        objectives = {j: objectives_of(found[j].spec) for j in chosen}
    labels = job_labels(chosen, {j: found[j].name for j in chosen})
    return leaders_frame(rank_jobs(rows, objectives, k=k), labels, objectives)


def clear_caches() -> None:
    """Forget every cached read (tests; a 'Refresh' button)."""
    st.cache_data.clear()


__all__ = [
    "MAX_CURVES", "TTL_S", "clear_caches", "curves", "database_problem", "database_url",
    "importance", "job", "jobs", "leaders_of_jobs", "reader", "recipes", "report", "trial", "trials",
]
