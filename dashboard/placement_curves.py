"""The job page's curves by placement (its "Convergence" section): each placement's mean val_acc and
train_loss per epoch over its complete search trials, with a band, beside the leaders' own curves,
and the report's convergence comparison in words (regsearch/evidence/convergence.py)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from regsearch.dashboard import data
from regsearch.dashboard.charts import epoch_axis, label, layout, placement_color

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
