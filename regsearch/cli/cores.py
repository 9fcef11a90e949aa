"""How many cores this process may use, and each trial process's share of them for torch's threads.

torch sizes its thread pool to every core it sees. Several trial processes (``up``'s workers, a
``regsearch trial`` beside them) each doing so put several threads on every core, and OpenMP's
spinning threads then wait on each other: measured 20x slower per epoch. So every trial process
takes ``cores // processes`` threads.
"""

from __future__ import annotations

import os
from pathlib import Path


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def threads_per_process(processes: int) -> int:
    """torch threads for each of ``processes`` trial processes sharing this machine's cores."""
    return max(1, available_cores() // max(1, processes))


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def default_threads(processes: int) -> None:
    """Size torch's thread pool for one of ``processes`` trial processes, in this process's
    environment before the pool forks (``regsearch worker``, which ``up`` starts): a value already
    set, by the user or a deployment, wins."""
    threads = str(threads_per_process(processes))
    for variable in THREAD_VARIABLES:
        os.environ.setdefault(variable, threads)
