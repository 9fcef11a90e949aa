"""Every ready spec in examples/ validates and says how long it runs on 2 CPU cores."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from regsearch.domain.spec import load_spec

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def test_the_examples_are_there() -> None:
    assert {p.name for p in EXAMPLES} >= {"mnist1d-placement.yaml", "digits-cnn.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_validates_and_states_its_run_time(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name == path.stem
    assert spec.confirm is not None, "an example shows the confirmation runs"
    assert re.search(r"Expected run time on 2 CPU cores: about \d+(\.\d+)? min", path.read_text()), path


def test_the_placement_study_covers_every_sensible_placement() -> None:
    spec = load_spec(EXAMPLES[0].with_name("mnist1d-placement.yaml"))
    assert spec.dataset.name == "mnist1d" and spec.model.family == "mlp"
    assert set(spec.space.choices("placement")) == {"bn-act-drop", "act-bn-drop", "drop-bn-act", "bn-act",
                                                    "act-drop", "act"}
    assert spec.pruner == "none" and (spec.confirm.top_k, spec.confirm.seeds) == (3, 3)  # type: ignore[union-attr]
    cnn = load_spec(EXAMPLES[0].with_name("digits-cnn.yaml"))
    assert cnn.dataset.name == "digits" and cnn.model.family == "cnn"
