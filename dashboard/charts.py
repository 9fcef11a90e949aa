"""Plotly figures for the pages: pure functions of DataFrames (unit-testable, no Streamlit).

One color per placement everywhere (``placement_color``), fixed by the placement's position in
``regsearch.domain.spec.all_placements()``, so ``bn-act-drop`` has the same color on every page and
every job. Plain SVG traces (no WebGL): they render in any browser, headless ones included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import cycle

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from regsearch.domain.spec import all_placements

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#bcbd22", "#17becf", "#393b79", "#637939",
)
OTHER = "#9e9e9e"
_ORDER = {p: i for i, p in enumerate(all_placements())}
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
HEIGHT = 360
LOG_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
LABELS = {
    "val_acc": "validation accuracy (val_acc)", "test_acc": "test accuracy (test_acc)",
    "train_acc": "training accuracy at the best epoch", "gap": "gap (train_acc − val_acc)",
    "epochs_to_converge": "epochs_to_converge", "seconds_per_epoch": "seconds_per_epoch",
    "val_auc": "val_auc (mean val_acc)", "dropout": "dropout", "bn_momentum": "bn_momentum",
    "val_loss": "val_loss",
}


def placement_color(placement: object) -> str:
    """The placement's color (the same on every page); grey for anything unknown."""
    index = _ORDER.get(str(placement))
    return PALETTE[index % len(PALETTE)] if index is not None else OTHER


def label(metric: str) -> str:
    return LABELS.get(metric, metric)


def _layout(fig: go.Figure, *, x: str | None = None, y: str | None = None, height: int = HEIGHT,
            legend: bool = True) -> go.Figure:
    # no template here: Streamlit applies its theme's (and a template copy per figure is slow)
    fig.update_layout(
        height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10},
        showlegend=legend, legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "title": None},
        hovermode="closest",
    )
    if x:
        fig.update_xaxes(title_text=x)
    if y:
        fig.update_yaxes(title_text=y)
    return fig


def _log_axis(fig: go.Figure, axis: str) -> None:
    """A log axis labelled 0.01, 0.02, 0.05, ... instead of plotly's bare minor digits."""
    getattr(fig, f"update_{axis}axes")(type="log", tickvals=LOG_TICKS, ticktext=[f"{t:g}" for t in LOG_TICKS])


def _epoch_axis(fig: go.Figure, epochs: pd.Series, **where: int) -> None:
    """Whole epochs on the x axis (no 1.5) while there are few of them."""
    last = epochs.max() if len(epochs) else 0
    if pd.notna(last) and last <= 20:
        fig.update_xaxes(dtick=1, **where)


def _placements(df: pd.DataFrame) -> list[str]:
    found = [str(p) for p in df["placement"].dropna().unique()]
    return sorted(found, key=lambda p: (_ORDER.get(p, len(_ORDER)), p))


# Hover data is numeric (customdata: number, dropout, bn_momentum): plotly validates a numeric
# array at once, but a list of strings or colors one element at a time (slow at 2,000 trials).
HOVER = "trial #%{customdata[0]}<br>dropout=%{customdata[1]:.3f}<br>bn_momentum=%{customdata[2]:.3g}"


def _custom(df: pd.DataFrame) -> np.ndarray:
    return df[["number", "dropout", "bn_momentum"]].to_numpy(dtype=float)


def _scatter_by_placement(df: pd.DataFrame, x: str, y: str, *, log_x: bool = False) -> go.Figure:
    fig = go.Figure()
    for placement in _placements(df):
        part = df[df["placement"] == placement]
        fig.add_trace(go.Scatter(
            x=part[x], y=part[y], mode="markers", name=placement, customdata=_custom(part),
            marker={"color": placement_color(placement), "size": 8, "opacity": 0.8, "line": {"width": 0}},
            hovertemplate=f"{placement}<br>{HOVER}<br>{x}=%{{x:.4g}}<br>{y}=%{{y:.4g}}<extra></extra>",
        ))
    if log_x:
        _log_axis(fig, "x")
    return _layout(fig, x=label(x), y=label(y))


def train_vs_val(gen: pd.DataFrame) -> go.Figure:
    """Training vs validation accuracy at the best epoch, one point per configuration.

    The distance below the diagonal is the generalization gap.
    """
    fig = _scatter_by_placement(gen, "val_acc", "train_acc")
    values = pd.concat([gen["val_acc"], gen["train_acc"]]).dropna()
    if len(values):
        lo, hi = float(values.min()), float(values.max())
        pad = max(0.01, (hi - lo) * 0.05)
        fig.add_trace(go.Scatter(x=[lo - pad, hi + pad], y=[lo - pad, hi + pad], mode="lines", name="no gap",
                                 line={"color": OTHER, "dash": "dash", "width": 1}, hoverinfo="skip"))
    return fig


def gap_vs_dropout(df: pd.DataFrame) -> go.Figure:
    """The gap against the dropout rate (trials whose placement has dropout)."""
    return _scatter_by_placement(df[df["dropout"].notna()], "dropout", "gap")


def by_momentum(df: pd.DataFrame, metric: str) -> go.Figure:
    """A metric against bn_momentum (log axis; trials whose placement has BN)."""
    return _scatter_by_placement(df[df["bn_momentum"].notna()], "bn_momentum", metric, log_x=True)


def box_by_placement(df: pd.DataFrame, metric: str) -> go.Figure:
    """Distribution of ``metric`` per placement: box plus every trial as a point, with n=..."""
    fig = go.Figure()
    data = df[df[metric].notna()]
    medians = data.groupby("placement")[metric].median().sort_values(ascending=metric in ("gap", "epochs_to_converge", "seconds_per_epoch"))
    for placement in medians.index:
        part = data[data["placement"] == placement]
        fig.add_trace(go.Box(
            y=part[metric], name=f"{placement} (n={len(part)})", boxpoints="all", jitter=0.4, pointpos=0,
            marker={"color": placement_color(placement), "size": 5, "opacity": 0.6},
            line={"color": placement_color(placement)}, customdata=_custom(part),
            hovertemplate=f"{placement}<br>{HOVER}<br>{metric}=%{{y:.4g}}<extra></extra>",
        ))
    return _layout(fig, y=label(metric), legend=False)


def leaders_accuracy(leaders: pd.DataFrame) -> go.Figure:
    """Train (best epoch), validation and held-out test accuracy of the leading configurations."""
    names = [f"#{r} trial {n}<br>{p}" for r, n, p in zip(leaders["rank"], leaders["number"], leaders["placement"])]
    fig = go.Figure()
    for metric, color in (("train_acc", "#c7c7c7"), ("val_acc", "#1f77b4"), ("test_acc", "#2ca02c")):
        fig.add_trace(go.Bar(x=names, y=leaders[metric], name=metric, marker_color=color,
                             hovertemplate=f"{metric}=%{{y:.4f}}<extra></extra>"))
    values = leaders[["train_acc", "val_acc", "test_acc"]].to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size:
        fig.update_yaxes(range=[max(0.0, float(finite.min()) - 0.05), min(1.0, float(finite.max()) + 0.02)])
    fig.update_layout(barmode="group")
    return _layout(fig, y="accuracy")


def curves_overlay(curves: pd.DataFrame, placements: Mapping[int, str], metric: str = "val_acc") -> go.Figure:
    """One line per trial of ``metric`` by epoch, colored by placement (dash tells trials apart)."""
    fig = go.Figure()
    dashes: dict[str, cycle[str]] = {}
    for number, part in curves.groupby("number", sort=False):
        placement = placements.get(int(number), "?")
        dash = next(dashes.setdefault(placement, cycle(DASHES)))
        fig.add_trace(go.Scatter(
            x=part["epoch"], y=part[metric], mode="lines+markers", name=f"#{int(number)} {placement}",
            line={"color": placement_color(placement), "dash": dash, "width": 2}, marker={"size": 4},
            hovertemplate=f"trial #{int(number)}<br>epoch %{{x}}<br>{metric}=%{{y:.4f}}<extra></extra>",
        ))
    _epoch_axis(fig, curves["epoch"])
    return _layout(fig, x="epoch", y=label(metric))


def dropout_momentum_map(df: pd.DataFrame, metric: str) -> go.Figure:
    """Dropout x bn_momentum, each trial colored by the objective (placements with both)."""
    data = df[df["dropout"].notna() & df["bn_momentum"].notna() & df[metric].notna()]
    fig = go.Figure(go.Scatter(
        x=data["dropout"], y=data["bn_momentum"], mode="markers", customdata=_custom(data),
        marker={"color": data[metric], "colorscale": "Viridis", "size": 9, "showscale": True,
                "colorbar": {"title": {"text": metric}}, "reversescale": metric in ("gap", "epochs_to_converge")},
        hovertemplate=f"{HOVER}<br>{metric}=%{{marker.color:.4f}}<extra></extra>",
    ))
    _log_axis(fig, "y")
    return _layout(fig, x="dropout", y="bn_momentum (log)", legend=False)


def importance_bars(importances: Mapping[str, float]) -> go.Figure:
    """Optuna's parameter importances, most important on top."""
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h",
                           marker_color="#1f77b4", hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    return _layout(fig, x="importance (normalized)", height=max(220, 60 + 40 * len(items)), legend=False)


def pareto_front(df: pd.DataFrame, objectives: Sequence[tuple[str, str]], mask: np.ndarray) -> go.Figure:
    """The first two objectives of every complete trial, the Pareto-optimal ones joined by a line."""
    (mx, _), (my, _) = objectives[0], objectives[1]
    fig = go.Figure()
    rest, front = df[~mask], df[mask].sort_values(mx)
    hover = f"{HOVER}<br>{mx}=%{{x:.4f}}<br>{my}=%{{y:.4f}}<extra></extra>"
    fig.add_trace(go.Scatter(x=rest[mx], y=rest[my], mode="markers", name="dominated", customdata=_custom(rest),
                             marker={"color": OTHER, "size": 7, "opacity": 0.6}, hovertemplate=hover))
    fig.add_trace(go.Scatter(x=front[mx], y=front[my], mode="lines", name="Pareto front", hoverinfo="skip",
                             line={"color": "#d62728", "shape": "hv", "width": 2}))
    for placement in _placements(front):
        part = front[front["placement"] == placement]
        fig.add_trace(go.Scatter(x=part[mx], y=part[my], mode="markers", name=f"front: {placement}",
                                 customdata=_custom(part), hovertemplate=f"{placement}<br>{hover}",
                                 marker={"color": placement_color(placement), "size": 11,
                                         "line": {"color": "#d62728", "width": 2}}))
    return _layout(fig, x=label(mx), y=label(my))


def optimization_history(hist: pd.DataFrame, metric: str) -> go.Figure:
    """The objective of each complete trial by trial number, and the best value so far."""
    fig = go.Figure()
    for placement in _placements(hist):
        part = hist[hist["placement"] == placement]
        fig.add_trace(go.Scatter(
            x=part["number"], y=part[metric], mode="markers", name=placement, customdata=_custom(part),
            marker={"color": placement_color(placement), "size": 7, "opacity": 0.8},
            hovertemplate=f"{placement}<br>{HOVER}<br>{metric}=%{{y:.4f}}<extra></extra>",
        ))
    fig.add_trace(go.Scatter(x=hist["number"], y=hist["best_so_far"], mode="lines", name="best so far",
                             line={"color": "#d62728", "shape": "hv", "width": 2}, hoverinfo="skip"))
    return _layout(fig, x="trial number", y=label(metric))


def trial_curves(epochs: pd.DataFrame) -> go.Figure:
    """Loss and accuracy by epoch, training and validation, side by side."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"), horizontal_spacing=0.08)
    for col, (train, val) in enumerate((("train_loss", "val_loss"), ("train_acc", "val_acc")), start=1):
        for metric, color, dash in ((train, "#ff7f0e", "dash"), (val, "#1f77b4", "solid")):
            fig.add_trace(go.Scatter(
                x=epochs["epoch"], y=epochs[metric], mode="lines+markers", name=metric,
                line={"color": color, "dash": dash}, marker={"size": 5},
                hovertemplate=f"epoch %{{x}}<br>{metric}=%{{y:.4f}}<extra></extra>",
            ), row=1, col=col)
        fig.update_xaxes(title_text="epoch", row=1, col=col)
        _epoch_axis(fig, epochs["epoch"], row=1, col=col)
    _layout(fig)
    fig.update_layout(margin={"t": 70}, legend={"y": 1.12})  # room for the subplot titles
    return fig


def placement_intervals(intervals: pd.DataFrame, metric: str) -> go.Figure:
    """Mean of ``metric`` per placement with its 95% interval as error bars, best first.

    A placement with one distinct run has a point and no bar (no interval from one run).
    """
    fig = go.Figure()
    for row in intervals.itertuples(index=False):
        has_bar = pd.notna(row.low) and pd.notna(row.high)
        fig.add_trace(go.Scatter(
            x=[f"{row.placement} (n={row.n})"], y=[row.mean], mode="markers", name=row.placement,
            marker={"color": placement_color(row.placement), "size": 11},
            error_y={"type": "data", "symmetric": False, "array": [row.high - row.mean if has_bar else 0],
                     "arrayminus": [row.mean - row.low if has_bar else 0], "visible": bool(has_bar),
                     "color": placement_color(row.placement), "thickness": 2, "width": 8},
            hovertemplate=(f"{row.placement}<br>mean {metric}=%{{y:.4f}}"
                           + (f"<br>95% interval [{row.low:.4f}, {row.high:.4f}]" if has_bar else "<br>one run: no interval")
                           + f"<br>n={row.n}<extra></extra>"),
        ))
    return _layout(fig, y=f"mean {label(metric)} ± 95% interval", legend=False)
