"""A trial's end is decided in one place (``regsearch.domain.trial_end``): the worker after
training, the coordinator telling Optuna about a row and the dashboard all ask it."""

from __future__ import annotations

from typing import Any

import pytest

from regsearch.domain.states import EndReason, StopReason, TrialState
from regsearch.domain.trial_end import Outcome, objective_values, trial_end

OBJECTIVES = ["val_acc"]


def test_a_trial_that_ran_its_epochs_is_complete_with_its_values() -> None:
    assert trial_end(None, {"val_acc": 0.9, "test_acc": None}, OBJECTIVES) == Outcome(
        TrialState.COMPLETE, values=[0.9])


def test_values_follow_the_objectives_order() -> None:
    metrics = {"val_acc": 0.9, "seconds_per_epoch": 2}
    assert trial_end(None, metrics, ["seconds_per_epoch", "val_acc"]).values == [2.0, 0.9]


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), -float("inf"), "0.9", True])
def test_complete_without_a_finite_objective_value_is_a_failure(bad: Any) -> None:
    outcome = trial_end(None, {"val_acc": bad}, OBJECTIVES)
    assert outcome == Outcome(TrialState.FAILED, "objective ['val_acc'] is not a finite number")


def test_a_missing_metric_or_no_metrics_is_a_failure() -> None:
    assert trial_end(None, {"test_acc": 0.5}, OBJECTIVES).state == TrialState.FAILED
    assert trial_end(None, None, OBJECTIVES).state == TrialState.FAILED
    assert trial_end(None, {"val_acc": 0.9}, ["val_acc", "gap"]).state == TrialState.FAILED


@pytest.mark.parametrize(("stop", "expected"), [
    (StopReason.PRUNED, Outcome(TrialState.PRUNED)),
    (StopReason.CANCELLED, Outcome(TrialState.CANCELLED, EndReason.JOB_CANCELLED)),
    (StopReason.LEASE_LOST, Outcome(TrialState.FAILED, "lease lost: the trial was presumed dead and reassigned")),
])
def test_a_stopped_trial_ends_as_its_stop_says_whatever_it_measured(stop: StopReason, expected: Outcome) -> None:
    assert trial_end(stop, {"val_acc": 0.9}, OBJECTIVES) == expected


def test_a_draining_trial_does_not_end() -> None:
    with pytest.raises(ValueError, match="goes back to the queue"):
        trial_end(StopReason.DRAINING, {"val_acc": 0.9}, OBJECTIVES)


@pytest.mark.parametrize("state", [TrialState.COMPLETE, "complete"])
def test_a_complete_row_read_back_keeps_the_same_rule(state: Any) -> None:
    assert trial_end(state, {"val_acc": 0.5}, OBJECTIVES) == Outcome(TrialState.COMPLETE, values=[0.5])
    assert trial_end(state, {"val_acc": None}, OBJECTIVES).state == TrialState.FAILED


@pytest.mark.parametrize("state", [TrialState.PRUNED, TrialState.FAILED, TrialState.CANCELLED, "failed"])
def test_a_row_that_did_not_complete_has_no_values(state: Any) -> None:
    outcome = trial_end(state, {"val_acc": 0.9}, OBJECTIVES)
    assert outcome == Outcome(TrialState(state))  # the row keeps its own error


@pytest.mark.parametrize("state", [TrialState.QUEUED, TrialState.RUNNING, "done"])
def test_a_state_that_is_not_final_is_refused(state: Any) -> None:
    with pytest.raises(ValueError):
        trial_end(state, {"val_acc": 0.9}, OBJECTIVES)


def test_objective_values_accepts_ints_as_floats() -> None:
    assert objective_values({"epochs_to_95pct_best": 3}, ["epochs_to_95pct_best"]) == [3.0]
    assert objective_values({}, []) == []
