"""The ``auto`` family: an unmodified PyTorch network, its slots found by tracing (torch.fx)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.example_packages import install_example

REPO = Path(__file__).resolve().parents[2]


install_example("networks", "regsearch-example-networks")

from regsearch.domain.spec import JobSpec
from regsearch.worker.families import auto
from regsearch.worker.local import run_local_trial
from regsearch.worker.models import build_model

SHAPE = [1, 8, 8]  # sklearn digits


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _recipe(network: str, found: list[auto.Found], **override: Any) -> dict[str, Any]:
    """The recipe whose slots are today's chains (the network as it is)."""
    slots = []
    for f in found:
        if not f.is_slot:
            continue
        order = override.get("order", f.chain)
        slots.append({"order": list(order), "name": f.layer,
                      "dropout": 0.5 if "drop" in order else None,
                      "bn_momentum": 0.1 if "bn" in order else None})
    return {"version": 2, "family": "auto", "knobs": {"network": network}, "input_shape": SHAPE,
            "n_classes": 10, "slots": slots}


def _same_as_original(network: str) -> None:
    found = auto.survey(network, SHAPE)
    torch.manual_seed(0)
    original = auto.make_network(network, SHAPE, 10)
    for m in original.modules():  # non-trivial BN statistics, to be copied over
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    torch.manual_seed(0)
    rewritten = build_model(_recipe(network, found))
    state = dict(rewritten.state_dict())
    originals = dict(original.state_dict())
    for f in (f for f in found if f.is_slot):
        for kind, name in f.module_names().items():
            if kind == "bn":
                for key in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                    state[f"{f.layer}_slot.bn.{key}"] = originals.pop(f"{name}.{key}")
    for key in list(state):
        if key in originals:
            state[key] = originals[key]
    rewritten.load_state_dict(state)
    original.eval(), rewritten.eval()
    x = torch.randn(4, *SHAPE)
    torch.testing.assert_close(rewritten(x), original(x))
    assert not any(isinstance(m, torch.nn.Dropout) for m in rewritten.modules()) or any(
        "drop" in f.chain for f in found
    )


def test_vgg_sequential_slots() -> None:
    found = auto.survey("vgg_seq", SHAPE)
    assert [(f.layer, f.kind, f.chain_text, f.is_slot) for f in found] == [
        ("0", "Conv2d", "bn-act", True),
        ("3", "Conv2d", "bn-act", True),
        ("8", "Linear", "act-drop", True),
        ("11", "Linear", "(none)", False),
    ]
    _same_as_original("vgg_seq")


def test_resnet_style_slots_with_functional_relu_and_adds() -> None:
    found = auto.survey("resnet_small", SHAPE)
    assert [(f.layer, f.chain_text, f.is_slot) for f in found] == [
        ("conv1", "bn-act", True),  # torch.relu
        ("layer1.0.conv1", "bn-act", True),  # F.relu
        ("layer1.0.conv2", "bn", False),  # meets the add: left alone
        ("layer2.0.conv1", "bn-act", True),
        ("layer2.0.conv2", "bn", False),
        ("layer2.0.shortcut.0", "bn", False),
        ("fc", "(none)", False),
    ]
    _same_as_original("resnet_small")


def test_trial_order_rewrites_the_chain() -> None:
    found = auto.survey("resnet_small", SHAPE)
    model = build_model(_recipe("resnet_small", found, order=["act", "drop", "bn"]))
    slot = model.get_submodule("layer1.0.conv1_slot")
    assert [name for name, _ in slot.named_children()] == ["act", "drop", "bn"]
    assert isinstance(slot.act, auto.Activation)  # the network's own F.relu, kept
    assert not hasattr(model.get_submodule("layer1.0"), "bn1")  # the original BN is gone
    assert model(torch.randn(2, *SHAPE)).shape == (2, 10)


def test_torchvision_resnet18() -> None:
    pytest.importorskip("torchvision", reason="torchvision is not installed (not installed on purpose)")
    found = auto.survey("torchvision_resnet18", [3, 32, 32])
    slots = [f.layer for f in found if f.is_slot]
    assert slots[:2] == ["conv1", "layer1.0.conv1"] and len(slots) == 9


@pytest.mark.parametrize("network", ["vgg_seq", "resnet_small"])
def test_real_training_run(network: str, data_dir: Path) -> None:
    spec = JobSpec(name="auto", dataset={"name": "digits"}, model={"family": "auto", "network": network},
                   training={"epochs": 1, "batch_size": 64}, space={})
    params = {"placement": "bn-act-drop", "dropout": 0.1, "bn_momentum": 0.1}
    trial = run_local_trial(spec, params, data_dir, device="cpu")
    names = [s["name"] for s in trial.recipe["slots"]]
    assert names == [f.layer for f in auto.survey(network, SHAPE) if f.is_slot]
    assert trial.recipe["knobs"] == {"network": network}
    assert len(trial.result.epochs) == 1 and trial.result.summary["val_acc"] > 0.1


@pytest.mark.parametrize(
    ("network", "message"),
    [
        ("not_installed", "is not an installed regsearch.networks entry point"),
        ("broken_make", "make([1, 8, 8], 2) failed: RuntimeError: this network is broken"),
        ("untraceable", "does not trace (torch.fx): in gate (Gate)"),
        ("no_slots", "no slot found"),
    ],
)
def test_bad_networks_name_model_network(network: str, message: str, data_dir: Path) -> None:
    with pytest.raises(auto.NetworkError, match="^model.network: ") as info:
        auto.survey(network, SHAPE)
    assert message in str(info.value)
    spec = JobSpec(name="auto", dataset={"name": "digits"}, model={"family": "auto", "network": network},
                   training={"epochs": 1, "batch_size": 64}, space={})
    with pytest.raises(ValueError, match="model.network"):
        run_local_trial(spec, {"placement": "bn-act", "bn_momentum": 0.1}, data_dir, device="cpu")


def test_spec_refuses_an_import_path() -> None:
    from regsearch.domain.spec import SpecError

    with pytest.raises((SpecError, ValueError), match="model.network"):
        JobSpec(name="x", dataset={"name": "digits"}, model={"family": "auto", "network": "os:system"})
    spec = JobSpec(name="x", dataset={"name": "digits"}, model={"family": "auto", "network": "vgg_seq"})
    assert spec.model.n_slots() is None  # known only with the data's shape


def test_cli_inspect_prints_the_slots_within_80_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from regsearch.cli.app import app

    monkeypatch.setenv("REGSEARCH_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["inspect", str(REPO / "examples" / "networks" / "auto-resnet-small.yaml")],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "3 slot(s)" in result.output and "layer1.0.conv1" in result.output
    assert "nothing (no activation)" in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_installed_networks_loads_each_entry_point_and_says_why_one_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    found = auto.installed_networks()
    assert {"vgg_seq", "resnet_small", "broken_make", "untraceable", "no_slots"} <= set(found)
    assert found["vgg_seq"] == {"entry_point": "regsearch_example_networks:vgg_seq", "error": None}
    assert found["broken_make"]["error"] is None, "loading is not making: make's errors need the data's shape"

    bad = [EntryPoint("gone", "no_such_package_xyz.nets:make", auto.NETWORKS_GROUP),
           EntryPoint("typo", "regsearch_example_networks:vgg_sequ", auto.NETWORKS_GROUP)]
    monkeypatch.setattr(auto, "entry_points", lambda group: bad if group == auto.NETWORKS_GROUP else [])
    assert auto.installed_networks() == {
        "gone": {"entry_point": "no_such_package_xyz.nets:make",
                 "error": "ModuleNotFoundError: No module named 'no_such_package_xyz'"},
        "typo": {"entry_point": "regsearch_example_networks:vgg_sequ",
                 "error": "AttributeError: module 'regsearch_example_networks' has no attribute 'vgg_sequ'"},
    }
    with pytest.raises(auto.NetworkError, match=r"^model.network: 'gone' \(no_such_package_xyz.nets:make\) did "
                                                r"not load: ModuleNotFoundError"):
        auto.load_network("gone")


def _spec_file(tmp_path: Path, network: str) -> Path:
    path = tmp_path / f"{network}.yaml"
    path.write_text(f"name: bad\ndataset: {{name: digits}}\nmodel: {{family: auto, network: {network}}}\n"
                    "training: {epochs: 1, batch_size: 64}\n")
    return path


@pytest.mark.parametrize(
    ("network", "message"),
    [
        ("not_installed", "error: model.network: 'not_installed' is not an installed regsearch.networks entry point"),
        ("broken_make", "error: model.network: 'broken_make': make([1, 8, 8], 2) failed: RuntimeError: this network"),
        ("untraceable", "error: model.network: 'untraceable' does not trace (torch.fx): in gate (Gate)"),
        ("no_slots", "error: model.network: 'no_slots': no slot found"),
    ],
)
def test_cli_trial_and_inspect_exit_2_with_the_message(network: str, message: str, data_dir: Path,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from regsearch.cli.app import app

    monkeypatch.setenv("REGSEARCH_DATA_DIR", str(data_dir))
    spec = str(_spec_file(tmp_path, network))
    for argv in (["inspect", spec], ["trial", spec, "--device", "cpu", "--params",
                                     '{"placement": "bn-act", "bn_momentum": 0.1}']):
        result = CliRunner().invoke(app, argv, env={"COLUMNS": "400"})
        assert result.exit_code == 2, (argv, result.output, result.exception)
        assert message in " ".join(result.output.split()), (argv, result.output)
        assert "Traceback" not in result.output
