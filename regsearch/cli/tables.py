"""Terminal output for the CLI: progress, the placement comparison and the best configuration."""

from __future__ import annotations

import json
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


def _layers(params: dict[str, Any]) -> str:
    parts = []
    if "dropout_layers" in params:
        parts.append(f"drop:{params['dropout_layers']}")
    if "bn_layers" in params:
        parts.append(f"bn:{params['bn_layers']}")
    return " ".join(parts) or "-"


def comparison_table(document: dict[str, Any]) -> Table:
    """The report's placements (``GET /jobs/{id}/report``), ranked, with their 95% intervals."""
    from regsearch.evidence import Report, format_stat

    report = Report.model_validate(document)
    table = Table(title=f"Placements compared (ranked by mean {report.metric}, 95% intervals)")
    for column in ("placement", "done", "pruned", "failed", f"{report.metric} mean", "test_acc", "gap", "converge ep."):
        table.add_column(column, justify="left" if column == "placement" else "right", no_wrap=column == "placement")
    for group in report.grouping("placement").groups:
        table.add_row(
            group.key, str(group.n_complete), str(group.n_pruned), str(group.n_failed),
            *(format_stat(m, group.metrics.get(m)) for m in (report.metric, "test_acc", "gap", "epochs_to_converge")),
        )
    return table


def _over_seeds(confirmation: dict[str, Any] | None, metric: str) -> str:
    """``mean ± std [low, high]`` of a metric over a confirmed configuration's seeds."""
    summary = (confirmation or {}).get("metrics", {}).get(metric) or {}
    if summary.get("mean") is None:
        return "-"
    if summary.get("std") is None:
        return _fmt(summary["mean"])
    std = f"{summary['std']:.2g}"  # significant digits: a spread of 0.0035 must not print as 0
    return f"{_fmt(summary['mean'])} ±{std} [{_fmt(summary['low'], 3)}, {_fmt(summary['high'], 3)}]"


def best_table(items: list[dict[str, Any]]) -> Table:
    confirmed = any(item.get("confirmation") for item in items)
    title = "Best configurations" + (" (confirmed ones ranked by the mean over seeds, 95% interval)" if confirmed else "")
    table = Table(title=title)
    columns = ["#", "placement", "dropout", "bn_momentum", "layers", "val_acc", "test_acc", "gap", "converge ep."]
    if confirmed:
        columns += ["runs", "val_acc over seeds", "test_acc over seeds"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("placement", "layers") else "right",
                         no_wrap=column in ("placement", "layers"))
    for item in items:
        params, metrics = item["params"], item["metrics"]
        row = [str(item["number"]), params["placement"], _fmt(params.get("dropout"), 3), _fmt(params.get("bn_momentum"), 3),
               _layers(params), *(_fmt(metrics.get(c)) for c in ("val_acc", "test_acc", "gap", "epochs_to_converge"))]
        if confirmed:
            confirmation = item.get("confirmation")
            row += [str(confirmation["n"]) if confirmation else "1", _over_seeds(confirmation, "val_acc"),
                    _over_seeds(confirmation, "test_acc")]
        table.add_row(*row)
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
    """(finished trials, n_trials + planned confirmation runs) of a job from the API's job document."""
    counts = job.get("counts", {})
    done = sum(int(counts.get(k, 0)) for k in ("complete", "pruned", "failed"))
    total = int(job.get("n_trials") or job.get("spec", {}).get("budget", {}).get("n_trials", 0) or 0)
    return done, total + int(job.get("n_confirm") or 0)


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
