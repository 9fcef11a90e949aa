"""training.trainer / training.options checked against what workers publish (torch-free), and an
offline ``regsearch validate`` that names what only the service could check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from regsearch.cli.app import app
from regsearch.domain import families
from regsearch.domain.spec import SpecError, validate_spec
from regsearch.service_catalog import ServiceCatalog

OPTIONS = {"type": "object", "additionalProperties": False,
           "properties": {"lr": {"type": "number", "exclusiveMinimum": 0, "default": 0.1}}}


def spec(**training: Any) -> dict[str, Any]:
    return {"name": "t", "dataset": {"name": "digits"}, "training": training}


def catalog() -> ServiceCatalog:
    return ServiceCatalog([], [{"name": "sgd", "options": OPTIONS, "doc": "", "source": "plugin"}])


def test_a_trainer_is_checked_against_the_published_ones() -> None:
    ok = validate_spec(spec(trainer="sgd", options={"lr": 0.5}), catalog())
    assert ok.training.trainer == "sgd" and ok.training.options == {"lr": 0.5}
    assert validate_spec(spec()).training.trainer == "builtin"
    cases = [(spec(trainer="nosuch"), "training.trainer", "no live worker offers trainer 'nosuch' (offered: builtin, sgd)"),
             (spec(trainer="sgd", options={"lr": -1}), "training.options.lr", ""),
             (spec(trainer="sgd", options={"momentum": 0.9}), "training.options.momentum", ""),
             (spec(options={"lr": 0.1}), "training.options", "the built-in trainer takes no options"),
             ({**spec(trainer="sgd"), "budget": {"pack": 2}}, "budget.pack", "built-in loop only")]
    for document, field, message in cases:
        with pytest.raises(SpecError) as error:
            validate_spec(document, catalog())
        assert error.value.field == field and message in error.value.message, (field, error.value)


def test_without_a_catalog_a_plugin_trainer_is_left_to_the_worker() -> None:
    assert validate_spec(spec(trainer="anything", options={"x": 1})).training.trainer == "anything"


@pytest.fixture
def registrations_undone() -> Iterator[None]:
    with families.registrations_undone():
        yield


@pytest.mark.usefixtures("registrations_undone")
def test_offline_validate_names_what_it_could_not_check(tmp_path: Path) -> None:
    document = {**spec(trainer="mine"), "model": {"family": "mystery", "depth": 3}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(document))
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port
    result = CliRunner().invoke(app, ["--api-url", dead, "validate", str(path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "could not ask the service" in text and "model.family 'mystery'" in text and "training.trainer 'mine'" in text
    path.write_text(yaml.safe_dump({**document, "model": {"family": "mpl"}}))  # a misspelt built-in
    result = CliRunner().invoke(app, ["--api-url", dead, "validate", str(path)])
    assert result.exit_code == 2 and "model.family" in result.output, result.output
