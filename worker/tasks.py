"""Celery tasks (thin): take an id, hand it to :func:`regsearch.worker.runner.run_trial`.

Importing this module imports no torch: the worker's parent process must not initialize CUDA
before the pool forks its children.
"""

from __future__ import annotations

import os

from celery import Celery

from regsearch.config import Settings, get_settings
from regsearch.messaging.queue import RUN_TRIAL_TASK, make_celery

DEVICE_ENV = "REGSEARCH_WORKER_DEVICE"


def run_trial(trial_id: int) -> dict[str, object]:
    """``regsearch.run_trial``: train one trial; duplicates are acknowledged and skipped."""
    from celery import current_app
    from celery.exceptions import Reject

    from regsearch.messaging.events import publish_trial_finished
    from regsearch.worker.runner import run_trial as run
    from regsearch.worker.shutdown import draining

    if draining():  # this worker is going away: another one should take the trial
        raise Reject("worker shutting down", requeue=True)

    if not isinstance(trial_id, int) or isinstance(trial_id, bool):
        raise TypeError("run_trial takes one integer trial id")
    app = current_app._get_current_object()  # the proxy is bound to this thread, not the background one
    # The coordinator refills at once instead of at its next poll.
    return run(trial_id, get_settings(), os.environ.get(DEVICE_ENV, "auto"),
               on_finished=lambda job_id: publish_trial_finished(app, job_id))


def forget_inherited_connections(**_: object) -> None:
    """In a freshly forked pool process: drop the database pools inherited from the parent.

    The parent migrated the database, which left Optuna's storage with pooled connections; a
    child using those sockets would interleave its protocol with the parent's. ``dispose(close=
    False)`` gives the child new, empty pools without closing (and so breaking) the parent's
    connections, as SQLAlchemy recommends for ``fork``.
    """
    from regsearch.store.studies import cached_storages

    for storage in cached_storages():
        storage.engine.dispose(close=False)


def create_worker_app(settings: Settings) -> Celery:
    """The Celery app with the worker's task registered under its public name."""
    from celery.signals import worker_process_init

    from regsearch.worker import shutdown

    app = make_celery(settings)
    app.task(name=RUN_TRIAL_TASK, acks_late=True, ignore_result=True)(run_trial)
    shutdown.install(app)
    worker_process_init.connect(forget_inherited_connections, weak=False)
    from regsearch.worker import publish

    publish.install(settings)  # the families this worker offers, in the database once it is ready
    return app
