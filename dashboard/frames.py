"""The analysis tables behind the pages: pure functions of rows and DataFrames (no I/O, no Streamlit).

Metric names are the project's own (``regsearch.domain.metrics``): ``val_acc``, ``test_acc``, ``gap``
(train_acc - val_acc at the best epoch), ``epochs_to_95pct_best``, ``mean_val_acc``,
``seconds_per_epoch``; parameters are ``placement``, ``dropout``, ``bn_momentum``,
``dropout_layers``, ``bn_layers``. ``train_acc`` here is the training accuracy at the best
epoch, ``val_acc + gap``. A regression job's trials have ``val_rmse``, ``val_r2``, ``test_rmse``,
``test_r2`` and ``gap`` (val_loss - train_loss) instead: :func:`task_pair` and the job's ``metrics``
(``spec_summary``) say which a page shows, from the metric table.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, get_args

import numpy as np
import pandas as pd

# the report's tables (dashboard/report_frames.py), also reachable here as frames.report_table ...
from regsearch.dashboard.report_frames import (  # noqa: F401
    REPORT_COLUMNS,
    confirmation_table,
    report_intervals,
    report_table,
)
from regsearch.domain.metrics import (
    DIRECTIONS,
    METRICS,
    OWN_BEST_FRACTION,
    SUMMARY_FIELDS,
    Task,
    format_metric,
    task_metrics,
)
from regsearch.domain.model_label import model_label, slot_labels
from regsearch.domain.progress import progress, state_counts
from regsearch.domain.space import params_key
from regsearch.domain.states import (
    ACTIVE_JOB_STATES,
    COUNTED_TRIAL_STATES,
    TrialState,
)
from regsearch.domain.stored_spec import StoredSpec
from regsearch.store.models import as_utc

PARAM_COLUMNS = ("placement", "dropout", "bn_momentum", "dropout_layers", "bn_layers")
# every task's stored metrics (a regression trial has val_rmse ... where a classification one has val_acc)
METRIC_COLUMNS = (*dict.fromkeys((*SUMMARY_FIELDS, *task_metrics("regression", shown_only=False))), "best_epoch")
TRIAL_COLUMNS = (
    "trial_id", "number", "state", "attempt", "retry_of", "retried", "superseded", "confirm_of", "seed", "worker",
    "device", "error", "config", *PARAM_COLUMNS, *METRIC_COLUMNS, "train_acc", "epochs_recorded", "val_acc_so_far",
    "created_at", "started_at", "heartbeat_at", "finished_at",
)
JOB_COLUMNS = (
    "id", "name", "status", "progress", "finished", "n_trials", "n_planned", *(s.value for s in COUNTED_TRIAL_STATES),
    "best", "best_val_acc", "test_acc", "best_score", "best_test",
    "elapsed_s", "elapsed", "created_at", "dataset", "model", "objective", "error",
)
ARROWS = {"maximize": "↑", "minimize": "↓"}


def task_pair(task: str) -> tuple[str, str]:
    """A task's headline metrics from the metric table: its first (``val_acc``, ``val_rmse``) and
    its held-out test metric (``test_acc``, ``test_rmse``: the first that is never an objective)."""
    names = task_metrics(task)
    return names[0], next(name for name in names if not METRICS[name].objective)


def spec_task(spec: Any) -> str:
    """A stored spec's task (``classification`` unless it says ``regression``)."""
    task = spec.get("task") if isinstance(spec, Mapping) else None
    return task if task in ("classification", "regression") else "classification"


def objective_label(metric: str, direction: str) -> str:
    """``val_acc ↑``: an objective as every page and chart names it."""
    return f"{metric} {ARROWS.get(direction, '')}".strip()


def _number(value: Any) -> float:
    """A finite float, or NaN for anything else (None, text, NaN, infinities, booleans)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value) if math.isfinite(value) else math.nan


def format_seconds(seconds: float | None) -> str:
    """``3725`` -> ``"1h 02m"``; ``75`` -> ``"1m 15s"``; None/NaN -> ``"–"``."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds}s"


def _elapsed(started: dt.datetime | None, finished: dt.datetime | None, now: dt.datetime) -> float:
    started, finished = as_utc(started), as_utc(finished)
    if started is None:
        return math.nan
    return max(0.0, ((finished or now) - started).total_seconds())


def spec_summary(spec: dict[str, Any] | None) -> dict[str, Any]:
    """What the pages show of a stored spec (``regsearch.domain.stored_spec``: tolerant of specs an
    older version wrote, and of plugin families this process does not know)."""
    view = StoredSpec.read(spec)
    task = spec_task(spec)
    return {
        "task": task, "metrics": task_metrics(task),  # the task's metric columns (regsearch.domain.metrics)
        "objectives": list(view.objectives),
        "objective": ", ".join(objective_label(m, d) for m, d in view.objectives),
        "n_trials": view.n_trials or 0, "dataset": view.dataset or "?", "model": model_label(view.data) or "?",
        "sampler": view.sampler or "?", "pruner": view.pruner or "?", "epochs": view.epochs or 0,
        "n_confirm": view.n_confirm,
        "n_planned": view.n_planned,  # the one denominator of every progress count
    }


def jobs_frame(
    job_rows: Sequence[dict[str, Any]], counts: Mapping[str, Mapping[str, int]],
    leaders: Iterable[tuple[str, Any, Mapping[str, Any]]], now: dt.datetime,
) -> pd.DataFrame:
    """The jobs table: one row per job from the job rows, its trials per state
    (``regsearch.store.jobs.trial_counts``) and its leader (``(job_id, number, its metrics)``: the
    first of its ranking, ``regsearch.domain.ranking``, what ``GET /jobs`` answers as ``best``).

    ``best_score`` and ``best_test`` name the job's task's metrics (``val_rmse 55.120`` on a
    regression job); ``best_val_acc`` and ``test_acc`` are a classification leader's numbers."""
    best = {job_id: (number, metrics) for job_id, number, metrics in leaders}
    nobody: tuple[Any, Mapping[str, Any]] = (None, {})
    records = []
    for row in job_rows:
        spec = spec_summary(row.get("spec"))
        per_state = counts.get(row["id"]) or state_counts()
        done = progress(per_state, spec["n_planned"])
        elapsed = _elapsed(row.get("started_at"), row.get("finished_at"), now)
        number, metrics = best.get(row["id"], nobody)
        first, test = task_pair(spec["task"])
        records.append({
            "id": row["id"], "name": row["name"], "status": row["status"],
            "progress": done.fraction, "finished": done.finished,
            "n_trials": spec["n_trials"], "n_planned": done.planned,
            **{s.value: int(per_state.get(s, 0)) for s in COUNTED_TRIAL_STATES},
            "best": number,
            "best_val_acc": _number(metrics.get("val_acc")), "test_acc": _number(metrics.get("test_acc")),
            "best_score": _named(first, metrics.get(first)) if number is not None else None,
            "best_test": _named(test, metrics.get(test)) if number is not None else None,
            "elapsed_s": elapsed, "elapsed": format_seconds(elapsed),
            "created_at": as_utc(row.get("created_at")), "dataset": spec["dataset"], "model": spec["model"],
            "objective": spec["objective"], "error": row.get("error"),
        })
    df = pd.DataFrame.from_records(records, columns=list(JOB_COLUMNS))
    df["best"] = pd.array(list(df["best"]), dtype="Int64")
    return df


def _named(name: str, value: Any) -> str:
    """``val_rmse 55.120``: a metric's value in its own format, named."""
    return f"{name} {format_metric(name, None if math.isnan(_number(value)) else float(value))}"


def job_info(row: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """A job row plus its spec's summary, its elapsed time and whether it is still active."""
    info = {**row, **spec_summary(row.get("spec"))}
    for key in ("created_at", "started_at", "finished_at"):
        info[key] = as_utc(row.get(key))
    info["elapsed_s"] = _elapsed(row.get("started_at"), row.get("finished_at"), now)
    info["active"] = row.get("status") in ACTIVE_JOB_STATES
    return info


def _config(params: dict[str, Any]) -> str:
    try:
        return params_key(params)
    except (KeyError, TypeError, ValueError):
        return str(params.get("placement", "?"))


SLOT_COLUMNS = ("slot", "layer", "order", "dropout", "bn_momentum")


def slots_table(recipe: Any) -> pd.DataFrame:
    """A trial's recipe, one row per slot: its index, its layer (the user's own name where the
    family has one, ``layer1.0.conv1``; else ``slot i``), its order, dropout and BN momentum."""
    slots = recipe.get("slots") if isinstance(recipe, dict) else None
    slots = [s if isinstance(s, dict) else {} for s in slots] if isinstance(slots, list) else []
    orders = [s.get("order") for s in slots]
    return pd.DataFrame({
        "slot": pd.array(range(len(slots)), dtype="int64"), "layer": slot_labels(recipe),
        "order": ["-".join(map(str, o)) if isinstance(o, list) else str(o or "–") for o in orders],
        "dropout": [_number(s.get("dropout")) for s in slots],
        "bn_momentum": [_number(s.get("bn_momentum")) for s in slots],
    }, columns=list(SLOT_COLUMNS))


def trials_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per trial: its parameters and summary metrics as columns (NaN where absent).

    Built column by column (2,000 trials in a few milliseconds); anything that is not a finite
    number where a number belongs becomes NaN.
    """
    params = [r.get("params") if isinstance(r.get("params"), dict) else {} for r in rows]
    metrics = [r.get("metrics") if isinstance(r.get("metrics"), dict) else {} for r in rows]
    columns: dict[str, Any] = {k: [r.get(k) for r in rows] for k in TRIAL_COLUMNS}
    for key in PARAM_COLUMNS:
        columns[key] = [p.get(key) for p in params]
    for key in METRIC_COLUMNS:
        columns[key] = [_number(m.get(key)) for m in metrics]
    for key in ("dropout", "bn_momentum", "val_acc_so_far"):
        columns[key] = [_number(v) for v in columns[key]]
    columns["config"] = [_config(p) for p in params]
    df = pd.DataFrame(columns, columns=list(TRIAL_COLUMNS))
    for key in ("trial_id", "number", "attempt"):
        df[key] = pd.to_numeric(df[key]).astype("int64")
    for key in ("retry_of", "confirm_of", "seed", "epochs_recorded"):
        df[key] = pd.to_numeric(df[key]).astype("Int64")
    for key in (*METRIC_COLUMNS, "dropout", "bn_momentum", "val_acc_so_far"):
        df[key] = df[key].astype("float64")
    for key in ("created_at", "started_at", "heartbeat_at", "finished_at"):
        df[key] = pd.to_datetime(df[key], utc=True)  # SQLite hands back naive UTC
    df["retried"] = df["retried"].fillna(False).astype(bool)
    df["superseded"] = df["superseded"].fillna(False).astype(bool)
    df["train_acc"] = df["val_acc"] + df["gap"]
    return df


def float_frame(rows: Iterable[Sequence[Any]], columns: list[str]) -> pd.DataFrame:
    """Rows of numbers as a frame: NULL (a NaN the store refused) becomes NaN, ints stay ints."""
    df = pd.DataFrame.from_records(list(rows), columns=columns)
    for column in columns:
        df[column] = pd.to_numeric(df[column], errors="coerce")
        if column not in ("number", "epoch"):
            df[column] = df[column].astype("float64")
    return df


def summary_so_far(epochs: pd.DataFrame) -> dict[str, float]:
    """A running (or summary-less) trial's metrics from the epochs it recorded, as
    ``regsearch.domain.metrics.summarize`` would give them if the trial stopped now (no test_acc)."""
    known = epochs[epochs["val_acc"].notna()]
    if known.empty:
        return {}
    # best epoch: highest val_acc, then lowest val_loss, then earliest (regsearch.domain.metrics)
    best = known.sort_values(["val_acc", "val_loss", "epoch"], ascending=[False, True, True],
                             na_position="last").iloc[0]
    target = OWN_BEST_FRACTION * best["val_acc"]
    return {
        "val_acc": float(best["val_acc"]), "gap": float(best["train_acc"] - best["val_acc"]),
        "epochs_to_95pct_best": int(known.loc[known["val_acc"] >= target, "epoch"].min()),
        "seconds_per_epoch": float(epochs["seconds"].mean()),
    }


def counts(df: pd.DataFrame) -> dict[str, int]:
    """Trials per state (``regsearch.domain.progress.state_counts``), attempts that were retried
    left out (they do not count toward the budget)."""
    current = df[~df["retried"]] if len(df) else df
    return state_counts(current["state"].value_counts().items() if len(df) else ())


# each task's first metric (val_acc, val_rmse): a trial with one of them has a summary
SUMMARY_MARKERS = [task_pair(task)[0] for task in get_args(Task)]


def complete(df: pd.DataFrame) -> pd.DataFrame:
    """Trials that completed with a summary: the ones every comparison is made on."""
    markers = [name for name in SUMMARY_MARKERS if name in df]
    return df[(df["state"] == TrialState.COMPLETE) & df[markers].notna().any(axis=1)]


def complete_search(df: pd.DataFrame) -> pd.DataFrame:
    """Complete **search** trials: what the report's groups count (confirmation runs re-run only
    the leaders, so they would tilt a placement's picture toward its best configuration)."""
    done = complete(df)
    return done[done["confirm_of"].isna()]


def trial_dicts(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of a trials frame as the trial dicts ``regsearch.domain.ranking`` reads (NaN: None)."""
    if df.empty:
        return []
    metrics = df[list(METRIC_COLUMNS)].astype(object).where(df[list(METRIC_COLUMNS)].notna(), None)
    return [
        {"number": int(number), "state": state, "metrics": row,
         "confirm_of": None if pd.isna(confirm_of) else int(confirm_of), "seed": None if pd.isna(seed) else int(seed)}
        for number, state, confirm_of, seed, row in zip(
            df["number"], df["state"], df["confirm_of"], df["seed"], metrics.to_dict("records"))
    ]


def leaders(df: pd.DataFrame, objectives: Sequence[tuple[str, str]], k: int | None = 5) -> pd.DataFrame:
    """The first ``k`` configurations of the job's ranking (all when None): the one ranking,
    ``regsearch.domain.ranking.rank_configurations``, that ``GET /jobs/{id}/best`` answers.

    One row per configuration: its search trial's columns, then ``rank``, ``front`` (0: the
    Pareto front), ``confirmed``, ``runs`` (its seed group: the search run and its complete
    confirmation runs), ``score`` (the first objective as ranked: the mean over the runs) and
    ``val_acc_mean`` / ``val_acc_std`` over the runs.
    """
    from regsearch.domain.ranking import rank_configurations
    from regsearch.domain.stats import mean_interval

    ranking = rank_configurations(trial_dicts(df), objectives, k=k)
    top = df.set_index("number", drop=False).loc[[r.number for r in ranking]].reset_index(drop=True)
    spread = [mean_interval(t["metrics"].get("val_acc") for t in r.runs) for r in ranking]
    top.insert(0, "rank", np.array([r.rank for r in ranking], dtype="int64"))
    top["front"] = np.array([r.front for r in ranking], dtype="int64")
    top["confirmed"] = np.array([r.confirmed for r in ranking], dtype=bool)
    top["runs"] = np.array([len(r.runs) for r in ranking], dtype="int64")
    top["score"] = np.array([_number(r.score) for r in ranking], dtype="float64")
    top["val_acc_mean"] = np.array([_number(i.mean) for i in spread], dtype="float64")
    top["val_acc_std"] = np.array([_number(i.std) for i in spread], dtype="float64")
    return top


def pareto_front(df: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> np.ndarray:
    """For each row of ``df``: whether the ranking puts it on the Pareto front (front 0 of its
    tier; confirmation runs and trials that are not complete: never)."""
    from regsearch.domain.ranking import rank_configurations

    front = {r.number for r in rank_configurations(trial_dicts(df), objectives) if r.front == 0}
    return df["number"].isin(front).to_numpy(dtype=bool) if len(df) else np.zeros(0, dtype=bool)


def history(df: pd.DataFrame, metric: str, direction: str) -> pd.DataFrame:
    """Objective per trial number (complete trials) and the best value so far."""
    done = complete(df)
    columns = ["number", metric, "placement", "config", "dropout", "bn_momentum"]
    done = done[done[metric].notna()].sort_values("number")[columns].copy()
    best = done[metric].cummax() if direction == "maximize" else done[metric].cummin()
    done["best_so_far"] = best
    return done


def placement_summary(df: pd.DataFrame, task: str = "classification") -> pd.DataFrame:
    """Per placement: how many trials ended in each state and the medians of the complete ones,
    by the task's first metric (``val_acc_median``, ``val_acc_best``; ``val_rmse_...`` on a
    regression job, whose best is the lowest), sorted best first."""
    first = task_pair(task)[0]
    maximize = DIRECTIONS[first] == "maximize"
    current = df[~df["retried"]]
    if current.empty:
        return pd.DataFrame(columns=["placement", "trials", "complete", "pruned", "failed", f"{first}_median",
                                     f"{first}_best", "gap_mean", "epochs_to_95pct_best_median",
                                     "seconds_per_epoch_median"])
    states = pd.crosstab(current["placement"], current["state"])
    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED):
        if state not in states:
            states[state.value] = 0
    done = complete(current).groupby("placement").agg(
        **{f"{first}_median": (first, "median"), f"{first}_best": (first, "max" if maximize else "min")},
        gap_mean=("gap", "mean"), epochs_to_95pct_best_median=("epochs_to_95pct_best", "median"),
        seconds_per_epoch_median=("seconds_per_epoch", "median"),
    )
    table = states[[TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED]].join(done, how="left")
    table.insert(0, "trials", states.sum(axis=1))
    table = table.reset_index().rename(columns={"index": "placement"})
    return table.sort_values([f"{first}_median", "placement"], ascending=[not maximize, True], na_position="last")


def generalization(df: pd.DataFrame) -> pd.DataFrame:
    """Per complete configuration: train and validation accuracy at the best epoch, gap, test."""
    columns = ["number", "config", "placement", "dropout", "bn_momentum", "train_acc", "val_acc", "gap",
               "test_acc", "best_epoch"]
    return complete(df)[columns].sort_values("val_acc", ascending=False)
