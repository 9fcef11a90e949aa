"""The CLI at 80 columns, on a real run's data (tests/regsearch/data/mnist1d_small_run.json: the
spec, trials and best items of a small mnist1d placement study run with ``regsearch up``).

What a newcomer in an 80-column terminal must be able to read: rows told apart (placement and
trial number whole), the objective whole, test_acc and gap beside it, one format per metric,
a mark with a footnote rather than a second line, the recipe as indented JSON; messages as text;
``best --save`` to an unusable path refused by name; ``inspect`` and ``families`` complete.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from regsearch.cli.app import app
from regsearch.cli.common import console
from regsearch.client import Client
from regsearch.domain.metrics import METRICS
from regsearch.evidence import build_report
from tests.regsearch.test_cli import ROOT, regsearch

RUN = json.loads((Path(__file__).parent / "data" / "mnist1d_small_run.json").read_text())
PLACEMENTS = ("bn-act-drop", "act-bn-drop", "drop-bn-act", "bn-act", "act-drop", "act")
INTERVAL = re.compile(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]")


def _report() -> dict[str, Any]:
    return build_report(RUN["spec"], RUN["trials"], job_id="6fac3a7e23d7", status="completed").model_dump(mode="json")


@pytest.fixture
def at_80(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The CLI's console as an 80-column terminal, the API answering with the run's documents."""
    monkeypatch.setattr(console, "width", 80)
    monkeypatch.setattr(Client, "report", lambda self, job: _report())
    monkeypatch.setattr(Client, "best", lambda self, job, k=5: RUN["best"][:k])
    monkeypatch.setattr(Client, "job", lambda self, job: {"id": job, "spec": RUN["spec"]})
    return CliRunner()


def _fits(text: str) -> None:
    assert "…" not in text, f"a cell was cut:\n{text}"
    assert [line for line in text.splitlines() if len(line.rstrip()) > 80] == [], text


def _rows(text: str, after: str) -> list[list[str]]:
    """The rows of the table under the title line starting with ``after``, as words."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(after))
    rule = next(i for i in range(start, len(lines)) if set(lines[i].strip()) == {"─"})
    rows = []
    for line in lines[rule + 1:]:
        if not line.strip() or line.startswith("Not shown"):
            break
        rows.append(line.split())
    return rows


def test_the_report_at_80_columns_keeps_placement_and_objective_whole(at_80: CliRunner) -> None:
    result = at_80.invoke(app, ["report", "6fac3a7e23d7", "--format", "text"])
    assert result.exit_code == 0, result.output
    text = result.output
    _fits(text)
    rows = _rows(text, "By placement")
    assert sorted(row[1] for row in rows) == sorted(PLACEMENTS), "one line per placement, its name whole"
    assert [row[0] for row in rows] == [str(i) for i in range(1, 7)], "rank, not #"
    for row in rows:
        line = " ".join(row)
        assert INTERVAL.search(line) or re.search(r"\d\.\d{3}‡", line), f"the objective whole: {line}"
    act = next(row for row in rows if row[1] == "act")
    assert "0.560‡" in act, "too few runs: a mark, not a second line"
    assert "(too few runs)" not in "\n".join(" ".join(r) for r in rows)
    words = " ".join(text.split())  # a caption wraps at the table's width
    assert "‡ too few runs: fewer than 3 runs" in words, "the mark's footnote"
    assert "Not shown at this width:" in words and "--format md shows them" in words, "left-out columns named"
    header = text.splitlines()[text.splitlines().index(next(li for li in text.splitlines() if li.startswith("rank")))]
    assert "val_acc mean [95% CI]" in header and "test_acc" in header
    confirmed = _rows(text, "Confirmation runs")
    assert [row[1] for row in confirmed] == ["18", "12"], "# is the search trial number"
    assert "Recommendation." in text and "Warnings" in text


def test_the_report_into_a_pipe_is_markdown_unless_asked(at_80: CliRunner) -> None:
    piped = at_80.invoke(app, ["report", "6fac3a7e23d7"])  # CliRunner's stdout is not a terminal
    assert piped.exit_code == 0 and piped.output.startswith("## Report: mnist1d-small")
    bad = at_80.invoke(app, ["report", "6fac3a7e23d7", "--format", "html"])
    assert bad.exit_code == 2 and "text, md, json" in bad.output


def test_best_at_80_columns_keeps_generalization_and_prints_the_recipe_as_json(at_80: CliRunner) -> None:
    result = at_80.invoke(app, ["best", "6fac3a7e23d7"])
    assert result.exit_code == 0, result.output
    table, _, recipe = result.output.partition("(rebuilds the exact module):\n")
    _fits(result.output)
    header = next(line for line in table.splitlines() if "placement" in line).split()
    assert header[:2] == ["#", "placement"] and {"val_acc", "test_acc", "gap"} <= set(header)
    rows = _rows(table, "Best configurations")
    assert [row[0] for row in rows] == [str(item["number"]) for item in RUN["best"]]
    assert [row[1] for row in rows] == [item["params"]["placement"] for item in RUN["best"]]
    confirmed = [row for row, item in zip(rows, RUN["best"]) if item["confirmation"]]
    assert confirmed and all(INTERVAL.search(" ".join(row)) for row in confirmed), "the objective over its runs"
    assert len(table.splitlines()) < 20, "one line per configuration"
    assert json.loads(recipe) == RUN["best"][0]["recipe"], "the recipe whole, as JSON"
    lines = recipe.splitlines()
    assert len(lines) > 5 and lines[1].startswith('  "') and max(map(len, lines)) <= 80, "indented, own lines"


def test_one_format_per_metric() -> None:
    from regsearch.domain.metrics import format_metric

    assert [format_metric("val_acc", v) for v in (0.63, 0.625, 0.6212, 0.3575)] == ["0.630", "0.625", "0.621", "0.357"]
    assert format_metric("epochs_to_95pct_best", 18) == "18" and format_metric("epochs_to_95pct_best", 4.25) == "4.2"
    assert format_metric("seconds_per_epoch", 0.0123) == "0.012" and format_metric("gap", None) == "–"
    assert all(isinstance(m.decimals, int) for m in METRICS.values()), "the decimals live in the metric table"


def test_messages_are_text_not_markup(tmp_path: Path) -> None:
    spec = tmp_path / "size.yaml"
    spec.write_text("name: x\ndataset: {name: digits, size: [0, 8]}\n")
    result = regsearch("validate", str(spec), env={"COLUMNS": "80"})
    assert result.returncode == 2
    assert "size must be [height, width], each from 1 to 1024 pixels" in result.stderr, result.stderr


@pytest.mark.parametrize("kind", ["existing file", "folder inside a file"])
def test_best_save_to_an_unusable_path_exits_2_naming_it(tmp_path: Path, kind: str) -> None:
    afile = tmp_path / "taken.txt"
    afile.write_text("mine")
    target = afile if kind == "existing file" else afile / "best"
    result = regsearch("--api-url", "http://127.0.0.1:9", "best", "j", "--save", str(target), env={"COLUMNS": "80"})
    assert result.returncode == 2, result.stderr
    assert "--save: " in result.stderr and str(target) in result.stderr and "Traceback" not in result.stderr
    assert afile.read_text() == "mine", "nothing written"


def test_inspect_prints_the_slot_table_of_a_builtin_family(tmp_path: Path, data_dir: Path) -> None:
    spec = tmp_path / "mlp.yaml"
    spec.write_text("name: x\ndataset: {name: digits}\nmodel: {family: mlp, hidden: [32, 16]}\n")
    result = regsearch("inspect", str(spec), env={"COLUMNS": "80", "REGSEARCH_DATA_DIR": str(data_dir)})
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1] in (["0"], ["1"])]
    assert rows == [["0", "block1.linear", "Linear", "64->32", "bn,", "dropout,", "order"],
                    ["1", "block2.linear", "Linear", "32->16", "bn,", "dropout,", "order"]], result.stdout
    resnet = regsearch("inspect", str(ROOT / "examples" / "digits-resnet.yaml"),
                       env={"COLUMNS": "80", "REGSEARCH_DATA_DIR": str(data_dir)})
    assert resnet.returncode == 0, resnet.stderr
    layers = [line.split()[1] for line in resnet.stdout.splitlines() if line.split()[:1] and line.split()[0].isdigit()]
    assert layers[:3] == ["stem.conv", "stage1.0.conv1", "stage1.0.conv2"] and not any("shortcut" in x for x in layers)
    _fits(resnet.stdout)


def test_families_shows_list_defaults_and_autos_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    from regsearch.domain import families

    items = [{"name": name, "source": "builtin", "knobs": families.family(name).knobs.model_json_schema(),
              "slots_doc": families.family(name).slots_doc} for name in ("auto", "mlp", "vgg")]
    items[0]["networks"] = [{"name": "tiny", "entry_point": "pkg.nets:tiny", "error": None},
                            {"name": "broken", "entry_point": "pkg.nets:broken", "error": "ImportError: no numpy"}]
    monkeypatch.setattr(Client, "families", lambda self: items)
    monkeypatch.setattr(console, "width", 80)
    result = CliRunner().invoke(app, ["families"])
    assert result.exit_code == 0, result.output
    _fits(result.output)
    text = " ".join(result.output.split())
    assert "hidden=[256, 256, 256]" in text and "channels=[32, 64, 128]" in text and "head=[256]" in text
    assert "tiny pkg.nets:tiny (ok)" in text and "broken pkg.nets:broken (does not load: ImportError: no numpy)" in text
    items[0]["networks"] = None
    silent = CliRunner().invoke(app, ["families"])
    assert "no live worker has said which networks" in " ".join(silent.output.split())


def test_an_untraceable_network_names_the_op_and_the_fixes() -> None:
    pytest.importorskip("torch")
    from torch import nn

    from regsearch.worker.families import auto

    class Gate(nn.Module):
        def forward(self, x: Any) -> Any:
            if x.sum() > 0:  # data-dependent control flow
                return x
            return -x

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.act, self.gate, self.out = nn.Linear(4, 8), nn.ReLU(), Gate(), nn.Linear(8, 2)

        def forward(self, x: Any) -> Any:
            return self.out(self.gate(self.act(self.fc(x))))

    with pytest.raises(auto.NetworkError) as info:
        auto.trace("gated", Net())
    message = str(info.value)
    assert message.startswith("model.network: 'gated' does not trace (torch.fx): in gate (Gate)")
    assert f"{__file__}:" in message and "if x.sum() > 0:" in message, "the op, by its source line"
    assert "torch.fx.wrap" in message and "regsearch_leaf = True" in message
    Gate.regsearch_leaf = True  # the suggested fix works: the gate is one call, fc's slot is found
    found = auto.discover(auto.trace("gated", Net()))
    assert [(f.layer, f.is_slot) for f in found] == [("fc", True), ("out", False)]
