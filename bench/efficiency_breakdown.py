"""Where a search's worker time goes: the efficiency benchmark's job, read back from its rows.

    .venv/bin/python -m bench.efficiency_breakdown [--runs 4] [--prepare-ahead 1] [--backend auto]

Runs the 24-trial mnist1d search of ``bench/efficiency.py`` ``--runs`` times on one warm service
and prints, per run and worker process: the time before its first trial, the time inside trials
but outside epochs, the gaps between its trials and its idle tail at the end. Read from the
trial rows (``started_at`` is set by the claim, ``finished_at`` by the result) and the epochs'
``seconds``; wall time runs from the submit to the job's recorded end, as in the benchmark.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.efficiency import spec_for
from bench.service import pick_backend, running_service, wait_until_ended, warm_up


def _seconds(value: Any) -> float:
    from regsearch.store.models import as_utc

    return as_utc(value).timestamp()


def report(rows: list[Any], submitted: float, ended: float, workers: int) -> list[str]:
    """Lines for one run: rows are (worker, started_at, finished_at, sum of epoch seconds)."""
    wall = ended - submitted
    training = sum(r[3] for r in rows)
    lines = [f"wall {wall:.3f} s, training {training:.3f} s, efficiency {training / workers / wall:.3f}"]
    by_worker: dict[str, list[Any]] = {}
    for row in sorted(rows, key=lambda r: _seconds(r[1])):
        by_worker.setdefault(row[0], []).append(row)
    for worker, trials in by_worker.items():
        head = _seconds(trials[0][1]) - submitted
        inside = [_seconds(r[2]) - _seconds(r[1]) - r[3] for r in trials]
        gaps = [_seconds(b[1]) - _seconds(a[2]) for a, b in itertools.pairwise(trials)] or [0.0]
        tail = ended - _seconds(trials[-1][2])
        lines.append(f"  {worker}: {len(trials)} trials; head {head:.3f} s; inside {sum(inside):.3f} s "
                     f"(median {1000 * statistics.median(inside):.1f} ms); gaps {sum(gaps):.3f} s "
                     f"(median {1000 * statistics.median(gaps):.1f} ms, max {1000 * max(gaps):.0f}); tail {tail:.3f} s")
    return lines


def main() -> None:
    from regsearch.store.models import Epoch, Trial

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--prepare-ahead", type=int, default=1)
    parser.add_argument("--backend", choices=["auto", "production", "embedded"], default="auto")
    args = parser.parse_args()
    workers = 2
    spec = spec_for(24, workers, 10)
    backend, why = pick_backend(args.backend)
    print(f"backend: {why}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, running_service(workers=workers, backend=backend, data_dir=Path(tmp),
                                                               prepare_ahead=args.prepare_ahead) as service:
        warm_up(service, spec, workers)
        for run in range(args.runs):
            submitted = time.time()
            job_id = service.client.submit(dict(spec, name=f"breakdown-{run}"))["id"]
            ended = wait_until_ended(service.db, job_id, service.supervisor).timestamp()
            with service.db.read() as session:
                rows = session.execute(
                    select(Trial.worker, Trial.started_at, Trial.finished_at, func.coalesce(func.sum(Epoch.seconds), 0.0))
                    .join(Epoch, Epoch.trial_id == Trial.id, isouter=True)
                    .where(Trial.job_id == job_id).group_by(Trial.id)
                ).all()
            print("\n".join(report(list(rows), submitted, ended, workers)), flush=True)


if __name__ == "__main__":
    main()
