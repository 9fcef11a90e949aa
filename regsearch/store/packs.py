"""Claiming a pack: the queued trials of one structure that a worker trains with the one it holds.

A worker that claimed a trial of a job with ``budget.pack`` K > 1 claims up to K - 1 more of the
job's queued trials whose structure (:func:`regsearch.domain.space.structure_of`: placement and
layer selections; the job fixes family and knobs) is the same, and trains them as one packed
model. Each member is then an ordinary running trial with its own lease, heartbeat, epochs and
result: nothing downstream knows it was packed. The companions' broker messages are still in
flight; when they are delivered, the claim finds the trial running and the message is
acknowledged as a duplicate (:func:`regsearch.store.trials.claim` returns None).

Only trials already sent (``enqueued_at`` set) are taken: a trial the coordinator marked unsent
waits for its own send. The job's ``budget.parallelism`` holds for packs too: the companions are
claimed under the job row's lock, as single claims are, and only as many as the job has room for.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update

from regsearch.domain.space import structure_of
from regsearch.domain.states import TrialState
from regsearch.store.db import Database
from regsearch.store.models import Job, Trial, utcnow
from regsearch.store.trials import Claim, parallelism_room

_TRIALS, _JOBS = Trial.__table__, Job.__table__
_LOOK_AHEAD = 256  # queued rows read to find companions: far more than a job keeps queued


def claim_companions(db: Database, *, first: Claim, worker: str, device: str, k: int) -> list[Claim]:
    """Claim up to ``k - 1`` queued, sent trials of ``first``'s job with ``first``'s structure;
    their claims, in trial-number order (none when the job is at its parallelism)."""
    if k <= 1:
        return []
    structure = structure_of(first.params)
    with db.session(durable=False) as session:  # as claim: a lost claim leaves the trials queued
        job = session.execute(
            select(_JOBS.c.spec, _JOBS.c.study_name).where(_JOBS.c.id == first.job_id)
            .with_for_update(key_share=True)
        ).one_or_none()
        if job is None:
            return []
        limit = parallelism_room(session, first.job_id, job.spec)
        room = k - 1 if limit is None else min(k - 1, limit)
        if room <= 0:
            return []
        queued = session.execute(
            select(_TRIALS.c.id, _TRIALS.c.number, _TRIALS.c.optuna_trial_id, _TRIALS.c.params, _TRIALS.c.seed,
                   _TRIALS.c.confirm_of)
            .where(_TRIALS.c.job_id == first.job_id, _TRIALS.c.state == TrialState.QUEUED,
                   _TRIALS.c.enqueued_at.is_not(None))
            .order_by(_TRIALS.c.number).limit(_LOOK_AHEAD)
        ).all()
        now = utcnow()
        claims: list[Claim] = []
        for row in queued:
            if len(claims) == room:
                break
            if structure_of(dict(row.params)) != structure:
                continue
            lease = uuid.uuid4().hex
            taken = session.execute(
                update(_TRIALS).where(_TRIALS.c.id == row.id, _TRIALS.c.state == TrialState.QUEUED)
                .values(state=TrialState.RUNNING, lease=lease, worker=worker, device=device, started_at=now,
                        heartbeat_at=now)
            ).rowcount == 1
            if taken:
                claims.append(_claim(first, row, lease, job.spec, job.study_name))
        return claims


def _claim(first: Claim, row: Any, lease: str, spec: dict[str, Any], study_name: str) -> Claim:
    return Claim(trial_id=row.id, lease=lease, job_id=first.job_id, number=row.number,
                 optuna_trial_id=row.optuna_trial_id, params=dict(row.params), spec=dict(spec),
                 study_name=study_name, seed=row.seed, confirm_of=row.confirm_of)
