"""Jobs and what they found: submit, list, inspect, trials, best configurations, cancel, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Depends,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
)
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from regsearch.domain.families import FamilyCatalog, validation_context
from regsearch.domain.spec import JobSpec, format_validation_error
from regsearch.domain.states import ACTIVE_JOB_STATES, TrialState
from regsearch.services.api.data_check import check_dataset_files, check_published_shape
from regsearch.services.api.deps import DatabaseDep, JobDep, NotifyDep, SettingsDep
from regsearch.services.api.errors import RETRY_AFTER_S
from regsearch.services.api.schemas import (
    BestConfigsPublic,
    ErrorPublic,
    JobCancelPublic,
    JobDetailPublic,
    JobPublic,
    JobsPublic,
    TrialDetailPublic,
    TrialsPublic,
    ValidationErrorPublic,
    best_config,
    job_detail,
    job_item,
    job_public,
    trial_detail,
    trial_public,
)
from regsearch.services.api.security import StrictJSONRoute, is_json_content_type, parse_json_strict
from regsearch.store.artifacts import ArtifactStoreUnavailable
from regsearch.store.db import Database
from regsearch.store.deletion import JobActive, JobNotFound, delete_job
from regsearch.store.jobs import (
    JobCreated,
    best_configurations,
    best_of_jobs,
    create_job,
    get_trial,
    list_jobs,
    list_trials,
    request_cancel,
    trial_counts,
)
from regsearch.store.models import Job

# Bounded so an absurd number is a 422, not a driver overflow (SQLite integers stop at 2**63).
MAX_OFFSET = 2**31 - 1

Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")]
TrialNumber = Annotated[int, Path(ge=0, le=MAX_OFFSET, description="the Optuna trial number")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="a retried submission with the same key (and spec) returns the first job",
    ),
]

router = APIRouter(
    prefix="/jobs",
    tags=["jobs"],
    route_class=StrictJSONRoute,
    responses={
        404: {"model": ErrorPublic},
        422: {"model": ValidationErrorPublic},
        503: {"model": ErrorPublic},
    },
)


class IdempotencyConflict(ValueError):
    """An Idempotency-Key that was already used for a different spec."""


def submit(db: Database, *, spec: JobSpec, idempotency_key: str | None) -> JobCreated:
    """Create the job, or return the one an earlier submission with the same key created."""
    result = create_job(db, spec=spec, idempotency_key=idempotency_key)
    if not result.created and result.job.spec != spec.model_dump(mode="json", exclude_none=True):
        # A reused key with another payload is a client bug; returning the old job would hide it.
        raise IdempotencyConflict(
            f"this Idempotency-Key was already used for job {result.job.id} with another spec"
        )
    return result


# POST /jobs validates its body itself, with the families live workers offer as pydantic's
# validation context (FastAPI's body parsing has no context), so the body is documented here.
SPEC_BODY = {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}}}}


def spec_schemas() -> dict[str, Any]:
    """``JobSpec`` and the models inside it, as OpenAPI components (``create_app`` adds them)."""
    schema = JobSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    return {**schema.pop("$defs", {}), "JobSpec": schema}


def get_catalog(request: Request) -> FamilyCatalog:
    """The plugin families live workers offer (``regsearch.store.families.catalog``)."""
    return request.app.state.catalog  # type: ignore[no-any-return]


async def submitted_spec(request: Request, catalog: Annotated[FamilyCatalog, Depends(get_catalog)]) -> JobSpec:
    """The body of ``POST /jobs``: strict JSON (415 unless declared JSON; 422 naming the spot), then
    the whole spec validated, ``model.family`` against the built-ins and ``catalog``."""
    body = await request.body()
    if body and not is_json_content_type(request.headers.get("content-type")):
        raise HTTPException(415, "send the body as JSON (Content-Type: application/json)")
    if not body:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    data = parse_json_strict(body)
    try:
        return JobSpec.model_validate(data, context=validation_context(catalog))
    except ValidationError as exc:
        raise HTTPException(422, format_validation_error(exc)) from None


def describe_job(db: Database, job: Job) -> JobDetailPublic:
    """A job with its per-state trial counts and its best configuration so far (the ranking's first)."""
    return job_detail(job, trial_counts(db, job_ids=[job.id])[job.id], best_of_jobs(db, jobs=[job])[job.id])


@router.post(
    "",
    status_code=201,
    response_model=JobPublic,
    responses={
        200: {
            "model": JobPublic,
            "description": "replayed: the job of an earlier submission with this key",
        },
        413: {"model": ErrorPublic, "description": "body larger than max_body_bytes"},
        415: {"model": ErrorPublic, "description": "body not sent as application/json"},
    },
    openapi_extra={"requestBody": SPEC_BODY},
)
def submit_job(
    spec: Annotated[JobSpec, Depends(submitted_spec)],
    db: DatabaseDep,
    settings: SettingsDep,
    response: Response,
    notify: NotifyDep,
    background: BackgroundTasks,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    """Validate a spec completely, then store the job and create its Optuna study."""
    check_dataset_files(spec, settings)
    check_published_shape(spec, settings, db)
    try:
        result = submit(db, spec=spec, idempotency_key=idempotency_key)
    except IdempotencyConflict as exc:
        raise HTTPException(
            422, [{"field": "header.idempotency-key", "message": str(exc)}]
        ) from None
    if result.created:
        response.headers["Location"] = f"/jobs/{result.job.id}"
        background.add_task(notify, "job_submitted", result.job.id)
    else:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return job_public(result.job, trial_counts(db, job_ids=[result.job.id])[result.job.id])


@router.get("", response_model=JobsPublic)
def read_jobs(db: DatabaseDep, limit: Limit = 100, offset: Offset = 0) -> JobsPublic:
    """List jobs, newest first, each with its best configuration so far (one query for the page)."""
    jobs, total = list_jobs(db, limit=limit, offset=offset)
    counts = trial_counts(db, job_ids=[job.id for job in jobs])
    best = best_of_jobs(db, jobs=jobs)
    return JobsPublic(items=[job_item(job, counts[job.id], best[job.id]) for job in jobs], count=total)


@router.get("/{job_id}", response_model=JobDetailPublic)
def read_job(job: JobDep, db: DatabaseDep) -> JobDetailPublic:
    """One job: its spec, its progress per trial state and its best trial so far."""
    return describe_job(db, job)


@router.get("/{job_id}/trials", response_model=TrialsPublic)
def read_trials(
    job: JobDep,
    db: DatabaseDep,
    state: TrialState | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> TrialsPublic:
    """A job's trials by number, optionally only those in one state."""
    trials, total = list_trials(db, job_id=job.id, state=state, limit=limit, offset=offset)
    return TrialsPublic(items=[trial_public(t) for t in trials], count=total)


@router.get("/{job_id}/trials/{number}", response_model=TrialDetailPublic)
def read_trial(job: JobDep, db: DatabaseDep, number: TrialNumber) -> TrialDetailPublic:
    """One trial with its recipe, its attempts and its per-epoch curve."""
    found = get_trial(db, job_id=job.id, number=number)
    if found is None:
        raise HTTPException(404, f"trial {number} of job {job.id!r} not found")
    return trial_detail(*found)


@router.get("/{job_id}/best", response_model=BestConfigsPublic)
def read_best(
    job: JobDep, db: DatabaseDep, k: Annotated[int, Query(ge=1, le=100, description="how many")] = 5
) -> BestConfigsPublic:
    """The first k configurations of the job's ranking (regsearch.domain.ranking): confirmed ones
    by the mean over seeds, with the spread next to it, then the others; several objectives: by
    Pareto front, then by the objectives in order, then trial number."""
    items = [best_config(r.trial, r.seed_runs) for r in best_configurations(db, job=job, k=k)]
    return BestConfigsPublic(items=items, count=len(items))


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=JobCancelPublic,
    responses={409: {"model": ErrorPublic}},
)
def cancel_job(job: JobDep, db: DatabaseDep, notify: NotifyDep, background: BackgroundTasks) -> JobCancelPublic:
    """Ask the coordinator and the workers to stop the job (trials stop at their next epoch)."""
    current = request_cancel(db, job_id=job.id) or job
    if current.status not in ACTIVE_JOB_STATES:
        raise HTTPException(409, f"job {job.id!r} already finished ({current.status})")
    background.add_task(notify, "job_cancelled", job.id)
    return JobCancelPublic(
        id=current.id, status=current.status, cancel_requested=current.cancel_requested
    )


@router.delete(
    "/{job_id}",
    status_code=204,
    response_class=Response,
    responses={409: {"model": ErrorPublic, "description": "the job is queued or running: cancel it first"}},
)
def remove_job(job: JobDep, db: DatabaseDep, request: Request) -> Response:
    """Delete a finished job: its trials, epochs, Optuna study and kept weights
    (``regsearch.store.deletion.delete_job``). A queued or running job is a 409: cancel it first."""
    try:
        delete_job(db, request.app.state.artifacts, job.id)
    except JobNotFound as exc:  # deleted by another request since JobDep read it
        raise HTTPException(404, str(exc)) from None
    except JobActive as exc:
        raise HTTPException(409, str(exc)) from None
    except ArtifactStoreUnavailable as exc:
        raise HTTPException(503, f"artifact store unavailable: {exc}", {"Retry-After": str(RETRY_AFTER_S)}) from None
    return Response(status_code=204)
