"""``val_auc`` became ``mean_val_acc`` and ``epochs_to_converge`` became ``epochs_to_95pct_best``: old
specs still validate, stored jobs read under the new names."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import select, update

from regsearch.domain.metrics import OBJECTIVE_METRICS, RENAMED_METRICS, SHOWN_METRICS
from regsearch.domain.spec import validate_spec
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.store.migrate import alembic_config, upgrade
from regsearch.store.models import Job, Trial

OLD_SPEC = {"name": "old", "dataset": {"name": "digits"}, "objective": {"metrics": ["val_acc", "val_auc"]},
            "pruner": "none", "budget": {"n_trials": 2}}


def test_the_old_name_in_an_objective_means_the_new_one() -> None:
    assert "val_auc" not in OBJECTIVE_METRICS and "val_auc" not in SHOWN_METRICS
    assert "epochs_to_converge" not in OBJECTIVE_METRICS and "epochs_to_converge" not in SHOWN_METRICS
    assert RENAMED_METRICS == {"val_auc": "mean_val_acc", "epochs_to_converge": "epochs_to_95pct_best"}
    spec = validate_spec(OLD_SPEC)
    assert spec.objective.metrics == ["val_acc", "mean_val_acc"]
    assert spec.directions == ["maximize", "maximize"]


def test_an_unknown_metric_is_still_refused_by_name() -> None:
    with pytest.raises(ValueError, match="mean_val_acc"):
        validate_spec({**OLD_SPEC, "objective": {"metrics": ["val_roc"]}})


def test_the_migration_renames_stored_metrics_and_objectives(db: Database) -> None:
    job = job_store.create_job(db, spec=validate_spec(OLD_SPEC)).job
    trial_store.add_trial(db, job_id=job.id, number=0, optuna_trial_id=1, params={"placement": "act"})
    old_metrics = {"val_acc": 0.8, "val_auc": 0.7, "gap": 0.1}
    config = alembic_config(db.url)
    command.downgrade(config, "0006")
    # What a job stored before the rename looked like.
    with db.session() as s:
        spec = dict(s.get(Job, job.id).spec)
        s.execute(update(Job).where(Job.id == job.id).values(
            spec={**spec, "objective": {**spec["objective"], "metrics": ["val_acc", "val_auc"]}}))
        s.execute(update(Trial).where(Trial.job_id == job.id).values(
            metrics=old_metrics, superseded_result={"state": "complete", "metrics": old_metrics}))
    upgrade(db.url)
    with db.read() as s:
        stored_spec = s.get(Job, job.id).spec
        trial = s.execute(select(Trial).where(Trial.job_id == job.id)).scalar_one()
        assert stored_spec["objective"]["metrics"] == ["val_acc", "mean_val_acc"]
        assert trial.metrics == {"val_acc": 0.8, "mean_val_acc": 0.7, "gap": 0.1}
        assert trial.superseded_result["metrics"]["mean_val_acc"] == 0.7
    command.downgrade(config, "0006")
    with db.read() as s:
        assert s.execute(select(Trial.metrics).where(Trial.job_id == job.id)).scalar_one()["val_auc"] == 0.7
    upgrade(db.url)


OLDER_SPEC = {**OLD_SPEC, "objective": {"metrics": ["val_acc", "epochs_to_converge"]}}


def test_epochs_to_converge_in_an_objective_means_epochs_to_95pct_best() -> None:
    spec = validate_spec(OLDER_SPEC)
    assert spec.objective.metrics == ["val_acc", "epochs_to_95pct_best"]
    assert spec.directions == ["maximize", "minimize"]


def test_the_migration_renames_epochs_to_converge(db: Database) -> None:
    job = job_store.create_job(db, spec=validate_spec(OLDER_SPEC)).job
    trial_store.add_trial(db, job_id=job.id, number=0, optuna_trial_id=1, params={"placement": "act"})
    old_metrics = {"val_acc": 0.8, "epochs_to_converge": 4, "mean_val_acc": 0.7}
    config = alembic_config(db.url)
    command.downgrade(config, "0008")
    with db.session() as s:  # what a job stored before this rename looked like
        spec = dict(s.get(Job, job.id).spec)
        s.execute(update(Job).where(Job.id == job.id).values(
            spec={**spec, "objective": {**spec["objective"], "metrics": ["val_acc", "epochs_to_converge"]}}))
        s.execute(update(Trial).where(Trial.job_id == job.id).values(
            metrics=old_metrics, superseded_result={"state": "complete", "metrics": old_metrics}))
    upgrade(db.url)
    with db.read() as s:
        assert s.get(Job, job.id).spec["objective"]["metrics"] == ["val_acc", "epochs_to_95pct_best"]
        trial = s.execute(select(Trial).where(Trial.job_id == job.id)).scalar_one()
        assert trial.metrics == {"val_acc": 0.8, "epochs_to_95pct_best": 4, "mean_val_acc": 0.7}
        assert trial.superseded_result["metrics"]["epochs_to_95pct_best"] == 4
    command.downgrade(config, "0008")
    with db.read() as s:
        assert s.execute(select(Trial.metrics).where(Trial.job_id == job.id)).scalar_one()["epochs_to_converge"] == 4
        assert s.get(Job, job.id).spec["objective"]["metrics"] == ["val_acc", "epochs_to_converge"]
    upgrade(db.url)
