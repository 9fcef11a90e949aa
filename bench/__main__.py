"""``make bench``: the benchmark suite, side by side in one run.

    .venv/bin/python -m bench            # quick mode: a few minutes on 2 cores
    .venv/bin/python -m bench --full     # larger sizes; writes a markdown table to bench/results/

Last line: ``bench: overhead_ms_per_trial=X prune_ms_per_epoch_at_5000=Y efficiency=Z optuna_efficiency=W
ray_efficiency=R packed_ceiling=C packed_speedup=P overhead_at_100=.. overhead_at_1000=.. overhead_at_5000=..
overhead_growth=G pack_service_ratio=S packed_share=F`` (R is ``-`` when Ray Tune is not installed: ``pip
install -e '.[bench]'``; P is the packed trainer's trials per hour over one trial at a time, K = 8, same
configurations, same run: ``bench/packed_throughput.py``; C, before it, the most packing could
give this model on this CPU: ``bench/packed_ceiling.py``; the overhead at N trials is the one
measured with the coordinator's ask at N in its place, ``bench/ask_cost.py``, and G the one at
5,000 over the one at 100; S is the efficiency search's trials per hour with ``budget.pack`` 4 over
the same job unpacked, same parallelism, and F the share of its trials that trained in a pack:
0 when the workers declined to pack, ``regsearch/domain/packing.py``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the bench's own process trains nothing that matters

from bench import ask_cost, efficiency, overhead, prune_cost, ray_tune
from bench.service import pick_backend

RESULTS = Path(__file__).with_name("results")


def run(full: bool, backend_request: str) -> dict[str, Any]:
    backend, why = pick_backend(backend_request)
    print(f"backend: {why}", flush=True)
    sizes = {"overhead_trials": 1000 if full else 200, "prune_sizes": [500, 5000, 20000] if full else [500, 5000],
             "efficiency_trials": 48 if full else 24, "efficiency_epochs": 20 if full else 10, "workers": 2}
    out: dict[str, Any] = {"backend": backend, "backend_note": why, "sizes": sizes}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"overhead: {sizes['overhead_trials']} one-epoch trials of a tiny model, {sizes['workers']} workers ...", flush=True)
        job = overhead.measure(trials=sizes["overhead_trials"], workers=sizes["workers"], backend=backend, data_dir=root / "o")
        out["overhead"] = {**job.__dict__, "overhead_ms_per_trial": job.overhead_ms_per_trial(sizes["workers"])}
        if job.states.get("failed"):  # a figure from trials that never trained measures nothing
            raise RuntimeError(f"the overhead job's trials failed ({job.states}): see the service's logs")
        print(f"  {out['overhead']}", flush=True)
        out["ask"] = ask_growth(out["overhead"], asks=60 if full else 30, backend=backend, data_dir=root / "a")
        print(f"  {out['ask']}", flush=True)

        out["prune"] = []
        for n in sizes["prune_sizes"]:
            print(f"pruning check at {n} finished trials ...", flush=True)
            result = prune_cost.measure(n, backend=backend, data_dir=root / f"p{n}", with_optuna=n <= 5000)
            out["prune"].append(result)
            print(f"  {result}", flush=True)

        e_args = (sizes["efficiency_trials"], sizes["workers"], sizes["efficiency_epochs"], backend)
        print(f"efficiency: {e_args[0]}-trial mnist1d search, {e_args[1]} workers, {e_args[2]} epochs: regsearch ...", flush=True)
        ours = efficiency.regsearch_run(*e_args, data_dir=root / "e1")
        print("  ... and plain Optuna (study.optimize in 2 processes, same storage kind)", flush=True)
        theirs = efficiency.optuna_run(*e_args, data_dir=root / "e2")
        print("  ... and regsearch with budget.pack 4 (each worker trains packs of 4 same-structure trials)", flush=True)
        packed = efficiency.regsearch_run(*e_args, data_dir=root / "e3", pack=4)
        print("  ... and the same job unpacked (budget.pack 1, the packed job's parallelism)", flush=True)
        unpacked = efficiency.regsearch_run(*e_args, data_dir=root / "e4", parallelism=4 * sizes["workers"])
        out["efficiency"] = {name: {**run.__dict__, "efficiency": run.efficiency(sizes["workers"]),
                                    "trials_per_hour": 3600 * run.trials / run.wall_s}
                             for name, run in (("regsearch", ours), ("optuna", theirs), ("regsearch_pack4", packed),
                                               ("regsearch_pack1", unpacked))}
        out["pack_service_ratio"] = (out["efficiency"]["regsearch_pack4"]["trials_per_hour"]
                                     / out["efficiency"]["regsearch_pack1"]["trials_per_hour"])
        print(f"  {out['efficiency']}", flush=True)

        why_not = ray_tune.available()
        if why_not is None:
            print("  ... and Ray Tune (OptunaSearch + ASHA, 2 concurrent trials, same trainer)", flush=True)
            out["efficiency"]["ray"] = ray_efficiency(*e_args[:3])
            print(f"  {out['efficiency']['ray']}", flush=True)
        else:
            print(f"  ... Ray Tune not run: {why_not}", flush=True)

        print("packed training: 8 same-structure mnist1d trials, one at a time vs packs of 4 and 8 ...", flush=True)
        out["packed"] = packed_speedups(epochs=5 if full else 3, repeats=3, data_dir=root / "k")
        out["packed"]["ceiling"] = packed_ceiling(epochs=3, data_dir=root / "k")
        print(f"  {out['packed']} (ceiling: the unpacked trial over its matmuls at the core's peak)", flush=True)

        print("training loop: train_trial vs a minimal hand-written PyTorch loop, same run ...", flush=True)
        out["train_loop"] = train_loop_ratio(epochs=5 if full else 3, repeats=11 if full else 5, data_dir=root / "t")
        print(f"  {out['train_loop']}", flush=True)
    return out


def ask_growth(measured: dict[str, Any], *, asks: int, backend: str, data_dir: Path) -> dict[str, Any]:
    """The per-trial overhead at 100, 1,000 and 5,000 trials: the overhead just measured through the
    service, with its coordinator's ask at that size swapped for the ask at each size
    (bench/ask_cost.py: what grows with a job is the ask; the rest of a trial's overhead does not)."""
    sizes = sorted({100, measured["trials"], 1000, 5000})
    print(f"ask cost: the coordinator's ask + tell (TPE) at {', '.join(map(str, sizes))} trials ...", flush=True)
    ask = ask_cost.measure(sizes, asks=asks, backend=backend, data_dir=data_dir)
    base = measured["overhead_ms_per_trial"] - ask[measured["trials"]]
    at = {n: base + ask[n] for n in (100, 1000, 5000)}
    return {"ask_ms": ask, "overhead_ms": at, "growth": at[5000] / at[100]}


def _script_output(argv: list[str]) -> str:
    """Run a bench script in its own process (its own torch threads, Ray's own processes)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, *argv], check=False, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return done.stdout


def ray_efficiency(trials: int, workers: int, epochs: int) -> dict[str, Any]:
    """Ray Tune's run of the efficiency search (bench/ray_tune.py), as its JSON line."""
    lines = _script_output(["-m", "bench.ray_tune", "--trials", str(trials), "--workers", str(workers),
                            "--epochs", str(epochs)]).strip().splitlines()
    return json.loads(lines[-1])


def packed_speedups(*, epochs: int, repeats: int, data_dir: Path) -> dict[str, float]:
    """bench/packed_throughput.py's median speedups of packs of 4 and 8 over one at a time."""
    import re

    text = _script_output([str(Path(__file__).with_name("packed_throughput.py")), "--epochs", str(epochs),
                           "--repeats", str(repeats), "--data-dir", str(data_dir)])
    match = re.search(r"packed_speedup_k4=([0-9.]+) packed_speedup_k8=([0-9.]+)", text)
    if match is None:
        raise RuntimeError(f"unexpected output from packed_throughput.py:\n{text}")
    return {"k4": float(match.group(1)), "k8": float(match.group(2))}


def packed_ceiling(*, epochs: int, data_dir: Path) -> float:
    """bench/packed_ceiling.py's bound on packed_speedup: no pack trains a member faster than its
    matrix multiplications at the core's peak."""
    import re

    text = _script_output([str(Path(__file__).with_name("packed_ceiling.py")), "--epochs", str(epochs),
                           "--data-dir", str(data_dir)])
    match = re.search(r"packed_speedup_ceiling=([0-9.]+)", text)
    if match is None:
        raise RuntimeError(f"unexpected output from packed_ceiling.py:\n{text}")
    return float(match.group(1))


def train_loop_ratio(*, epochs: int, repeats: int, data_dir: Path) -> dict[str, float]:
    """Run bench/bench_train_loop.py (its own process: its own torch threads) and read its medians."""
    import re

    script = Path(__file__).with_name("bench_train_loop.py")
    text = _script_output([str(script), "--epochs", str(epochs), "--repeats", str(repeats), "--data-dir", str(data_dir)])
    match = re.search(r"median seconds/epoch: train_trial=([0-9.]+) minimal=([0-9.]+) ratio=([0-9.]+)", text)
    if match is None:
        raise RuntimeError(f"unexpected output from {script.name}:\n{text}")
    service, minimal, ratio = (float(g) for g in match.groups())
    return {"train_trial_s_per_epoch": service, "minimal_s_per_epoch": minimal, "ratio": ratio}


def markdown(result: dict[str, Any]) -> str:
    o, e = result["overhead"], result["efficiency"]
    lines = [
        f"# regsearch benchmarks ({dt.date.today()}, {platform.node()}, {os.cpu_count()} cores)",
        "",
        f"Backend: {result['backend_note']}.",
        "",
        "| measure | regsearch | plain Optuna | Ray Tune |",
        "|---|---|---|---|",
        f"| overhead per trial, {o['trials']} one-epoch trials, 2 workers | {o['overhead_ms_per_trial']:.1f} ms | | |",
    ]
    for p in result["prune"]:
        theirs = f"{p['optuna_ms']:.2f} ms" if "optuna_ms" in p else "not run"
        lines.append(f"| pruning check per epoch, {p['trials']} finished trials | {p['regsearch_ms']:.2f} ms | {theirs} | |")
    ray = f"{e['ray']['efficiency']:.3f}" if "ray" in e else "not installed"
    lines.append(f"| efficiency, {e['regsearch']['trials']}-trial mnist1d search, 2 workers | "
                 f"{e['regsearch']['efficiency']:.3f} | {e['optuna']['efficiency']:.3f} | {ray} |")
    def cells(key: str) -> str:
        runs = [e.get(name) for name in ("regsearch", "optuna", "ray")]
        return " | ".join("not installed" if r is None else _fmt(r.get(key)) for r in runs)

    lines.append(f"| best val_acc found, same search | {cells('best_val_acc')} |")
    lines.append(f"| share of distinct configurations among its trials | {cells('distinct')} |")
    a = result["ask"]
    lines.append("| overhead per trial at 100 / 1,000 / 5,000 trials (the coordinator's ask at that size) | "
                 + " / ".join(f"{a['overhead_ms'][n]:.1f}" for n in (100, 1000, 5000))
                 + f" ms (growth {a['growth']:.2f}) | | |")
    lines.append("| the coordinator's ask + tell, CPU ms, at 100 / 1,000 / 5,000 trials | "
                 + " / ".join(f"{a['ask_ms'][n]:.1f}" for n in (100, 1000, 5000)) + " | | |")
    p4 = e["regsearch_pack4"]
    lines.append(f"| regsearch with budget.pack 4: efficiency, best val_acc, trials/hour over the same job unpacked "
                 f"| {p4['efficiency']:.3f}, {_fmt(p4['best_val_acc'])}, {result['pack_service_ratio']:.2f}x "
                 f"({pack_note(result)}) | | |")
    k = result["packed"]
    lines.append(f"| packed training, trials/hour over one at a time, 8 mnist1d MLP trials | K=4: {k['k4']:.2f}x, "
                 f"K=8: {k['k8']:.2f}x (ceiling {k['ceiling']:.2f}x: matmuls at peak) | | |")
    t = result["train_loop"]
    lines.append(f"| training loop, s/epoch, 40-256-256-256-10 MLP on mnist1d (minimal hand-written loop in the right column) | "
                 f"{t['train_trial_s_per_epoch']:.4f} | {t['minimal_s_per_epoch']:.4f} (ratio {t['ratio']:.3f}) | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="larger sizes; write bench/results/")
    parser.add_argument("--backend", choices=["auto", "production", "embedded"], default="auto")
    args = parser.parse_args()
    result = run(args.full, args.backend)
    table = markdown(result)
    print(table)
    if args.full:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "latest.md").write_text(table)
        (RESULTS / "latest.json").write_text(json.dumps(result, indent=2, default=str))
    prune_5000 = next(p["regsearch_ms"] for p in result["prune"] if p["trials"] == 5000)
    print(f"bench: overhead_ms_per_trial={result['overhead']['overhead_ms_per_trial']:.1f} "
          f"prune_ms_per_epoch_at_5000={prune_5000:.2f} "
          f"efficiency={result['efficiency']['regsearch']['efficiency']:.3f} "
          f"optuna_efficiency={result['efficiency']['optuna']['efficiency']:.3f} "
          f"ray_efficiency={ray_figure(result)} packed_ceiling={result['packed']['ceiling']:.2f} "
          f"packed_speedup={result['packed']['k8']:.2f} "
          + " ".join(f"overhead_at_{n}={result['ask']['overhead_ms'][n]:.1f}" for n in (100, 1000, 5000))
          + f" overhead_growth={result['ask']['growth']:.2f} pack_service_ratio={result['pack_service_ratio']:.2f} "
          f"packed_share={_fmt(result['efficiency']['regsearch_pack4']['packed'])}")


def pack_note(result: dict[str, Any]) -> str:
    """Whether the packed job packed: on a CPU a pruned job's trials train alone
    (regsearch.domain.packing), and the bench says so."""
    share = result["efficiency"]["regsearch_pack4"]["packed"]
    if not share:
        return "packing declined: no trial trained in a pack"
    return f"{100 * share:.0f}% of its trials trained in packs"


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def ray_figure(result: dict[str, Any]) -> str:
    ray = result["efficiency"].get("ray")
    return "-" if ray is None else f"{ray['efficiency']:.3f}"


if __name__ == "__main__":
    main()
