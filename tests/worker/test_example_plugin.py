"""The example plugin (examples/plugin): installed, searched end to end, its recipe rebuilt.

The test installs the package itself (the CI installs the project from a fresh clone): an
editable ``pip install --no-deps --no-build-isolation`` into this interpreter's environment,
skipped when it is already installed (and then left installed; else uninstalled afterwards). Then a real stack (API, coordinator, a Celery worker)
runs a small search on ``twobranch``: the worker publishes it, the torch-free API accepts it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from regsearch.config import Settings
from tests.example_packages import install_example
from tests.services.stack import running_stack, small_spec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DISTRIBUTION = "regsearch-twobranch"


@pytest.fixture
def example_plugin() -> Iterator[None]:
    """examples/plugin installed in this environment (idempotent) and loaded in this process.

    Installed here only when it is not already; then it is uninstalled afterwards, and this
    process's registrations end with the test, so no other test sees an extra family.
    """
    from regsearch.worker import families

    installed_here = install_example("plugin", DISTRIBUTION)
    try:
        with families.plugins_undone():
            families.load_plugins(refresh=True)
            assert families.get("twobranch").source == "plugin"
            yield
    finally:
        if installed_here:
            subprocess.run([sys.executable, "-m", "pip", "uninstall", "--quiet", "--yes", DISTRIBUTION],
                           check=False, timeout=120)


def test_the_example_plugin_searches_end_to_end_and_its_recipe_rebuilds(
    example_plugin: None, sqlite_settings: Settings, tmp_path: Path
) -> None:
    import torch
    from safetensors.torch import load_file

    from regsearch.worker.models import build_model

    with running_stack(sqlite_settings, tmp_path / "logs", workers=2) as stack:
        stack.wait_for(lambda: "twobranch" in {f["name"] for f in stack.client.families()}, 120,
                       "the worker to publish twobranch")
        offered = {f["name"]: f for f in stack.client.families()}
        assert offered["twobranch"]["source"] == "plugin"
        assert offered["twobranch"]["knobs"]["properties"]["channels"]["default"] == [16, 16]

        spec = small_spec("twobranch", budget={"n_trials": 4, "parallelism": 2})
        spec["model"] = {"family": "twobranch", "channels": [8, 8], "hidden": [16], "head": [16]}
        spec["space"]["dropout_layers"] = ["all", "last"]
        job = stack.client.submit(spec)
        done = stack.wait_job(job["id"], 300)
        assert done["status"] == "completed", stack.logs()
        assert done["counts"]["complete"] >= 1, (done["counts"], stack.logs())

        top = stack.client.best(job["id"], 1)[0]
        recipe = top["recipe"]
        assert recipe["family"] == "twobranch" and len(recipe["slots"]) == 2 + 1 + 1
        stack.client.download(job["id"], top["number"], tmp_path / "best")

    trained = load_file(str(tmp_path / "best" / "weights.safetensors"))
    rebuilt = build_model(recipe)
    shapes = {name: tuple(t.shape) for name, t in rebuilt.state_dict().items()}
    assert shapes == {name: tuple(t.shape) for name, t in trained.items()}
    rebuilt.load_state_dict({k: torch.as_tensor(v) for k, v in trained.items()})
    assert any(name.startswith("conv.") for name in shapes) and any(name.startswith("mlp.") for name in shapes)
