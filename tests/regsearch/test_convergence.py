"""Convergence to a common target (regsearch.domain.convergence, the report's section): censored
trials never enter a mean, Kaplan-Meier medians with Brookmeyer-Crowley intervals checked by hand."""

from __future__ import annotations

import math
from typing import Any

import pytest

from regsearch.domain.convergence import Target, job_target, km_median, separated, trial_convergence
from regsearch.domain.metrics import METRICS, REPORT_TIME_METRICS, format_metric, task_metrics
from regsearch.evidence import build_report, render_markdown
from regsearch.evidence.models import ConvergenceStat


def epochs(accs: list[float], *, seconds: float = 0.5, loss: float = 1.0) -> list[dict[str, Any]]:
    return [{"epoch": i + 1, "val_acc": a, "val_loss": 1 - a, "train_loss": loss - i * 0.1, "seconds": seconds}
            for i, a in enumerate(accs)]


def test_a_trial_reaches_the_target_or_is_censored() -> None:
    target = Target("val_acc", 0.6, "objective.target")
    got = trial_convergence(epochs([0.3, 0.5, 0.61, 0.7], seconds=0.25), target)
    assert (got.metrics["epochs_to_target"], got.metrics["seconds_to_target"], got.epochs_run) == (3, 0.75, 4)
    assert got.metrics["train_loss_area"] == pytest.approx((1.0 + 0.9 + 0.8 + 0.7) / 4)
    assert got.observation("seconds_to_target") == (0.75, 1.0), "censoring time in the metric's own unit"
    never = trial_convergence(epochs([0.3, 0.35, 0.349]), target)
    assert never.metrics["epochs_to_target"] is None and never.metrics["seconds_to_target"] is None, \
        "censored: no invented number"
    assert never.epochs_run == 3 and never.observation("epochs_to_target") == (None, 3)
    loss = trial_convergence(epochs([0.3, 0.5, 0.7]), Target("val_loss", 0.45, "objective.target"))
    assert loss.metrics["epochs_to_target"] == 3  # val_loss 0.7, 0.5, 0.3: at or below 0.45 from epoch 3


def test_the_metric_table_defines_the_convergence_measures_once() -> None:
    assert REPORT_TIME_METRICS == ("epochs_to_target", "seconds_to_target", "train_loss_area")
    for name in REPORT_TIME_METRICS:
        m = METRICS[name]
        assert m.report_time and m.direction == "minimize" and m.task is None and not m.objective, name
        assert m.label and m.low is not None and m.low >= 0, name
    assert METRICS["epochs_to_target"].bounded_by_epochs
    assert (format_metric("epochs_to_target", 9.0), format_metric("seconds_to_target", 2.4142)) == ("9", "2.41")
    # not stored with a trial: never a column or an objective of either task
    assert not set(REPORT_TIME_METRICS) & {*task_metrics("classification", shown_only=False),
                                           *task_metrics("regression", shown_only=False)}
    # what convergence.py computes per trial, and what the report's model holds, are exactly those entries
    got = trial_convergence(epochs([0.3, 0.7]), Target("val_acc", 0.6, "objective.target"))
    assert tuple(got.metrics) == REPORT_TIME_METRICS
    assert set(REPORT_TIME_METRICS) <= set(ConvergenceStat.model_fields)


def test_the_default_target_is_a_stated_share_of_the_jobs_best() -> None:
    target = job_target("val_acc", None, 0.8)
    assert target is not None and target.value == pytest.approx(0.72) and "0.9 x the job's best" in target.source
    assert job_target("val_acc", 0.55, 0.8) == Target("val_acc", 0.55, "objective.target")
    assert job_target("val_acc", None, None) is None


def test_censored_trials_never_enter_a_mean() -> None:
    # three reach it at epochs 2, 4, 6; three never do in 10 epochs. The mean (or median) over the
    # ones that got there says 4; holding the others as "not yet" (Kaplan-Meier) says 6
    median = km_median([(2, 2), (4, 4), (6, 6), (None, 10), (None, 10), (None, 10)])
    assert (median.n, median.reached, median.share) == (6, 3, 0.5)
    assert median.median == 6
    # their censoring time past the last event does not move the median: no number is invented for them
    assert km_median([(2, 2), (4, 4), (6, 6), (None, 30), (None, 30), (None, 30)]).median == 6
    # fewer than half get there: no median at all
    assert km_median([(2, 2), (None, 10), (None, 10)]).median is None


def test_the_kaplan_meier_median_and_its_brookmeyer_crowley_interval_by_hand() -> None:
    # no censoring, times 1..5: S = 0.8, 0.6, 0.4, 0.2, 0; Greenwood sums 0.05, 0.1333, 0.3, 0.8.
    # log(-log) band at t: S ** exp(+-1.96 sqrt(sum) / |log S|); the median's interval is where the
    # band holds 0.5: lower S(1) = 0.8 ** exp(1.96 * sqrt(0.05) / 0.2231) = 0.204 <= 0.5 -> low 1;
    # upper S(4) = 0.2 ** exp(-1.96 * sqrt(0.8) / 1.609) = 0.582 > 0.5, upper S(5) = 0 -> high 5
    for t, s, gw, lower, upper in ((1, 0.8, 0.05, 0.204, None), (4, 0.2, 0.8, None, 0.582)):
        spread = 1.959963984540054 * math.sqrt(gw) / abs(math.log(s))
        if lower is not None:
            assert s ** math.exp(spread) == pytest.approx(lower, abs=1e-3)
        if upper is not None:
            assert s ** math.exp(-spread) == pytest.approx(upper, abs=1e-3)
    median = km_median([(t, t) for t in (1, 2, 3, 4, 5)])
    assert (median.median, median.low, median.high) == (3, 1, 5)
    open_ended = km_median([(1, 1), (2, 2), (3, 3), (None, 5), (None, 5), (None, 5)])
    assert open_ended.median is None or open_ended.high is None


def test_separated_needs_both_intervals_apart() -> None:
    fast = km_median([(t, t) for t in (1, 1, 2, 2, 2, 3, 1, 2)])
    slow = km_median([(t, t) for t in (9, 10, 9, 8, 10, 9, 9, 10)])
    assert separated(fast, slow) and separated(slow, fast)
    assert not separated(fast, fast)


def _trial(number: int, placement: str, accs: list[float]) -> dict[str, Any]:
    params: dict[str, Any] = {"placement": placement}
    if "bn" in placement:
        params.update(bn_momentum=0.1 + number / 1000, bn_layers="all")
    return {"number": number, "state": "complete", "params": params, "seed": None, "confirm_of": None,
            "metrics": {"val_acc": max(accs), "test_acc": max(accs) - 0.01, "gap": 0.1, "seconds_per_epoch": 0.5,
                        "epochs_run": len(accs)},
            "epochs": epochs(accs)}


def test_the_report_says_bn_reaches_the_target_faster_only_when_the_intervals_separate() -> None:
    fast = [0.5, 0.7, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]
    slow = [0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8]
    never = [0.1] * 10
    trials = [_trial(i, "bn-act", fast) for i in range(6)]
    trials += [_trial(6 + i, "act", slow if i < 4 else never) for i in range(6)]
    spec = {"name": "c", "dataset": {"name": "digits"}, "space": {"placement": ["bn-act", "act"]},
            "objective": {"metrics": ["val_acc"], "target": 0.7}}
    report = build_report(spec, trials)
    assert report.target is not None and (report.target.value, report.target.source) == (0.7, "objective.target")
    groups = {g.key: g for g in report.grouping("placement").groups}
    bn, act = groups["bn-act"].convergence, groups["act"].convergence
    assert bn is not None and act is not None
    assert (bn.reached, bn.n, bn.epochs_to_target.median) == (6, 6, 2)
    assert (act.reached, act.n, act.epochs_to_target.median) == (4, 6, 9), "two never: censored, not averaged"
    assert report.convergence is not None and "BN placements reach the target in 2 epochs" in report.convergence
    assert "6 of 6 trials with BN and 4 of 6 without reach it" in report.convergence
    text = render_markdown(report)
    assert "#### Convergence to a common target: val_acc >= 0.700 (objective.target)" in text
    assert "| bn-act | 6/6 | 2 [" in text
    same = build_report(spec, [_trial(i, "bn-act" if i % 2 else "act", slow) for i in range(6)])
    assert same.convergence is not None and "the intervals do not separate" in same.convergence
    assert "reach the target in" not in same.convergence


def test_the_dashboard_shows_each_placement_with_the_metric_tables_headings_and_formats() -> None:
    from regsearch.dashboard.placement_curves import convergence_rows

    fast = [0.5, 0.7, 0.8, 0.8]
    trials = [_trial(i, "bn-act", fast) for i in range(3)] + [_trial(3 + i, "act", [0.1] * 4) for i in range(3)]
    spec = {"name": "c", "dataset": {"name": "digits"}, "space": {"placement": ["bn-act", "act"]},
            "objective": {"metrics": ["val_acc"], "target": 0.7}}
    report = build_report(spec, trials)
    rows = {r["placement"]: r for r in convergence_rows(report.model_dump(mode="json"))}
    heads = [f"{METRICS['epochs_to_target'].label} [95% CI]", f"{METRICS['seconds_to_target'].label} [95% CI]",
             METRICS["train_loss_area"].label]
    assert list(rows["bn-act"]) == ["placement", "reached", *heads]
    assert rows["bn-act"]["reached"] == "3/3" and rows["bn-act"][heads[0]].startswith("2 [")
    assert rows["act"]["reached"] == "0/3" and rows["act"][heads[0]] == "–", "censored: no median below half"
    assert rows["act"][heads[2]].startswith("0.850"), "train_loss_area: 3 decimals from the metric table"
    text = render_markdown(report)
    assert "| placement | reached | " + " | ".join(heads) + " |" in text


def test_the_report_gives_the_variance_shift_and_the_recalibration_per_placement() -> None:
    trials = []
    for i in range(3):
        t = _trial(i, "drop-bn-act", [0.5, 0.7])
        t["metrics"].update(variance_shift=[0.7, 0.8 + i / 100], test_acc_before_recalibration=0.6,
                            test_acc_after_recalibration=0.66)
        trials.append(t)
        u = _trial(3 + i, "bn-act", [0.5, 0.7])
        u["metrics"].update(variance_shift=[1.0, 1.01], test_acc_before_recalibration=0.7,
                            test_acc_after_recalibration=0.7)
        trials.append(u)
    report = build_report({"name": "v", "dataset": {"name": "digits"},
                           "space": {"placement": ["drop-bn-act", "bn-act"]}}, trials)
    groups = {g.key: g.extras for g in report.grouping("placement").groups}
    assert groups["drop-bn-act"]["variance_shift"].mean == pytest.approx((0.75 + 0.755 + 0.76) / 3)
    assert groups["drop-bn-act"]["recalibration_gain"].mean == pytest.approx(0.06)
    assert groups["bn-act"]["recalibration_gain"].mean == pytest.approx(0.0)
    text = render_markdown(report)
    assert "variance shift | test_acc before recal. | test_acc after recal. | recal. gain |" in text


def test_a_median_in_seconds_needs_half_the_trials_to_reach_the_target() -> None:
    """Seconds horizons differ per trial (a fast trial's last epoch comes sooner): over fewer than
    half, a Kaplan-Meier median in seconds would rest on the slow trials still running; withheld."""
    from regsearch.evidence.convergence import seconds_median

    # one of three reaches it at 8 s; the two others stopped (censored) at 5 and 6 s
    assert km_median([(8.0, 8.0), (None, 5.0), (None, 6.0)]).median == 8.0
    assert seconds_median([(8.0, 8.0), (None, 5.0), (None, 6.0)]).median is None
    assert seconds_median([(8.0, 8.0), (7.0, 7.0), (None, 6.0)]).median == 7.0  # S(7) = 1 - 1/2
