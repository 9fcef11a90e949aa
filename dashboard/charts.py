"""Plotly figures for the pages: pure functions of DataFrames (unit-testable, no Streamlit).

One color per placement everywhere (``placement_color``), fixed by the placement's position in
``regsearch.domain.spec.all_placements()``, so ``bn-act-drop`` has the same color on every page and
every job. Plain SVG traces (no WebGL): they render in any browser, headless ones included; the
one exception is the parallel coordinates (plotly draws ``parcoords`` lines with WebGL only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import cycle

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from regsearch.dashboard.frames import objective_label
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
    "epochs_to_95pct_best": "epochs_to_95pct_best", "seconds_per_epoch": "seconds_per_epoch",
    "mean_val_acc": "mean_val_acc (over the epochs run)", "dropout": "dropout", "bn_momentum": "bn_momentum",
    "val_loss": "val_loss",
}


def placement_color(placement: object) -> str:
    """The placement's color (the same on every page); grey for anything unknown."""
    index = _ORDER.get(str(placement))
    return PALETTE[index % len(PALETTE)] if index is not None else OTHER


def label(metric: str) -> str:
    return LABELS.get(metric, metric)


def layout(fig: go.Figure, *, x: str | None = None, y: str | None = None, height: int = HEIGHT,
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


def epoch_axis(fig: go.Figure, epochs: pd.Series, **where: int) -> None:
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
    return layout(fig, x=label(x), y=label(y))


def train_vs_val(gen: pd.DataFrame) -> go.Figure:
    """Training vs validation accuracy at the best epoch, one point per configuration.

    x: val_acc, y: train_acc, so a point's height above the dashed diagonal is its gap
    (train_acc − val_acc): the points above it fit better than they generalize.
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
    medians = data.groupby("placement")[metric].median().sort_values(ascending=metric in ("gap", "epochs_to_95pct_best", "seconds_per_epoch"))
    for placement in medians.index:
        part = data[data["placement"] == placement]
        fig.add_trace(go.Box(
            y=part[metric], name=f"{placement} (n={len(part)})", boxpoints="all", jitter=0.4, pointpos=0,
            marker={"color": placement_color(placement), "size": 5, "opacity": 0.6},
            line={"color": placement_color(placement)}, customdata=_custom(part),
            hovertemplate=f"{placement}<br>{HOVER}<br>{metric}=%{{y:.4g}}<extra></extra>",
        ))
    return layout(fig, y=label(metric), legend=False)


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
    return layout(fig, y="accuracy")


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
    epoch_axis(fig, curves["epoch"])
    return layout(fig, x="epoch", y=label(metric))


def dropout_momentum_map(df: pd.DataFrame, metric: str) -> go.Figure:
    """Dropout x bn_momentum, each trial colored by the objective (placements with both)."""
    data = df[df["dropout"].notna() & df["bn_momentum"].notna() & df[metric].notna()]
    fig = go.Figure(go.Scatter(
        x=data["dropout"], y=data["bn_momentum"], mode="markers", customdata=_custom(data),
        marker={"color": data[metric], "colorscale": "Viridis", "size": 9, "showscale": True,
                "colorbar": {"title": {"text": metric}}, "reversescale": metric in ("gap", "epochs_to_95pct_best")},
        hovertemplate=f"{HOVER}<br>{metric}=%{{marker.color:.4f}}<extra></extra>",
    ))
    _log_axis(fig, "y")
    return layout(fig, x="dropout", y="bn_momentum (log)", legend=False)


def importance_bars(importances: Mapping[str, float]) -> go.Figure:
    """Optuna's parameter importances, most important on top."""
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h",
                           marker_color="#1f77b4", hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    return layout(fig, x="importance (normalized)", height=max(220, 60 + 40 * len(items)), legend=False)


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
    return layout(fig, x=label(mx), y=label(my))


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
    return layout(fig, x="trial number", y=label(metric))


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
        epoch_axis(fig, epochs["epoch"], row=1, col=col)
    layout(fig)
    fig.update_layout(margin={"t": 70}, legend={"y": 1.12})  # room for the subplot titles
    return fig


def placement_intervals(intervals: pd.DataFrame, metric: str) -> go.Figure:
    """Mean of ``metric`` per placement with its 95% interval as error bars, best first.

    The intervals are the report's (regsearch.domain.stats.mean_interval): they stay inside the
    metric's range. A placement with fewer than 3 distinct runs has a point and no bar.
    """
    from regsearch.domain.stats import MIN_RUNS, TOO_FEW_RUNS

    fig = go.Figure()
    for row in intervals.itertuples(index=False):
        has_bar = pd.notna(row.low) and pd.notna(row.high)
        cut = " (cut at the metric's range)" if getattr(row, "clipped", False) else ""
        fig.add_trace(go.Scatter(
            x=[f"{row.placement} (n={row.n})"], y=[row.mean], mode="markers", name=row.placement,
            marker={"color": placement_color(row.placement), "size": 11},
            error_y={"type": "data", "symmetric": False, "array": [row.high - row.mean if has_bar else 0],
                     "arrayminus": [row.mean - row.low if has_bar else 0], "visible": bool(has_bar),
                     "color": placement_color(row.placement), "thickness": 2, "width": 8},
            hovertemplate=(f"{row.placement}<br>mean {metric}=%{{y:.4f}}"
                           + (f"<br>95% interval [{row.low:.4f}, {row.high:.4f}]{cut}" if has_bar
                              else f"<br>{TOO_FEW_RUNS} (under {MIN_RUNS}): no interval")
                           + f"<br>n={row.n}<extra></extra>"),
        ))
    return layout(fig, y=f"mean {label(metric)} ± 95% interval", legend=False)


# -- parallel coordinates and the comparison of jobs -------------------------------------------
NONE_LABEL = "none"  # a parameter a trial does not have (no dropout rate without dropout placed)


def _categorical_dimension(values: pd.Series, name: str, order: Sequence[str] | None = None) -> dict[str, object]:
    shown = values.map(lambda v: NONE_LABEL if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    categories = list(order) if order is not None else sorted(shown.unique())
    categories += sorted(set(shown) - set(categories))
    codes = {c: i for i, c in enumerate(categories)}
    return {"label": name, "values": shown.map(codes).to_numpy(dtype=float),
            "tickvals": list(range(len(categories))), "ticktext": categories,
            "range": [-0.5, len(categories) - 0.5] if len(categories) == 1 else [0, len(categories) - 1]}


def _nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) inside [lo, hi]."""
    raw = (hi - lo) / max(1, target - 1)
    power = 10.0 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = np.ceil(lo / step - 1e-9) * step
    return [round(float(v), 10) + 0.0 for v in np.arange(first, hi + step * 1e-6, step)]  # + 0.0: no "-0"


def _numeric_dimension(values: pd.Series, name: str, *, log: bool = False) -> dict[str, object]:
    """A numeric axis (log10 for ``log``, labelled in the parameter's own units); trials without
    the parameter sit on a "none" tick below the range."""
    present = values.dropna().astype(float)
    shown = np.log10(present.clip(lower=1e-12)) if log else present
    lo, hi = float(shown.min()), float(shown.max())
    if hi - lo < 1e-9:  # one value: an axis around it
        pad = 0.5 if log else 0.1
        lo, hi = lo - pad, hi + pad
    if log:
        ticks = [t for t in LOG_TICKS if lo - 1e-9 <= np.log10(t) <= hi + 1e-9]
        tickvals, ticktext = [float(np.log10(t)) for t in ticks], [f"{t:g}" for t in ticks]
    else:
        tickvals = _nice_ticks(lo, hi)
        ticktext = [f"{v:g}" for v in tickvals]
    out = values.astype(float).copy()
    out[values.notna()] = shown
    if values.isna().any():
        none_at = lo - 0.15 * (hi - lo)
        out[values.isna()] = none_at
        tickvals, ticktext, lo = [none_at, *tickvals], [NONE_LABEL, *ticktext], none_at
    return {"label": f"{name} (log)" if log else name, "values": out.to_numpy(dtype=float),
            "tickvals": tickvals, "ticktext": ticktext, "range": [lo, hi]}


def parallel_coordinates(df: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> go.Figure:
    """One line per complete trial through its parameters and its objective values, colored by
    the first objective (drag along an axis to keep a range of it).

    Placement and the layer selections are categorical axes (a layer selection only when it
    varies); ``bn_momentum`` is on a log axis; a trial without dropout or BN sits on "none".
    Plotly draws the lines with WebGL (its only WebGL trace on these pages).
    """
    data = df[df[objectives[0][0]].notna()]
    dimensions = [_categorical_dimension(data["placement"], "placement", _placements(data))]
    for name, log in (("dropout", False), ("bn_momentum", True)):
        if data[name].notna().any():
            dimensions.append(_numeric_dimension(data[name], name, log=log))
    for name in ("dropout_layers", "bn_layers"):
        if name in data and data[name].dropna().astype(str).nunique() > 1:
            dimensions.append(_categorical_dimension(data[name], name))
    for metric, direction in objectives:
        values = data[metric].astype(float)
        dimensions.append({"label": objective_label(metric, direction), "tickformat": ".3f",
                           "values": values.fillna(values.min()).to_numpy(dtype=float)})
    metric, direction = objectives[0]
    fig = go.Figure(go.Parcoords(
        dimensions=dimensions,
        line={"color": data[metric].to_numpy(dtype=float), "colorscale": "Viridis", "showscale": True,
              "reversescale": direction == "minimize", "colorbar": {"title": {"text": metric}}},
        labelangle=0, labelside="top",
    ))
    fig.update_layout(height=HEIGHT + 60, margin={"l": 60, "r": 40, "t": 60, "b": 20})
    return fig


def job_color(index: int) -> str:
    """The color of the index-th job on the comparison page (jobs, not placements, are compared)."""
    return PALETTE[index % len(PALETTE)]


def jobs_placement_overlay(overlay: pd.DataFrame, metric: str) -> go.Figure:
    """Each job's mean ``metric`` per placement with its 95% interval, side by side per placement.

    ``overlay``: one row per (job, placement) with ``job``, ``placement``, ``mean``, ``low``,
    ``high``, ``n`` (``regsearch.dashboard.comparison.placement_overlay``). A group with fewer
    than 3 distinct runs has a point and no bar, as on the job page.
    """
    fig = go.Figure()
    order = sorted(overlay["placement"].unique(), key=lambda p: (_ORDER.get(str(p), len(_ORDER)), str(p)))
    for index, (job, part) in enumerate(overlay.groupby("job", sort=False)):
        has_bar = part["low"].notna() & part["high"].notna()
        fig.add_trace(go.Scatter(
            x=part["placement"], y=part["mean"], mode="markers", name=str(job), offsetgroup=str(index),
            marker={"color": job_color(index), "size": 10},
            error_y={"type": "data", "symmetric": False, "array": (part["high"] - part["mean"]).where(has_bar, 0),
                     "arrayminus": (part["mean"] - part["low"]).where(has_bar, 0),
                     "color": job_color(index), "thickness": 2, "width": 6},
            customdata=part[["n"]].to_numpy(dtype=float),
            hovertemplate=f"{job}<br>%{{x}}<br>mean {metric}=%{{y:.4f}}<br>n=%{{customdata[0]:.0f}}<extra></extra>",
        ))
    fig.update_layout(scattermode="group", scattergap=0.5)
    fig.update_xaxes(categoryorder="array", categoryarray=order)
    values = overlay[["mean", "low", "high"]].to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size:  # the differences are the point: an axis around the values, not from 0
        lo, hi = float(finite.min()), float(finite.max())
        pad = max(0.01, (hi - lo) * 0.15)
        fig.update_yaxes(range=[lo - pad, hi + pad])
    return layout(fig, x="placement", y=f"mean {label(metric)} ± 95% interval")
