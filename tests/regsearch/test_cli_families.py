"""``regsearch families [--json]``: the families GET /families lists, as a table or as JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from regsearch.client import Client
from regsearch.services.api.routes.families import offered_families
from regsearch.store import families as store
from regsearch.store.db import Database

PLUGIN = {
    "name": "twobranch", "source": "plugin", "slots_doc": "each conv of the conv branch, then each MLP Linear",
    "knobs": {"type": "object", "properties": {"channels": {"type": "array", "default": [16, 16]},
                                               "hidden": {"type": "array", "default": [64]}}},
}  # fmt: skip


@pytest.fixture
def families_of_api(sqlite_db: Database, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    store.publish(sqlite_db, "w1@host", [PLUGIN])
    items = offered_families(sqlite_db)  # what GET /families answers for this database
    monkeypatch.setattr(Client, "families", lambda self: items)
    return items


def test_families_prints_a_table_that_fits_80_columns(families_of_api: list[dict[str, Any]]) -> None:
    from regsearch.cli.app import app

    result = CliRunner().invoke(app, ["families"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80, result.output
    for name in ("mlp", "cnn", "resnet", "vgg", "twobranch"):
        assert any(line.split()[:1] == [name] for line in lines), name
    assert "plugin" in result.output and "depth=8" in result.output


def test_families_json_is_the_api_document(families_of_api: list[dict[str, Any]]) -> None:
    from regsearch.cli.app import app

    result = CliRunner().invoke(app, ["families", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"items": families_of_api}
    assert families_of_api[-1] == PLUGIN
