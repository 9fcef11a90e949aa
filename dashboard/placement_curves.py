"""The job page's curves by placement (its "Convergence" section): each placement's mean val_acc and
train_loss per epoch over its complete search trials, with a band, beside the leaders' own curves,
and the report's convergence comparison in words and per placement (regsearch/evidence/convergence.py;
the measures' names, headings and formats are the metric table's, regsearch/domain/metrics.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from regsearch.dashboard import data
from regsearch.dashboard.charts import epoch_axis, label, layout, placement_color
from regsearch.domain.convergence import EPOCHS_TO_TARGET, SECONDS_TO_TARGET, TRAIN_LOSS_AREA
from regsearch.domain.metrics import METRICS, NO_VALUE

CAPTION = ("Each placement's mean over its complete search trials; the band is the mean +- 1.96 standard errors "
           "(the 95% interval of the mean). The leaders' own curves are above.")


def placement_bands(curves: pd.DataFrame, placements: Mapping[int, str], metric: str = "val_acc") -> go.Figure:
    """Each placement's mean ``metric`` per epoch over its trials, with a band: the mean +- 1.96
    standard errors (the normal 95% interval of the mean; none where one trial ran that epoch)."""
    fig = go.Figure()
    frame = curves.assign(placement=curves["number"].map(lambda n: placements.get(int(n), "?")))
    for placement, part in frame.groupby("placement", sort=True):
        stats = part.groupby("epoch")[metric].agg(["mean", "std", "count"]).reset_index()
        half = 1.96 * stats["std"].fillna(0.0) / np.sqrt(stats["count"])
        color = placement_color(placement)
        epochs = list(stats["epoch"])
        fig.add_trace(go.Scatter(
            x=epochs + epochs[::-1], y=list(stats["mean"] + half) + list((stats["mean"] - half)[::-1]),
            fill="toself", fillcolor=color, opacity=0.15, line={"width": 0}, hoverinfo="skip", showlegend=False,
            legendgroup=str(placement)))
        fig.add_trace(go.Scatter(
            x=stats["epoch"], y=stats["mean"], mode="lines", name=f"{placement} (n={int(stats['count'].max())})",
            line={"color": color, "width": 2}, legendgroup=str(placement),
            hovertemplate=f"{placement}<br>epoch %{{x}}<br>mean {metric}=%{{y:.4f}}<extra></extra>"))
    epoch_axis(fig, curves["epoch"])
    return layout(fig, x="epoch", y=f"mean {label(metric)}")


def convergence_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    """Each placement held to the job's target, as the report's table gives it: reached, the
    Kaplan-Meier medians of epochs and seconds to the target with their intervals, the train-loss area."""
    from regsearch.evidence import Interval, format_stat
    from regsearch.evidence.convergence import group_median_text

    placements = next((g for g in report.get("groupings") or [] if g.get("by") == "placement"), {})
    rows = []
    for group in placements.get("groups") or []:
        stat = group.get("convergence")
        if not stat:
            continue
        area = stat.get(TRAIN_LOSS_AREA)
        rows.append({
            "placement": str(group.get("key")), "reached": f"{stat['reached']}/{stat['n']}",
            **{f"{METRICS[name].label} [95% CI]": group_median_text(stat, name)
               for name in (EPOCHS_TO_TARGET, SECONDS_TO_TARGET)},
            str(METRICS[TRAIN_LOSS_AREA].label): format_stat(TRAIN_LOSS_AREA, Interval.model_validate(area))
            if area else NO_VALUE,
        })
    return rows


@st.cache_resource(max_entries=128, show_spinner=False)
def _figure(curves: pd.DataFrame, placements: tuple[tuple[int, str], ...], metric: str) -> go.Figure:
    """Built once per distinct data: a refresh that changed nothing redraws at once."""
    return placement_bands(curves, dict(placements), metric)


def draw(url: str, job_id: str, done: pd.DataFrame) -> None:
    """The two charts (val_acc, train_loss) side by side and the comparison in words."""
    curves = data.all_curves(url, job_id, tuple(int(n) for n in done["number"]))
    if curves.empty:
        return
    placements = tuple(zip(done["number"].astype(int), done["placement"].astype(str)))
    left, right = st.columns(2)
    left.markdown("**Mean val_acc per epoch, by placement**")
    left.plotly_chart(_figure(curves, placements, "val_acc"), width="stretch")
    right.markdown("**Mean train_loss per epoch, by placement**")
    right.plotly_chart(_figure(curves, placements, "train_loss"), width="stretch")
    st.caption(CAPTION)
    found = data.report(url, job_id)
    if found and found.get("convergence"):
        st.markdown(found["convergence"])
    rows = convergence_rows(found) if found else []
    if rows:
        from regsearch.evidence.convergence import target_level
        from regsearch.evidence.models import TargetInfo

        target = found.get("target") if found else None
        level = f" ({target_level(TargetInfo.model_validate(target))}, {target['source']})" if target else ""
        st.markdown(f"**Each placement held to the common target**{level}")
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
