"""The recommendation, the warnings and the report itself."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from regsearch.domain.confirm import top_search_trials
from regsearch.evidence.groups import (
    ACTIVE_JOB_STATES,
    ACTIVE_STATES,
    MIN_GROUP,
    REPORT_METRICS,
    Setup,
    TrialDict,
    band_grouping,
    confirmation_section,
    finite_number,
    is_search,
    metrics_of,
    overlap,
    params_of,
    placement_grouping,
    read_setup,
    stat_of,
    state_counts,
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
    Stat,
)
from regsearch.domain.jsonsafe import finite_or_none
from regsearch.domain.spec import JobSpec


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


def _recommendation(setup: Setup, current: Sequence[TrialDict], placements: Grouping,
                    confirmation: Confirmation) -> Recommendation:
    metric = setup.metric
    if confirmation.configs:
        top = confirmation.configs[0]
        basis: Literal["confirmed", "single_run"] = "confirmed"
        number, params, own = top.number, top.params, top.metrics[metric]
    else:
        best = top_search_trials(current, metric=metric, direction=setup.direction, k=1)
        if not best:
            return Recommendation(
                sentence="No recommendation yet: no search trial has completed.", basis="none", number=None,
                placement=None, params=None, config=None, placement_stat=None, runner_up=None,
                runner_up_stat=None, epochs_to_converge=None, runner_up_epochs_to_converge=None)
        basis, number, params = "single_run", int(best[0]["number"]), dict(params_of(best[0]))
        own = stat_of(best, metric)
    placement = str(params.get("placement", "?"))
    by_key = {g.key: g for g in placements.groups}
    mine = by_key.get(placement)
    others = [g for g in placements.groups if g.key != placement and g.metrics[metric].mean is not None]
    runner = others[0] if others else None  # groups are sorted best first

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
        else:
            sentence += " (the only placement with complete trials)"
    return Recommendation(
        sentence=sentence + ".", basis=basis, number=number, placement=placement, params=dict(params),
        config=own, placement_stat=mine.metrics[metric] if mine else None,
        runner_up=runner.key if runner else None, runner_up_stat=runner.metrics[metric] if runner else None,
        epochs_to_converge=mine.metrics["epochs_to_converge"] if mine else None,
        runner_up_epochs_to_converge=runner.metrics["epochs_to_converge"] if runner else None,
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


def _noise_message(metric: str, what: str, a: str, a_stat: Stat, b: str, b_stat: Stat) -> str:
    if a_stat.low is None or b_stat.low is None:
        thin = a if a_stat.low is None else b
        return (f"Cannot separate {what} {a} from {b} on {metric}: {thin} has fewer than 2 complete runs, "
                "so it has no interval.")
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
    active = sum(t.get("state") in ACTIVE_STATES for t in current)
    if not any(t.get("state") == "complete" and metrics_of(t) for t in search):
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
        thin = [g for g in grouping.groups if g.n_distinct < MIN_GROUP and (g.n_trials or grouping.by == "placement")]
        if thin and any(g.n_complete for g in grouping.groups):
            listed = ", ".join(f"{g.label} (n={g.n_distinct})" for g in thin)
            warn("few_trials", f"{grouping.title.split(' (')[0]}: fewer than {MIN_GROUP} distinct complete "
                               f"configurations in {listed}; their intervals are missing or wide.")
    repeats = sum(g.n_complete - g.n_distinct for g in placements.groups)
    if repeats:
        warn("repeated_configs", f"{repeats} complete search trial{'s' if repeats != 1 else ''} repeated a "
                                 "configuration already run with the same seed, which adds no evidence: each "
                                 "distinct configuration counts once in the means.")
    pruned = sum(t.get("state") == "pruned" for t in search)
    if pruned:
        warn("pruned_left_out", f"{pruned} pruned trial{'s are' if pruned != 1 else ' is'} left out of the means: "
                                "pruning stops weak trials early, so a group with many pruned trials looks "
                                "better than it is.")
    if recommendation.basis == "single_run":
        if confirmation.requested:
            warn("not_confirmed", "The confirmation runs have not finished: the recommendation rests on one run "
                                  "per configuration so far.")
        else:
            warn("not_confirmed", "The recommendation rests on one run per configuration: add "
                                  "`confirm: {top_k: 3, seeds: 3}` to the spec to re-run the leaders with other "
                                  "seeds and see their spread.")
    ranked = [g for g in placements.groups if g.rank is not None]
    if recommendation.placement and ranked and ranked[0].key != recommendation.placement:
        warn("placement_vs_config",
             f"The best configuration uses {recommendation.placement}, but {ranked[0].key} has the better mean "
             f"{metric} over the search ({format_stat(metric, ranked[0].metrics[metric])}): its tuned "
             f"configuration wins, {ranked[0].key} wins on average over the dropout and momentum values tried.")
    if setup.n_objectives > 1:
        warn("multi_objective", f"The job has {setup.n_objectives} objectives; the report ranks by the first, "
                                f"{metric}.")
    return found


# -- the report -------------------------------------------------------------------------------
def build_report(spec: JobSpec | Mapping[str, Any], trials: Sequence[TrialDict], *, job_id: str | None = None,
                 status: str | None = None) -> Report:
    """The evidence for a job from its spec and its trials (API trial items; see the module doc)."""
    setup = read_setup(spec)
    metrics = list(REPORT_METRICS) + ([setup.metric] if setup.metric not in REPORT_METRICS else [])
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
        direction="minimize" if setup.direction == "minimize" else "maximize", metrics=metrics,
        counts={"search": state_counts(search), "confirm": state_counts([t for t in current if not is_search(t)])},
        groupings=groupings, comparison=comparison, confirmation=confirmation, recommendation=recommendation,
        warnings=_warnings(setup, status, current, groupings, comparison, confirmation, recommendation),
    )
    return Report.model_validate(finite_or_none(report.model_dump()))
