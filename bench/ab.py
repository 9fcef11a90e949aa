"""Compare two versions of regsearch with one bench, each version in its own environment.

    .venv/bin/python bench/ab.py REV_A REV_B [--bench overhead] [--runs 3] [--metric NAME] [-- BENCH ARGS]

e.g. ``.venv/bin/python bench/ab.py 540912f HEAD --runs 3 -- --trials 200``. A revision is anything
``git rev-parse`` takes; ``.`` is this checkout as it is, uncommitted changes included (it runs with
the project's own ``.venv``).

Each revision gets its own source tree (``git archive``, no worktree bookkeeping in the repository)
and its own virtual environment under the cache directory (``--cache``, default
``~/.cache/regsearch-ab``; kept between runs, keyed by commit). The environment is made without
pip or any third-party package: one ``.pth`` line puts this project's ``.venv`` site-packages
after its own, and ``pip install --no-deps -e`` of the revision's tree maps ``regsearch`` (and,
since the package-dir move, ``regsearch.services`` / ``.worker`` / ``.dashboard``) to that tree.
Putting a revision's tree first on ``PYTHONPATH`` is not enough: the editable install's finder
still maps the moved packages to the checkout the ``.venv`` was installed from, so every revision
after the move would run this checkout's services and worker.

The bench runs alternately, the order swapped in every other pair (A B, B A, A B, ...), so drift on
a shared machine hits both alike. Printed: both series, their medians and the ratio B / A of the
medians, and a last line ``ab: a=... b=... median_a=X median_b=Y ratio=R cpu_ratio=C`` (C: the ratio
of the medians of the CPU seconds the bench's own processes used, see :func:`run_once`).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "regsearch-ab"
# The figure each bench prints, as ``name=value``; --metric picks another.
METRICS = {"overhead": "overhead_ms_per_trial", "ask_cost": "overhead_growth", "service_job": "overhead_ms_per_trial"}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def environment(rev: str, cache: Path) -> tuple[str, Path]:
    """(label, the python of an environment running ``rev``); built once per commit."""
    if rev == ".":
        return "checkout", Path(sys.executable)
    sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    home = cache / sha
    python = home / "venv" / "bin" / "python"
    label = f"{rev} ({sha[:7]})"
    if (home / "ready").exists():
        return label, python
    shutil.rmtree(home, ignore_errors=True)
    src = home / "src"
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", sha], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home / "venv")], check=True)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # Appended after the environment's own site-packages: the revision's editable install wins,
    # the third-party packages come from the project's .venv (its .pth files are not run, so its
    # own editable finder stays out).
    (site / "zz_regsearch_ab_shared.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    print(f"ab: installing {label} into {home / 'venv'} ...", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--ignore-installed", "-e", str(src)], check=True)
    (home / "ready").touch()
    return label, python


def run_once(python: Path, cwd: Path, bench: str, args: list[str], metric: str,
             timeout_s: float) -> tuple[float, float]:
    """The bench's figure, and the CPU seconds the bench and every process it started and waited
    for used (the service's API, coordinator and workers, start-up and warm-up included; not
    PostgreSQL's or Redis's): a figure that other work on a shared machine moves much less than a
    wall time, though a change in what a process imports at start shows in it too."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Its own session: a run past the timeout (a revision whose service never ends a job) is
    # stopped with everything it started.
    process = subprocess.Popen([str(python), "-m", f"bench.{bench}", *args], cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise RuntimeError(f"bench.{bench} in {cwd} ran past {timeout_s:.0f} s:\n{stdout[-2000:]}\n{stderr[-4000:]}")
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = re.findall(rf"{re.escape(metric)}=([0-9.]+)", done.stdout)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"bench.{bench} in {cwd} failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n"
                           f"{done.stderr[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return float(found[-1]), cpu


def main() -> None:
    argv = sys.argv[1:]
    bench_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, bench_args = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev_a")
    parser.add_argument("rev_b")
    parser.add_argument("--bench", default="overhead", help="a module of bench/ (default: overhead)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each revision (default 3)")
    parser.add_argument("--metric", help="the name=value figure to read (default: the bench's own)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--timeout", type=float, default=900, help="seconds one run may take (default 900)")
    args = parser.parse_args(argv)
    metric = args.metric or METRICS.get(args.bench)
    if metric is None:
        parser.error(f"--metric: bench {args.bench!r} has no default figure; name one")
    if args.runs < 1:
        parser.error("--runs: must be at least 1")
    envs = []
    for rev in (args.rev_a, args.rev_b):
        label, python = environment(rev, args.cache)
        cwd = ROOT if rev == "." else python.parents[2] / "src"
        envs.append((label, python, cwd))
    series: list[list[float]] = [[], []]
    cpu: list[list[float]] = [[], []]
    for i in range(args.runs):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for which in order:
            label, python, cwd = envs[which]
            value, seconds = run_once(python, cwd, args.bench, bench_args, metric, args.timeout)
            series[which].append(value)
            cpu[which].append(seconds)
            print(f"ab: run {i + 1} {label}: {metric}={value:.2f} cpu_s={seconds:.1f}", flush=True)
    med = [statistics.median(s) for s in series]
    cpu_med = [statistics.median(s) for s in cpu]
    for (label, _, _), s, c, m in zip(envs, series, cpu, med, strict=True):
        print(f"ab: {label}: {metric} {', '.join(f'{v:.2f}' for v in s)} (median {m:.2f}); "
              f"cpu_s {', '.join(f'{v:.1f}' for v in c)}")
    ratio = med[1] / med[0] if med[0] else float("nan")
    print(f"ab: a={envs[0][0].split()[0]} b={envs[1][0].split()[0]} bench={args.bench} {' '.join(bench_args)} "
          f"median_a={med[0]:.2f} median_b={med[1]:.2f} ratio={ratio:.3f} "
          f"cpu_ratio={cpu_med[1] / cpu_med[0]:.3f}")


if __name__ == "__main__":
    main()
