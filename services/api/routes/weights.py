"""A trial's trained weights: ``GET /jobs/{id}/trials/{number}/weights`` (safetensors bytes).

The API never imports torch: it serves the file the worker saved, byte for byte. A trial without
weights is a 404 whose detail names why (unknown trial, not finished, pruned, failed, cancelled,
evicted, not saved)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response

from regsearch.domain.states import TrialState, WeightsState
from regsearch.domain.stored_spec import StoredSpec
from regsearch.services.api.deps import DatabaseDep, JobDep
from regsearch.services.api.errors import RETRY_AFTER_S
from regsearch.services.api.routes.jobs import TrialNumber
from regsearch.services.api.schemas import ErrorPublic
from regsearch.services.api.security import StrictJSONRoute
from regsearch.store.artifacts import (
    ArtifactNotFound,
    ArtifactStore,
    ArtifactStoreUnavailable,
    weights_key,
)
from regsearch.store.models import Job
from regsearch.store.weights import weights_row

router = APIRouter(prefix="/jobs", tags=["weights"], route_class=StrictJSONRoute,
                   responses={404: {"model": ErrorPublic}, 503: {"model": ErrorPublic}})

SAFETENSORS = "application/octet-stream"


def missing_reason(job: Job, number: int, trial: Any) -> str | None:
    """Why trial ``number`` has no weights to serve; None when they are kept."""
    if trial is None:
        return f"trial {number} of job {job.id!r} not found"
    state, weights = trial.state, trial.weights
    if state in (TrialState.QUEUED, TrialState.RUNNING):
        return f"trial {number} has not finished ({state}): a trial's weights are saved when it completes"
    if state == TrialState.PRUNED:
        return f"trial {number} was pruned: only complete trials keep weights"
    if state == TrialState.CANCELLED:
        return f"trial {number} was cancelled: only complete trials keep weights"
    if state != TrialState.COMPLETE:
        return f"trial {number} failed ({trial.error or 'no error recorded'}): only complete trials keep weights"
    if weights == WeightsState.KEPT:
        return None
    keep = StoredSpec.read(job.spec).keep_weights
    if weights in (WeightsState.EVICTED, WeightsState.EVICTING):
        return (f"the weights of trial {number} were evicted: job {job.id!r} keeps those of its top {keep} "
                "configurations (budget.keep_weights)")
    if weights == WeightsState.NOT_SAVED and keep == 0:
        return f"the weights of trial {number} were not saved: job {job.id!r} has budget.keep_weights 0"
    if weights == WeightsState.NOT_SAVED:
        return f"the weights of trial {number} were not saved: the artifact store refused them (see the worker's log)"
    return f"trial {number} has no saved weights (it finished before this service kept weights)"


def get_artifacts(request: Request) -> ArtifactStore:
    return request.app.state.artifacts  # type: ignore[no-any-return]


@router.get(
    "/{job_id}/trials/{number}/weights",
    response_class=Response,
    responses={200: {"content": {SAFETENSORS: {}},
                     "description": "the best validation epoch's weights, as safetensors"}},
)
def read_weights(job: JobDep, db: DatabaseDep, number: TrialNumber, request: Request) -> Response:
    """A complete trial's best-validation weights (safetensors; ``load_model`` rebuilds the module
    from the trial's recipe and loads them). The job keeps them for its top ``budget.keep_weights``
    configurations; any other trial is a 404 naming why."""
    reason = missing_reason(job, number, weights_row(db, job_id=job.id, number=number))
    if reason is not None:
        raise HTTPException(404, reason)
    try:
        data = get_artifacts(request).get(weights_key(job.id, number))
    except ArtifactNotFound:
        # evicted between the read of the row and the read of the file
        raise HTTPException(404, f"the weights of trial {number} were evicted (budget.keep_weights)") from None
    except ArtifactStoreUnavailable as exc:
        raise HTTPException(503, f"artifact store unavailable: {exc}", {"Retry-After": str(RETRY_AFTER_S)}) from None
    return Response(data, media_type=SAFETENSORS, headers={
        "Content-Disposition": f'attachment; filename="{job.id}-{number}.safetensors"'})
