"""The evidence behind a job's answer: ``GET /jobs/{id}/report``."""

from __future__ import annotations

from fastapi import APIRouter

from regsearch.evidence import build_report
from regsearch.services.api.deps import DatabaseDep, JobDep
from regsearch.services.api.report_schemas import ReportPublic
from regsearch.services.api.schemas import ErrorPublic
from regsearch.services.api.security import StrictJSONRoute
from regsearch.store.db import Database
from regsearch.store.models import Job
from regsearch.store.trial_reads import report_trials

router = APIRouter(
    prefix="/jobs",
    tags=["report"],
    route_class=StrictJSONRoute,
    responses={404: {"model": ErrorPublic}, 503: {"model": ErrorPublic}},
)


def job_report(db: Database, job: Job) -> ReportPublic:
    """The report over every trial of ``job`` so far (a running job gets a partial one), its
    slots named by layer where the job's recipe names them (``auto``: any complete trial's)."""
    trials, recipe = report_trials(db, job_id=job.id)  # the dashboard's report reads the same
    report = build_report(job.spec or {}, trials, job_id=job.id, status=job.status, recipe=recipe)
    return ReportPublic.model_validate(report.model_dump())


@router.get("/{job_id}/report", response_model=ReportPublic)
def read_report(job: JobDep, db: DatabaseDep) -> ReportPublic:
    """Per placement, dropout band and momentum band: trials, mean and 95% interval of val_acc,
    test_acc, gap, epochs_to_95pct_best, seconds_per_epoch; the recommendation; noise warnings."""
    return job_report(db, job)
