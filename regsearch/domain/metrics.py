"""What a trial measures: one definition (DESIGN.md), used by the worker, the API and the dashboard.

Per epoch: ``train_loss``, ``train_acc`` (a fixed training sample as large as the validation
split, evaluated in eval mode), ``val_loss``, ``val_acc``, ``seconds``.

Per trial: ``val_acc`` (best epoch), ``test_acc`` (test split, best-validation weights),
``gap`` (train_acc - val_acc at the best epoch), ``epochs_to_converge`` (first epoch whose
val_acc reaches 95% of the best), ``val_auc`` (mean val_acc over the epochs run),
``seconds_per_epoch``, ``epochs_run``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

CONVERGENCE_FRACTION = 0.95
EPOCH_FIELDS = ("train_loss", "train_acc", "val_loss", "val_acc", "seconds")
SUMMARY_FIELDS = ("val_acc", "test_acc", "gap", "epochs_to_converge", "val_auc", "seconds_per_epoch", "epochs_run", "val_loss")


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch of one trial; ``epoch`` counts from 1."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def best_epoch_index(epochs: Sequence[EpochMetrics]) -> int:
    """Index of the best validation epoch: highest val_acc, then lowest val_loss, then earliest."""
    if not epochs:
        raise ValueError("no epochs")

    def key(i: int) -> tuple[float, float, int]:
        e = epochs[i]
        acc = e.val_acc if math.isfinite(e.val_acc) else -math.inf
        loss = e.val_loss if math.isfinite(e.val_loss) else math.inf
        return (-acc, loss, i)

    return min(range(len(epochs)), key=key)


def epochs_to_converge(val_accs: Sequence[float]) -> int:
    """First epoch (1-based) whose val_acc reaches 95% of the trial's best."""
    best = max(val_accs)
    target = CONVERGENCE_FRACTION * best
    for i, acc in enumerate(val_accs):
        if acc >= target:
            return i + 1
    return len(val_accs)


def summarize(epochs: Sequence[EpochMetrics], test_acc: float | None) -> dict[str, Any]:
    """The per-trial summary from the epochs run and the test accuracy of the best weights."""
    if not epochs:
        raise ValueError("a trial summary needs at least one epoch")
    best = epochs[best_epoch_index(epochs)]
    val_accs = [e.val_acc for e in epochs]
    return {
        "val_acc": best.val_acc,
        "val_loss": best.val_loss,
        "test_acc": test_acc,
        "gap": best.train_acc - best.val_acc,
        "best_epoch": best.epoch,
        "epochs_to_converge": epochs_to_converge(val_accs),
        "val_auc": sum(val_accs) / len(val_accs),
        "seconds_per_epoch": sum(e.seconds for e in epochs) / len(epochs),
        "epochs_run": len(epochs),
    }
