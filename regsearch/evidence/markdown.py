"""The report as Markdown (``regsearch report``, the README), and the number formats it shares."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from regsearch.domain.metrics import METRICS, NO_VALUE, format_metric
from regsearch.domain.states import TrialState
from regsearch.domain.stats import MIN_RUNS, TOO_FEW_RUNS, Interval
from regsearch.evidence.models import Grouping, Report

CLIPPED_MARK = "†"  # after an interval cut at its metric's range
CLIPPED_NOTE = (f"{CLIPPED_MARK} the t-interval reached past what the metric can be (accuracies [0, 1], gap [-1, 1], "
                "epochs to converge [1, epochs], s/epoch >= 0) and is cut there.")
# In a table a mean without an interval carries a mark, not words: a row stays one line.
TOO_FEW_MARK = "‡"
TOO_FEW_NOTE = f"{TOO_FEW_MARK} {TOO_FEW_RUNS}: fewer than {MIN_RUNS} runs, the mean alone (no interval)."
TABLE_NOTES = {CLIPPED_MARK: CLIPPED_NOTE, TOO_FEW_MARK: TOO_FEW_NOTE}  # a table's marks and their footnotes


def format_stat(metric: str, stat: Interval | None, *, marked: bool = False) -> str:
    """``0.647 [0.621, 0.673]``; ``0.978 [0.907, 1.000]†`` when cut at the metric's range;
    ``0.550 (too few runs)`` below 3 runs (``0.550‡`` when ``marked``: in a table, whose
    footnote :data:`TOO_FEW_NOTE` explains it); ``–`` without data."""
    if stat is None or stat.mean is None:
        return NO_VALUE
    if stat.low is None or stat.high is None:
        return format_metric(metric, stat.mean) + (TOO_FEW_MARK if marked else f" ({TOO_FEW_RUNS})")
    text = f"{format_metric(metric, stat.mean)} [{format_metric(metric, stat.low)}, {format_metric(metric, stat.high)}]"
    return text + CLIPPED_MARK if stat.clipped else text


# -- markdown ---------------------------------------------------------------------------------
_HEADS = {"val_acc": "val_acc", "test_acc": "test_acc", "gap": "gap", "seconds_per_epoch": "s/epoch",
          **{name: m.label for name, m in METRICS.items() if m.label}}


def _row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _table(report: Report, grouping: Grouping) -> list[str]:
    metrics = [m for m in report.metrics]
    first = ["rank", "placement"] if grouping.by == "placement" else ["band"]
    head = [*first, "n", "trials", "pruned", "failed", *(f"{_HEADS.get(m, m)} mean [95% CI]" for m in metrics[:1]),
            f"{_HEADS.get(metrics[0], metrics[0])} sd", *(_HEADS.get(m, m) for m in metrics[1:])]
    lines = [_row(head), _row(["---"] * len(first) + ["---:"] * (len(head) - len(first)))]
    for group in grouping.groups:
        stats = group.metrics
        lead = [group.rank or "–", group.key] if grouping.by == "placement" else [group.label]
        lines.append(_row([*lead, group.n_distinct, group.n_complete, group.n_pruned, group.n_failed,
                           format_stat(metrics[0], stats[metrics[0]]), format_metric(metrics[0], stats[metrics[0]].std),
                           *(format_stat(m, stats[m]) for m in metrics[1:])]))
    return lines


def best_per_placement(report: Report, grouping: Grouping) -> list[str]:
    """"Each placement at its best rate": a line per placement whose configurations searched a rate."""
    rated = [g for g in grouping.groups if g.best and ("lr" in g.best or "weight_decay" in g.best)]
    if not rated:
        return []
    metric = report.metric
    lines = [f"Each placement at its best rate (its first configuration in the ranking, {metric}):", ""]
    for group in rated:
        best = group.best or {}
        rate = ", ".join(f"{name} {best[name]:.3g}" for name in ("lr", "weight_decay") if name in best)
        runs = f" over {best['runs']} seeds" if best.get("runs", 1) > 1 else ""
        lines.append(f"- {group.key}: {format_metric(metric, best.get(metric))}{runs} at {rate} (#{best['number']})")
    return [*lines, ""]


def convergence_section(report: Report, grouping: Grouping) -> list[str]:
    """Each placement held to the job's target (Kaplan-Meier medians; censored trials never averaged),
    the comparison in words, and the variance shift / BN recalibration where measured."""
    from regsearch.domain.convergence import EPOCHS_TO_TARGET, SECONDS_TO_TARGET, TRAIN_LOSS_AREA
    from regsearch.evidence.convergence import group_median_text, target_level

    if report.target is None:
        return []
    target = report.target
    level = target_level(target)
    lines = [f"#### Convergence to a common target: {level} ({target.source})", ""]
    if report.convergence:
        lines += [report.convergence, ""]
    order = ("variance_shift", "test_acc_before_recalibration", "test_acc_after_recalibration", "recalibration_gain")
    extras = [name for name in order if any(name in g.extras for g in grouping.groups)]
    heads = {"variance_shift": "variance shift", "test_acc_before_recalibration": "test_acc before recal.",
             "test_acc_after_recalibration": "test_acc after recal.", "recalibration_gain": "recal. gain"}
    lines.append(_row(["placement", "reached", f"{METRICS[EPOCHS_TO_TARGET].label} [95% CI]",
                       f"{METRICS[SECONDS_TO_TARGET].label} [95% CI]", str(METRICS[TRAIN_LOSS_AREA].label),
                       *(heads.get(e, e) for e in extras)]))
    lines.append(_row(["---", *(["---:"] * (4 + len(extras)))]))
    for group in grouping.groups:
        stat = group.convergence
        reached = f"{stat.reached}/{stat.n}" if stat is not None else "–"
        area = format_stat(TRAIN_LOSS_AREA, stat.train_loss_area) if stat is not None else NO_VALUE
        lines.append(_row([group.key, reached, group_median_text(stat, EPOCHS_TO_TARGET),
                           group_median_text(stat, SECONDS_TO_TARGET), area,
                           *(format_stat(e, group.extras.get(e)) for e in extras)]))
    lines += ["", ("Medians by Kaplan-Meier: a trial that never reached the target is censored at its last epoch "
              "(counted as not there yet, never given a number); the interval is Brookmeyer-Crowley's, `–)` "
              "when its upper end lies past the epochs run. Variance shift: per BN slot, Var(BN input, eval mode, "
              "validation split) / BN's running variance (Li et al. 2019), averaged over the slots; 1 is no shift."),
              ""]
    return lines


def _any_clipped(report: Report) -> bool:
    stats = [s for g in report.groupings for group in g.groups for s in group.metrics.values()]
    stats += [s for c in report.confirmation.configs for s in c.metrics.values()]
    return any(s.clipped for s in stats)


def render_markdown(report: Report) -> str:
    """The report as Markdown: the recommendation, the warnings, one table per grouping."""
    title = f"## Report: {report.name or report.job_id or 'job'}"
    if report.job_id:
        title += f" (job `{report.job_id}`" + (f", {report.status})" if report.status else ")")
    search = report.counts["search"]
    counted = (f"Search trials: {search.get(TrialState.COMPLETE, 0)} complete, "
               f"{search.get(TrialState.PRUNED, 0)} pruned, "
               f"{search.get(TrialState.FAILED, 0)} failed, "
               f"{search.get(TrialState.QUEUED, 0) + search.get(TrialState.RUNNING, 0)} "
               "unfinished. Means are over complete search trials with Student-t 95% intervals (none below "
               f"{MIN_RUNS} runs: {TOO_FEW_RUNS}); n counts distinct "
               "configurations (a repeat with the same seed counts once), trials the complete ones.")
    lines = [title, ""]
    if report.model:
        lines += [f"Model: `{report.model}`.", ""]
    if report.slots:
        lines += [f"Slots ({len(report.slots)}, by layer name): "
                  + ", ".join(f"{i} `{name}`" for i, name in enumerate(report.slots)) + ".", ""]
    lines += [f"**Recommendation.** {report.recommendation.sentence}", "", counted, ""]
    if _any_clipped(report):
        lines += [CLIPPED_NOTE, ""]
    if report.warnings:
        lines += ["**Warnings**", "", *(f"- {w.message}" for w in report.warnings), ""]
    for grouping in report.groupings:
        lines += [f"### {grouping.title}", "", grouping.description, ""]
        lines += _table(report, grouping) if grouping.groups else ["No trials yet."]
        lines.append("")
        if grouping.by == "placement":
            lines += best_per_placement(report, grouping)
            lines += convergence_section(report, grouping)
    confirmation = report.confirmation
    lines += ["### Confirmation runs (seed groups)", ""]
    if confirmation.configs:
        metric = report.metric
        pair = ("val_rmse", "test_rmse") if "val_rmse" in report.metrics else ("val_acc", "test_acc")  # the task's
        shown = [metric, *(m for m in pair if m != metric)]
        lines.append(_row(["rank", "trial", "configuration", "runs", "seeds",
                           *(f"{m} mean [95% CI]" for m in shown), f"{metric} sd"]))
        lines.append(_row(["---", "---:", "---", "---:", "---", *(["---:"] * (len(shown) + 1))]))
        for config in confirmation.configs:
            lines.append(_row([config.rank, config.number, config.config, config.metrics[metric].n,
                               ", ".join(map(str, config.seeds)),
                               *(format_stat(m, config.metrics[m]) for m in shown),
                               format_metric(metric, config.metrics[metric].std)]))
    elif confirmation.requested:
        lines.append(f"Requested (top {confirmation.top_k}, {confirmation.seeds} extra seeds each); "
                     f"{confirmation.n_pending} run(s) pending.")
    else:
        lines.append("Not requested (spec option `confirm: {top_k: 3, seeds: 3}`).")
    return "\n".join(lines).rstrip() + "\n"
