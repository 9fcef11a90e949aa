"""The SQL pruners decide exactly as Optuna's pruners do, report for report."""

from __future__ import annotations

import math
import random

import optuna
import pytest
from optuna.trial import TrialState

from regsearch.domain.spec import validate_spec
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.store.pruning import SqlHyperbandPruner, SqlMedianPruner

SPEC = validate_spec({"name": "prune", "dataset": {"name": "digits"}})


def curves(seed: int, n_trials: int, steps: int, nan_rate: float = 0.03) -> list[list[float]]:
    """Learning curves of varied quality, with the odd NaN, rising like accuracies do."""
    rng = random.Random(seed)
    result = []
    for _ in range(n_trials):
        ceiling, speed = rng.uniform(0.3, 0.95), rng.uniform(0.05, 0.5)
        curve = [ceiling * (1 - math.exp(-speed * (s + 1))) + rng.gauss(0, 0.01) for s in range(steps)]
        result.append([math.nan if rng.random() < nan_rate else v for v in curve])
    return result


def replay(db: Database, optuna_pruner: optuna.pruners.BasePruner, make_ours, direction: str, seed: int,
           n_trials: int = 40, steps: int = 20) -> list[tuple[int, int, bool]]:
    """Run the same trials through Optuna (in memory) and ours; assert equal decisions."""
    job = job_store.create_job(db, spec=SPEC).job
    study = optuna.create_study(study_name=job.study_name, direction=direction, pruner=optuna_pruner)
    ours = make_ours(job.id, job.study_name)
    decisions = []
    for curve in curves(seed, n_trials, steps):
        trial = study.ask()
        row_id = trial_store.add_trial(db, job_id=job.id, number=trial.number, optuna_trial_id=trial._trial_id, params={})
        claim = trial_store.claim(db, trial_id=row_id, worker="w", device="cpu")
        assert claim is not None
        history: dict[int, float] = {}
        pruned = False
        for step, value in enumerate(curve, start=1):
            value = -value if direction == "minimize" else value
            trial.report(value, step)
            history[step] = value
            expected = trial.should_prune()
            got = ours.should_prune(trial.number, history)
            assert got == expected, f"trial {trial.number} step {step}: optuna {expected}, ours {got}"
            decisions.append((trial.number, step, got))
            if got:
                pruned = True
                break
        if pruned:
            study.tell(trial, state=TrialState.PRUNED)
            trial_store.finish(db, trial_id=row_id, lease=claim.lease, state="pruned")
        else:
            final = history[max(history)]
            study.tell(trial, final if not math.isnan(final) else None, state=TrialState.COMPLETE if not math.isnan(final) else TrialState.FAIL)
            state = "complete" if not math.isnan(final) else "failed"
            trial_store.finish(db, trial_id=row_id, lease=claim.lease, state=state, metrics={"val_acc": final},
                               step_values=history)
    return decisions


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
@pytest.mark.parametrize(("startup", "warmup"), [(5, 0), (0, 10), (3, 4)])
def test_median_decisions_match_optuna(db: Database, direction: str, startup: int, warmup: int) -> None:
    decisions = replay(
        db, optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup),
        lambda job_id, _name: SqlMedianPruner(db, job_id, direction == "maximize", n_startup_trials=startup,
                                              n_warmup_steps=warmup),
        direction, seed=startup * 10 + warmup,
    )
    assert any(d[2] for d in decisions) and not all(d[2] for d in decisions), "the replay must exercise both answers"


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
@pytest.mark.parametrize(("min_resource", "max_resource"), [(1, 20), (2, 20), (1, 9)])
def test_hyperband_decisions_match_optuna(db: Database, direction: str, min_resource: int, max_resource: int) -> None:
    decisions = replay(
        db, optuna.pruners.HyperbandPruner(min_resource=min_resource, max_resource=max_resource, reduction_factor=3),
        lambda job_id, name: SqlHyperbandPruner(db, job_id, name, direction == "maximize", min_resource=min_resource,
                                                max_resource=max_resource, reduction_factor=3),
        direction, seed=min_resource * 100 + max_resource, steps=max_resource,
    )
    assert any(d[2] for d in decisions) and not all(d[2] for d in decisions)
