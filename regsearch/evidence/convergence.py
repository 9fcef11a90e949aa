"""The report's convergence section: every placement held to the job's one target
(:mod:`regsearch.domain.convergence` defines the target, the per-trial numbers and the
Kaplan-Meier medians), and the BN comparison said in words only when the intervals separate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from regsearch.domain.convergence import (
    EPOCHS_TO_TARGET,
    SECONDS_TO_TARGET,
    TRAIN_LOSS_AREA,
    Median,
    Target,
    TrialConvergence,
    job_target,
    km_median,
    separated,
    trial_convergence,
)
from regsearch.domain.metrics import format_metric
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


def _median_of(name: str, per_trial: Sequence[TrialConvergence]) -> Median:
    """The Kaplan-Meier median of ``epochs_to_target`` or ``seconds_to_target`` over the trials."""
    median = seconds_median if name == SECONDS_TO_TARGET else km_median
    return median(c.observation(name) for c in per_trial)


def _median_stat(median: Median) -> MedianStat:
    return MedianStat(median=median.median, low=median.low, high=median.high)


def summarize(trials: Sequence[TrialDict], target: Target) -> ConvergenceStat:
    """A group's convergence: the share reaching the target, Kaplan-Meier medians of epochs and
    seconds to it (censored trials count as not yet there, never averaged), the mean train-loss area."""
    per_trial = [trial_convergence(t["epochs"], target) for t in _done(trials)]
    epochs = _median_of(EPOCHS_TO_TARGET, per_trial)
    return ConvergenceStat(n=epochs.n, reached=epochs.reached, share=epochs.share, **{
        EPOCHS_TO_TARGET: _median_stat(epochs),
        SECONDS_TO_TARGET: _median_stat(_median_of(SECONDS_TO_TARGET, per_trial)),
        TRAIN_LOSS_AREA: mean_interval(c.metrics[TRAIN_LOSS_AREA] for c in per_trial),
    })


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


_UNITS = {EPOCHS_TO_TARGET: "epochs", SECONDS_TO_TARGET: "s"}  # in words: "9 epochs", "2.41 s"


def _in_words(median: Median, name: str) -> str:
    if median.median is None:
        return f"no median (fewer than half reach it: {median.reached} of {median.n})"
    high = "more" if median.high is None else _fmt(median.high, name)
    return f"{_fmt(median.median, name)} {_UNITS[name]} [{_fmt(median.low, name)}, {high}]"


def target_level(target: Target | TargetInfo) -> str:
    """The target as a level, ``val_acc >= 0.641`` (``val_loss <= 0.412``): the report's text and
    its Markdown section say it alike."""
    return f"{target.metric} {'>=' if target.metric != 'val_loss' else '<='} {target.value:.3f}"


def _fmt(value: float | None, name: str) -> str:
    """The metric table's format (regsearch.domain.metrics); ``?`` for an end not known."""
    return "?" if value is None else format_metric(name, float(value))


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
    bn_runs = [trial_convergence(t["epochs"], target) for t in with_bn]
    plain_runs = [trial_convergence(t["epochs"], target) for t in without]
    for name in (EPOCHS_TO_TARGET, SECONDS_TO_TARGET):
        a, b = _median_of(name, bn_runs), _median_of(name, plain_runs)
        text = f"{_in_words(a, name)} with BN vs {_in_words(b, name)} without"
        if separated(a, b):
            faster = "BN placements reach" if (a.median or 0) < (b.median or 0) else "Placements without BN reach"
            parts.append(f"{faster} the target in {text} (median, 95% interval; the intervals separate)")
        else:
            parts.append(f"{'epochs' if name == EPOCHS_TO_TARGET else 'seconds'}: {text}; the intervals do not "
                         "separate, so neither is shown to reach it faster")
        if name == EPOCHS_TO_TARGET:
            share = (f"{a.reached} of {a.n} trials with BN and {b.reached} of {b.n} without reach it; "
                     "the others are censored at their last epoch (Kaplan-Meier), never averaged")
    return f"Convergence to the target ({level}, {target.source}): " + "; ".join(parts) + f". {share}."


def target_info(target: Target | None) -> TargetInfo | None:
    return None if target is None else TargetInfo(metric=target.metric, value=target.value, source=target.source)


def group_median_text(stat: ConvergenceStat | Mapping[str, Any] | None, name: str) -> str:
    """A table cell for ``epochs_to_target`` or ``seconds_to_target`` of a group's convergence (the
    report's model or its JSON): ``9 [7, 12]``, ``9 [7, –)`` when the upper end is open, ``–`` below half."""
    if isinstance(stat, Mapping):
        stat = ConvergenceStat.model_validate(stat)
    median: MedianStat | None = None if stat is None else getattr(stat, name)
    if median is None or median.median is None:
        return "–"
    high = "–)" if median.high is None else f"{_fmt(median.high, name)}]"
    return f"{_fmt(median.median, name)} [{_fmt(median.low, name)}, {high}"
