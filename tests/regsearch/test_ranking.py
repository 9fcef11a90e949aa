"""The one ranking of configurations (regsearch.domain.ranking): seed-group means beat a lucky
seed, the Pareto fronts come first, and the order is total and deterministic."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from regsearch.domain.ranking import (
    objectives_of,
    pareto_fronts,
    rank_by_seed_mean,
    rank_configurations,
    rank_jobs,
)
from regsearch.domain.spec import validate_spec

VAL = [("val_acc", "maximize")]
TWO = [("val_acc", "maximize"), ("gap", "minimize")]


def trial(number: int, state: str = "complete", *, confirm_of: int | None = None, seed: int | None = None,
          **metrics: Any) -> dict[str, Any]:
    return {"number": number, "state": state, "params": {"placement": "act", "n": number}, "metrics": metrics,
            "confirm_of": confirm_of, "seed": seed}


def numbers(trials: list[dict[str, Any]], objectives: Any = VAL, **kwargs: Any) -> list[int]:
    return [r.number for r in rank_configurations(trials, objectives, **kwargs)]


def confirmed_job() -> list[dict[str, Any]]:
    """Trial 1's search seed was lucky (0.80, then 0.62 and 0.64); trial 3 holds up (0.75, 0.74, 0.76);
    2 and 4 ran once, 4 better than trial 1's mean; 9 was pruned with a high partial value."""
    return [
        trial(0, val_acc=0.60), trial(1, val_acc=0.80), trial(2, val_acc=0.70), trial(3, val_acc=0.75),
        trial(4, val_acc=0.72),
        trial(5, confirm_of=1, seed=8, val_acc=0.62), trial(6, confirm_of=1, seed=9, val_acc=0.64),
        trial(7, confirm_of=3, seed=8, val_acc=0.74), trial(8, confirm_of=3, seed=9, val_acc=0.76),
        trial(9, "pruned", val_acc=0.99), trial(10, "running", confirm_of=3, seed=10),
    ]


def test_a_confirmed_configuration_ranks_by_its_seed_mean_not_its_best_seed() -> None:
    ranking = rank_configurations(confirmed_job(), VAL)
    assert [r.number for r in ranking] == [3, 1, 4, 2, 0], "3 wins on the mean; the lucky 1 follows; then the rest"
    top, lucky = ranking[0], ranking[1]
    assert top.confirmed and top.rank == 1 and [t["number"] for t in top.runs] == [3, 7, 8]
    assert top.score == pytest.approx((0.75 + 0.74 + 0.76) / 3) and top.front == 0
    assert lucky.score == pytest.approx((0.80 + 0.62 + 0.64) / 3) and lucky.trial["metrics"]["val_acc"] == 0.80
    rest = ranking[2:]
    assert not any(r.confirmed for r in rest) and [len(r.runs) for r in rest] == [1, 1, 1]
    assert rest[0].score == 0.72, "an unconfirmed configuration's score is its single run"
    # Confirmed ones lead even where a single run beats a mean (4: 0.72 > 1's 0.687): the tiers.
    assert rank_by_seed_mean(confirmed_job(), metric="val_acc", direction="maximize")[0][1] == list(top.runs)
    assert [t["number"] for t, _ in rank_by_seed_mean(confirmed_job(), metric="val_acc", direction="maximize")] == [
        3, 1, 4, 2, 0]


def test_only_complete_search_trials_are_candidates() -> None:
    ranking = rank_configurations(confirmed_job(), VAL)
    assert {r.number for r in ranking} == {0, 1, 2, 3, 4}, "no confirmation run, no pruned or running trial"
    # A confirmation run that did not complete is no evidence; one of a trial that is not complete neither.
    trials = [trial(0, val_acc=0.5), trial(1, val_acc=0.6), trial(2, "failed", confirm_of=0, seed=1),
              trial(3, "pruned", val_acc=0.9), trial(4, confirm_of=3, seed=1, val_acc=0.95)]
    ranking = rank_configurations(trials, VAL)
    assert [r.number for r in ranking] == [1, 0] and not any(r.confirmed for r in ranking)


def test_minimize_and_missing_or_odd_values_rank_last() -> None:
    trials = [trial(0, gap=0.3), trial(1, gap=0.1), trial(2), trial(3, gap=float("nan")), trial(4, gap=True),
              trial(5, gap=float("inf")), trial(6, gap=0.2), {**trial(7), "metrics": None}, trial(8, gap="0.0")]
    assert numbers(trials, [("gap", "minimize")]) == [1, 6, 0, 2, 3, 4, 5, 7, 8]
    ranking = rank_configurations(trials, [("gap", "minimize")])
    assert [r.score for r in ranking[:3]] == [0.1, 0.2, 0.3] and all(r.score is None for r in ranking[3:])
    assert numbers([trial(0, val_acc=0.5), trial(1, val_acc=None), trial(2, val_acc=0.7)]) == [2, 0, 1]
    # A seed group's mean is over its finite values.
    group = [trial(0, val_acc=0.7), trial(1, confirm_of=0, seed=1, val_acc=float("nan")),
             trial(2, confirm_of=0, seed=2, val_acc=0.8)]
    assert rank_configurations(group, VAL)[0].score == pytest.approx(0.75)


def test_the_pareto_fronts_come_first_then_the_objectives_in_order_then_the_number() -> None:
    points = {0: (0.90, 0.20), 1: (0.85, 0.05), 2: (0.80, 0.30), 3: (0.95, 0.25), 4: (0.87, 0.40),
              5: (0.95, 0.15), 6: (0.94, 0.50)}
    trials = [trial(n, val_acc=v, gap=g) for n, (v, g) in points.items()]
    ranking = rank_configurations(trials, TWO)
    # front 0: 5, 1; front 1: 3, 0 (5 dominates 3: same val_acc, smaller gap); front 2: 6, 4, 2.
    assert [r.number for r in ranking] == [5, 1, 3, 0, 6, 4, 2]
    assert [r.front for r in ranking] == [0, 0, 1, 1, 2, 2, 2]
    assert ranking[0].scores == (0.95, 0.15)
    # the first is the best on the first objective; with one objective the same trials rank by val_acc
    assert numbers(trials) == [3, 5, 6, 0, 4, 1, 2]
    # a third objective joins the dominance and then the tie-break
    three = [trial(n, val_acc=v, gap=g, seconds_per_epoch=1.0 if n != 6 else 0.1) for n, (v, g) in points.items()]
    objectives = [*TWO, ("seconds_per_epoch", "minimize")]
    ranking = rank_configurations(three, objectives)
    assert [r.number for r in ranking if r.front == 0] == [5, 6, 1]


def test_ties_break_on_the_next_objective_then_the_trial_number_whatever_the_input_order() -> None:
    trials = [trial(4, val_acc=0.9, gap=0.2), trial(2, val_acc=0.9, gap=0.1), trial(7, val_acc=0.9, gap=0.1),
              trial(1, val_acc=0.8, gap=0.1), trial(3, val_acc=0.9, gap=0.1)]
    # front 0: the identical points 2, 3, 7 (earlier number first); front 1: 4, then 1 (by val_acc)
    assert numbers(trials, TWO) == [2, 3, 7, 4, 1]
    assert numbers(trials) == [2, 3, 4, 7, 1], "one objective: equal values by trial number"
    rng = random.Random(7)
    for _ in range(20):
        shuffled = rng.sample(trials, len(trials))
        assert numbers(shuffled, TWO) == [2, 3, 7, 4, 1] and numbers(shuffled) == [2, 3, 4, 7, 1]
    assert numbers(trials, TWO, k=2) == [2, 3] and numbers(trials, TWO, k=0) == []
    assert numbers([], TWO) == [] and rank_configurations([], VAL) == []
    # confirmed groups tie on their mean: the number decides too
    tied = [trial(0, val_acc=0.6), trial(1, val_acc=0.8), trial(2, confirm_of=1, seed=1, val_acc=0.6),
            trial(3, confirm_of=0, seed=1, val_acc=0.8)]
    assert numbers(tied) == [0, 1]


def _brute_fronts(points: list[tuple[float, ...]]) -> list[int]:
    clean = [tuple(math.inf if math.isnan(v) else v for v in p) for p in points]

    def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    fronts, left, front = [-1] * len(clean), set(range(len(clean))), 0
    while left:
        current = {i for i in left if not any(dominates(clean[j], clean[i]) for j in left if j != i)}
        for i in current:
            fronts[i] = front
        left -= current
        front += 1
    return fronts


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_pareto_fronts_are_exact_non_dominated_sorting(m: int) -> None:
    rng = random.Random(m)
    for _ in range(150):
        n = rng.randint(0, 25)
        choices = [0.1, 0.2, 0.3, math.inf, math.nan]  # few values: many ties and duplicates
        points = [tuple(rng.choice([*choices, rng.random()]) for _ in range(m)) for _ in range(n)]
        assert pareto_fronts(points) == _brute_fronts(points), points
    big = np.random.default_rng(0).random((2000, m))
    fronts = pareto_fronts(big)
    assert len(fronts) == 2000 and min(fronts) == 0
    on_front = big[np.asarray(fronts) == 0]
    assert not any((on_front <= p).all() and (on_front < p).any() for p in on_front), "front 0: none dominated"


def test_objectives_of_a_spec_and_of_a_stored_one_that_no_longer_validates() -> None:
    spec = validate_spec({"name": "x", "dataset": {"name": "digits"}, "pruner": "none",
                          "objective": {"metrics": ["val_acc", "gap"]}})
    assert objectives_of(spec) == TWO and objectives_of(spec.model_dump(mode="json")) == TWO
    assert objectives_of({"objective": {"metrics": ["gap", "val_acc"]}, "unknown": 1}) == [
        ("gap", "minimize"), ("val_acc", "maximize")]
    assert objectives_of({"objective": {"metrics": ["gap"], "directions": ["maximize"]}, "x": 1}) == [
        ("gap", "maximize")]
    for odd in (None, {}, {"objective": "nonsense"}, {"objective": {"metrics": []}}, []):
        assert objectives_of(odd) == VAL


def test_rank_jobs_ranks_each_job_on_its_own() -> None:
    rows = [{**t, "job_id": "a"} for t in confirmed_job()] + [
        {**trial(0, val_acc=0.9, gap=0.3), "job_id": "b"}, {**trial(1, val_acc=0.8, gap=0.1), "job_id": "b"},
        {**trial(0, val_acc=1.0), "job_id": "not-asked"}]
    ranked = rank_jobs(rows, {"a": VAL, "b": [("gap", "minimize")], "empty": VAL}, k=1)
    assert {job: [r.number for r in top] for job, top in ranked.items()} == {"a": [3], "b": [1], "empty": []}
    assert ranked["a"][0].confirmed and not ranked["b"][0].confirmed
