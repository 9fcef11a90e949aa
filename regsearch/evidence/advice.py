"""The recommendation: what the ranking puts first, and how far the evidence carries it.

The advice agrees with the ranking by construction: the configuration it names is the first of
:func:`regsearch.domain.ranking.rank_configurations` (what ``GET /jobs/{id}/best`` lists first),
never another one picked by a tie-break. What it adds is how far that choice is supported:

- **Enough evidence first.** Every placement of the spec is a compared group; each needs at
  least ``MIN_RUNS`` (regsearch.domain.stats: as many as an interval needs) complete, distinct
  configurations (a repeat with the same seed counts once) for an interval. Below that the report says what is missing and recommends nothing (a
  cancelled job with one finished trial gets no confident recommendation).
- **Separated, or not.** The first configuration's placement is compared with every other on the
  objective's 95% intervals: "better than X: the intervals do not overlap", or plainly "cannot be
  separated from Y" and then the measure that chose (the ranking's: the highest mean over the seed
  group, or the highest single run), named. A placement as good within noise with fewer
  components (counted from the placement's tokens: BN, dropout) is named as such.
- The top two configurations of the ranking are compared too when both have seed groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from regsearch.domain.metrics import format_metric
from regsearch.domain.ranking import RankedConfig, rank_configurations
from regsearch.domain.stats import MIN_RUNS, Interval
from regsearch.evidence.groups import Setup, TrialDict, finite_number, overlap, params_of, stat_of
from regsearch.evidence.markdown import format_stat
from regsearch.evidence.models import Confirmation, Group, Grouping, Recommendation


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


def details(params: Mapping[str, Any]) -> str:
    """``bn-act-drop, dropout 0.31, bn_momentum 0.2, lr 0.003``: a configuration in one line."""
    parts = [str(params.get("placement", "?"))]
    for name, layers in (("dropout", "dropout_layers"), ("bn_momentum", "bn_layers"), ("lr", None),
                         ("weight_decay", None)):
        value = finite_number(params.get(name))
        if value is not None:
            where = params.get(layers, "all") if layers else "all"
            parts.append(f"{name} {value:.3g}" + ("" if where == "all" else f" on {where}"))
    return ", ".join(parts)


def components(placement: str) -> tuple[str, ...]:
    """What a placement adds to the plain layer, from its tokens: ("BN",), ("dropout",), both or none."""
    tokens = placement.split("-")
    return tuple(name for token, name in (("bn", "BN"), ("drop", "dropout")) if token in tokens)


def components_in_words(placement: str) -> str:
    found = components(placement)
    if len(found) == 1:
        return f"{found[0]} only"
    return "BN and dropout" if found else "neither BN nor dropout"


def listing(keys: Sequence[str]) -> str:
    return keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + f" and {keys[-1]}"


def _over(group: Group) -> str:
    n = group.n_distinct
    if n == group.n_complete:
        return f"{n} search trial{'s' if n != 1 else ''}"
    return f"{n} distinct configuration{'s' if n != 1 else ''} ({group.n_complete} trials)"


def _none(sentence: str, **fields: Any) -> Recommendation:
    return Recommendation(sentence=sentence, basis="none", number=None, placement=None, params=None, config=None,
                          placement_stat=None, runner_up=None, runner_up_stat=None, **fields)


def missing_configs(placements: Grouping) -> list[tuple[str, int]]:
    """(placement, distinct complete configurations it has) for each placement below ``MIN_RUNS``."""
    return [(g.key, g.n_distinct) for g in placements.groups if g.n_distinct < MIN_RUNS]


def _measure(metric: str, first: RankedConfig) -> str:
    """The measure the ranking chose the first configuration by, in words."""
    if first.confirmed:
        return f"the highest mean {metric} over its seed group ({len(first.runs)} runs)"
    return f"the highest {metric} of a single run (no configuration was re-run with other seeds)"


def recommend(setup: Setup, current: Sequence[TrialDict], placements: Grouping,
              confirmation: Confirmation) -> Recommendation:
    """The recommendation (the module doc has the rule)."""
    metric = setup.metric
    objectives = setup.objectives or ((metric, setup.direction),)
    ranking = [r for r in rank_configurations(current, objectives) if r.score is not None]
    if not ranking:
        return _none("No recommendation yet: no search trial has completed.")
    first = ranking[0]
    params = dict(params_of(first.trial))
    placement = str(params.get("placement", "?"))
    missing = missing_configs(placements)
    if missing:
        short = ", ".join(f"{key} has {n}" for key, n in missing)
        return _none(
            f"No recommendation yet: each placement needs at least {MIN_RUNS} complete, distinct configurations "
            f"to be compared, and {short}. The best so far, #{first.number} ({details(params)}, {metric} "
            f"{format_metric(metric, first.score)}), is not yet backed by a comparison.",
            decided_by="insufficient", missing={key: MIN_RUNS - n for key, n in missing})

    own: Interval = stat_of(first.runs, metric, setup.task)
    basis: Literal["confirmed", "single_run"] = "confirmed" if first.confirmed else "single_run"
    result = (f"{metric} {format_stat(metric, own)} over {own.n} seeds" if first.confirmed
              else f"{metric} {format_metric(metric, own.mean)} in a single run")
    sentence = f"{describe_placement(placement, params)} (#{first.number}: {details(params)}): {result}"

    by_key = {g.key: g for g in placements.groups}
    mine = by_key.get(placement)
    others = [g for g in placements.groups if g is not mine and g.metrics[metric].mean is not None]
    better = (lambda a, b: a > b) if setup.direction == "maximize" else (lambda a, b: a < b)
    runner = others[0] if others else None  # the groups are ranked by their mean
    reasons: list[str] = []
    tied: list[Group] = [mine] if mine is not None else []
    decided_by: str
    if mine is None or not others:
        decided_by = "only_placement"
        reasons.append(f"{placement} is the only placement compared")
    else:
        stat = mine.metrics[metric]
        sentence += f"; {placement} averages {format_stat(metric, stat)} over {_over(mine)}"
        if runner is not None:
            sentence += f" vs {format_stat(metric, runner.metrics[metric])} for {runner.key}"
        tied += [g for g in others if overlap(stat, g.metrics[metric])]
        below = [g.key for g in others if g not in tied and not better(g.metrics[metric].mean, stat.mean)]
        above = [g for g in others if g not in tied and better(g.metrics[metric].mean, stat.mean)]
        if len(tied) == 1 and not above:
            decided_by = "significant"
            reasons.append(f"{placement} is better than {listing(below)} on {metric}: their 95% intervals do not "
                           "overlap")
        else:
            decided_by = "within_noise" if len(tied) > 1 else "config_over_placement"
        if len(tied) > 1:
            names = listing([g.key for g in tied if g is not mine])
            reasons.append(f"{placement} cannot be separated from {names} on {metric} (their 95% intervals "
                           f"overlap), so the ranking's measure chooses: {_measure(metric, first)}")
            simpler = [g.key for g in tied if len(components(g.key)) < len(components(placement))]
            if simpler:
                named = listing([f"{k} ({components_in_words(k)})" for k in simpler])
                reasons.append(f"{named} {'does' if len(simpler) == 1 else 'do'} as well within noise with fewer "
                               f"components than {placement} ({components_in_words(placement)})")
        if above:
            reasons.append(f"{listing([g.key for g in above])} average{'s' if len(above) == 1 else ''} a better "
                           f"{metric} across the values tried (the intervals do not overlap): one tuned {placement} "
                           "configuration leads, not the placement on average")
    top_two = [r for r in ranking[:2] if r.confirmed]
    if len(top_two) == 2 and overlap(stat_of(top_two[0].runs, metric, setup.task),
                                     stat_of(top_two[1].runs, metric, setup.task)):
        reasons.append(f"the top configurations #{top_two[0].number} and #{top_two[1].number} cannot be separated "
                       f"over their seeds (intervals overlap); {_measure(metric, first)} puts #{first.number} first")
    reason = "; ".join(reasons)
    sentence += f"; {reason}." if reason else "."
    return Recommendation(
        sentence=sentence, basis=basis, number=first.number, placement=placement, params=params, config=own,
        placement_stat=mine.metrics[metric] if mine else None, runner_up=runner.key if runner else None,
        runner_up_stat=runner.metrics[metric] if runner else None, decided_by=decided_by,
        tied=[g.key for g in tied], reason=reason or None,
    )
