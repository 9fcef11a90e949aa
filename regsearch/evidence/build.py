"""The recommendation, the warnings and the report itself."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from regsearch.domain.confirm import is_search
from regsearch.domain.jsonsafe import finite_or_none
from regsearch.domain.metrics import SHOWN_METRICS
from regsearch.domain.model_label import has_slot_names, slot_labels
from regsearch.domain.ranking import rank_configurations
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import ACTIVE_JOB_STATES, ACTIVE_TRIAL_STATES, TrialState
from regsearch.domain.stats import MIN_RUNS, Interval
from regsearch.evidence.groups import (
    Setup,
    TrialDict,
    band_grouping,
    confirmation_section,
    finite_number,
    metrics_of,
    overlap,
    params_of,
    placement_grouping,
    read_setup,
    stat_of,
    trial_counts,
)
from regsearch.evidence.markdown import format_stat, format_value
from regsearch.evidence.models import (
    Comparison,
    Confirmation,
    Group,
    Grouping,
    Recommendation,
    Report,
    ReportWarning,
)


# -- the recommendation -----------------------------------------------------------------------
def describe_placement(placement: str, params: Mapping[str, Any]) -> str:
    """``bn-act-drop`` + its rates -> "Put BN before the activation and dropout ≈0.2 after the activation"."""
    tokens = placement.split("-")
    if "act" not in tokens:
        return f"Use {placement}"
    act = tokens.index("act")
    has_bn = "bn" in tokens and params.get("bn_layers") != "none"
    has_drop = "drop" in tokens and params.get("dropout_layers") != "none"
    parts = []
    if has_bn:
        parts.append(f"BN {'before' if tokens.index('bn') < act else 'after'} the activation")
    if has_drop:
        drop, rate = tokens.index("drop"), finite_number(params.get("dropout"))
        if has_bn and (tokens.index("bn") < act) == (drop < act):  # same side: say where against BN
            where = "before BN" if drop < tokens.index("bn") else "after BN"
        else:
            where = "before the activation" if drop < act else "after the activation"
        parts.append(f"dropout{f' ≈{rate:.2g}' if rate is not None else ''} {where}")
    if not parts:
        return "Use neither BN nor dropout"
    text = "Put " + " and ".join(parts)
    if not has_bn:
        text += ", without BN"
    if not has_drop:
        text += ", without dropout"
    return text


def _details(params: Mapping[str, Any]) -> str:
    parts = [str(params.get("placement", "?"))]
    for name, layers in (("dropout", "dropout_layers"), ("bn_momentum", "bn_layers")):
        value = finite_number(params.get(name))
        if value is not None:
            where = params.get(layers, "all")
            parts.append(f"{name} {value:.3g}" + ("" if where == "all" else f" on {where}"))
    return ", ".join(parts)


def _over(group: Group) -> str:
    n = group.n_distinct
    if n == group.n_complete:
        return f"{n} search trial{'s' if n != 1 else ''}"
    return f"{n} distinct configuration{'s' if n != 1 else ''} ({group.n_complete} trials)"


# The recommendation follows the placement comparison that the warnings use: the leader wins when
# its 95% interval clears every other placement's; when it overlaps some (no significant
# difference) a stated tie-break picks among them: fewer components, then faster, then more stable.
TIE_BREAKS = ("fewer_components", "faster", "more_stable")


def _components(placement: str) -> tuple[str, ...]:
    tokens = placement.split("-")
    return tuple(name for token, name in (("bn", "BN"), ("drop", "dropout")) if token in tokens)


def _components_in_words(placement: str) -> str:
    found = _components(placement)
    if len(found) == 1:
        return f"{found[0]} only"
    return "BN and dropout" if found else "neither BN nor dropout"


def _listing(keys: Sequence[str]) -> str:
    return keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + f" and {keys[-1]}"


def _choose_placement(metric: str, ranked: Sequence[Group]) -> tuple[Group, list[Group], str, str]:
    """(chosen placement, the placements within noise of the leader, what decided, why in words)."""
    leader, rest = ranked[0], list(ranked[1:])
    lead = leader.metrics[metric]
    if not rest:
        return leader, [leader], "only_placement", f"{leader.key} is the only placement with complete trials"
    if lead.low is None:
        return leader, [leader], "too_few_runs", (
            f"{leader.key} has the best mean {metric}, but too few runs (n={lead.n}) for an interval: whether it beats "
            f"{rest[0].key} is not established")
    thin = [g.key for g in rest if g.metrics[metric].low is None]
    tied = [leader, *(g for g in rest if g.metrics[metric].low is not None and overlap(lead, g.metrics[metric]))]
    if len(tied) == 1:
        clear = [g.key for g in rest if g.key not in thin]
        reason = (f"{leader.key} is better than {_listing(clear)} on {metric}: their 95% intervals do not overlap"
                  if clear else f"{leader.key} has the best mean {metric}")
        if thin:
            reason += f" ({_listing(thin)}: too few runs to compare)"
        return leader, tied, "significant", reason
    names = _listing([g.key for g in tied])
    why = f"No significant difference in {metric} between {names} (their 95% intervals overlap), so a tie-break decides"
    fewest = min(len(_components(g.key)) for g in tied)
    simple = [g for g in tied if len(_components(g.key)) == fewest]
    if len(simple) == 1:
        others = ", ".join(f"{g.key} {_components_in_words(g.key)}" for g in tied if g is not simple[0])
        return simple[0], tied, "fewer_components", (
            f"{why}: fewer components ({simple[0].key} uses {_components_in_words(simple[0].key)}, {others})")
    speed = "seconds_per_epoch"
    fastest = min(simple, key=lambda g: _lower_first(g.metrics[speed].mean))
    close = [g for g in simple if g is fastest or overlap(fastest.metrics[speed], g.metrics[speed])]
    same = f"{_listing([g.key for g in simple])} are equally simple ({_components_in_words(simple[0].key)})"
    if len(close) == 1 and fastest.metrics[speed].mean is not None:
        others = ", ".join(f"{format_stat(speed, g.metrics[speed])} for {g.key}" for g in simple if g is not fastest)
        return fastest, tied, "faster", (
            f"{why}: {same}, then faster ({fastest.key} takes {format_stat(speed, fastest.metrics[speed])} s/epoch "
            f"vs {others}; the intervals do not overlap)")
    steady = min(close, key=lambda g: (_lower_first(g.metrics[metric].std), g.rank or 0))
    not_faster = "none is clearly faster (their s/epoch intervals overlap)"
    spread = steady.metrics[metric].std
    if spread is not None and [g.metrics[metric].std for g in close].count(spread) == 1:
        others = ", ".join(f"{format_value(metric, g.metrics[metric].std)} for {g.key}" for g in close if g is not steady)
        return steady, tied, "more_stable", (
            f"{why}: {same}, {not_faster}, then more stable ({steady.key} has the smallest spread, sd "
            f"{format_value(metric, spread)} {metric} vs {others})")
    return close[0], tied, "higher_mean", f"{why}: {same}, {not_faster}, equally stable; the higher mean decides"


def _lower_first(value: float | None) -> float:
    """Sort key: the smaller value first, a missing one last."""
    return float("inf") if value is None else value


def _config_in(setup: Setup, current: Sequence[TrialDict], confirmation: Confirmation, placement: str | None
               ) -> tuple[Literal["confirmed", "single_run"], int, dict[str, Any], Interval] | None:
    """The configuration to recommend in ``placement`` (any, when None): the first of the job's
    ranking (regsearch.domain.ranking, what ``/best`` lists) whose placement it is and that has a
    value of the report's metric. A confirmed one comes with its seed group's statistics, an
    unconfirmed one with its single run's."""
    objectives = setup.objectives or ((setup.metric, setup.direction),)
    for ranked in rank_configurations(current, objectives):
        params = dict(params_of(ranked.trial))
        if ranked.score is None or (placement is not None and params.get("placement") != placement):
            continue
        basis: Literal["confirmed", "single_run"] = "confirmed" if ranked.confirmed else "single_run"
        return basis, ranked.number, params, stat_of(ranked.runs, setup.metric)
    return None


def _recommendation(setup: Setup, current: Sequence[TrialDict], placements: Grouping,
                    confirmation: Confirmation) -> Recommendation:
    metric = setup.metric
    ranked = [g for g in placements.groups if g.rank is not None]
    chosen = tied = None
    decided_by, reason = None, None
    if ranked:
        chosen, tied, decided_by, reason = _choose_placement(metric, ranked)
    found = _config_in(setup, current, confirmation, chosen.key if chosen else None)
    if found is None:
        return Recommendation(
            sentence="No recommendation yet: no search trial has completed.", basis="none", number=None,
            placement=None, params=None, config=None, placement_stat=None, runner_up=None,
            runner_up_stat=None, epochs_to_converge=None, runner_up_epochs_to_converge=None)
    basis, number, params, own = found
    placement = str(params.get("placement", "?"))
    mine = chosen
    # the placement it is compared with: the leader when a tie-break chose another, else the runner-up
    runner = next((g for g in ranked if g is not mine), None) if mine is not None else None

    if basis == "confirmed":
        result = f"{metric} {format_stat(metric, own)} over {own.n} seeds"
    else:
        result = f"{metric} {format_value(metric, own.mean)} in a single run"
    sentence = f"{describe_placement(placement, params)} ({_details(params)}): {result}"
    if mine is not None and mine.metrics[metric].mean is not None:
        sentence += f"; {placement} averages {format_stat(metric, mine.metrics[metric])} over {_over(mine)}"
        if runner is not None:
            sentence += f" vs {format_stat(metric, runner.metrics[metric])} for {runner.key}"
            mine_e, runner_e = mine.metrics["epochs_to_converge"].mean, runner.metrics["epochs_to_converge"].mean
            if mine_e is not None and runner_e is not None:
                sentence += f", and converges in {mine_e:.1f} epochs vs {runner_e:.1f}"
    if decided_by in (*TIE_BREAKS, "higher_mean"):
        sentence = f"{reason}. {sentence}."
    else:
        sentence += f"; {reason}." if reason else "."
    return Recommendation(
        sentence=sentence, basis=basis, number=number, placement=placement, params=dict(params),
        config=own, placement_stat=mine.metrics[metric] if mine else None,
        runner_up=runner.key if runner else None, runner_up_stat=runner.metrics[metric] if runner else None,
        epochs_to_converge=mine.metrics["epochs_to_converge"] if mine else None,
        runner_up_epochs_to_converge=runner.metrics["epochs_to_converge"] if runner else None,
        decided_by=decided_by, tied=[g.key for g in tied] if tied else [], reason=reason,
    )


# -- warnings ---------------------------------------------------------------------------------
def _comparison(setup: Setup, placements: Grouping) -> Comparison | None:
    ranked = [g for g in placements.groups if g.rank is not None]
    if len(ranked) < 2:
        return None
    leader, runner = ranked[0].metrics[setup.metric], ranked[1].metrics[setup.metric]
    difference = leader.mean - runner.mean if leader.mean is not None and runner.mean is not None else None
    return Comparison(metric=setup.metric, leader=ranked[0].key, runner_up=ranked[1].key, difference=difference,
                      overlap=overlap(leader, runner))


def _noise_message(metric: str, what: str, a: str, a_stat: Interval, b: str, b_stat: Interval) -> str:
    if a_stat.low is None or b_stat.low is None:
        thin = a if a_stat.low is None else b
        return (f"Cannot separate {what} {a} from {b} on {metric}: {thin} has fewer than {MIN_RUNS} complete runs, "
                f"too few runs for an interval.")
    difference = abs((a_stat.mean or 0.0) - (b_stat.mean or 0.0))
    return (f"{what.capitalize()} {a} leads {b} by {format_value(metric, difference)} {metric}, but their 95% "
            f"intervals overlap ({format_stat(metric, a_stat)} vs {format_stat(metric, b_stat)}): "
            "the difference is within noise.")


def _warnings(setup: Setup, status: str | None, current: Sequence[TrialDict], groupings: Sequence[Grouping],
              comparison: Comparison | None, confirmation: Confirmation,
              recommendation: Recommendation) -> list[ReportWarning]:
    metric = setup.metric
    found: list[ReportWarning] = []

    def warn(code: str, message: str) -> None:
        found.append(ReportWarning(code=code, message=message))

    search = [t for t in current if is_search(t)]
    active = sum(t.get("state") in ACTIVE_TRIAL_STATES for t in current)
    if not any(t.get("state") == TrialState.COMPLETE and metrics_of(t) for t in search):
        warn("no_complete_trials", "No search trial has completed yet: there is nothing to compare.")
    if status in ACTIVE_JOB_STATES or active:
        unfinished = f"{active} trial{'s are' if active != 1 else ' is'} not finished"
        where = f"The job is {status} and {unfinished}" if status in ACTIVE_JOB_STATES else unfinished.capitalize()
        warn("partial", f"{where}: these numbers are partial.")
    placements = groupings[0]
    if comparison is not None and comparison.overlap:
        by_key = {g.key: g.metrics[metric] for g in placements.groups}
        warn("within_noise", _noise_message(metric, "placement", comparison.leader, by_key[comparison.leader],
                                            comparison.runner_up, by_key[comparison.runner_up]))
    if len(confirmation.configs) >= 2:
        first, second = confirmation.configs[0], confirmation.configs[1]
        if overlap(first.metrics[metric], second.metrics[metric]):
            warn("within_noise", _noise_message(metric, "configuration", f"#{first.number}", first.metrics[metric],
                                                f"#{second.number}", second.metrics[metric]))
    for grouping in groupings:
        thin = [g for g in grouping.groups if g.n_distinct < MIN_RUNS and (g.n_trials or grouping.by == "placement")]
        if thin and any(g.n_complete for g in grouping.groups):
            listed = ", ".join(f"{g.label} (n={g.n_distinct})" for g in thin)
            warn("few_trials", f"{grouping.title.split(' (')[0]}: fewer than {MIN_RUNS} distinct complete "
                               f"configurations in {listed}: too few runs for an interval.")
    repeats = sum(g.n_complete - g.n_distinct for g in placements.groups)
    if repeats:
        warn("repeated_configs", f"{repeats} complete search trial{'s' if repeats != 1 else ''} repeated a "
                                 "configuration already run with the same seed, which adds no evidence: each "
                                 "distinct configuration counts once in the means.")
    pruned = sum(t.get("state") == TrialState.PRUNED for t in search)
    if pruned:
        warn("pruned_left_out", f"{pruned} pruned trial{'s are' if pruned != 1 else ' is'} left out of the means: "
                                "pruning stops weak trials early, so a group with many pruned trials looks "
                                "better than it is.")
    if recommendation.basis == "single_run":
        if confirmation.configs:
            warn("not_confirmed", f"None of the confirmed configurations uses {recommendation.placement}: the "
                                  "recommendation rests on its best single run.")
        elif confirmation.requested:
            warn("not_confirmed", "The confirmation runs have not finished: the recommendation rests on one run "
                                  "per configuration so far.")
        else:
            warn("not_confirmed", "The recommendation rests on one run per configuration: add "
                                  "`confirm: {top_k: 3, seeds: 3}` to the spec to re-run the leaders with other "
                                  "seeds and see their spread.")
    best = _config_in(setup, current, confirmation, None)  # the best configuration, whatever its placement
    if recommendation.placement and best is not None and best[2].get("placement") != recommendation.placement:
        kind = "confirmed configuration" if best[0] == "confirmed" else "single run"
        warn("placement_vs_config",
             f"The best {kind}, #{best[1]} ({_details(best[2])}, {metric} {format_value(metric, best[3].mean)}), "
             f"uses {best[2].get('placement')}, not the recommended {recommendation.placement}: one tuned "
             "configuration can lead while its placement does not on average over the dropout and momentum "
             "values tried; the recommendation follows the placement comparison.")
    if setup.n_objectives > 1:
        warn("multi_objective", f"The job has {setup.n_objectives} objectives; the report ranks by the first, "
                                f"{metric}.")
    return found


# -- the report -------------------------------------------------------------------------------
def build_report(spec: JobSpec | Mapping[str, Any], trials: Sequence[TrialDict], *, job_id: str | None = None,
                 status: str | None = None, recipe: Mapping[str, Any] | None = None) -> Report:
    """The evidence for a job from its spec and its trials (API trial items; see the module doc).

    ``recipe``: any one trial's recipe (every trial of a job has the same slots); where it names
    them by the user's layers (``auto``), the report lists them.
    """
    setup = read_setup(spec)
    metrics = list(SHOWN_METRICS) + ([setup.metric] if setup.metric not in SHOWN_METRICS else [])
    current = [t for t in trials if not t.get("retried")]
    search = [t for t in current if is_search(t)]
    groupings = [
        placement_grouping(setup, search, metrics),
        band_grouping("dropout_band", search, metrics),
        band_grouping("momentum_band", search, metrics),
    ]
    confirmation = confirmation_section(setup, current, metrics)
    recommendation = _recommendation(setup, current, groupings[0], confirmation)
    comparison = _comparison(setup, groupings[0])
    report = Report(
        job_id=job_id, name=setup.name, status=status, metric=setup.metric,
        family=setup.model.split(" ", 1)[0] if setup.model else None, model=setup.model,
        slots=slot_labels(recipe) if has_slot_names(recipe) else None,
        direction="minimize" if setup.direction == "minimize" else "maximize", metrics=metrics,
        counts={"search": trial_counts(search), "confirm": trial_counts([t for t in current if not is_search(t)])},
        groupings=groupings, comparison=comparison, confirmation=confirmation, recommendation=recommendation,
        warnings=_warnings(setup, status, current, groupings, comparison, confirmation, recommendation),
    )
    return Report.model_validate(finite_or_none(report.model_dump()))
