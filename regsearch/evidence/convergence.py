"""The report's convergence section: every placement held to the job's one target
(:mod:`regsearch.domain.convergence` defines the target, the per-trial numbers and the
Kaplan-Meier medians), and the BN comparison said in words only when the intervals separate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from regsearch.domain.convergence import (
    Median,
    Target,
    job_target,
    km_median,
    separated,
    trial_convergence,
)
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import TrialState
from regsearch.domain.stats import mean_interval
from regsearch.evidence.groups import TrialDict, finite_number, metrics_of, params_of
from regsearch.evidence.models import ConvergenceStat, Grouping, MedianStat, TargetInfo

# What variance shift and recalibration add per trial (worker/variance_shift.py), averaged per group.
TRIAL_EXTRAS = ("variance_shift", "test_acc_before_recalibration", "test_acc_after_recalibration")


def target_setting(spec: JobSpec | Mapping[str, Any]) -> tuple[str, float | None]:
    """(the metric the target is on, objective.target or None), read leniently from a stored spec."""
    if isinstance(spec, JobSpec):
        task, given = getattr(spec, "task", None), getattr(spec.objective, "target", None)
    else:
        objective = spec.get("objective") if isinstance(spec.get("objective"), Mapping) else {}
        task, given = spec.get("task"), finite_number((objective or {}).get("target"))
    return ("val_loss" if task == "regression" else "val_acc"), given


def _done(trials: Sequence[TrialDict]) -> list[TrialDict]:
    """Complete trials with per-epoch rows: what the convergence numbers are over."""
    return [t for t in trials if t.get("state") == TrialState.COMPLETE and t.get("epochs")]


def the_target(spec: JobSpec | Mapping[str, Any], search: Sequence[TrialDict]) -> Target | None:
    metric, given = target_setting(spec)
    values = [v for t in search if t.get("state") == TrialState.COMPLETE
              for v in [finite_number(metrics_of(t).get(metric))] if v is not None]
    best = (min(values) if metric == "val_loss" else max(values)) if values else None
    return job_target(metric, given, best)


def seconds_median(observations: Any) -> Median:
    """The Kaplan-Meier median in seconds, withheld (None) unless at least half the trials reach the
    target: the trials' horizons differ in seconds (a fast trial's last epoch comes sooner), so over
    fewer than half the median would rest on whichever slow trials were still running."""
    median = km_median(observations)
    if 2 * median.reached < median.n:
        return Median(n=median.n, reached=median.reached, median=None, low=None, high=None)
    return median


def _median_stat(median: Median) -> MedianStat:
    return MedianStat(median=median.median, low=median.low, high=median.high)


def summarize(trials: Sequence[TrialDict], target: Target) -> ConvergenceStat:
    """A group's convergence: the share reaching the target, Kaplan-Meier medians of epochs and
    seconds to it (censored trials count as not yet there, never averaged), the mean train-loss area."""
    per_trial = [trial_convergence(t["epochs"], target) for t in _done(trials)]
    epochs = km_median((c["epochs_to_target"], c["epochs_run"]) for c in per_trial)
    seconds = seconds_median((c["seconds_to_target"], c["seconds_run"]) for c in per_trial)
    return ConvergenceStat(
        n=epochs.n, reached=epochs.reached, share=epochs.share, epochs_to_target=_median_stat(epochs),
        seconds_to_target=_median_stat(seconds),
        train_loss_area=mean_interval(c["train_loss_area"] for c in per_trial),
    )


def add_convergence(placements: Grouping, search: Sequence[TrialDict], target: Target | None) -> None:
    """Each placement group's convergence and its per-trial extras (variance shift, recalibration)."""
    members: dict[str, list[TrialDict]] = {}
    for trial in search:
        members.setdefault(str(params_of(trial).get("placement", "?")), []).append(trial)
    for group in placements.groups:
        trials = members.get(group.key, [])
        if target is not None:
            group.convergence = summarize(trials, target)
        done = [t for t in trials if t.get("state") == TrialState.COMPLETE]
        extras = {}
        for name in TRIAL_EXTRAS:
            values = [_mean_of(metrics_of(t).get(name)) for t in done]
            if any(v is not None for v in values):
                extras[name] = mean_interval(values)
        gains = [_gain(metrics_of(t)) for t in done]
        if any(g is not None for g in gains):  # what recalibration recovers, per trial
            extras["recalibration_gain"] = mean_interval(gains)
        group.extras = extras


def _gain(metrics: Mapping[str, Any]) -> float | None:
    before = finite_number(metrics.get("test_acc_before_recalibration"))
    after = finite_number(metrics.get("test_acc_after_recalibration"))
    return None if before is None or after is None else after - before


def _mean_of(value: Any) -> float | None:
    """A number, or the mean of a list of numbers (variance shift: one per BN slot)."""
    if isinstance(value, list):
        finite = [float(v) for v in value if finite_number(v) is not None]
        return sum(finite) / len(finite) if finite else None
    return finite_number(value)


def _in_words(median: Median, unit: str) -> str:
    if median.median is None:
        return f"no median (fewer than half reach it: {median.reached} of {median.n})"
    high = "more" if median.high is None else _fmt(median.high, unit)
    return f"{_fmt(median.median, unit)} {unit} [{_fmt(median.low, unit)}, {high}]"


def target_level(target: Target | TargetInfo) -> str:
    """The target as a level, ``val_acc >= 0.641`` (``val_loss <= 0.412``): the report's text and
    its Markdown section say it alike."""
    return f"{target.metric} {'>=' if target.metric != 'val_loss' else '<='} {target.value:.3f}"


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "?"
    return f"{value:.0f}" if unit == "epochs" else f"{value:.2f}"


def bn_statement(search: Sequence[TrialDict], target: Target) -> str:
    """"BN placements reach the target in X epochs vs Y without" only when the intervals separate;
    otherwise the numbers and that they cannot be separated."""
    done = _done(search)
    with_bn = [t for t in done if "bn" in str(params_of(t).get("placement", "")).split("-")
               and params_of(t).get("bn_layers") != "none"]
    without = [t for t in done if t not in with_bn]
    level = target_level(target)
    if not with_bn or not without:
        return f"Convergence to the target ({level}): no placements {'with' if not with_bn else 'without'} BN to compare."
    parts = []
    for unit, key, run in (("epochs", "epochs_to_target", "epochs_run"), ("s", "seconds_to_target", "seconds_run")):
        median = km_median if unit == "epochs" else seconds_median
        a = median((c[key], c[run]) for c in (trial_convergence(t["epochs"], target) for t in with_bn))
        b = median((c[key], c[run]) for c in (trial_convergence(t["epochs"], target) for t in without))
        text = f"{_in_words(a, unit)} with BN vs {_in_words(b, unit)} without"
        if separated(a, b):
            faster = "BN placements reach" if (a.median or 0) < (b.median or 0) else "Placements without BN reach"
            parts.append(f"{faster} the target in {text} (median, 95% interval; the intervals separate)")
        else:
            parts.append(f"{'epochs' if unit == 'epochs' else 'seconds'}: {text}; the intervals do not separate, "
                         "so neither is shown to reach it faster")
        if unit == "epochs":
            share = (f"{a.reached} of {a.n} trials with BN and {b.reached} of {b.n} without reach it; "
                     "the others are censored at their last epoch (Kaplan-Meier), never averaged")
    return f"Convergence to the target ({level}, {target.source}): " + "; ".join(parts) + f". {share}."


def target_info(target: Target | None) -> TargetInfo | None:
    return None if target is None else TargetInfo(metric=target.metric, value=target.value, source=target.source)


def group_median_text(stat: ConvergenceStat | None, unit: str) -> str:
    """A table cell: ``9 [7, 12]``, ``9 [7, –)`` when the upper end is open, ``–`` below half."""
    median = None if stat is None else (stat.epochs_to_target if unit == "epochs" else stat.seconds_to_target)
    if median is None or median.median is None:
        return "–"
    high = "–)" if median.high is None else f"{_fmt(median.high, unit)}]"
    return f"{_fmt(median.median, unit)} [{_fmt(median.low, unit)}, {high}"
