"""Wall time and per-trial service overhead of one real search job through the full service.

    .venv/bin/python -m bench.service_job                       # 40-trial mnist1d job, 2 workers
    .venv/bin/python -m bench.service_job --backend embedded    # SQLite + filesystem queue

overhead per trial = (workers x wall time - sum of the trials' training time) / trials; a trial's
training time is the sum of its epochs' seconds (train + per-epoch evaluation).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench.efficiency import spec_for
from bench.service import pick_backend, run_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["auto", "embedded", "production"], default="auto")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    backend, why = pick_backend(args.backend)
    spec = spec_for(args.trials, args.workers, args.epochs)
    spec["training"]["lr"] = 0.001  # docs/interface.md's example job
    with tempfile.TemporaryDirectory() as tmp:
        job = run_job(spec, workers=args.workers, backend=backend, data_dir=Path(tmp))
    print(json.dumps({"backend": why, "workers": args.workers, **job.__dict__,
                      "overhead_ms_per_trial": round(job.overhead_ms_per_trial(args.workers), 1),
                      "efficiency": round(job.efficiency(args.workers), 3)}, indent=2))


if __name__ == "__main__":
    main()
