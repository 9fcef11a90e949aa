"""An in-memory copy of a job's study for sampling, so ``ask`` does not re-read the database.

Optuna's samplers call ``study.get_trials()`` several times per ``ask``; on an RDB storage
each call is a query that grows with the study (130 ms per ask at ~100 trials on SQLite, in
our measurements). The coordinator is the only process that asks, so it samples on an
in-memory study and writes each new trial (params, distributions, RUNNING) to the database
study, which stays the record that workers, the API and Optuna's tools read. Results flow
back from the trial rows (:meth:`StudyMirror.learn`), and an outcome the coordinator decides
itself goes to both studies (:meth:`StudyMirror.tell`). A restarted coordinator rebuilds the
mirror from the database.

What an ask costs is kept bounded (docs/performance.md, "The ask path"):

- A search ask that repeats a configuration the job already has asks the job's sampler once;
  the replacement is drawn uniformly in a scratch study nobody reads (:attr:`StudyMirror._scratch`)
  and only the configuration kept enters the in-memory study. Asking a model-based sampler again
  mostly got its favourite again (TPE proposed a taken configuration ~7 times per trial in a
  200-trial job), each time at a full ask's cost, and every rejected attempt stayed in the
  in-memory study for all later asks to walk over.
- With TPE, the in-memory study is the sampler's window on the history, not all of it
  (:meth:`StudyMirror._trim`): the best ``HISTORY_BEST`` finished trials, the latest
  ``HISTORY_RECENT``, and every trial in flight. TPE's ask walks every trial it is given, so
  without a window its cost grows with the job. The configurations the job has are kept apart
  from that window (:attr:`StudyMirror._done`, :attr:`StudyMirror._running`), so no
  configuration is trained twice however old it is.
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
# exhausted: first from the job's sampler (once: asked again, a model-based one mostly proposes
# the same favourite, at a full ask's cost), then drawn uniformly (StudyMirror._sample_new).
SAMPLER_ATTEMPTS = 1
UNIFORM_ATTEMPTS = 64
# The in-memory states of a configuration the job has (in flight, complete or pruned).
TAKEN_STATES = (OptunaTrialState.RUNNING, OptunaTrialState.COMPLETE, OptunaTrialState.PRUNED)
# TPE's window on the history (StudyMirror._trim). TPE's ask reads every trial it is given (9 ms
# at 100 trials, 23 ms at 400 on this project's machine), so it sees a window: the best 25 (TPE's
# "good" group is at most its top 25 trials, Optuna's default gamma, so the window always holds
# the job's real top 25) and the latest 175 (the "bad" group's density and the recency weights,
# whose ramp starts at 25 trials, see a large sample of the recent search). Trimmed once more than
# 300 trials count, so a job of up to 300 trials samples exactly as without a window, and a
# longer one's TPE sees 200-300.
HISTORY_BEST = 25
HISTORY_RECENT = 175
TRIM_AT = 300
_SCRATCH_TRIALS = 256  # the scratch study is made anew past this many (RandomSampler keeps no model)
CONFIRM_ATTR = "regsearch_confirm_of"  # the user attribute of a confirmation run (ActiveJob.prepare)
SEED_ATTR = "regsearch_seed"  # and its training seed


class SpaceExhausted(Exception):
    """Every attempt at a new search configuration was one the job already has."""

    def __init__(self, distinct: int) -> None:
        super().__init__(f"{EndReason.SPACE_EXHAUSTED}: {distinct} distinct configurations")
        self.distinct = distinct


class StudyMirror:
    def __init__(self, db: Database, study_name: str, spec: JobSpec, *, window: bool = True) -> None:
        """``window=False``: TPE sees the whole history (bench/ask_cost.py measures both)."""
        self.spec = spec
        self._engine = db.engine  # new trials go to the record through the coordinator's own pool
        self.record = studies.load_study(db.url, study_name, spec, with_sampler=False)
        self.memory = optuna.create_study(directions=spec.directions, sampler=studies.make_sampler(spec),
                                          study_name=study_name)
        self._memory_number: dict[int, int] = {}  # database trial number -> in-memory number
        self._told: set[int] = set()  # database trial numbers whose outcome the mirror knows
        # The configurations of the job's search trials (retries included, confirmation runs
        # not: those train with another seed): complete or pruned ones for good, in-flight ones
        # by in-memory number until their outcome (a failed or cancelled one may be tried again).
        self._done: set[tuple[tuple[str, Any], ...]] = set()
        self._running: dict[int, tuple[tuple[str, Any], ...]] = {}
        for memory_number, frozen in enumerate(self.record.get_trials(deepcopy=False)):
            self.memory.add_trial(frozen)
            self._memory_number[frozen.number] = memory_number
            if frozen.state.is_finished():
                self._told.add(frozen.number)
            if CONFIRM_ATTR not in frozen.user_attrs:
                self._hold(memory_number, frozen.params, frozen.state)
        # Windowing is TPE's alone: a grid must see every point it ran, NSGA-II its generations,
        # and random sampling reads no history.
        self._windowed = window and isinstance(self.memory.sampler, optuna.samplers.TPESampler)
        # Uniform draws for :meth:`_sample_new`, in a study of their own that nothing reads.
        # Its own seed: with the job's, a random job's fallback would replay the job's draws.
        self._uniform_sampler = optuna.samplers.RandomSampler(seed=spec.training.seed + 1)
        self._scratch = self._new_scratch()
        self._trim()

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
        if CONFIRM_ATTR not in (user_attrs or {}):
            self._hold(trial.number, trial.params, OptunaTrialState.RUNNING)
        self._trim()
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

        The job's sampler tries first, once: a model-based one (TPE) asked again mostly proposes
        the same favourite, at a full ask's cost, and one that keeps proposing it would call a
        space exhausted that it merely stopped exploring. The later attempts draw uniformly in
        :attr:`_scratch`, and the configuration kept is then asked of the in-memory study with
        every parameter fixed (the sampler's model is not consulted for it). A rejected attempt
        of the sampler is told FAIL to the in-memory study only: it never reaches the record, and
        the samplers' models leave failed trials out, so they hold each configuration once, as
        it was trained (a copy told COMPLETE would weigh it twice and pull TPE further towards it).
        """
        for _ in range(SAMPLER_ATTEMPTS):
            if structure:  # the next ask takes it
                self.memory.enqueue_trial(structure, skip_if_exists=False)
            trial, params = self._sample(self.memory)
            if not self._taken(trial.params):
                return trial, params
            self._tell_memory(trial.number, None, OptunaTrialState.FAIL)
        for _ in range(UNIFORM_ATTEMPTS):
            drawn = self._draw_uniform(structure)
            if not self._taken(drawn):
                self.memory.enqueue_trial(drawn, skip_if_exists=False)
                return self._sample(self.memory)
        raise SpaceExhausted(len(self._done | set(self._running.values())))

    def _draw_uniform(self, structure: dict[str, Any] | None) -> dict[str, Any]:
        """One configuration's suggested parameters, drawn uniformly over the space (``structure``
        fixed) in the scratch study; the scratch trial is closed at once."""
        if len(self._scratch.get_trials(deepcopy=False)) >= _SCRATCH_TRIALS:
            self._scratch = self._new_scratch()
        if structure:
            self._scratch.enqueue_trial(structure, skip_if_exists=False)
        trial = self._scratch.ask()
        try:
            suggest_params(trial, self.spec)
            return dict(trial.params)
        finally:
            self._scratch.tell(trial, state=OptunaTrialState.FAIL)

    def _new_scratch(self) -> optuna.Study:
        return optuna.create_study(directions=self.spec.directions, sampler=self._uniform_sampler)

    def _taken(self, params: dict[str, Any]) -> bool:
        """Whether a search trial of the job (retries included, confirmation runs not: those train
        with another seed) has these parameters and is in flight, complete or pruned. A failed or
        cancelled one may be tried again. Every search trial trains with the spec's seed, so equal
        parameters are the same configuration. The parameters are the suggested ones
        (``suggest_params`` adds only the spec's fixed entries, the same for every trial)."""
        key = _key(params)
        return key in self._done or key in self._running.values()

    def _hold(self, memory_number: int, params: dict[str, Any], state: OptunaTrialState) -> None:
        """Note a search trial's configuration as the job's (see :meth:`_taken`)."""
        if state == OptunaTrialState.RUNNING:
            self._running[memory_number] = _key(params)
        elif state in TAKEN_STATES:
            self._done.add(_key(params))

    def _trim(self) -> None:
        """TPE's window (module docstring): past ``TRIM_AT`` trials, a new in-memory
        study holds the best ``HISTORY_BEST`` finished trials, the latest ``HISTORY_RECENT`` and
        every unfinished one, in their order; the rejected attempts and the rest are dropped. The
        same sampler object carries on (its random state included)."""
        if not self._windowed:
            return
        trials = self.memory.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state in (OptunaTrialState.COMPLETE, OptunaTrialState.PRUNED)]
        # Rejected attempts and failed trials are no history for TPE: they count only once the
        # study holds twice the threshold, and a trim drops them.
        counted = sum(1 for t in trials if t.state != OptunaTrialState.FAIL)
        if counted <= TRIM_AT and len(trials) <= 2 * TRIM_AT:
            return
        keep = {t.number for t in finished[-HISTORY_RECENT:]} | {t.number for t in self._best(finished)}
        kept = [t for t in trials if not t.state.is_finished() or t.number in keep]
        memory = optuna.create_study(directions=self.spec.directions, sampler=self.memory.sampler,
                                     study_name=self.memory.study_name)
        memory.add_trials(kept)
        renumber = {old.number: new for new, old in enumerate(kept)}
        self._memory_number = {db: renumber[m] for db, m in self._memory_number.items() if m in renumber}
        self._running = {renumber[m]: key for m, key in self._running.items()}
        self.memory = memory
        log.debug("study %s: TPE's window trimmed from %d to %d trials", memory.study_name, len(trials), len(kept))

    def _best(self, finished: list[FrozenTrial]) -> list[FrozenTrial]:
        """The best ``HISTORY_BEST`` complete trials (several objectives: the Pareto front first,
        then the rest by the first objective)."""
        complete = [t for t in finished if t.state == OptunaTrialState.COMPLETE]
        directions = self.memory.directions
        sign = [1.0 if d == optuna.study.StudyDirection.MINIMIZE else -1.0 for d in directions]
        ranked = sorted(complete, key=lambda t: sign[0] * t.values[0])
        if len(directions) > 1:
            from optuna.study._multi_objective import _get_pareto_front_trials_by_trials

            front = _get_pareto_front_trials_by_trials(complete, directions)
            numbers = {t.number for t in front}
            ranked = front + [t for t in ranked if t.number not in numbers]
        return ranked[:HISTORY_BEST]

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
        held = self._running.pop(memory_number, None)
        if held is not None and state in TAKEN_STATES:
            self._done.add(held)
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
