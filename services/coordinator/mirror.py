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
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState as OptunaTrialState

from regsearch.domain.space import suggest_params
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import EndReason, optuna_state
from regsearch.domain.trial_end import Outcome
from regsearch.store import studies
from regsearch.store.db import Database
from regsearch.store.optuna_record import create_running_trial, finish_running_trial

log = logging.getLogger("regsearch.coordinator")

# A search trial's configuration is asked for this many times at most before the space counts as
# exhausted: first from the job's sampler, then drawn uniformly (StudyMirror._sample_new).
SAMPLER_ATTEMPTS = 8
UNIFORM_ATTEMPTS = 64
# The in-memory states of a configuration the job has (in flight, complete or pruned).
TAKEN_STATES = (OptunaTrialState.RUNNING, OptunaTrialState.COMPLETE, OptunaTrialState.PRUNED)
CONFIRM_ATTR = "regsearch_confirm_of"  # the user attribute of a confirmation run (ActiveJob.prepare)


class SpaceExhausted(Exception):
    """Every attempt at a new search configuration was one the job already has."""

    def __init__(self, distinct: int) -> None:
        super().__init__(f"{EndReason.SPACE_EXHAUSTED}: {distinct} distinct configurations")
        self.distinct = distinct


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
        # Draws uniformly over the space for :meth:`_sample_new`, on the same in-memory trials.
        # Its own seed: with the job's, a random job's fallback would replay the job's draws.
        self._uniform = optuna.load_study(study_name=study_name, storage=self.memory._storage,
                                          sampler=optuna.samplers.RandomSampler(seed=spec.training.seed + 1))

    def ask(self, fixed_params: dict[str, Any] | None = None,
            user_attrs: dict[str, Any] | None = None,
            structure: dict[str, Any] | None = None) -> tuple[int, int, dict[str, Any]]:
        """Sample a configuration; returns (trial number, Optuna trial id, parameters).

        A search trial (no ``fixed_params``) is never a configuration the job already has:
        see :meth:`_sample_new`, which raises :class:`SpaceExhausted` when it finds none.
        ``structure`` (a pack's companion) fixes those parameters of a search trial and leaves
        the rest to the sampler.
        """
        if fixed_params is not None:  # a retry or a confirmation run: asked for on purpose
            self.memory.enqueue_trial(fixed_params, user_attrs=user_attrs)
            trial, params = self._sample(self.memory)
        else:
            trial, params = self._sample_new(structure)
        try:
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
            self._tell_memory(trial.number, None, OptunaTrialState.FAIL)
            raise
        self._memory_number[number] = trial.number
        return number, trial_id, params

    def _sample(self, study: optuna.Study) -> tuple[optuna.Trial, dict[str, Any]]:
        trial = study.ask()
        try:
            return trial, suggest_params(trial, self.spec)
        except BaseException:
            self._tell_memory(trial.number, None, OptunaTrialState.FAIL)
            raise

    def _sample_new(self, structure: dict[str, Any] | None = None) -> tuple[optuna.Trial, dict[str, Any]]:
        """A search configuration the job does not have yet, or :class:`SpaceExhausted`.

        The job's sampler tries first; a model-based one (TPE) that keeps proposing its favourite
        would call a space exhausted that it merely stopped exploring, so the later attempts draw
        uniformly (:attr:`_uniform`). A rejected attempt is told FAIL to the in-memory study only:
        it never reaches the record, and the samplers' models leave failed trials out, so they hold
        each configuration once, as it was trained (a copy told COMPLETE would weigh it twice and
        pull TPE further towards it).
        """
        taken = self._taken()
        for attempt in range(SAMPLER_ATTEMPTS + UNIFORM_ATTEMPTS):
            if structure:  # the next ask takes it (both studies share the in-memory storage)
                self.memory.enqueue_trial(structure, skip_if_exists=False)
            trial, params = self._sample(self.memory if attempt < SAMPLER_ATTEMPTS else self._uniform)
            if _key(trial.params) not in taken:
                return trial, params
            self._tell_memory(trial.number, None, OptunaTrialState.FAIL)
        raise SpaceExhausted(len(taken))

    def _taken(self) -> set[tuple[tuple[str, Any], ...]]:
        """The configurations of the job's search trials (retries included, confirmation runs not:
        those train with another seed) that are in flight, complete or pruned. A failed or
        cancelled one may be tried again. Every search trial trains with the spec's seed, so equal
        parameters are the same configuration. The in-memory parameters are the suggested ones
        (``suggest_params`` adds only the spec's fixed entries, the same for every trial)."""
        return {
            _key(frozen.params)
            for frozen in self.memory.get_trials(deepcopy=False, states=TAKEN_STATES)
            if CONFIRM_ATTR not in frozen.user_attrs
        }

    def running_in_record(self) -> list[FrozenTrial]:
        """The record's trials that Optuna still counts as running."""
        return self.record.get_trials(deepcopy=False, states=(OptunaTrialState.RUNNING,))

    def knows(self, number: int) -> bool:
        """Whether the mirror already has this database trial's outcome."""
        return number in self._told

    def learn(self, number: int, outcome: Outcome) -> None:
        """Record a database trial's outcome (``regsearch.domain.trial_end``, from its row) in the
        in-memory study (idempotent)."""
        memory_number = self._memory_number.get(number)
        if memory_number is not None:
            self._tell_memory(memory_number, outcome.values, optuna_state(outcome.state))
        self._told.add(number)

    def _tell_memory(self, memory_number: int, values: list[float] | None, state: OptunaTrialState) -> None:
        try:
            self.memory.tell(memory_number, values, state=state, skip_if_finished=True)
        except RuntimeError as exc:
            # GridSampler.after_trial calls ``study.stop()`` once every grid point has run, which
            # raises outside ``optimize``; the outcome was stored before (Optuna's tell, finally).
            if "Study.stop" not in str(exc):
                raise

    def tell(self, number: int, optuna_trial_id: int, outcome: Outcome) -> None:
        """Record an outcome the coordinator decided (or recovered) in both studies (idempotent):
        Optuna's record through the one write that ends a trial there (a trial the worker's own
        result already ended stays as it is)."""
        finish_running_trial(self._engine, optuna_trial_id, outcome.state, outcome.values)
        self.learn(number, outcome)


def _key(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(params.items()))
