"""The house rules: what each layer may import, module size, and what the distribution installs."""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
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


def declared_pure() -> list[str]:
    """The modules docs/architecture.md declares pure: the backticked paths of its "- Pure" import
    rule, before "import neither" (a folder means every module in it, a ``*`` a glob). The doc is
    the list; this reads it."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    rule = re.search(r"^- Pure\b.*?(?=^\S|^- |\Z)", doc, re.MULTILINE | re.DOTALL)
    assert rule, "docs/architecture.md has no '- Pure ...' import rule"
    modules: list[str] = []
    for pattern in re.findall(r"`(worker/[\w./*]*)`", rule.group(0).split("import neither")[0]):
        found = sorted((ROOT / pattern).rglob("*.py") if (ROOT / pattern).is_dir() else ROOT.glob(pattern))
        assert found, f"docs/architecture.md declares {pattern} pure, and no such module exists"
        modules += [f.relative_to(ROOT).as_posix() for f in found if "__pycache__" not in f.parts]
    return modules


def test_the_pure_modules_import_neither_celery_nor_optuna() -> None:
    pure = set(declared_pure())
    assert {"worker/train.py", "worker/models.py", "worker/datasets.py", "worker/datafiles.py",
            "worker/packed.py", "worker/families/__init__.py"} <= pure
    found = [o for o in offenders("worker", ("celery", "optuna", "regsearch.messaging"))
             if o.split(":")[0] in pure]
    assert not found


def module_names() -> dict[str, Path]:
    """Every module of the distribution by its import name (the mapped folders included)."""
    names = {}
    for folder, name in FOLDERS.items():
        for path in sources(folder):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            names[".".join((name, *parts))] = path
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the distribution it imports, anywhere in it (at the top, inside a
    function, under TYPE_CHECKING): a lazy import hides a circle from Python, not from a reader."""
    names = module_names()
    graph: dict[str, set[str]] = {}
    for module, path in names.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                wanted = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                wanted = [f"{base}.{a.name}" if f"{base}.{a.name}" in names else base for a in node.names]
            else:
                continue
            for name in wanted:
                while name and name not in names:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    targets.add(name)
        graph[module] = targets
    return graph


def in_a_circle(graph: dict[str, set[str]]) -> list[str]:
    """The modules that reach themselves through their imports (every circle, not only pairs)."""
    found = []
    for start in sorted(graph):
        seen: set[str] = set()
        todo = list(graph[start])
        while todo:
            current = todo.pop()
            if current == start:
                found.append(start)
                break
            if current not in seen:
                seen.add(current)
                todo += graph.get(current, ())
    return found


def test_no_two_modules_import_each_other() -> None:
    graph = import_graph()
    assert graph["regsearch.domain.ranking"] and graph["regsearch.services.coordinator.steps"], "the graph is read"
    circled = in_a_circle(graph)
    assert not circled, f"modules in an import circle: {circled}"
    probe = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}  # the check itself finds a circle of three
    assert in_a_circle(probe) == ["a", "b", "c"]


# A cited file: a path with a folder (``docs/networks.md``, ``worker/train.py``) or a Markdown
# page by name (``README.md``); each must be a file of the repository (or, for a library's own
# source, of the installed library).
CITED = re.compile(r"(?<![\w/.<-])((?:[\w.-]+/)+[\w.*-]+\.(?:py|md|toml|yaml|yml)|[\w-]+\.md)\b")
MAPPED = {f"regsearch/{folder}/": f"{folder}/" for folder in FOLDERS if folder != "regsearch"}


@functools.cache
def repository_names() -> frozenset[str]:
    """The names of the repository's files (not the venv's, git's or a build's)."""
    names = set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and not d.endswith(".egg-info") and d != "build"]
        names.update(files)
    return frozenset(names)


def resolves(cited: str, citing: Path) -> bool:
    for prefix, folder in MAPPED.items():
        if cited.startswith(prefix):
            cited = folder + cited.removeprefix(prefix)
    if "/" not in cited:  # a page by name: anywhere in the repository
        return cited in repository_names()
    # from the root, the citing file's folder, docs/, or a package folder (``app_pages/job.py``)
    for base in (ROOT, citing.parent, ROOT / "docs", *(ROOT / folder for folder in FOLDERS)):
        if any(base.glob(cited)):
            return True
    top = cited.split("/")[0]
    if top not in (*FOLDERS, "tests", "bench", "docs", "examples"):  # a library's source file
        spec = importlib.util.find_spec(top)
        if spec is not None and spec.submodule_search_locations:
            return any((Path(p).parent / cited).exists() for p in spec.submodule_search_locations)
    return False


def test_the_source_and_docs_cite_only_files_in_the_repository() -> None:
    citing = [p for folder in (*FOLDERS, "tests", "bench") for p in sources(folder)]
    citing += [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    # a page's "Planned (not yet available)" part names what is not built yet
    text = {path: path.read_text().split("# Planned (not yet available)")[0] for path in citing}
    missing = [f"{path.relative_to(ROOT)}: {cited}" for path in citing
               for cited in sorted(set(CITED.findall(text[path]))) if not resolves(cited, path)]
    assert not missing, f"cited files that the repository does not have: {missing}"


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
