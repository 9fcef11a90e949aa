"""Dependencies as ``Annotated`` aliases: what a handler needs, taken from the app that runs it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from regsearch.config import Settings
from regsearch.store.db import Database
from regsearch.store.jobs import get_job
from regsearch.store.models import Job

# Job ids are short hex strings; anything else cannot name a job, so it is a 404 without a
# query (and a NUL or a 10 kB path segment never reaches the database).
JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_db(request: Request) -> Database:
    return request.app.state.db  # type: ignore[no-any-return]


def get_broker_ping(request: Request) -> Callable[[], None]:
    return request.app.state.broker_ping  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_db)]
BrokerPingDep = Annotated[Callable[[], None], Depends(get_broker_ping)]


def get_notify(request: Request) -> Callable[[str, str], None]:
    return request.app.state.notify  # type: ignore[no-any-return]


# Wakes the coordinator after the response is sent (a BackgroundTask): never delays a request.
NotifyDep = Annotated[Callable[[str, str], None], Depends(get_notify)]


def get_job_or_404(
    job_id: Annotated[str, Path(description="the job's id")], db: DatabaseDep
) -> Job:
    if not JOB_ID_RE.match(job_id):
        raise HTTPException(status_code=404, detail="job not found (not a job id)")
    job = get_job(db, job_id=job_id)
    if job is None:
        raise HTTPException(status_code=404, detail=f"job {job_id!r} not found")
    return job


JobDep = Annotated[Job, Depends(get_job_or_404)]
