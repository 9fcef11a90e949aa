"""The built-in families build what docs/networks.md says: ResNet is He et al.'s, VGG's slots.

The reference CIFAR ResNet below is written by hand from the paper (section 4.2, option B
shortcuts), independently of the family's code: placement ``bn-act`` without dropout must be it,
layer for layer and output for output.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from regsearch.domain.space import make_recipe
from regsearch.domain.spec import JobSpec, all_placements
from regsearch.worker.families.resnet import Add
from regsearch.worker.local import run_local_trial
from regsearch.worker.models import build_model, layer_order


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _build(model: dict[str, Any], params: dict[str, Any], shape: list[int], n_classes: int = 10) -> nn.Module:
    spec = JobSpec(name="t", dataset={"name": "digits"}, model=model)
    return build_model(make_recipe(spec, params, shape, n_classes))


class RefBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


class RefResNet(nn.Module):
    def __init__(self, n: int, width: int = 16, n_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        blocks, cin = [], width
        for stage in range(3):
            for b in range(n):
                blocks.append(RefBlock(cin, width * 2**stage, 2 if stage and not b else 1))
                cin = width * 2**stage
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.relu(self.bn(self.conv(x))))
        return self.fc(self.flatten(self.pool(x)))


def _leaf_types(model: nn.Module) -> list[type]:
    return [
        type(m) for m in model.modules()
        if not list(m.children()) and not isinstance(m, (nn.Sequential, Add))
    ]  # fmt: skip


@pytest.mark.parametrize("depth", [8, 20])
def test_bn_act_without_dropout_is_the_reference_cifar_resnet(depth: int) -> None:
    torch.manual_seed(0)
    ours = _build({"family": "resnet", "depth": depth}, {"placement": "bn-act", "bn_momentum": 0.1}, [3, 32, 32])
    reference = RefResNet((depth - 2) // 6)
    assert _leaf_types(ours) == _leaf_types(reference)  # module types in forward order
    assert sum(1 for m in ours.modules() if isinstance(m, Add)) == 3 * (depth - 2) // 6
    mine, theirs = ours.state_dict(), reference.state_dict()
    assert [v.shape for v in mine.values()] == [v.shape for v in theirs.values()]  # no extra bias
    reference.load_state_dict(dict(zip(theirs, mine.values())))
    x = torch.randn(4, 3, 32, 32)
    for mode in (True, False):
        ours.train(mode), reference.train(mode)
        torch.testing.assert_close(ours(x), reference(x))
    # running statistics moved the same way in train mode (same momentum, same inputs)
    for a, b in zip(ours.state_dict().values(), reference.state_dict().values()):
        torch.testing.assert_close(a, b)
    if depth == 20:  # the paper's ResNet-20: 0.27M parameters
        assert round(sum(p.numel() for p in ours.parameters()) / 1e6, 2) == 0.27


def _names(module: nn.Module) -> list[str]:
    return [name for name, _ in module.named_children()]


@pytest.mark.parametrize("placement", all_placements())
def test_the_residual_add_sits_just_before_the_last_slots_activation(placement: str) -> None:
    params: dict[str, Any] = {"placement": placement, "dropout": 0.2, "bn_momentum": 0.3}
    model = _build({"family": "resnet", "depth": 8, "width": 4}, params, [1, 8, 8])
    tokens = placement.split("-")
    before, after = tokens[: tokens.index("act")], tokens[tokens.index("act") :]
    assert _names(model.stem)[1:] == tokens  # a slot without an add is whole
    for stage in (model.stage1, model.stage2, model.stage3):
        block = stage[0]
        assert _names(block.slot1) == tokens
        assert _names(block.slot2) == before and _names(block.post) == after
        assert block.conv1.bias is None if tokens[0] == "bn" else block.conv1.bias is not None
        assert block.conv2.bias is None if before[:1] == ["bn"] else block.conv2.bias is not None
        if stage is model.stage1:
            assert block.shortcut is None  # same shape: identity
        else:  # a projection, normalized exactly when the branch reaches the add through BN
            assert isinstance(block.shortcut.conv, nn.Conv2d) and block.shortcut.conv.kernel_size == (1, 1)
            assert ("bn" in _names(block.shortcut)) == ("bn" in before)
            if "bn" in before:
                assert block.shortcut.bn.momentum == 0.3
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_resnet_slots_count_from_the_output_end() -> None:
    params = {"placement": "bn-act-drop", "dropout": 0.4, "bn_momentum": 0.1, "dropout_layers": "last-2"}
    model = _build({"family": "resnet", "depth": 14, "width": 4}, params, [1, 40])  # 1-d: Conv1d
    drops = [name for name, m in model.named_modules() if isinstance(m, nn.Dropout)]
    assert drops == ["stage3.1.slot1.drop", "stage3.1.post.drop"]  # the last block's two slots
    assert isinstance(model.stage1[0].conv1, nn.Conv1d) and isinstance(model.pool, nn.AdaptiveAvgPool1d)
    assert layer_order(model)[-7:] == [
        "BatchNorm1d(m=0.1)", "Add", "ReLU", "Dropout(p=0.4)", "AdaptiveAvgPool1d(1)", "Flatten", "Linear(16->10)",
    ]  # fmt: skip
    assert model(torch.randn(3, 1, 40)).shape == (3, 10)


VGG = {"family": "vgg", "channels": [4, 8], "convs_per_stage": 2, "head": [16, 12]}


def test_vgg_order_presence_and_momentum() -> None:
    params = {"placement": "bn-act-drop", "dropout": 0.5, "bn_momentum": 0.2, "dropout_layers": "last-2"}
    model = _build(VGG, params, [1, 8, 8])
    assert layer_order(model) == [
        "Conv2d(1->4, k=3x3)", "BatchNorm2d(m=0.2)", "ReLU",
        "Conv2d(4->4, k=3x3)", "BatchNorm2d(m=0.2)", "ReLU", "MaxPool2d(2)",
        "Conv2d(4->8, k=3x3)", "BatchNorm2d(m=0.2)", "ReLU",
        "Conv2d(8->8, k=3x3)", "BatchNorm2d(m=0.2)", "ReLU", "MaxPool2d(2)",
        "Flatten",
        "Linear(32->16)", "BatchNorm1d(m=0.2)", "ReLU", "Dropout(p=0.5)",  # the head's slots are last
        "Linear(16->12)", "BatchNorm1d(m=0.2)", "ReLU", "Dropout(p=0.5)",
        "Linear(12->10)",
    ]  # fmt: skip
    assert model.stage1.conv1.conv.bias is None and model.fc1.linear.bias is None  # BN follows
    assert model.out.bias is not None


def test_vgg_bn_layers_last_and_act_first_orders() -> None:
    params = {"placement": "act-bn", "bn_momentum": 0.05, "bn_layers": "last"}
    model = _build(VGG, params, [1, 8, 8])
    bns = [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns == ["fc2.bn"] and model.fc2.bn.momentum == 0.05
    assert _names(model.fc2) == ["linear", "act", "bn"] and model.fc2.linear.bias is not None


def test_vgg_eval_mode_is_deterministic_and_uses_running_statistics() -> None:
    torch.manual_seed(0)
    params = {"placement": "drop-bn-act", "dropout": 0.5, "bn_momentum": 0.3}
    model = _build(VGG, params, [1, 8, 8])
    x = torch.randn(16, 1, 8, 8)
    model.train()
    assert not torch.equal(model(x), model(x))  # dropout is on
    model.eval()
    frozen = model.stage2.conv1.bn.running_mean.clone()
    with torch.no_grad():
        first, second, one = model(x), model(x), model(x[5:6])
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(one[0], first[5], rtol=1e-5, atol=1e-6)  # no batch statistics
    torch.testing.assert_close(model.stage2.conv1.bn.running_mean, frozen, rtol=0, atol=0)


def test_vgg_refuses_inputs_its_pools_would_empty() -> None:
    with pytest.raises(ValueError, match="model.channels: 4 stages pool by 16"):
        _build({"family": "vgg", "channels": [4, 4, 4, 4]}, {"placement": "act"}, [1, 8, 8])


FAMILIES = {
    "mlp": {"family": "mlp", "hidden": [32, 16]},
    "cnn": {"family": "cnn", "channels": [8, 8]},
    "resnet": {"family": "resnet", "depth": 8, "width": 8},
    "vgg": {"family": "vgg", "channels": [8, 16], "head": [32]},
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_trains_on_digits(family: str, data_dir: Path) -> None:
    spec = JobSpec(
        name=family, dataset={"name": "digits"}, model=FAMILIES[family],
        training={"epochs": 3, "batch_size": 64, "lr": 0.003},
    )  # fmt: skip
    params = {"placement": "bn-act-drop", "dropout": 0.1, "bn_momentum": 0.1, "dropout_layers": "last"}
    trial = run_local_trial(spec, params, data_dir, device="cpu")
    assert trial.recipe["family"] == family and trial.recipe["version"] == 2
    assert len(trial.recipe["slots"]) == spec.model.n_slots()
    assert trial.layers.count("Dropout(p=0.1)") == 1
    assert trial.result.summary["val_acc"] > 0.5, trial.result.summary
