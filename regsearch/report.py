"""Terminal output for the CLI: progress, the placement comparison and the best configuration."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from typing import Any

from rich.console import Console
from rich.table import Table

METRIC_COLUMNS = ("val_acc", "test_acc", "gap", "epochs_to_converge", "val_auc", "seconds_per_epoch")


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) >= 1000 else f"{value:.{digits}f}".rstrip("0").rstrip(".") or "0"
    return str(value)


def comparison_table(trials: list[dict[str, Any]]) -> Table:
    """Finished trials grouped by placement: how many, how good, how well they generalize."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for trial in trials:
        if trial.get("state") == "complete" and trial.get("metrics"):
            groups[trial["params"]["placement"]].append(trial)
    table = Table(title="Placements compared (complete trials)")
    for column in ("placement", "trials", "best val_acc", "mean val_acc", "test_acc of best", "mean gap", "mean epochs_to_converge"):
        table.add_column(column, justify="left" if column == "placement" else "right")

    def mean(items: list[dict[str, Any]], key: str) -> float | None:
        values = [t["metrics"][key] for t in items if isinstance(t["metrics"].get(key), (int, float))]
        return statistics.fmean(values) if values else None

    ranked = sorted(groups.items(), key=lambda kv: -max(t["metrics"].get("val_acc") or 0 for t in kv[1]))
    for placement, items in ranked:
        best = max(items, key=lambda t: t["metrics"].get("val_acc") or 0)
        table.add_row(placement, str(len(items)), _fmt(best["metrics"].get("val_acc")), _fmt(mean(items, "val_acc")),
                      _fmt(best["metrics"].get("test_acc")), _fmt(mean(items, "gap")), _fmt(mean(items, "epochs_to_converge"), 3))
    return table


def best_table(items: list[dict[str, Any]]) -> Table:
    table = Table(title="Best configurations")
    table.add_column("#", justify="right")
    table.add_column("params")
    for column in METRIC_COLUMNS:
        table.add_column(column, justify="right")
    for item in items:
        params = ", ".join(f"{k}={_fmt(v, 3)}" for k, v in item["params"].items())
        table.add_row(str(item["number"]), params, *(_fmt(item["metrics"].get(c)) for c in METRIC_COLUMNS))
    return table


def print_best(console: Console, items: list[dict[str, Any]], *, with_recipe: bool = True) -> None:
    if not items:
        console.print("No complete trial yet.")
        return
    console.print(best_table(items))
    if with_recipe and items[0].get("recipe"):
        console.print("Recipe of the best configuration (rebuilds the exact module):")
        console.print_json(json.dumps(items[0]["recipe"]), indent=None)


def job_progress(job: dict[str, Any]) -> tuple[int, int]:
    """(finished trials, n_trials) of a job from the API's job document."""
    counts = job.get("counts", {})
    done = sum(int(counts.get(k, 0)) for k in ("complete", "pruned", "failed"))
    total = int(job.get("n_trials") or job.get("spec", {}).get("budget", {}).get("n_trials", 0) or 0)
    return done, total


def status_line(job: dict[str, Any]) -> str:
    done, total = job_progress(job)
    counts = job.get("counts", {})
    best = job.get("best") or {}
    best_val = (best.get("metrics") or {}).get("val_acc")
    return (f"{job['id']}  {job['name']:<24} {job['status']:<10} {done}/{total} done "
            f"(running {counts.get('running', 0)}, pruned {counts.get('pruned', 0)}, failed {counts.get('failed', 0)})"
            f"  best val_acc {_fmt(best_val)}")


def trial_document(params: dict[str, Any], recipe: dict[str, Any], layers: list[str], summary: dict[str, Any],
                   epochs: list[dict[str, Any]], device: str) -> dict[str, Any]:
    """What ``regsearch trial --json`` prints."""
    return {"params": params, "metrics": summary, "epochs": epochs, "recipe": recipe, "layers": layers, "device": device}


def print_trial(console: Console, document: dict[str, Any]) -> None:
    """The human form of a local trial: metrics, per-epoch curve, layer order, recipe."""
    summary = document["metrics"]
    metrics = Table(title=f"Trial on {document['device']}: " + ", ".join(f"{k}={_fmt(v, 3)}" for k, v in document["params"].items()))
    for column in (*METRIC_COLUMNS, "epochs_run"):
        metrics.add_column(column, justify="right")
    metrics.add_row(*(_fmt(summary.get(c)) for c in (*METRIC_COLUMNS, "epochs_run")))
    console.print(metrics)
    curve = Table(title="Per-epoch curve")
    for column in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"):
        curve.add_column(column, justify="right")
    for epoch in document["epochs"]:
        curve.add_row(*(_fmt(epoch[c]) for c in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")))
    console.print(curve)
    console.print("Layer order: " + " -> ".join(document["layers"]), highlight=False)
    console.print("Recipe:")
    console.print_json(json.dumps(document["recipe"]), indent=None)
