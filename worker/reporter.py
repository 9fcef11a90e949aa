"""A running trial's side of the store: its heartbeat and its per-epoch record.

:class:`Heartbeat` beats from a thread, so a long epoch still shows the trial alive, and notices
a lost lease or a cancelled job. :class:`EpochReporter` is what the training loop reports each
epoch to (``regsearch.worker.loop.TrialRecorder``'s ``on_epoch``): it records the epoch, asks the
job's pruner, notices cancel, a lost lease and this worker's drain, and answers whether to stop.
A lone trial (``regsearch.worker.runner``) and each member of a pack
(``regsearch.worker.pack_runner``) have one of each.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from typing_extensions import Self

from regsearch import failpoints
from regsearch.domain.metrics import EpochMetrics, summarize
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import StopReason
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.store.pruning import Pruner
from regsearch.store.retry import with_retry
from regsearch.store.trials import Claim
from regsearch.worker.shutdown import draining

log = logging.getLogger("regsearch.worker")


class Heartbeat:
    """Beats from a thread, so a long epoch still shows the trial alive; dies with the process."""

    def __init__(self, db: Database, claim: Claim, interval_s: float) -> None:
        self._db, self._claim, self._interval = db, claim, interval_s
        self._stop = threading.Event()
        self.lost = threading.Event()
        self.cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{claim.trial_id}", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop beating (idempotent): a packed member that ended while its pack trains on."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                control = trial_store.beat(self._db, trial_id=self._claim.trial_id, lease=self._claim.lease)
            except Exception as exc:  # noqa: BLE001 - a failed beat is retried; the grace period absorbs a few
                log.warning("heartbeat failed for trial %d: %s", self._claim.trial_id, exc)
                continue
            if not control.owner:
                self.lost.set()
            if control.cancelled:
                self.cancelled.set()


@dataclass
class EpochReporter:
    """The trainer's ``on_epoch`` callback: record, decide to prune, notice cancel and drain.

    Epoch rows are written in batches (at most every ``flush_every_s``, and with the result) so
    a fast epoch does not pay a transaction; liveness does not depend on it (the heartbeat
    thread beats on its own clock).
    """

    db: Database
    claim: Claim
    spec: JobSpec
    pruner: Pruner
    heartbeat: Heartbeat
    recipe: dict[str, Any] | None = None  # written with the first batch, then None
    flush_every_s: float = 1.0
    epochs: list[EpochMetrics] = field(default_factory=list)
    history: dict[int, float] = field(default_factory=dict)  # reported objective per epoch
    stop_reason: StopReason | None = None
    unwritten: list[EpochMetrics] = field(default_factory=list)
    # A trial shorter than flush_every_s writes everything with its result, in one transaction.
    _last_flush: float = field(default_factory=time.monotonic)

    def __call__(self, metrics: EpochMetrics) -> bool:
        failpoints.hit(f"worker.epoch:{self.claim.params.get('placement')}")
        self.epochs.append(metrics)
        self.unwritten.append(metrics)
        value = summarize(self.epochs, None, self.spec.task)[self.spec.objective.metrics[0]]
        self.history[metrics.epoch] = float(value) if isinstance(value, (int, float)) else math.nan
        if self.heartbeat.lost.is_set():
            self.stop_reason = StopReason.LEASE_LOST
        elif self.heartbeat.cancelled.is_set():
            self.stop_reason = StopReason.CANCELLED
        elif draining():
            self.stop_reason = StopReason.DRAINING
        elif with_retry(lambda: self.pruner.should_prune(self.claim.number, self.history), what="asking the pruner"):
            self.stop_reason = StopReason.PRUNED
        # A trial that stops here, or has trained its last epoch, writes its epochs with the
        # result: a flush now would be a transaction for nothing.
        going_on = self.stop_reason is None and metrics.epoch < self.spec.training.epochs
        if going_on and time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()
        return self.stop_reason is not None

    def flush(self) -> None:
        """Write the epochs not yet written (one statement) and learn whether to go on."""
        self._last_flush = time.monotonic()
        if not self.unwritten:
            return
        batch, recipe = list(self.unwritten), self.recipe
        control = with_retry(lambda: trial_store.record_epochs(self.db, trial_id=self.claim.trial_id,
                                                               lease=self.claim.lease, epochs=batch, recipe=recipe),
                             what=f"recording epochs of trial {self.claim.trial_id}")
        self.unwritten.clear()
        self.recipe = None
        if not control.owner:
            self.heartbeat.lost.set()
        if control.cancelled:
            self.heartbeat.cancelled.set()
