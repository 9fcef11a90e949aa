"""Where a pack pays: the one rule for ``budget.pack``'s packs, kept where it is measured.

A pack trains K same-structure trials as one packed model (``regsearch.worker.packed``). It pays
when one packed step costs less than K single ones, and as long as the members train together.
On a CPU neither holds by much: a pack of 8 of the bench's MLP trains 1.2-1.3x faster than one
trial at a time and a pack of 4 1.1x (``bench/packed_throughput.py``), and a pruner stops members
one by one, so a pack shrinks to a few members at single-trial speed while they hold the job's
parallelism. Measured through the service (``make bench``, 24-trial mnist1d search, median
pruner, 2 workers): a packed job got 0.55-0.90x the trials per hour of the same job unpacked.
So on a CPU, the trials of a job that prunes train alone; trials that are never pruned (a job
with ``pruner: none``, and every confirmation run, which trains to its last epoch) still pack,
as do all trials on an accelerator. The worker decides, as only it knows its device, and says
so in its log for each trial it trains alone (docs/performance.md, "Packs").
"""

from __future__ import annotations

__all__ = ["pack_declined"]


def pack_declined(*, pruner: str, device: str) -> str | None:
    """Why a trial trains alone here instead of in a pack, or None when a pack pays.

    ``pruner``: the pruner the trial trains with (``none`` for a confirmation run); ``device``:
    the torch device it trains on, as a string (``cpu``, ``cuda:0``, ...).
    """
    if pruner == "none" or not device.startswith("cpu"):
        return None
    return (f"packing declined: on {device} a pack of a pruned job trains slower than its trials "
            "alone (members stop one by one; docs/performance.md, 'Packs')")
