"""Trials into groups: the spec's objective, the bands, the per-group statistics, the seed groups."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from regsearch.domain.confirm import group_interval, is_search
from regsearch.domain.model_label import model_label
from regsearch.domain.progress import state_counts
from regsearch.domain.ranking import rank_by_seed_mean
from regsearch.domain.space import params_key
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import ACTIVE_TRIAL_STATES, TrialState
from regsearch.domain.stats import Interval, mean_interval
from regsearch.domain.stored_spec import StoredSpec
from regsearch.evidence.models import Confirmation, ConfirmedConfig, Group, Grouping

DROPOUT_BAND_WIDTH = 0.1
_EPS = 1e-9

TrialDict = Mapping[str, Any]


# -- the spec, read leniently -----------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    name: str | None
    metric: str
    direction: str
    n_objectives: int
    placements: list[str]
    confirm_top_k: int | None
    confirm_seeds: int | None
    base_seed: int
    objectives: tuple[tuple[str, str], ...] = ()  # every (metric, direction): what the ranking ranks by
    model: str | None = None  # the family and its knobs in one line (regsearch.domain.model_label)
    task: str = "classification"  # the job's task: its metrics and their ranges (regsearch.domain.metrics)


def read_setup(spec: JobSpec | Mapping[str, Any]) -> Setup:
    """What the report needs of the spec, read leniently (``regsearch.domain.stored_spec``): a
    stored spec that no longer validates still gets a report, never an error page."""
    view = StoredSpec.read(spec)
    task = (spec.get("task") if isinstance(spec, Mapping) else spec.task) or "classification"
    return Setup(
        name=view.name, metric=view.metric, direction=view.direction, n_objectives=len(view.objectives),
        placements=list(view.placements), confirm_top_k=view.confirm_top_k, confirm_seeds=view.confirm_seeds,
        base_seed=view.seed, objectives=view.objectives, model=model_label(spec), task=str(task),
    )


# -- helpers ----------------------------------------------------------------------------------
def finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def params_of(trial: TrialDict) -> Mapping[str, Any]:
    params = trial.get("params")
    return params if isinstance(params, Mapping) else {}


def metrics_of(trial: TrialDict) -> Mapping[str, Any]:
    metrics = trial.get("metrics")
    return metrics if isinstance(metrics, Mapping) else {}


def stat_of(trials: Iterable[TrialDict], metric: str, task: str = "classification") -> Interval:
    """``metric``'s interval over ``trials``, cut at its range on the job's ``task``."""
    return group_interval([{"metrics": metrics_of(t)} for t in trials], metric, task)


def _better(direction: str, mean: float | None) -> float:
    """Sort key: smaller is better, a missing mean last."""
    if mean is None:
        return math.inf
    return -mean if direction == "maximize" else mean


def overlap(a: Interval, b: Interval) -> bool:
    if a.low is None or a.high is None or b.low is None or b.high is None:
        return True  # an interval that does not exist cannot separate anything
    return a.low <= b.high and b.low <= a.high


def dropout_band(params: Mapping[str, Any]) -> tuple[str, str, float]:
    """(key, label, sort position) of a trial's dropout band."""
    rate = finite_number(params.get("dropout"))
    if rate is None or params.get("dropout_layers") == "none":
        return "none", "no dropout", math.inf
    index = min(math.floor(rate / DROPOUT_BAND_WIDTH + _EPS), round(1 / DROPOUT_BAND_WIDTH) - 1)
    low, high = index * DROPOUT_BAND_WIDTH, (index + 1) * DROPOUT_BAND_WIDTH
    return f"{low:.1f}-{high:.1f}", f"[{low:.1f}, {high:.1f})", low


def momentum_band(params: Mapping[str, Any]) -> tuple[str, str, float]:
    """(key, label, sort position) of a trial's BN momentum band (1-2-5 steps, log scale)."""
    momentum = finite_number(params.get("bn_momentum"))
    if momentum is None or momentum <= 0 or params.get("bn_layers") == "none":
        return "none", "no BN", math.inf
    if momentum >= 0.5 - _EPS:
        return "0.5-1", "[0.5, 1]", 0.5
    decade = math.floor(math.log10(momentum) + _EPS)
    mantissa = momentum / 10**decade
    low_m, high_m = (5, 10) if mantissa >= 5 - _EPS else (2, 5) if mantissa >= 2 - _EPS else (1, 2)
    low, high = round(low_m * 10.0**decade, 12), round(high_m * 10.0**decade, 12)
    return f"{low:g}-{high:g}", f"[{low:g}, {high:g})", low


def distinct_runs(trials: Sequence[TrialDict]) -> list[dict[str, Any]]:
    """One observation per distinct (parameters, seed): repeats become the mean of their metrics.

    A search may ask for a configuration it already ran (``placement: act`` has no parameters at
    all; a list-valued space repeats itself). With the same seed the repeat trains the same model,
    so counting it again would shrink the interval without adding evidence.
    """
    repeats: dict[str, list[TrialDict]] = {}
    for trial in trials:
        identity = json.dumps([params_of(trial), trial.get("seed")], sort_keys=True, default=str)
        repeats.setdefault(identity, []).append(trial)
    merged = []
    for runs in repeats.values():
        names = {name for run in runs for name in metrics_of(run)}
        metrics = {name: mean_interval(metrics_of(run).get(name) for run in runs).mean for name in names}
        merged.append({**runs[0], "metrics": metrics, "numbers": [run.get("number") for run in runs]})
    return merged


def _group(key: str, label: str, members: Sequence[TrialDict], metrics: Sequence[str], task: str) -> Group:
    done = [t for t in members if t.get("state") == TrialState.COMPLETE and metrics_of(t)]
    distinct = distinct_runs(done)
    return Group(
        key=key, label=label, rank=None, n_trials=len(members), n_complete=len(done), n_distinct=len(distinct),
        n_pruned=sum(t.get("state") == TrialState.PRUNED for t in members),
        n_failed=sum(t.get("state") == TrialState.FAILED for t in members),
        n_active=sum(t.get("state") in ACTIVE_TRIAL_STATES for t in members),
        metrics={m: stat_of(distinct, m, task) for m in metrics},
    )


def placement_grouping(setup: Setup, search: Sequence[TrialDict], metrics: Sequence[str]) -> Grouping:
    members: dict[str, list[TrialDict]] = {p: [] for p in setup.placements}
    for trial in search:
        members.setdefault(str(params_of(trial).get("placement", "?")), []).append(trial)
    groups = [_group(p, p, items, metrics, setup.task) for p, items in members.items()]
    groups.sort(key=lambda g: (_better(setup.direction, g.metrics[setup.metric].mean), -g.n_distinct, g.key))
    for rank, group in enumerate(g for g in groups if g.metrics[setup.metric].mean is not None):
        group.rank = rank + 1
    arrow = "higher" if setup.direction == "maximize" else "lower"
    return Grouping(
        by="placement", title=f"By placement (ranked by mean {setup.metric}, {arrow} is better)",
        description="The order of each block after its layer; groups hold complete search trials.",
        groups=groups,
    )


def band_grouping(by: Literal["dropout_band", "momentum_band"], search: Sequence[TrialDict],
                   metrics: Sequence[str], task: str = "classification") -> Grouping:
    band = dropout_band if by == "dropout_band" else momentum_band
    members: dict[tuple[float, str, str], list[TrialDict]] = {}
    for trial in search:
        key, label, position = band(params_of(trial))
        members.setdefault((position, key, label), []).append(trial)
    groups = [_group(key, label, members[(pos, key, label)], metrics, task) for pos, key, label in sorted(members)]
    if by == "dropout_band":
        return Grouping(by=by, title="By dropout band", groups=groups, description=(
            "Fixed 0.1-wide bands of the dropout rate: [0.1, 0.2) holds 0.1 <= dropout < 0.2; "
            "none: no dropout placed (or dropout_layers: none)."))
    return Grouping(by=by, title="By BN momentum band", groups=groups, description=(
        "1-2-5 steps on a log scale (PyTorch convention): [0.01, 0.02), [0.02, 0.05), [0.05, 0.1), ..., "
        "[0.5, 1]; no BN: no BN placed (or bn_layers: none)."))


def trial_counts(trials: Sequence[TrialDict]) -> dict[str, int]:
    """Trials per state (``regsearch.domain.progress.state_counts``, as the API's ``counts``)."""
    return state_counts(Counter(str(trial.get("state")) for trial in trials).items())


def confirmation_section(setup: Setup, current: Sequence[TrialDict], metrics: Sequence[str]) -> Confirmation:
    confirm_runs = [t for t in current if not is_search(t)]
    configs = []
    ranked = rank_by_seed_mean(current, metric=setup.metric, direction=setup.direction)
    for leader, group in ranked:
        if all(is_search(t) for t in group):
            break  # past the confirmed configurations: the rest ran once
        configs.append(ConfirmedConfig(
            rank=len(configs) + 1, number=int(leader["number"]), params=dict(params_of(leader)),
            config=config_key(params_of(leader)), numbers=[int(t["number"]) for t in group],
            seeds=[int(t["seed"]) if t.get("seed") is not None else setup.base_seed for t in group],
            metrics={m: stat_of(group, m, setup.task) for m in metrics},
        ))
    return Confirmation(
        requested=setup.confirm_top_k is not None, top_k=setup.confirm_top_k, seeds=setup.confirm_seeds,
        n_complete=sum(t.get("state") == TrialState.COMPLETE for t in confirm_runs),
        n_pending=sum(t.get("state") in ACTIVE_TRIAL_STATES for t in confirm_runs),
        n_failed=sum(t.get("state") in (TrialState.FAILED, TrialState.PRUNED) for t in confirm_runs),
        configs=configs,
    )


def config_key(params: Mapping[str, Any]) -> str:
    try:
        return params_key(dict(params))
    except (KeyError, TypeError, ValueError):
        return str(params.get("placement", "?"))
