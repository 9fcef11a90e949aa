"""The report's arithmetic on hand-made trial lists, checked against numpy and scipy directly
(not against regsearch.domain.stats): counts, means, sample std, Student-t intervals, bands, ranking,
seed groups, the recommendation and the warnings."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats

from regsearch.domain.metrics import SHOWN_METRICS
from regsearch.domain.spec import JobSpec
from regsearch.evidence import (
    Interval,
    Report,
    build_report,
    describe_placement,
    dropout_band,
    momentum_band,
    render_markdown,
)

SPEC: dict[str, Any] = {
    "name": "evidence",
    "dataset": {"name": "mnist1d"},
    "space": {"placement": ["bn-act-drop", "act-drop", "drop-bn-act", "bn-act", "act"]},
    "training": {"seed": 7},
}


class Trials:
    """A trial list built the way the API lists them (number, state, params, metrics, seed, ...)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, placement: str, state: str = "complete", *, val: float | None = None, dropout: float | None = None,
            momentum: float | None = None, confirm_of: int | None = None, seed: int | None = None,
            retried: bool = False, **metrics: Any) -> dict[str, Any]:
        params: dict[str, Any] = {"placement": placement}
        if "drop" in placement:
            params.update(dropout=0.25 if dropout is None else dropout, dropout_layers="all")
        if "bn" in placement:
            params.update(bn_momentum=0.1 if momentum is None else momentum, bn_layers="all")
        number = len(self.items)
        values = None
        if state in ("complete", "pruned") and val is not None:
            values = {"val_acc": val, "test_acc": val - 0.02 - number / 1000, "gap": 0.1 + number / 100,
                      "epochs_to_95pct_best": 3 + number % 4, "seconds_per_epoch": 0.2 + number / 50,
                      "mean_val_acc": val - 0.1, **metrics}
        trial = {"number": number, "state": state, "params": params, "metrics": values, "attempt": 1,
                 "role": "confirm" if confirm_of is not None else "search", "seed": seed, "confirm_of": confirm_of,
                 "retried": retried}
        self.items.append(trial)
        return trial


# What each metric can be (written out here, not read from regsearch.domain.metrics).
RANGES = {"val_acc": (0.0, 1.0), "test_acc": (0.0, 1.0), "mean_val_acc": (0.0, 1.0), "gap": (-1.0, 1.0),
          "epochs_to_95pct_best": (1.0, math.inf), "seconds_per_epoch": (0.0, math.inf)}


def expected(values: list[float], metric: str = "val_acc") -> dict[str, Any]:
    """n, mean, std (ddof=1) and the 95% t-interval cut at the metric's range, computed with numpy
    and scipy; no interval below 3 runs."""
    data = np.asarray(values, dtype=float)
    n = len(data)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "low": None, "high": None}
    if n == 1:
        return {"n": 1, "mean": float(data[0]), "std": None, "low": None, "high": None}
    std = float(np.std(data, ddof=1))
    if n < 3:
        return {"n": n, "mean": float(np.mean(data)), "std": std, "low": None, "high": None}
    if std == 0:  # identical runs (a deterministic configuration repeated): scipy answers NaN
        return {"n": n, "mean": float(np.mean(data)), "std": 0.0, "low": float(data[0]), "high": float(data[0])}
    low, high = scipy_stats.t.interval(0.95, n - 1, loc=float(np.mean(data)), scale=std / math.sqrt(n))
    bottom, top = RANGES.get(metric, (-math.inf, math.inf))
    return {"n": n, "mean": float(np.mean(data)), "std": std, "low": float(np.clip(low, bottom, top)),
            "high": float(np.clip(high, bottom, top))}


def assert_stat(stat: Interval, values: list[float], metric: str = "val_acc") -> None:
    want = expected(values, metric)
    assert stat.n == want["n"]
    assert stat.too_few_runs == (want["n"] < 3)
    for key in ("mean", "std", "low", "high"):
        got = getattr(stat, key)
        if want[key] is None:
            assert got is None, key
        else:
            assert got == pytest.approx(want[key], rel=1e-12, abs=1e-12), key


def metric_values(trials: list[dict[str, Any]], metric: str) -> list[float]:
    return [t["metrics"][metric] for t in trials]


@pytest.fixture
def study() -> Trials:
    trials = Trials()
    for val, dropout, momentum in [(0.70, 0.05, 0.01), (0.72, 0.12, 0.03), (0.69, 0.3, 0.1), (0.74, 0.31, 0.2),
                                   (0.71, 0.45, 0.6)]:
        trials.add("bn-act-drop", val=val, dropout=dropout, momentum=momentum)
    trials.add("bn-act-drop", "pruned", val=0.30)
    trials.add("bn-act-drop", "failed")
    trials.add("bn-act-drop", "failed", retried=True)  # a lost attempt that a retry replaced
    for val, dropout in [(0.61, 0.1), (0.64, 0.2), (0.60, 0.3), (0.63, 0.0)]:
        trials.add("act-drop", val=val, dropout=dropout)
    trials.add("act", val=0.55)
    trials.add("bn-act", "running")
    return trials


def compared(study: Trials) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The study topped up to the recommendation's minimum: act gets two more seeds, the spec
    names the three placements that ran, and the running bn-act trial is left out."""
    study.add("act", val=0.56, seed=1)
    study.add("act", val=0.57, seed=2)
    spec = {**SPEC, "space": {"placement": ["bn-act-drop", "act-drop", "act"]}}
    return spec, [t for t in study.items if t["params"]["placement"] != "bn-act"]


def test_placement_groups_match_numpy_and_scipy(study: Trials) -> None:
    report = build_report(SPEC, study.items, job_id="j1", status="running")
    placements = report.grouping("placement")
    assert [g.key for g in placements.groups] == ["bn-act-drop", "act-drop", "act", "bn-act", "drop-bn-act"]
    assert [g.rank for g in placements.groups] == [1, 2, 3, None, None]
    for group in placements.groups:
        members = [t for t in study.items if t["params"]["placement"] == group.key and not t["retried"]]
        done = [t for t in members if t["state"] == "complete"]
        assert (group.n_trials, group.n_complete) == (len(members), len(done))
        assert group.n_pruned == sum(t["state"] == "pruned" for t in members)
        assert group.n_failed == sum(t["state"] == "failed" for t in members)
        assert group.n_active == sum(t["state"] == "running" for t in members)
        assert set(group.metrics) == set(SHOWN_METRICS)
        for metric in SHOWN_METRICS:
            assert_stat(group.metrics[metric], metric_values(done, metric), metric)
    first = placements.groups[0]
    assert (first.n_trials, first.n_complete, first.n_pruned, first.n_failed) == (7, 5, 1, 1)
    assert report.counts["search"] == {"queued": 0, "running": 1, "complete": 10, "pruned": 1, "failed": 1, "cancelled": 0}
    assert report.comparison is not None
    assert (report.comparison.leader, report.comparison.runner_up) == ("bn-act-drop", "act-drop")
    assert report.comparison.difference == pytest.approx(np.mean([0.70, 0.72, 0.69, 0.74, 0.71]) - np.mean(
        [0.61, 0.64, 0.60, 0.63]))
    assert report.comparison.overlap is False


def test_dropout_and_momentum_bands_hold_the_right_trials(study: Trials) -> None:
    report = build_report(SPEC, study.items)
    dropout = {g.label: g for g in report.grouping("dropout_band").groups}
    assert list(dropout) == ["[0.0, 0.1)", "[0.1, 0.2)", "[0.2, 0.3)", "[0.3, 0.4)", "[0.4, 0.5)", "no dropout"]
    assert_stat(dropout["[0.3, 0.4)"].metrics["val_acc"], [0.69, 0.74, 0.60])  # 0.3 is in [0.3, 0.4), not below
    assert_stat(dropout["[0.0, 0.1)"].metrics["val_acc"], [0.70, 0.63])
    assert dropout["[0.2, 0.3)"].n_trials == 3 and dropout["[0.2, 0.3)"].n_complete == 1  # + pruned + failed
    assert_stat(dropout["no dropout"].metrics["val_acc"], [0.55])
    momentum = {g.label: g for g in report.grouping("momentum_band").groups}
    assert list(momentum) == ["[0.01, 0.02)", "[0.02, 0.05)", "[0.1, 0.2)", "[0.2, 0.5)", "[0.5, 1]", "no BN"]
    assert_stat(momentum["[0.1, 0.2)"].metrics["val_acc"], [0.69])
    assert momentum["[0.1, 0.2)"].n_trials == 4  # 0.1 exactly, plus pruned, failed, running at the default 0.1
    assert_stat(momentum["no BN"].metrics["val_acc"], [0.61, 0.64, 0.60, 0.63, 0.55])


@pytest.mark.parametrize(("rate", "label"), [
    (0.0, "[0.0, 0.1)"), (0.0999, "[0.0, 0.1)"), (0.1, "[0.1, 0.2)"), (0.3, "[0.3, 0.4)"), (0.7, "[0.7, 0.8)"),
    (0.29999, "[0.2, 0.3)"), (0.95, "[0.9, 1.0)"), (0.999, "[0.9, 1.0)"),
])
def test_dropout_band_edges(rate: float, label: str) -> None:
    assert dropout_band({"dropout": rate})[1] == label


def test_dropout_band_none() -> None:
    assert dropout_band({"placement": "act"})[0] == "none"
    assert dropout_band({"dropout": 0.3, "dropout_layers": "none"})[0] == "none"


@pytest.mark.parametrize(("momentum", "label"), [
    (0.01, "[0.01, 0.02)"), (0.0199, "[0.01, 0.02)"), (0.02, "[0.02, 0.05)"), (0.05, "[0.05, 0.1)"),
    (0.1, "[0.1, 0.2)"), (0.3, "[0.2, 0.5)"), (0.5, "[0.5, 1]"), (1.0, "[0.5, 1]"), (0.003, "[0.002, 0.005)"),
    (0.001, "[0.001, 0.002)"),
])
def test_momentum_band_edges(momentum: float, label: str) -> None:
    assert momentum_band({"bn_momentum": momentum})[1] == label


def test_momentum_band_none() -> None:
    assert momentum_band({"placement": "act"})[0] == "none"
    assert momentum_band({"bn_momentum": 0.1, "bn_layers": "none"})[0] == "none"


def test_a_minimized_objective_ranks_the_lowest_mean_first() -> None:
    trials = Trials()
    for seed, gap in enumerate((0.30, 0.32, 0.31)):  # distinct seeds: three configurations each
        trials.add("act", val=0.5, gap=gap, seed=seed)
    for seed, gap in enumerate((0.10, 0.12, 0.11)):
        trials.add("act-drop", val=0.5, gap=gap, seed=seed)
    spec = {**SPEC, "objective": {"metrics": ["gap"]}, "space": {"placement": ["act", "act-drop"]}}
    report = build_report(spec, trials.items)
    assert (report.metric, report.direction) == ("gap", "minimize")
    assert [g.key for g in report.grouping("placement").groups] == ["act-drop", "act"]
    assert report.recommendation.placement == "act-drop"


def test_confirmation_runs_form_seed_groups_and_stay_out_of_the_groups(study: Trials) -> None:
    base, _ = compared(study)
    spec = {**base, "confirm": {"top_k": 2, "seeds": 2}}
    best = study.items[3]  # bn-act-drop, val 0.74
    second = study.items[1]  # bn-act-drop, val 0.72
    runs = {
        best["number"]: [study.add("bn-act-drop", val=v, dropout=0.31, momentum=0.2, confirm_of=best["number"],
                                   seed=s) for v, s in ((0.70, 8), (0.71, 9))],
        second["number"]: [study.add("bn-act-drop", val=v, dropout=0.12, momentum=0.03, confirm_of=second["number"],
                                     seed=s) for v, s in ((0.73, 8), (0.72, 9))],
    }
    study.add("bn-act-drop", "running", confirm_of=best["number"], seed=10)
    report = build_report(spec, [t for t in study.items if t["params"]["placement"] != "bn-act"], status="running")
    confirmed = report.confirmation
    assert confirmed.requested and (confirmed.top_k, confirmed.seeds) == (2, 2)
    assert (confirmed.n_complete, confirmed.n_pending, confirmed.n_failed) == (4, 1, 0)
    # ranked by the seed-group mean: trial 1's group (0.72, 0.73, 0.72) beats trial 3's (0.74, 0.70, 0.71)
    assert [c.number for c in confirmed.configs] == [second["number"], best["number"]]
    for config in confirmed.configs:
        group = [next(t for t in study.items if t["number"] == config.number), *runs[config.number]]
        assert config.numbers == [t["number"] for t in group]
        assert config.seeds == [7, 8, 9]  # the search run trained with the spec's seed
        for metric in ("val_acc", "test_acc", "gap"):
            assert_stat(config.metrics[metric], metric_values(group, metric), metric)
    # confirmation runs are not in the placement groups
    assert report.grouping("placement").groups[0].n_trials == 7
    recommendation = report.recommendation
    assert recommendation.basis == "confirmed" and recommendation.number == second["number"]
    assert_stat(recommendation.config, [0.72, 0.73, 0.72])  # type: ignore[arg-type]
    assert "over 3 seeds" in recommendation.sentence and "for act-drop" in recommendation.sentence
    codes = [w.code for w in report.warnings]
    assert codes.count("within_noise") == 1  # the two confirmed groups overlap; the placements do not
    assert "not_confirmed" not in codes and "partial" in codes


def test_the_recommendation_cites_its_evidence(study: Trials) -> None:
    spec, items = compared(study)
    report = build_report(JobSpec.model_validate(spec), items)
    recommendation = report.recommendation
    assert recommendation.basis == "single_run" and recommendation.number == 3
    assert (recommendation.placement, recommendation.runner_up) == ("bn-act-drop", "act-drop")
    leader = expected([0.70, 0.72, 0.69, 0.74, 0.71])
    runner = expected([0.61, 0.64, 0.60, 0.63])
    sentence = recommendation.sentence
    assert sentence.startswith("Put BN before the activation and dropout ≈0.31 after the activation "
                               "(#3: bn-act-drop, dropout 0.31, bn_momentum 0.2): val_acc 0.740 in a single run;")
    assert f"averages {leader['mean']:.3f} [{leader['low']:.3f}, {leader['high']:.3f}] over 5 search trials" in sentence
    assert f"vs {runner['mean']:.3f} [{runner['low']:.3f}, {runner['high']:.3f}] for act-drop" in sentence
    # well separated: the comparison says which is better, and why
    assert recommendation.decided_by == "significant" and recommendation.tied == ["bn-act-drop"]
    assert sentence.endswith("; bn-act-drop is better than act-drop and act on val_acc: their 95% intervals do not "
                             "overlap.")
    codes = {w.code for w in report.warnings}
    assert {"pruned_left_out", "not_confirmed"} <= codes and "placement_vs_config" not in codes


def test_below_the_minimum_the_report_says_what_is_missing_instead_of_recommending(study: Trials) -> None:
    report = build_report(SPEC, study.items, status="running")
    recommendation = report.recommendation
    assert (recommendation.basis, recommendation.number, recommendation.decided_by) == ("none", None, "insufficient")
    assert recommendation.missing == {"act": 2, "bn-act": 3, "drop-bn-act": 3}
    assert recommendation.sentence.startswith(
        "No recommendation yet: each placement needs at least 3 complete, distinct configurations to be compared, "
        "and act has 1, bn-act has 0, drop-bn-act has 0. The best so far, #3 (bn-act-drop, dropout 0.31, "
        "bn_momentum 0.2, val_acc 0.740)")
    # a cancelled job with one finished trial gets no confident recommendation
    one = Trials()
    one.add("bn-act", val=0.9)
    for _ in range(3):
        one.add("act", "cancelled")
    cancelled = build_report({**SPEC, "space": {"placement": ["bn-act", "act"]}}, one.items, status="cancelled")
    assert cancelled.recommendation.basis == "none" and cancelled.recommendation.number is None
    assert "bn-act has 1, act has 0" in cancelled.recommendation.sentence


def test_a_repeated_configuration_counts_once() -> None:
    trials = Trials()
    for val in (0.50, 0.52, 0.54):  # placement act has no parameters: every act trial is the same model
        trials.add("act", val=val)
    trials.add("act", val=0.60, seed=11)  # another seed is new evidence
    for val, dropout in ((0.61, 0.1), (0.63, 0.1), (0.70, 0.2), (0.66, 0.3)):
        trials.add("act-drop", val=val, dropout=dropout)
    report = build_report({**SPEC, "space": {"placement": ["act", "act-drop"]}}, trials.items)
    groups = {g.key: g for g in report.grouping("placement").groups}
    assert (groups["act"].n_complete, groups["act"].n_distinct) == (4, 2)
    assert (groups["act-drop"].n_complete, groups["act-drop"].n_distinct) == (4, 3)
    assert_stat(groups["act"].metrics["val_acc"], [np.mean([0.50, 0.52, 0.54]), 0.60])
    assert_stat(groups["act-drop"].metrics["val_acc"], [np.mean([0.61, 0.63]), 0.70, 0.66])
    gaps = [t["metrics"]["gap"] for t in trials.items]
    assert_stat(groups["act-drop"].metrics["gap"], [np.mean(gaps[4:6]), gaps[6], gaps[7]], "gap")
    repeated = [w.message for w in report.warnings if w.code == "repeated_configs"]
    assert len(repeated) == 1 and repeated[0].startswith("3 complete search trials repeated")
    # act has two distinct configurations: below the minimum, whatever its four trials
    assert report.recommendation.missing == {"act": 1} and "act has 2" in report.recommendation.sentence


def test_overlapping_intervals_warn_within_noise() -> None:
    trials = Trials()
    for val, momentum in ((0.60, 0.1), (0.70, 0.2), (0.65, 0.3)):
        trials.add("bn-act", val=val, momentum=momentum)
    for val, seed in ((0.62, 1), (0.66, 2), (0.64, 3)):
        trials.add("act", val=val, seed=seed)
    report = build_report({**SPEC, "space": {"placement": ["bn-act", "act"]}}, trials.items)
    assert report.comparison is not None and report.comparison.overlap
    noise = [w.message for w in report.warnings if w.code == "within_noise"]
    assert len(noise) == 1 and "bn-act leads act by 0.010 val_acc" in noise[0]
    thin = Trials()
    thin.add("bn-act", val=0.7)
    thin.add("act", val=0.6, seed=1)
    thin.add("act", val=0.61, seed=2)
    report = build_report({**SPEC, "space": {"placement": ["bn-act", "act"]}}, thin.items)
    noise = [w.message for w in report.warnings if w.code == "within_noise"]
    assert noise and "bn-act has fewer than 3 complete runs, too few runs for an interval" in noise[0]


def test_a_job_without_complete_trials_gets_empty_groups_and_a_warning() -> None:
    trials = Trials()
    trials.add("act", "failed")
    trials.add("act-drop", "pruned")
    trials.add("bn-act", "queued")
    report = build_report(SPEC, trials.items, status="running")
    assert report.recommendation.basis == "none" and report.recommendation.sentence.startswith("No recommendation")
    assert all(g.n_complete == 0 and g.rank is None and g.metrics["val_acc"].n == 0
               for grouping in report.groupings for g in grouping.groups)
    assert report.comparison is None and not report.confirmation.configs
    assert {w.code for w in report.warnings} == {"no_complete_trials", "partial", "pruned_left_out"}
    empty = build_report(SPEC, [])
    assert [w.code for w in empty.warnings] == ["no_complete_trials"]
    assert [g.n_trials for g in empty.grouping("placement").groups] == [0] * 5
    assert not empty.grouping("dropout_band").groups
    assert "No recommendation yet" in render_markdown(empty)


def test_non_finite_and_missing_metrics_are_left_out_and_the_report_is_strict_json() -> None:
    trials = Trials()
    trials.add("act", val=0.5, seed=1)
    trials.add("act", val=0.6, seed=2, test_acc=math.nan, gap=math.inf)
    trials.add("act", val=0.7, seed=3, test_acc=None, gap="oops")
    trials.add("act", "complete", seed=4)  # complete without a summary
    trials.items[-1]["params"] = "not a dict"
    report = build_report({**SPEC, "space": {"placement": ["act"]}}, trials.items)
    group = report.grouping("placement").groups[0]
    assert_stat(group.metrics["val_acc"], [0.5, 0.6, 0.7])
    assert_stat(group.metrics["test_acc"], [trials.items[0]["metrics"]["test_acc"]])
    assert_stat(group.metrics["gap"], [trials.items[0]["metrics"]["gap"]], "gap")
    json.dumps(report.model_dump(mode="json"), allow_nan=False)
    assert Report.model_validate_json(report.model_dump_json()) == report


def test_multi_objective_and_an_unreadable_spec_still_give_a_report(study: Trials) -> None:
    spec = {**SPEC, "objective": {"metrics": ["val_acc", "gap"], "directions": ["maximize", "minimize"]},
            "pruner": "none"}
    assert "multi_objective" in {w.code for w in build_report(spec, study.items).warnings}
    lenient = build_report({"name": "old", "objective": {"metrics": ["val_acc"]}, "unknown": 1}, study.items)
    assert lenient.name == "old" and lenient.grouping("placement").groups[0].key == "bn-act-drop"
    garbage = build_report({"objective": {"metrics": 5}}, study.items)
    assert garbage.metric == "val_acc"


@pytest.mark.parametrize(("placement", "params", "text"), [
    ("bn-act-drop", {"dropout": 0.2}, "Put BN before the activation and dropout ≈0.2 after the activation"),
    ("act-bn-drop", {"dropout": 0.2}, "Put BN after the activation and dropout ≈0.2 after BN"),
    ("drop-bn-act", {"dropout": 0.1}, "Put BN before the activation and dropout ≈0.1 before BN"),
    ("bn-act", {}, "Put BN before the activation, without dropout"),
    ("act-drop", {"dropout": 0.35}, "Put dropout ≈0.35 after the activation, without BN"),
    ("act", {}, "Use neither BN nor dropout"),
    ("bn-act-drop", {"dropout": 0.2, "dropout_layers": "none"}, "Put BN before the activation, without dropout"),
])
def test_placements_in_words(placement: str, params: dict[str, Any], text: str) -> None:
    assert describe_placement(placement, params) == text


def test_markdown_tables_show_each_group_with_its_interval(study: Trials) -> None:
    report = build_report(SPEC, study.items, job_id="j1", status="completed")
    text = render_markdown(report)
    assert text.startswith("## Report: evidence (job `j1`, completed)")
    assert f"**Recommendation.** {report.recommendation.sentence}" in text
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in text.splitlines() if line.startswith("| ") and line.split("|")[2].strip() in
            ("bn-act-drop", "act-drop", "act", "bn-act", "drop-bn-act")}
    leader = expected([0.70, 0.72, 0.69, 0.74, 0.71])
    assert rows["bn-act-drop"][:8] == ["1", "bn-act-drop", "5", "5", "1", "1",
                                       f"{leader['mean']:.3f} [{leader['low']:.3f}, {leader['high']:.3f}]",
                                       f"{leader['std']:.3f}"]
    assert rows["act"][:8] == ["3", "act", "1", "1", "0", "0", "0.550 (too few runs)", "–"]
    assert rows["bn-act"][:7] == ["–", "bn-act", "0", "0", "0", "0", "–"]
    for heading in ("### By placement (ranked by mean val_acc, higher is better)", "### By dropout band",
                    "### By BN momentum band", "### Confirmation runs (seed groups)"):
        assert heading in text
    assert "Not requested" in text


def _two_placement_trials(a: str, a_runs: list[tuple[float, float]], b: str,
                          b_runs: list[tuple[float, float]]) -> list[dict[str, Any]]:
    trials = Trials()
    for placement, runs in ((a, a_runs), (b, b_runs)):
        for seed, (val, seconds) in enumerate(runs, start=1):
            trials.add(placement, val=val, seed=seed, seconds_per_epoch=seconds, dropout=0.46)
    return trials.items


def _two_placements(a: str, a_runs: list[tuple[float, float]], b: str, b_runs: list[tuple[float, float]]) -> Report:
    """A report on placements ``a`` and ``b`` from (val_acc, seconds_per_epoch) per run."""
    return build_report({**SPEC, "space": {"placement": [a, b]}}, _two_placement_trials(a, a_runs, b, b_runs))


def test_within_noise_the_recommendation_is_still_the_rankings_first_and_says_the_tie_plainly() -> None:
    # the case: drop-bn-act has the best run, within noise of bn-act (BN only, fewer components)
    report = _two_placements("drop-bn-act", [(0.96, 0.21), (0.99, 0.20), (0.98, 0.22)],
                             "bn-act", [(0.95, 0.10), (0.98, 0.11), (0.97, 0.10)])
    assert report.comparison is not None and report.comparison.leader == "drop-bn-act" and report.comparison.overlap
    assert "within_noise" in {w.code for w in report.warnings}
    recommendation = report.recommendation
    from regsearch.domain.ranking import rank_configurations

    first = rank_configurations(report_trials := _two_placement_trials(
        "drop-bn-act", [(0.96, 0.21), (0.99, 0.20), (0.98, 0.22)], "bn-act", [(0.95, 0.10), (0.98, 0.11), (0.97, 0.10)]),
        [("val_acc", "maximize")])[0]
    assert report_trials and recommendation.number == first.number and recommendation.placement == "drop-bn-act"
    assert recommendation.decided_by == "within_noise" and recommendation.tied == ["drop-bn-act", "bn-act"]
    assert recommendation.runner_up == "bn-act"
    assert recommendation.sentence.startswith("Put BN before the activation and dropout ≈0.46 before BN "
                                              "(#1: drop-bn-act, dropout 0.46, bn_momentum 0.1): val_acc 0.990")
    assert ("drop-bn-act cannot be separated from bn-act on val_acc (their 95% intervals overlap), so the ranking's "
            "measure chooses: the highest val_acc of a single run") in recommendation.sentence
    assert ("bn-act (BN only) does as well within noise with fewer components than drop-bn-act (BN and dropout)"
            in recommendation.sentence)
    assert recommendation.reason is not None and recommendation.reason in recommendation.sentence
    assert f"**Recommendation.** {recommendation.sentence}" in render_markdown(report)


def test_simplicity_is_counted_from_the_components() -> None:
    from regsearch.evidence.advice import components_in_words

    assert [components_in_words(p) for p in ("act-drop", "bn-act", "drop-bn-act", "act")] == [
        "dropout only", "BN only", "BN and dropout", "neither BN nor dropout"]
    equally = _two_placements("act-drop", [(0.96, 0.2), (0.99, 0.2), (0.98, 0.2)],
                              "bn-act", [(0.95, 0.1), (0.98, 0.1), (0.97, 0.1)]).recommendation
    assert equally.placement == "act-drop" and equally.decided_by == "within_noise"
    assert "fewer components" not in equally.sentence, "BN only is not simpler than dropout only"


def test_a_leading_configuration_whose_placement_averages_worse_is_named_with_that_caveat() -> None:
    report = _two_placements("act-drop", [(0.99, 0.2), (0.50, 0.2), (0.52, 0.2), (0.51, 0.2)],
                             "bn-act", [(0.90, 0.1), (0.91, 0.1), (0.92, 0.1)])
    recommendation = report.recommendation
    assert recommendation.placement == "act-drop" and recommendation.decided_by in ("within_noise",
                                                                                   "config_over_placement")
    assert "placement_vs_config" in {w.code for w in report.warnings}


def test_report_intervals_stay_inside_the_metrics_range_and_thin_groups_say_too_few_runs() -> None:
    from rich.console import Console

    from regsearch.cli.tables import comparison_table

    trials = Trials()
    for seed, val in enumerate((0.99, 1.0, 1.0), start=1):
        trials.add("act", val=val, seed=seed, test_acc=val, mean_val_acc=val, epochs_to_95pct_best=1 + seed % 2,
                   epochs_run=2)
    for seed, val in enumerate((0.1, 0.9), start=1):
        trials.add("act-drop", val=val, seed=seed)
    report = build_report({**SPEC, "space": {"placement": ["act", "act-drop"]}}, trials.items)
    groups = {g.key: g for g in report.grouping("placement").groups}
    for grouping in report.groupings:
        for group in grouping.groups:
            for metric, stat in group.metrics.items():
                if stat.low is not None:
                    bottom, top = RANGES[metric]
                    top = 2.0 if metric == "epochs_to_95pct_best" else top  # the trials ran 2 epochs
                    assert bottom <= stat.low <= stat.high <= top, (group.key, metric, stat)
    act = groups["act"].metrics
    assert act["val_acc"].high == 1.0 and act["val_acc"].clipped and act["test_acc"].high == 1.0
    assert act["epochs_to_95pct_best"].high == 2.0 and act["epochs_to_95pct_best"].low == 1.0
    thin = groups["act-drop"].metrics["val_acc"]
    assert thin.too_few_runs and thin.low is None and thin.high is None and thin.n == 2
    document = report.model_dump(mode="json")
    placement = next(g for g in document["groupings"] if g["by"] == "placement")
    assert next(g for g in placement["groups"] if g["key"] == "act-drop")["metrics"]["val_acc"] == {
        "n": 2, "mean": pytest.approx(0.5), "std": pytest.approx(float(np.std([0.1, 0.9], ddof=1))), "low": None,
        "high": None, "too_few_runs": True, "clipped": False}
    text = render_markdown(report)
    want = expected([0.99, 1.0, 1.0])
    assert want["high"] == 1.0 and f"| 1 | act | 3 | 3 | 0 | 0 | {want['mean']:.3f} [{want['low']:.3f}, 1.000]† |" in text
    assert "0.500 (too few runs)" in text and "† the t-interval reached past what the metric can be" in text
    assert "[-0" not in text, "no negative accuracy anywhere"
    console = Console(width=220, record=True)
    console.print(comparison_table(document))
    shown = console.export_text()
    assert "0.500‡" in shown and "1.000]†" in shown and "is cut there" in shown
    assert "‡ too few runs: fewer than 3 runs" in shown, "a table marks a mean without an interval, in one line"
    # the note explains a mark: when the only cut interval is in a column the width left out, no note
    for group in placement["groups"]:
        for metric, stat in group["metrics"].items():
            stat["clipped"] = metric == "epochs_to_95pct_best" and stat["low"] is not None
    def rendered(width: int) -> str:
        console = Console(width=width, record=True)
        console.print(comparison_table(document, width=width))
        return console.export_text()
    assert "[1.0, 2.0]†" in rendered(220) and "is cut there" in rendered(220)
    assert "†" not in rendered(64) and "is cut there" not in rendered(64)


def test_the_report_names_the_model_and_its_slots(study: Trials) -> None:
    spec = {**SPEC, "model": {"family": "resnet", "depth": 20}}
    report = build_report(spec, study.items)
    assert (report.family, report.model) == ("resnet", "resnet depth=20 width=16 activation=relu")
    assert report.slots is None  # no recipe given; a family without layer names lists none either
    text = render_markdown(report)
    assert "Model: `resnet depth=20 width=16 activation=relu`." in text.split("**Recommendation.**")[0]
    assert report.model_dump(mode="json")["model"] == report.model

    recipe = {"slots": [{"order": ["bn", "act"], "name": "conv1"}, {"order": ["act"], "name": "layer1.0.conv1"},
                        {"order": ["act"]}]}
    named = build_report(spec, study.items, recipe=recipe)
    assert named.slots == ["conv1", "layer1.0.conv1", "slot 2"]
    assert "Slots (3, by layer name): 0 `conv1`, 1 `layer1.0.conv1`, 2 `slot 2`." in render_markdown(named)
    unnamed = build_report(spec, study.items, recipe={"slots": [{"order": ["act"]}]})
    assert unnamed.slots is None and "Slots" not in render_markdown(unnamed).split("###")[0]


def test_a_plugin_model_this_process_cannot_validate_is_shown_as_stored(study: Trials) -> None:
    spec = {**SPEC, "model": {"family": "notinstalled", "channels": [8, 8], "hidden": [64]}}
    report = build_report(spec, study.items)  # the spec does not validate here: read leniently
    assert (report.family, report.model) == ("notinstalled", "notinstalled channels=[8,8] hidden=[64]")
    assert build_report(SPEC, study.items).model == "mlp hidden=[256,256,256] activation=relu"  # the default


def test_with_a_searched_rate_each_placement_shows_its_best_rate() -> None:
    trials = Trials()
    for seed, (val, lr) in enumerate([(0.80, 0.01), (0.90, 0.05), (0.70, 0.001)]):
        trials.add("bn-act", val=val, seed=seed)["params"]["lr"] = lr
    for seed, (val, lr) in enumerate([(0.85, 0.001), (0.60, 0.05), (0.75, 0.003)]):
        trials.add("act", val=val, seed=seed)["params"]["lr"] = lr
    report = build_report({**SPEC, "space": {"placement": ["bn-act", "act"], "lr": {"low": 1e-4, "high": 0.1,
                                                                                    "log": True}}}, trials.items)
    best = {g.key: g.best for g in report.grouping("placement").groups}
    assert best["bn-act"] == {"number": 1, "val_acc": 0.90, "runs": 1, "lr": 0.05}
    assert best["act"] == {"number": 3, "val_acc": 0.85, "runs": 1, "lr": 0.001}
    text = render_markdown(report)
    assert "- bn-act: 0.900 at lr 0.05 (#1)" in text and "- act: 0.850 at lr 0.001 (#3)" in text
    assert "lr 0.05" in report.recommendation.sentence  # the recommended configuration names its rate
