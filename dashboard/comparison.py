"""The tables behind the "Compare jobs" page: pure functions of reports and rankings (no I/O).

Two or more jobs side by side: each job's placement groups from its report
(``regsearch.evidence.build_report``: mean and 95% interval per placement over its distinct
configurations) and each job's leaders from the one ranking (``regsearch.domain.ranking``, what
``/best`` and the job page show).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from regsearch.dashboard.frames import objective_label
from regsearch.domain.ranking import RankedConfig
from regsearch.domain.space import params_key
from regsearch.domain.spec import all_placements

OVERLAY_COLUMNS = ["job", "job_id", "placement", "rank", "n", "mean", "low", "high"]
LEADER_COLUMNS = ["job", "rank", "number", "config", "placement", "dropout", "bn_momentum", "objective", "score",
                  "runs", "confirmed", "front", "val_acc", "test_acc", "gap", "job_id"]

__all__ = ["LEADER_COLUMNS", "OVERLAY_COLUMNS", "common_metrics", "job_labels", "leaders_frame",
           "placement_overlay", "placement_table"]


def job_labels(job_ids: Sequence[str], names: Mapping[str, str]) -> dict[str, str]:
    """A label per job: its name, with the id where two chosen jobs share a name."""
    counts = pd.Series([names.get(j, j) for j in job_ids]).value_counts()
    return {j: names.get(j, j) if counts[names.get(j, j)] == 1 else f"{names.get(j, j)} ({j})" for j in job_ids}


def common_metrics(reports: Sequence[Mapping[str, Any]]) -> list[str]:
    """The metrics every report summarizes per group, in the first report's order."""
    if not reports:
        return []
    shared = set.intersection(*(set(r["metrics"]) for r in reports))
    return [m for m in reports[0]["metrics"] if m in shared]


def placement_overlay(reports: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str], metric: str) -> pd.DataFrame:
    """One row per (job, placement) with data: the report's mean, 95% interval and n of ``metric``."""
    rows = []
    for job_id, report in reports.items():
        grouping = next(g for g in report["groupings"] if g["by"] == "placement")
        for group in grouping["groups"]:
            stat = (group.get("metrics") or {}).get(metric) or {}
            if stat.get("mean") is None:
                continue
            rows.append({"job": labels.get(job_id, job_id), "job_id": job_id, "placement": group["key"],
                         "rank": group.get("rank"), "n": stat.get("n", 0), "mean": stat["mean"],
                         "low": stat.get("low"), "high": stat.get("high")})
    frame = pd.DataFrame(rows, columns=OVERLAY_COLUMNS)
    for column in ("mean", "low", "high"):
        frame[column] = pd.to_numeric(frame[column]).astype("float64")
    return frame


def placement_table(overlay: pd.DataFrame) -> pd.DataFrame:
    """Placements as rows, jobs as columns: ``mean [low, high] (n=..)`` of the overlay's metric."""
    if overlay.empty:
        return pd.DataFrame(columns=["placement"])

    def cell(row: Any) -> str:
        interval = f" [{row.low:.4f}, {row.high:.4f}]" if pd.notna(row.low) and pd.notna(row.high) else ""
        return f"{row.mean:.4f}{interval} (n={int(row.n)})"

    cells = overlay.assign(cell=[cell(r) for r in overlay.itertuples(index=False)])
    jobs = list(dict.fromkeys(overlay["job"]))
    table = cells.pivot(index="placement", columns="job", values="cell").reindex(columns=jobs).fillna("–")
    order = {p: i for i, p in enumerate(all_placements())}  # the placements' one order, as the charts'
    rows = sorted(table.index, key=lambda p: (order.get(str(p), len(order)), str(p)))
    return table.loc[rows].reset_index().rename_axis(columns=None)


def leaders_frame(ranking: Mapping[str, Sequence[RankedConfig]], labels: Mapping[str, str],
                  objectives: Mapping[str, Sequence[tuple[str, str]]]) -> pd.DataFrame:
    """Each job's leaders in ranking order: the configuration, the score it was ranked by (its
    seed-group mean on the first objective), its runs, and the search trial's own metrics."""
    rows = []
    for job_id, ranked in ranking.items():
        metric, direction = (list(objectives.get(job_id) or []) or [("val_acc", "maximize")])[0]
        for entry in ranked:
            params = dict(entry.trial.get("params") or {})
            metrics = dict(entry.trial.get("metrics") or {})
            try:
                config = params_key(params)
            except (KeyError, TypeError, ValueError):
                config = str(params.get("placement", "?"))
            rows.append({
                "job": labels.get(job_id, job_id), "rank": entry.rank, "number": entry.number, "config": config,
                "placement": params.get("placement"), "dropout": params.get("dropout"),
                "bn_momentum": params.get("bn_momentum"), "objective": objective_label(metric, direction),
                "score": entry.score, "runs": len(entry.runs), "confirmed": entry.confirmed, "front": entry.front,
                **{m: metrics.get(m) for m in ("val_acc", "test_acc", "gap")}, "job_id": job_id,
            })
    frame = pd.DataFrame(rows, columns=LEADER_COLUMNS)
    for column in ("dropout", "bn_momentum", "score", "val_acc", "test_acc", "gap"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame
