"""Write a newly asked trial to Optuna's database record in one short transaction.

``RDBStorage.create_new_trial(template_trial=...)`` re-reads the trial and the study's earlier
parameters for every parameter it copies (a distribution compatibility check): ~20 statements
and ~5 ms of the coordinator's CPU per trial with five parameters, the largest part of its work
per trial on a 2-core machine. The coordinator samples on its in-memory study, whose
``set_trial_param`` already made that compatibility check against the same trials, so here the
same rows are inserted through Optuna's own ORM models (its column types, enum and datetime
conversions) without the re-reads: lock the study, insert the trial, its parameters and user
attributes, number it as Optuna does, commit.

Written by hand where the library has no cheaper call; it relies on Optuna's ORM models, which
match the database whenever ``RDBStorage`` opened it (Optuna refuses a schema of another
version). ``tests/services/test_record.py`` checks that the record reads back exactly as
``create_new_trial`` writes it.
"""

from __future__ import annotations

import json
from typing import Any

from optuna.distributions import distribution_to_json
from optuna.storages import RDBStorage
from optuna.storages._rdb import models  # Optuna's ORM models: see the module docstring
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from regsearch.store.db import StoreUnavailable


def create_running_trial(storage: Any, study_id: int, template: FrozenTrial) -> tuple[int, int]:
    """Insert ``template`` (params, distributions, user attributes) as a RUNNING trial of the
    study; returns (trial number, trial id). The number follows Optuna's rule (the count of the
    study's earlier trials), under the study row's lock as Optuna takes it.

    ``storage`` is a loaded study's storage: an ``RDBStorage``, or the cache Optuna wraps around
    one (which reads trials it has not seen from the database when next asked).
    """
    rdb = getattr(storage, "_backend", storage)
    if not isinstance(rdb, RDBStorage):
        raise TypeError(f"the record study must live in an RDBStorage, not {type(rdb).__name__}")
    try:
        return _insert(rdb, study_id, template)
    except OperationalError as exc:  # the coordinator's tick waits out an unreachable database
        raise StoreUnavailable(f"database unavailable: {exc.orig}") from exc


def _insert(rdb: RDBStorage, study_id: int, template: FrozenTrial) -> tuple[int, int]:
    with Session(rdb.engine) as session, session.begin():
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        trial = models.TrialModel(study_id=study_id, number=None, state=TrialState.RUNNING,
                                  datetime_start=template.datetime_start, datetime_complete=None)
        session.add(trial)
        session.flush()
        session.add_all([
            models.TrialParamModel(trial_id=trial.trial_id, param_name=name,
                                   param_value=template.distributions[name].to_internal_repr(value),
                                   distribution_json=distribution_to_json(template.distributions[name]))
            for name, value in template.params.items()
        ])
        session.add_all([
            models.TrialUserAttributeModel(trial_id=trial.trial_id, key=key, value_json=json.dumps(value))
            for key, value in template.user_attrs.items()
        ])
        trial.number = trial.count_past_trials(session)  # Optuna's own rule, after the inserts
        return trial.number, trial.trial_id
