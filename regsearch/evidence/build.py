"""The recommendation, the warnings and the report itself."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from regsearch.domain.confirm import is_search
from regsearch.domain.jsonsafe import finite_or_none
from regsearch.domain.metrics import format_metric, task_metrics
from regsearch.domain.model_label import has_slot_names, slot_labels
from regsearch.domain.ranking import rank_configurations
from regsearch.domain.space import OPTIMIZER_PARAMS
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import ACTIVE_JOB_STATES, ACTIVE_TRIAL_STATES, TrialState
from regsearch.domain.stats import MIN_RUNS, Interval
from regsearch.evidence.advice import details, recommend
from regsearch.evidence.convergence import add_convergence, bn_statement, target_info, the_target
from regsearch.evidence.groups import (
    Setup,
    TrialDict,
    band_grouping,
    confirmation_section,
    metrics_of,
    overlap,
    params_of,
    placement_grouping,
    read_setup,
    trial_counts,
)
from regsearch.evidence.markdown import format_stat
from regsearch.evidence.models import (
    Comparison,
    Confirmation,
    Grouping,
    Recommendation,
    Report,
    ReportWarning,
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
    return (f"{what.capitalize()} {a} leads {b} by {format_metric(metric, difference)} {metric}, but their 95% "
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
    leader = next((g for g in placements.groups if g.rank == 1), None)
    if recommendation.placement and leader is not None and leader.key != recommendation.placement:
        warn("placement_vs_config",
             f"The best configuration, #{recommendation.number} ({details(recommendation.params or {})}), uses "
             f"{recommendation.placement}, while {leader.key} has the best mean {metric} "
             f"({format_stat(metric, leader.metrics[metric])}): one tuned configuration can lead while its "
             "placement does not on average over the values tried; the recommendation follows the ranking "
             "(/best's first).")
    if setup.n_objectives > 1:
        warn("multi_objective", f"The job has {setup.n_objectives} objectives; the report ranks by the first, "
                                f"{metric}.")
    return found


def _best_per_placement(setup: Setup, current: Sequence[TrialDict], placements: Grouping) -> None:
    """Each placement's first configuration in the ranking: with a searched rate, the placement at
    its best rate (the rate it needs, not the job's one constant)."""
    by_key = {g.key: g for g in placements.groups}
    for ranked in rank_configurations(current, setup.objectives or ((setup.metric, setup.direction),)):
        params = params_of(ranked.trial)
        group = by_key.get(str(params.get("placement")))
        if group is None or group.best is not None or ranked.score is None:
            continue
        group.best = {"number": ranked.number, setup.metric: ranked.score, "runs": len(ranked.runs),
                      **{name: params[name] for name in OPTIMIZER_PARAMS if name in params}}


# -- the report -------------------------------------------------------------------------------
def build_report(spec: JobSpec | Mapping[str, Any], trials: Sequence[TrialDict], *, job_id: str | None = None,
                 status: str | None = None, recipe: Mapping[str, Any] | None = None) -> Report:
    """The evidence for a job from its spec and its trials (API trial items; see the module doc).

    ``recipe``: any one trial's recipe (every trial of a job has the same slots); where it names
    them by the user's layers (``auto``), the report lists them.
    """
    setup = read_setup(spec)
    shown = task_metrics(setup.task)  # a regression job's columns: no accuracy (regsearch.domain.metrics)
    metrics = list(shown) + ([setup.metric] if setup.metric not in shown else [])
    current = [t for t in trials if not t.get("retried")]
    search = [t for t in current if is_search(t)]
    groupings = [
        placement_grouping(setup, search, metrics),
        band_grouping("dropout_band", search, metrics, setup.task),
        band_grouping("momentum_band", search, metrics, setup.task),
    ]
    _best_per_placement(setup, current, groupings[0])
    target = the_target(spec, search)
    add_convergence(groupings[0], search, target)
    confirmation = confirmation_section(setup, current, metrics)
    recommendation = recommend(setup, current, groupings[0], confirmation)
    comparison = _comparison(setup, groupings[0])
    report = Report(
        job_id=job_id, name=setup.name, status=status, metric=setup.metric,
        family=setup.model.split(" ", 1)[0] if setup.model else None, model=setup.model,
        slots=slot_labels(recipe) if has_slot_names(recipe) else None,
        direction="minimize" if setup.direction == "minimize" else "maximize", metrics=metrics,
        counts={"search": trial_counts(search), "confirm": trial_counts([t for t in current if not is_search(t)])},
        groupings=groupings, target=target_info(target),
        convergence=bn_statement(search, target) if target is not None and search else None, comparison=comparison, confirmation=confirmation, recommendation=recommendation,
        warnings=_warnings(setup, status, current, groupings, comparison, confirmation, recommendation),
    )
    return Report.model_validate(finite_or_none(report.model_dump()))
