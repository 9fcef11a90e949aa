"""The analysis tables behind the pages: pure functions of rows and DataFrames (no I/O, no Streamlit).

Metric names are the project's own (``regsearch.domain.metrics``): ``val_acc``, ``test_acc``, ``gap``
(train_acc - val_acc at the best epoch), ``epochs_to_converge``, ``val_auc``,
``seconds_per_epoch``; parameters are ``placement``, ``dropout``, ``bn_momentum``,
``dropout_layers``, ``bn_layers``. ``train_acc`` here is the training accuracy at the best
epoch, ``val_acc + gap``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from regsearch.domain.metrics import SUMMARY_FIELDS
from regsearch.domain.space import params_key
from regsearch.domain.spec import DEFAULT_DIRECTIONS, JobSpec
from regsearch.store.models import TRIAL_STATES, as_utc

PARAM_COLUMNS = ("placement", "dropout", "bn_momentum", "dropout_layers", "bn_layers")
METRIC_COLUMNS = (*SUMMARY_FIELDS, "best_epoch")
ACTIVE_JOB_STATES = ("queued", "running")
TRIAL_COLUMNS = (
    "trial_id", "number", "state", "attempt", "retry_of", "retried", "superseded", "worker", "device", "error",
    "config", *PARAM_COLUMNS, *METRIC_COLUMNS, "train_acc", "epochs_recorded", "val_acc_so_far",
    "created_at", "started_at", "heartbeat_at", "finished_at",
)
JOB_COLUMNS = (
    "id", "name", "status", "progress", "finished", "n_trials", *TRIAL_STATES, "best_val_acc", "test_acc",
    "elapsed_s", "elapsed", "created_at", "dataset", "objective", "error",
)
ARROWS = {"maximize": "↑", "minimize": "↓"}


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
    """What the pages show of a stored spec; tolerant of specs an older version wrote."""
    spec = spec or {}
    try:
        parsed = JobSpec.model_validate(spec)
        metrics, directions = list(parsed.objective.metrics), parsed.directions
        n_trials, dataset = parsed.budget.n_trials, parsed.dataset.name
        model = f"{parsed.model.family} {parsed.model.widths}"
        sampler, pruner, epochs = parsed.sampler, parsed.pruner, parsed.training.epochs
    except Exception:  # noqa: BLE001 - show what can be shown
        objective = spec.get("objective") or {}
        metrics = list(objective.get("metrics") or ["val_acc"])
        directions = list(objective.get("directions") or [DEFAULT_DIRECTIONS.get(m, "maximize") for m in metrics])
        n_trials = int((spec.get("budget") or {}).get("n_trials") or 0)
        dataset = str((spec.get("dataset") or {}).get("name", "?"))
        model, sampler, pruner = "?", str(spec.get("sampler", "?")), str(spec.get("pruner", "?"))
        epochs = int((spec.get("training") or {}).get("epochs") or 0)
    return {
        "objectives": list(zip(metrics, directions)),
        "objective": ", ".join(f"{m} {ARROWS.get(d, '')}".strip() for m, d in zip(metrics, directions)),
        "n_trials": n_trials, "dataset": dataset, "model": model, "sampler": sampler, "pruner": pruner,
        "epochs": epochs,
    }


def jobs_frame(
    job_rows: Sequence[dict[str, Any]], counts: Iterable[tuple[str, str, int]],
    leaders: Iterable[tuple[str, Any, Any]], now: dt.datetime,
) -> pd.DataFrame:
    """The jobs table: one row per job from the job rows, per-state counts and each job's leader."""
    per_job: dict[str, dict[str, int]] = {}
    for job_id, state, n in counts:
        per_job.setdefault(job_id, dict.fromkeys(TRIAL_STATES, 0))[state] = int(n)
    best = {job_id: (_number(v), _number(t)) for job_id, v, t in leaders}
    records = []
    for row in job_rows:
        spec = spec_summary(row.get("spec"))
        state_counts = per_job.get(row["id"], dict.fromkeys(TRIAL_STATES, 0))
        finished = sum(state_counts.get(s, 0) for s in ("complete", "pruned", "failed"))
        elapsed = _elapsed(row.get("started_at"), row.get("finished_at"), now)
        n_trials = spec["n_trials"]
        records.append({
            "id": row["id"], "name": row["name"], "status": row["status"],
            "progress": min(1.0, finished / n_trials) if n_trials else 0.0, "finished": finished,
            "n_trials": n_trials, **{s: state_counts.get(s, 0) for s in TRIAL_STATES},
            "best_val_acc": best.get(row["id"], (math.nan, math.nan))[0],
            "test_acc": best.get(row["id"], (math.nan, math.nan))[1],
            "elapsed_s": elapsed, "elapsed": format_seconds(elapsed),
            "created_at": as_utc(row.get("created_at")), "dataset": spec["dataset"],
            "objective": spec["objective"], "error": row.get("error"),
        })
    return pd.DataFrame.from_records(records, columns=list(JOB_COLUMNS))


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
    for key in ("retry_of", "epochs_recorded"):
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
    target = 0.95 * best["val_acc"]
    return {
        "val_acc": float(best["val_acc"]), "gap": float(best["train_acc"] - best["val_acc"]),
        "epochs_to_converge": int(known.loc[known["val_acc"] >= target, "epoch"].min()),
        "seconds_per_epoch": float(epochs["seconds"].mean()),
    }


def counts(df: pd.DataFrame) -> dict[str, int]:
    """Trials per state, attempts that were retried left out (they do not count toward the budget)."""
    current = df[~df["retried"]] if len(df) else df
    found = current["state"].value_counts().to_dict() if len(df) else {}
    return {state: int(found.get(state, 0)) for state in TRIAL_STATES}


def complete(df: pd.DataFrame) -> pd.DataFrame:
    """Trials that completed with a summary: the ones every comparison is made on."""
    return df[(df["state"] == "complete") & df["val_acc"].notna()]


def pareto_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Non-dominated rows of ``values`` (n x m); NaN ranks last. O(n^2 m) in blocks of 512 rows."""
    points = np.asarray(values, dtype=float).copy()
    if points.size == 0:
        return np.zeros(len(points), dtype=bool)
    for j, direction in enumerate(directions):
        if direction == "maximize":
            points[:, j] = -points[:, j]
    points = np.where(np.isnan(points), np.inf, points)
    keep = np.ones(len(points), dtype=bool)
    for start in range(0, len(points), 512):
        block = points[start : start + 512]
        no_worse = (points[None, :, :] <= block[:, None, :]).all(axis=2)
        better = (points[None, :, :] < block[:, None, :]).any(axis=2)
        keep[start : start + 512] = ~(no_worse & better).any(axis=1)
    return keep


def ranked(df: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Complete trials, best first: by the objectives in order (Pareto-optimal first if several).

    The same order as ``regsearch.store.jobs.best_trials`` (and so as the API's ``/best``).
    """
    done = complete(df).copy()
    metrics = [m for m, _ in objectives]
    keys, ascending = [], []
    if len(objectives) > 1 and len(done):
        done["pareto"] = pareto_mask(done[metrics].to_numpy(), [d for _, d in objectives])
        keys.append("pareto")
        ascending.append(False)
    else:
        done["pareto"] = False
    for metric, direction in objectives:
        # NaN ranks last whatever the direction
        done[f"_{metric}"] = done[metric] if direction == "minimize" else -done[metric]
        keys.append(f"_{metric}")
        ascending.append(True)
    keys.append("number")
    ascending.append(True)
    done = done.sort_values(keys, ascending=ascending, na_position="last", kind="mergesort")
    return done.drop(columns=[f"_{m}" for m in metrics])


def leaders(df: pd.DataFrame, objectives: Sequence[tuple[str, str]], k: int = 5) -> pd.DataFrame:
    """The top ``k`` configurations, with how often each configuration ran and its spread.

    A configuration that ran several times (re-runs with extra seeds) shows ``runs`` and
    ``val_acc_std``; its best run represents it.
    """
    order = ranked(df, objectives)
    if order.empty:
        return order.assign(rank=pd.Series(dtype="int64"), runs=pd.Series(dtype="int64"),
                            val_acc_mean=pd.Series(dtype="float64"), val_acc_std=pd.Series(dtype="float64"))
    spread = order.groupby("config")["val_acc"].agg(runs="count", val_acc_mean="mean", val_acc_std="std")
    top = order.drop_duplicates("config").head(k).join(spread, on="config")
    top.insert(0, "rank", range(1, len(top) + 1))
    return top


def history(df: pd.DataFrame, metric: str, direction: str) -> pd.DataFrame:
    """Objective per trial number (complete trials) and the best value so far."""
    done = complete(df)
    columns = ["number", metric, "placement", "config", "dropout", "bn_momentum"]
    done = done[done[metric].notna()].sort_values("number")[columns].copy()
    best = done[metric].cummax() if direction == "maximize" else done[metric].cummin()
    done["best_so_far"] = best
    return done


def placement_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per placement: how many trials ended in each state and the medians of the complete ones."""
    current = df[~df["retried"]]
    if current.empty:
        return pd.DataFrame(columns=["placement", "trials", "complete", "pruned", "failed", "val_acc_median",
                                     "val_acc_best", "gap_mean", "epochs_to_converge_median",
                                     "seconds_per_epoch_median"])
    states = pd.crosstab(current["placement"], current["state"])
    for state in ("complete", "pruned", "failed"):
        if state not in states:
            states[state] = 0
    done = complete(current).groupby("placement").agg(
        val_acc_median=("val_acc", "median"), val_acc_best=("val_acc", "max"), gap_mean=("gap", "mean"),
        epochs_to_converge_median=("epochs_to_converge", "median"),
        seconds_per_epoch_median=("seconds_per_epoch", "median"),
    )
    table = states[["complete", "pruned", "failed"]].join(done, how="left")
    table.insert(0, "trials", states.sum(axis=1))
    table = table.reset_index().rename(columns={"index": "placement"})
    return table.sort_values(["val_acc_median", "placement"], ascending=[False, True], na_position="last")


def generalization(df: pd.DataFrame) -> pd.DataFrame:
    """Per complete configuration: train and validation accuracy at the best epoch, gap, test."""
    columns = ["number", "config", "placement", "dropout", "bn_momentum", "train_acc", "val_acc", "gap",
               "test_acc", "best_epoch"]
    return complete(df)[columns].sort_values("val_acc", ascending=False)


REPORT_COLUMNS = ("n", "trials", "pruned", "failed")


def report_table(report: dict[str, Any], by: str) -> pd.DataFrame:
    """One grouping of a job's report (``regsearch.evidence``) as a table: counts, then each metric
    as ``mean [low, high]`` (the report's own format), the objective's sd beside it."""
    from regsearch.evidence import Stat, format_stat, format_value

    grouping = next((g for g in report.get("groupings", []) if g["by"] == by), None)
    metric, metrics = report.get("metric", "val_acc"), list(report.get("metrics", []))
    first = ["rank", "placement"] if by == "placement" else ["band"]
    columns = [*first, *REPORT_COLUMNS, *metrics[:1], f"{metrics[0]} sd" if metrics else "sd", *metrics[1:]]
    rows = []
    for group in (grouping or {}).get("groups", []):
        stats = {m: Stat(**group["metrics"][m]) for m in metrics}
        lead = [group["rank"], group["key"]] if by == "placement" else [group["label"]]
        rows.append([*lead, group["n_distinct"], group["n_complete"], group["n_pruned"], group["n_failed"],
                     *(format_stat(m, stats[m]) for m in metrics[:1]), format_value(metric, stats[metrics[0]].std),
                     *(format_stat(m, stats[m]) for m in metrics[1:])])
    df = pd.DataFrame(rows, columns=columns)
    if by == "placement":
        df["rank"] = pd.to_numeric(df["rank"]).astype("Int64")
    return df


def report_intervals(report: dict[str, Any], metric: str | None = None) -> pd.DataFrame:
    """Per placement with data: mean, low, high and n of ``metric`` (the objective by default),
    best first: what the error-bar chart draws."""
    metric = metric or report.get("metric", "val_acc")
    grouping = next((g for g in report.get("groupings", []) if g["by"] == "placement"), {"groups": []})
    rows = [(g["key"], g["rank"], *(g["metrics"][metric][k] for k in ("n", "mean", "low", "high")))
            for g in grouping["groups"] if g["metrics"][metric]["mean"] is not None]
    df = pd.DataFrame(rows, columns=["placement", "rank", "n", "mean", "low", "high"])
    for column in ("mean", "low", "high"):
        df[column] = df[column].astype("float64")
    return df


def confirmation_table(report: dict[str, Any]) -> pd.DataFrame:
    """The seed groups of the confirmation runs: one row per re-run configuration."""
    from regsearch.evidence import Stat, format_stat, format_value

    metric = report.get("metric", "val_acc")
    shown = [metric, *(m for m in ("val_acc", "test_acc") if m != metric)]
    rows = [[c["rank"], c["number"], c["config"], c["metrics"][metric]["n"], ", ".join(map(str, c["seeds"])),
             *(format_stat(m, Stat(**c["metrics"][m])) for m in shown),
             format_value(metric, c["metrics"][metric]["std"])]
            for c in report.get("confirmation", {}).get("configs", [])]
    return pd.DataFrame(rows, columns=["rank", "trial", "configuration", "runs", "seeds", *shown, f"{metric} sd"])
