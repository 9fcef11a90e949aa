"""The Dockerfile's three images, read without building them; the worker's GPU slot script, run.

The control-plane images (service, dashboard) must not contain torch: their pip installs name
neither torch nor the worker extra, the build itself asserts it, and nothing they run imports
torch, scikit-learn, mnist1d or ``worker/``. The worker image is CUDA + torch. The file is plain
Dockerfile syntax, which the classic builder, BuildKit and buildah all read (deploy/ci-compose.sh
builds it with the classic builder).
"""

from __future__ import annotations

import ast
import fnmatch
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.files import (
    DOCKERFILE,
    DOCKERIGNORE,
    ROOT,
    Stage,
    compose,
    dockerfile_stages,
    interpolate,
)

ARGS, STAGES = dockerfile_stages()
TORCH_GUARD = "find_spec('torch')"
WORKER_ONLY = ("torch", "sklearn", "mnist1d", "worker")
SLOT_SCRIPT = ROOT / "deploy" / "regsearch-gpu-slot"


def lineage(name: str) -> list[Stage]:
    """A target's stage and the stages of this file it is built on, nearest first."""
    stages = [STAGES[name]]
    while stages[-1].base in STAGES:
        stages.append(STAGES[stages[-1].base])
    return stages


def external_base(name: str) -> str:
    """The image a target is built on in the end, the build args' defaults filled in."""
    return interpolate(lineage(name)[-1].base, ARGS)


def pip_installs(*stages: Stage) -> list[str]:
    return [run.args for stage in stages for run in stage.all("RUN") if "pip install" in run.args]


def requirement_lists() -> dict[str, list[str]]:
    """The lists the ``requirements`` stage writes, each with the extras deploy/requirements.py was
    given for it (``python3 requirements.py PYPROJECT EXTRA... > FILE``)."""
    lists: dict[str, list[str]] = {}
    for run in STAGES["requirements"].all("RUN"):
        for command in run.args.split("&&"):
            words = shlex.split(command)
            assert words[1].endswith("requirements.py") and words[-2] == ">", command
            lists[words[-1]] = words[3:-2]
    return lists


def installed_extras(*stages: Stage) -> set[str]:
    """The extras these stages install: those of each requirement list they copy and install
    (the dependencies, before the code) and of the ``/app[...]`` install of the code itself."""
    lists = requirement_lists()
    copied: dict[str, list[str]] = {}
    for stage in stages:
        for copy in stage.all("COPY"):
            words = copy.args.split()
            if words[0] == "--from=requirements":
                copied[words[-1]] = lists[words[1]]
    extras: set[str] = set()
    for run in (run for stage in stages for run in stage.all("RUN")):
        for command in run.args.split("&&"):
            words = shlex.split(command)
            if words[:3] == ["pip", "install", "-r"]:
                extras.update(copied[words[3]])
            extras.update(e for w in words if (m := re.fullmatch(r"/app\[([^]]*)\]", w)) for e in m[1].split(","))
    return extras


def test_there_is_a_service_a_dashboard_and_a_worker_target() -> None:
    assert {"service", "dashboard", "worker"} <= set(STAGES)
    # dashboard = the service's dependencies + the dashboard's (control-plane: no code, so a code
    # change rebuilds neither image's dependency layers)
    assert STAGES["dashboard"].base == STAGES["service"].base == "control-plane"
    cuda_base = external_base("worker")
    assert cuda_base.startswith("nvidia/cuda:"), cuda_base
    assert "-base-" in cuda_base or "-runtime-" in cuda_base, "no CUDA toolkit (devel) in a runtime image"
    python_base = external_base("service")
    assert external_base("dashboard") == python_base
    assert python_base.startswith("python:3.") and "slim" in python_base


def test_compose_builds_targets_that_exist() -> None:
    for name, service in compose()["services"].items():
        if "build" in service:
            assert service["build"]["target"] in STAGES, name
    targets = {s["build"]["target"]: n for n, s in compose()["services"].items() if "build" in s}
    assert {"service", "dashboard", "worker"} <= set(targets)
    assert compose()["services"]["worker"]["build"]["target"] == "worker"
    for name in ("api", "coordinator", "migrate"):
        assert compose()["services"][name]["build"]["target"] == "service"


@pytest.mark.parametrize("target", ["service", "dashboard"])
def test_the_control_plane_images_install_no_torch(target: str) -> None:
    installs = pip_installs(*lineage(target))
    assert installs, f"{target} installs nothing"
    for args in installs:
        for command in (c for c in args.split("&&") if "pip install" in c):
            assert "torch" not in command and "[worker" not in command and "worker]" not in command, command
        assert TORCH_GUARD in args, f"{target}: the build must fail if torch came in"
    assert "worker" not in installed_extras(*lineage(target))


def test_the_service_image_installs_the_core_and_s3_only() -> None:
    assert installed_extras(*lineage("service")) == {"s3"}


def test_the_dashboard_image_adds_only_the_dashboard_extra() -> None:
    assert any('"/app[dashboard]"' in install for install in pip_installs(STAGES["dashboard"]))
    assert installed_extras(STAGES["dashboard"]) == {"dashboard"}
    assert installed_extras(*lineage("dashboard")) == {"s3", "dashboard"}


def test_the_worker_image_installs_torch_then_the_worker_extra() -> None:
    stage = STAGES["worker"]
    installs = pip_installs(stage)
    torch_default = next(a.args for a in stage.all("ARG") if a.args.startswith("TORCH_SPEC="))
    assert torch_default.split("=", 1)[1].startswith("torch")
    assert any("$TORCH_SPEC" in args for args in installs)
    assert any("[worker]" in args or "[worker," in args for args in installs)  # [worker,s3]: weights to S3
    assert {"worker", "s3"} <= installed_extras(stage)
    torch_layer = next(i for i, run in enumerate(stage.all("RUN")) if "$TORCH_SPEC" in run.args)
    extras_layer = next(i for i, run in enumerate(stage.all("RUN")) if "pip install -r" in run.args)
    assert torch_layer < extras_layer, "torch first: the worker extra's torch>=2.2 must find it installed"
    env = " ".join(e.args for e in stage.all("ENV"))
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in env
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in env, "slot N must be nvidia-smi's GPU N"


@pytest.mark.parametrize("target", ["service", "dashboard", "worker"])
def test_each_image_copies_every_package_the_project_ships(target: str) -> None:
    # [tool.setuptools] package-dir = { "regsearch" = "regsearch", "regsearch.services" = "services", ... }
    # maps the folders the distribution ships (no tomllib on Python 3.10)
    found = re.search(r"^package-dir\s*=\s*\{([^}]*)\}", (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert found, "pyproject.toml: [tool.setuptools] package-dir"
    packages = set(re.findall(r'=\s*"([^"]+)"', found[1]))
    assert packages == {"regsearch", "services", "worker", "dashboard"}
    copied = {word for s in lineage(target) for c in s.all("COPY") for word in c.args.split()[:-1] if not word.startswith("-")}
    assert packages | {"pyproject.toml", "README.md"} <= copied


@pytest.mark.parametrize("target", ["service", "dashboard", "worker"])
def test_dependencies_are_installed_before_the_code_is_copied(target: str) -> None:
    """A code change rebuilds only the layers from the code's COPY on: a --no-deps install."""
    instructions = [i for stage in reversed(lineage(target)) for i in stage.instructions]
    code = min(n for n, i in enumerate(instructions) if i.keyword == "COPY" and i.args.split()[0] == "regsearch")
    dependencies = [n for n, i in enumerate(instructions) if i.keyword == "RUN" and "pip install -r" in i.args]
    assert dependencies and max(dependencies) < code
    after = [i.args for i in instructions[code:] if i.keyword == "RUN" and "pip install" in i.args]
    assert after and all("pip install --no-deps" in args for args in after), after


@pytest.mark.parametrize("target", ["service", "dashboard", "worker"])
def test_the_images_run_as_an_unprivileged_user(target: str) -> None:
    users = [u.args for u in STAGES[target].all("USER")]
    assert users and users[-1] == "regsearch"


def test_what_the_control_plane_runs_imports_no_worker_code() -> None:
    """services/, dashboard/ and regsearch/ (but its CLI, which imports lazily) need no worker extra."""
    offenders = []
    for folder in ("services", "dashboard", "regsearch"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.is_relative_to(ROOT / "regsearch" / "cli"):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
                offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in WORKER_ONLY]
    assert not offenders, offenders


def test_the_control_plane_runs_where_torch_cannot_be_imported(tmp_path: Path) -> None:
    """What the service image runs, in a process where torch and the worker extras do not exist."""
    code = """
import importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    # as in the service image: importing torch, scikit-learn or mnist1d fails
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in NOT_INSTALLED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
sys.argv = ["regsearch", "db", "upgrade"]
from regsearch.cli.app import main
try:
    main()
except SystemExit as exit:
    assert not exit.code, exit.code
from fastapi.testclient import TestClient
from regsearch.config import get_settings
from regsearch.services.api.main import create_app
import regsearch.services.coordinator, regsearch.dashboard.data, regsearch.dashboard.charts, regsearch.dashboard.frames
with TestClient(create_app(get_settings())) as client:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200, client.get("/readyz").text
""".replace("NOT_INSTALLED", repr(set(WORKER_ONLY[:3])))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGSEARCH_")}
    env["REGSEARCH_DATA_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# -- plain syntax: the classic builder, BuildKit and buildah -----------------------------------------
DOCKERFILES = [DOCKERFILE, ROOT / "deploy" / "stand-ins.Dockerfile"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_the_dockerfiles_use_only_what_every_builder_reads(path: Path) -> None:
    """No frontend line (BuildKit would fetch an image), no heredoc (the classic builder: "unknown
    instruction"; buildah 1.28: "copier: stat: /<<EOF"), no BuildKit-only flags (COPY --chmod,
    --link, RUN --mount...)."""
    text = path.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE), "a '# syntax=' line"
    _args, stages = dockerfile_stages(path)
    for stage in stages.values():
        for instruction in stage.instructions:
            where = f"{path.name}, {stage.name}: {instruction.keyword} {instruction.args[:60]}"
            assert instruction.heredoc is None and "<<" not in instruction.args, where
            if instruction.keyword in ("COPY", "ADD", "RUN"):
                words = instruction.args.split()
                flags = [w.split("=")[0] for w in words[: next((i for i, w in enumerate(words) if not w.startswith("--")), len(words))]]
                allowed = {"--from", "--chown"} if instruction.keyword != "RUN" else set()
                assert set(flags) <= allowed, where


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_file_the_dockerfiles_copy_is_in_the_build_context(path: Path) -> None:
    """Each COPY source exists in the repository and .dockerignore lets it into the context."""
    context = ROOT if path == DOCKERFILE else path.parent
    ignored = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    _args, stages = dockerfile_stages(path)
    for stage in stages.values():
        for copy in stage.all("COPY"):
            sources = [w for w in copy.args.split()[:-1] if not w.startswith("--")]
            if copy.args.startswith("--from"):
                continue
            for source in sources:
                assert (context / source).exists(), f"{path.name}: COPY {source}: no such file"
                if context == ROOT:
                    parts = Path(source).parts
                    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
                    assert not any(fnmatch.fnmatch(p, pattern.rstrip("/")) for p in prefixes for pattern in ignored), (
                        f"COPY {source}: .dockerignore leaves it out of the context")


# -- the GPU slot entrypoint ------------------------------------------------------------------------
def slot_script() -> str:
    return SLOT_SCRIPT.read_text()


def test_the_worker_image_starts_through_the_gpu_slot_script() -> None:
    stage = STAGES["worker"]
    (entrypoint,) = stage.all("ENTRYPOINT")
    assert entrypoint.exec_form() == ["/usr/local/bin/regsearch-gpu-slot"]
    (copy,) = [c for c in stage.all("COPY") if "deploy/regsearch-gpu-slot" in c.args.split()]
    assert copy.args.split()[-1] in ("/usr/local/bin/", "/usr/local/bin/regsearch-gpu-slot")
    # Executable whatever the checkout's file mode: a RUN chmod (COPY --chmod is BuildKit's).
    assert any(re.search(r"chmod 755 [^&]*/usr/local/bin/regsearch-gpu-slot", r.args) for r in stage.all("RUN"))
    assert slot_script().startswith("#!/bin/sh\n")
    assert 'exec "$@"' in slot_script()


@pytest.mark.parametrize("target", ["service", "dashboard", "worker"])
def test_every_image_has_the_healthcheck_script_compose_runs(target: str) -> None:
    stages = lineage(target)
    copies = [c.args.split() for s in stages for c in s.all("COPY")]
    assert any("deploy/regsearch-healthcheck" in words and words[-1].startswith("/usr/local/bin/") for words in copies)
    assert any("chmod 755" in r.args and "/usr/local/bin/regsearch-healthcheck" in r.args for s in stages for r in s.all("RUN"))


def fake_nvidia_smi(bin_dir: Path, listing: str, exit_code: int = 0) -> None:
    """An ``nvidia-smi`` whose ``-L`` prints ``listing`` (the real one prints "GPU N: ..." lines)."""
    fake = bin_dir / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\ncat <<'LIST'\n{listing}LIST\nexit {exit_code}\n")
    fake.chmod(0o755)


@pytest.fixture
def slots(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], list[subprocess.Popen[str]]]]:
    """The script, an environment with a fake two-GPU nvidia-smi, and the holders to clean up."""
    if not (shutil.which("sh") and shutil.which("flock")):
        pytest.skip("needs sh and flock (util-linux), as in the worker image")
    script = tmp_path / "regsearch-gpu-slot"
    script.write_text(slot_script())
    script.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_nvidia_smi(bin_dir, "GPU 0: NVIDIA H100 (UUID: GPU-a)\nGPU 1: NVIDIA H100 (UUID: GPU-b)\n")
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", GPU_SLOT_DIR=str(tmp_path / "gpu-slots"))
    holders: list[subprocess.Popen[str]] = []
    yield script, env, holders
    for holder in holders:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)


def hold(script: Path, env: dict[str, str], holders: list[subprocess.Popen[str]]) -> str:
    """Start a worker stand-in through the script; the GPU it got ('' if it got none)."""
    holder = subprocess.Popen([str(script), "sh", "-c", 'echo "gpu=$CUDA_VISIBLE_DEVICES"; exec sleep 60'],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    holders.append(holder)
    assert holder.stdout is not None
    line = holder.stdout.readline().strip()
    if not line:
        holder.wait(10)
        return ""
    return re.fullmatch(r"gpu=(\d*)", line)[1]  # type: ignore[index]


def test_each_worker_container_takes_a_gpu_no_other_holds(slots: tuple[Path, dict[str, str], list]) -> None:
    script, env, holders = slots
    assert hold(script, env, holders) == "0"
    assert hold(script, env, holders) == "1"
    assert hold(script, env, holders) == "", "a third worker on a two-GPU host must not start"
    third = holders[-1]
    assert third.returncode == 1 and "scale to at most 2" in (third.stderr.read() if third.stderr else "")
    holders[0].send_signal(signal.SIGKILL)  # the worker on GPU 0 dies: its lock goes with it
    holders[0].wait(10)
    assert hold(script, env, holders) == "0"


def test_an_explicit_gpu_or_no_slot_dir_leaves_the_command_alone(slots: tuple[Path, dict[str, str], list]) -> None:
    script, env, _holders = slots
    pinned = subprocess.run([str(script), "sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES"'], env={**env, "CUDA_VISIBLE_DEVICES": "3"},
                            capture_output=True, text=True, timeout=10, check=True)
    assert pinned.stdout.strip() == "3"
    plain_env = {k: v for k, v in env.items() if k != "GPU_SLOT_DIR"}
    plain = subprocess.run([str(script), "sh", "-c", 'echo "[$CUDA_VISIBLE_DEVICES]"'], env=plain_env,
                           capture_output=True, text=True, timeout=10, check=True)
    assert plain.stdout.strip() == "[]"
    cpu = subprocess.run([str(script), "sh", "-c", 'echo "[$CUDA_VISIBLE_DEVICES]"'], env={**env, "GPU_SLOT_DIR": ""},
                         capture_output=True, text=True, timeout=10, check=True)  # deploy/compose.cpu.yml
    assert cpu.stdout.strip() == "[]"


def test_no_visible_gpu_is_a_clear_error(slots: tuple[Path, dict[str, str], list]) -> None:
    script, env, _holders = slots
    fake_nvidia_smi(Path(env["PATH"].split(":")[0]), "", exit_code=9)
    done = subprocess.run([str(script), "true"], env=env, capture_output=True, text=True, timeout=10, check=False)
    assert done.returncode == 1 and "no GPU visible" in done.stderr
