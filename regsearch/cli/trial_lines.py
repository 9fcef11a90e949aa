"""``regsearch trial`` as it trains: a line per epoch, and its share of the cores for torch's threads."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from regsearch.cli.cores import available_cores, threads_per_process
from regsearch.cli.datalock import running_workers
from regsearch.domain.metrics import EpochMetrics, format_metric

CURVE = ("train_loss", "train_acc", "val_loss", "val_acc")


def trial_threads(data_dir: Path, given: int | None) -> tuple[int, str]:
    """torch threads for a local trial, and why: ``--threads``, else every core, else (a
    ``regsearch up`` runs on this data directory) one share beside its trial processes."""
    if given is not None:
        return given, "--threads"
    workers = running_workers(data_dir)
    if workers:
        return (threads_per_process(workers + 1),
                f"a share of {available_cores()} cores beside regsearch up's {workers} trial processes")
    return available_cores(), "every core"


class EpochLines:
    """Prints one line per epoch (``on_epoch`` of ``run_local_trial``); never stops the trial."""

    def __init__(self, console: Console, epochs: int) -> None:
        self.console = console
        self.width = len(str(epochs))
        self.epochs = epochs

    def start(self, message: str) -> None:
        self.console.print(message, highlight=False, markup=False)

    def epoch(self, metrics: EpochMetrics) -> None:
        m = {name: format_metric(name, getattr(metrics, name)) for name in CURVE}
        # under 80 columns: "epoch 12/20  train loss 0.705 acc 0.764  val loss 1.075 acc 0.591  0.13 s"
        has_acc = metrics.val_acc == metrics.val_acc  # NaN: a regression (losses only)
        train_acc, val_acc = (f" acc {m['train_acc']}", f" acc {m['val_acc']}") if has_acc else ("", "")
        self.console.print(f"epoch {metrics.epoch:>{self.width}}/{self.epochs}  "
                           f"train loss {m['train_loss']}{train_acc}  "
                           f"val loss {m['val_loss']}{val_acc}  {metrics.seconds:.2f} s",
                           highlight=False, markup=False, soft_wrap=True)
