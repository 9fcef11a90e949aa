"""An in-memory copy of a job's study for sampling, so ``ask`` does not re-read the database.

Optuna's samplers call ``study.get_trials()`` several times per ``ask``; on an RDB storage
each call is a query that grows with the study (130 ms per ask at ~100 trials on SQLite, in
our measurements). The coordinator is the only process that asks, so it samples on an
in-memory study and writes each new trial (params, distributions, RUNNING) to the database
study, which stays the record that workers, the API and Optuna's tools read. Results flow
back from the trial rows (:meth:`StudyMirror.learn`), and an outcome the coordinator decides
itself goes to both studies (:meth:`StudyMirror.tell`). A restarted coordinator rebuilds the
mirror from the database.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial
from optuna.trial import TrialState as OptunaTrialState

from regsearch.domain.space import suggest_params
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import TrialState, optuna_state
from regsearch.store import studies
from regsearch.store.db import Database
from regsearch.store.optuna_record import create_running_trial

log = logging.getLogger("regsearch.coordinator")


class StudyMirror:
    def __init__(self, db: Database, study_name: str, spec: JobSpec) -> None:
        self.spec = spec
        self._engine = db.engine  # new trials go to the record through the coordinator's own pool
        self.record = studies.load_study(db.url, study_name, spec, with_sampler=False)
        self.memory = optuna.create_study(directions=spec.directions, sampler=studies.make_sampler(spec),
                                          study_name=study_name)
        self._memory_number: dict[int, int] = {}  # database trial number -> in-memory number
        self._told: set[int] = set()  # database trial numbers whose outcome the mirror knows
        for frozen in self.record.get_trials(deepcopy=False):
            self.memory.add_trial(frozen)
            self._memory_number[frozen.number] = len(self._memory_number)
            if frozen.state.is_finished():
                self._told.add(frozen.number)

    def ask(self, fixed_params: dict[str, Any] | None = None,
            user_attrs: dict[str, Any] | None = None) -> tuple[int, int, dict[str, Any]]:
        """Sample a configuration; returns (trial number, Optuna trial id, parameters)."""
        if fixed_params is not None:
            self.memory.enqueue_trial(fixed_params, user_attrs=user_attrs)
        trial = self.memory.ask()
        try:
            params = suggest_params(trial, self.spec)
            frozen = self.memory._storage.get_trial(trial._trial_id)
            # The record gets what users and a restarted coordinator read: params, distributions
            # and our user attributes. The sampler's system attributes (TPE's relative params,
            # ``fixed_params``) only matter while sampling, which happened here. The in-memory
            # study checked the distributions' compatibility when it sampled.
            template = FrozenTrial(
                number=frozen.number, state=frozen.state, value=None, values=None,
                datetime_start=frozen.datetime_start, datetime_complete=None, params=frozen.params,
                distributions=frozen.distributions, user_attrs=frozen.user_attrs, system_attrs={},
                intermediate_values={}, trial_id=frozen._trial_id,
            )
            number, trial_id = create_running_trial(self._engine, self.record._study_id, template)
        except BaseException:
            self.memory.tell(trial, state=OptunaTrialState.FAIL)
            raise
        self._memory_number[number] = trial.number
        return number, trial_id, params

    def running_in_record(self) -> list[FrozenTrial]:
        """The record's trials that Optuna still counts as running."""
        return self.record.get_trials(deepcopy=False, states=(OptunaTrialState.RUNNING,))

    def knows(self, number: int) -> bool:
        """Whether the mirror already has this database trial's outcome."""
        return number in self._told

    def learn(self, number: int, values: Sequence[float] | None, state: TrialState | str) -> None:
        """Record a database trial's outcome, read from its row, in the in-memory study (idempotent)."""
        memory_number = self._memory_number.get(number)
        if memory_number is not None:
            final, final_values = _optuna_outcome(state, values)
            self.memory.tell(memory_number, final_values, state=final, skip_if_finished=True)
        self._told.add(number)

    def tell(self, number: int, values: Sequence[float] | None, state: TrialState | str) -> None:
        """Record an outcome the coordinator decided (or recovered) in both studies (idempotent)."""
        final, final_values = _optuna_outcome(state, values)
        try:
            self.record.tell(number, final_values, state=final, skip_if_finished=True)
        except UpdateFinishedTrialError:
            pass  # the worker's own outcome got there first, with the same state
        self.learn(number, values, state)


def _optuna_outcome(state: TrialState | str,
                    values: Sequence[float] | None) -> tuple[OptunaTrialState, list[float] | None]:
    """Optuna's state and values for a final row; a complete row without the objective's values
    (a metric missing or not finite) is a FAIL, as Optuna would not accept it as complete."""
    final = optuna_state(state)
    if final == OptunaTrialState.COMPLETE:
        return (final, list(values)) if values is not None else (OptunaTrialState.FAIL, None)
    return final, None
