"""The states are the interface's (docs/interface.md: job states, trial states), defined once.

The lists below are written out from docs/interface.md on purpose: a state added to or dropped from
the enums without the interface (or the other way round) fails here.
"""

from __future__ import annotations

from typing import Any

import pytest
from optuna.trial import TrialState as OptunaTrialState

from regsearch.config import Settings
from regsearch.domain.states import (
    ACTIVE_JOB_STATES,
    ACTIVE_TRIAL_STATES,
    COUNTED_TRIAL_STATES,
    FINAL_JOB_STATES,
    FINAL_TRIAL_STATES,
    EndReason,
    JobState,
    StopReason,
    TrialState,
    optuna_state,
)
from regsearch.services.api.main import create_app
from regsearch.services.api.schemas import TrialCounts
from regsearch.store.db import Database

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# docs/interface.md, "Job states" and "Trial states".
INTERFACE_JOB_STATES = ["queued", "running", "completed", "failed", "cancelled"]
INTERFACE_TRIAL_STATES = ["queued", "running", "complete", "pruned", "failed", "cancelled"]
# docs/interface.md, GET /jobs/{id}: counts.
INTERFACE_COUNTS = ["queued", "running", "complete", "pruned", "failed", "cancelled"]


def test_the_enums_are_the_interfaces_states() -> None:
    assert [s.value for s in JobState] == INTERFACE_JOB_STATES
    assert [s.value for s in TrialState] == INTERFACE_TRIAL_STATES
    assert [s.value for s in COUNTED_TRIAL_STATES] == INTERFACE_COUNTS
    assert list(TrialCounts.model_fields) == INTERFACE_COUNTS


def test_final_and_active_states_split_each_enum() -> None:
    assert FINAL_JOB_STATES | ACTIVE_JOB_STATES == set(JobState)
    assert not FINAL_JOB_STATES & ACTIVE_JOB_STATES
    assert FINAL_TRIAL_STATES | ACTIVE_TRIAL_STATES == set(TrialState)
    assert not FINAL_TRIAL_STATES & ACTIVE_TRIAL_STATES


def test_a_state_is_its_string() -> None:
    """Rows and JSON hold plain strings: they compare, hash and format as the members."""
    for state in [*JobState, *TrialState, *StopReason, *EndReason]:
        assert state == state.value and hash(state) == hash(state.value)
        assert str(state) == f"{state}" == state.value
    assert "running" in ACTIVE_TRIAL_STATES and "cancelled" in FINAL_JOB_STATES
    assert {TrialState.COMPLETE: 1}["complete"] == 1
    assert TrialState("pruned") is TrialState.PRUNED


def test_stop_and_end_reasons_keep_their_messages() -> None:
    assert [s.value for s in StopReason] == ["pruned", "cancelled", "draining", "lease lost"]
    assert EndReason.JOB_CANCELLED == "job cancelled"
    assert EndReason.TIMEOUT_NOT_STARTED == "not started: the job's timeout passed"
    assert EndReason.NOT_ENQUEUED == "coordinator stopped before the trial was enqueued"


@pytest.mark.parametrize(("state", "expected"), [
    (TrialState.QUEUED, OptunaTrialState.WAITING),
    (TrialState.RUNNING, OptunaTrialState.RUNNING),
    (TrialState.COMPLETE, OptunaTrialState.COMPLETE),
    (TrialState.PRUNED, OptunaTrialState.PRUNED),
    (TrialState.FAILED, OptunaTrialState.FAIL),
    (TrialState.CANCELLED, OptunaTrialState.FAIL),  # Optuna has no cancelled state
])
def test_optuna_state_maps_each_of_ours(state: TrialState, expected: OptunaTrialState) -> None:
    assert optuna_state(state) is expected
    assert optuna_state(state.value) is expected  # a state read back from a row


def test_optuna_state_covers_every_state() -> None:
    assert {optuna_state(s) for s in FINAL_TRIAL_STATES} <= {
        s for s in OptunaTrialState if s.is_finished()}
    with pytest.raises(ValueError):
        optuna_state("done")


def _enum_of(openapi: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """The allowed values of a field's schema, through a $ref and an optional (anyOf null)."""
    for option in schema.get("anyOf", [schema]):
        if "$ref" in option:
            option = openapi["components"]["schemas"][option["$ref"].rsplit("/", 1)[-1]]
        if "enum" in option:
            return list(option["enum"])
    raise AssertionError(f"no enum in {schema}")


def test_the_openapi_lists_the_enums_values(sqlite_settings: Settings, sqlite_db: Database) -> None:
    openapi = create_app(sqlite_settings, db=sqlite_db, broker_ping=lambda: None).openapi()
    schemas = openapi["components"]["schemas"]
    for model in ("TrialPublic", "TrialDetailPublic"):
        assert _enum_of(openapi, schemas[model]["properties"]["state"]) == INTERFACE_TRIAL_STATES
    for model in ("JobPublic", "JobDetailPublic", "JobCancelPublic"):
        assert _enum_of(openapi, schemas[model]["properties"]["status"]) == INTERFACE_JOB_STATES
    assert list(schemas["TrialCounts"]["properties"]) == INTERFACE_COUNTS
    trials = openapi["paths"]["/jobs/{job_id}/trials"]["get"]["parameters"]
    state = next(p for p in trials if p["name"] == "state")
    assert _enum_of(openapi, state["schema"]) == INTERFACE_TRIAL_STATES
