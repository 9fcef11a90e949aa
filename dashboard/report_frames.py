"""The job report's tables for the pages (``regsearch.evidence``'s report as JSON in, DataFrames
out; pure, no I/O, no Streamlit): one grouping's table, the placements' intervals for the
error-bar chart, the confirmation runs' seed groups. ``dashboard/frames.py`` re-exports them."""

from __future__ import annotations

from typing import Any

import pandas as pd

REPORT_COLUMNS = ("n", "trials", "pruned", "failed")


def report_table(report: dict[str, Any], by: str) -> pd.DataFrame:
    """One grouping of a job's report (``regsearch.evidence``) as a table: counts, then each metric
    as ``mean [low, high]`` (the report's own format), the objective's sd beside it."""
    from regsearch.domain.metrics import format_metric
    from regsearch.evidence import Interval, format_stat

    grouping = next((g for g in report.get("groupings", []) if g["by"] == by), None)
    metric, metrics = report.get("metric", "val_acc"), list(report.get("metrics", []))
    first = ["rank", "placement"] if by == "placement" else ["band"]
    columns = [*first, *REPORT_COLUMNS, *metrics[:1], f"{metrics[0]} sd" if metrics else "sd", *metrics[1:]]
    rows = []
    for group in (grouping or {}).get("groups", []):
        stats = {m: Interval.model_validate(group["metrics"][m]) for m in metrics}
        lead = [group["rank"], group["key"]] if by == "placement" else [group["label"]]
        rows.append([*lead, group["n_distinct"], group["n_complete"], group["n_pruned"], group["n_failed"],
                     *(format_stat(m, stats[m]) for m in metrics[:1]), format_metric(metric, stats[metrics[0]].std),
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
    rows = [(g["key"], g["rank"], *(g["metrics"][metric][k] for k in ("n", "mean", "low", "high")),
             bool(g["metrics"][metric].get("clipped")))
            for g in grouping["groups"] if g["metrics"][metric]["mean"] is not None]
    df = pd.DataFrame(rows, columns=["placement", "rank", "n", "mean", "low", "high", "clipped"])
    for column in ("mean", "low", "high"):
        df[column] = df[column].astype("float64")
    return df


def confirmation_table(report: dict[str, Any]) -> pd.DataFrame:
    """The seed groups of the confirmation runs: one row per re-run configuration."""
    from regsearch.domain.metrics import format_metric
    from regsearch.evidence import Interval, format_stat

    metric = report.get("metric", "val_acc")
    # the task's pair (a regression job's report lists val_rmse, not val_acc: regsearch.domain.metrics)
    pair = ("val_rmse", "test_rmse") if "val_rmse" in (report.get("metrics") or ()) else ("val_acc", "test_acc")
    shown = [metric, *(m for m in pair if m != metric)]
    rows = [[c["rank"], c["number"], c["config"], c["metrics"][metric]["n"], ", ".join(map(str, c["seeds"])),
             *(format_stat(m, Interval.model_validate(c["metrics"][m])) for m in shown),
             format_metric(metric, c["metrics"][metric]["std"])]
            for c in report.get("confirmation", {}).get("configs", [])]
    return pd.DataFrame(rows, columns=["rank", "trial", "configuration", "runs", "seeds", *shown, f"{metric} sd"])
