"""The house rules: what each layer may import, module size, and what the distribution installs."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Folder in the repository -> the import name the distribution gives it (pyproject package-dir).
FOLDERS = {"regsearch": "regsearch", "services": "regsearch.services", "worker": "regsearch.worker",
           "dashboard": "regsearch.dashboard"}
MAX_MODULE_LINES = 400


def sources(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def imported(path: Path) -> list[str]:
    """Every absolute module name the file imports, at the top or inside a function."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return names


def offenders(folder: str, forbidden: tuple[str, ...], skip: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in sources(folder):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(skip):
            continue
        found += [f"{rel}: {name}" for name in imported(path)
                  if any(name == f or name.startswith(f + ".") for f in forbidden)]
    return found


def test_the_core_imports_no_component_but_in_its_cli() -> None:
    # the CLI is the composition root: it starts components lazily inside commands
    assert not offenders("regsearch", ("regsearch.services", "regsearch.worker", "regsearch.dashboard"),
                         skip=("regsearch/cli/",))


def test_services_import_neither_torch_nor_the_worker() -> None:
    assert not offenders("services", ("torch", "regsearch.worker", "regsearch.dashboard"))


def test_the_trainer_imports_neither_celery_nor_optuna() -> None:
    pure = ("worker/train.py", "worker/models.py", "worker/datasets.py", "worker/datafiles.py")
    found = [o for o in offenders("worker", ("celery", "optuna", "regsearch.messaging"))
             if o.split(":")[0] in pure]
    assert not found


def test_no_module_names_the_old_top_level_packages() -> None:
    old = ("services", "worker", "dashboard")
    found = []
    for folder in (*FOLDERS, "tests", "bench"):
        for path in sources(folder):
            found += [f"{path.relative_to(ROOT)}: {n}" for n in imported(path) if n.split(".")[0] in old]
    assert not found


def test_no_source_module_is_over_the_limit() -> None:
    long = [f"{p.relative_to(ROOT)}: {n}" for folder in FOLDERS for p in sources(folder)
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_pyproject_lists_every_package_folder() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    listed = set(re.findall(r'^\s*"(regsearch[\w.]*)",$', text.split("packages = [", 1)[1].split("]", 1)[0],
                            re.MULTILINE))
    on_disk = set()
    for folder, name in FOLDERS.items():
        # a folder of Python modules, or of the yaml specs shipped as package data (examples/)
        for init in [*(ROOT / folder).rglob("*.py"), *(ROOT / folder).rglob("*.yaml")]:
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(ROOT / folder).parts
            on_disk.add(".".join((name, *rel)))
    assert listed == on_disk


@pytest.mark.slow
def test_the_wheel_installs_only_regsearch_names(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, timeout=300, capture_output=True)
    (wheel,) = tmp_path.glob("regsearch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"regsearch"}
    for module in ("regsearch/services/api/main.py", "regsearch/worker/train.py", "regsearch/dashboard/app.py",
                   "regsearch/dashboard/app_pages/job.py", "regsearch/store/migrations/env.py",
                   "regsearch/examples/mnist1d-mlp.yaml"):
        assert module in names


def test_the_installed_distribution_maps_only_regsearch_names() -> None:
    code = ("import importlib.metadata as m;"
            "print(sorted(k for k, v in m.packages_distributions().items() if 'regsearch' in v))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         cwd="/", timeout=60).stdout
    assert out.strip() == "['regsearch']"
