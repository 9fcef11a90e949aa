"""Packed training (``regsearch.worker.packed``) against unpacked ``train_trial``, on CPU."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from regsearch.domain.metrics import EpochMetrics
from regsearch.domain.space import make_recipe
from regsearch.domain.spec import JobSpec, TrainingSpec
from regsearch.worker.datasets import Splits, input_shape_for
from regsearch.worker.loop import NonFiniteLossError, TrainResult, evaluate, make_optimizer
from regsearch.worker.models import build_model, layer_order
from regsearch.worker.packed import PackedModel, can_pack, train_packed, unpack_member
from regsearch.worker.train import (
    DeviceData,
    to_device,
    train_trial,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/worker/conftest.py


@pytest.fixture(scope="module")
def data(digits: Splits) -> DeviceData:
    return to_device(digits, "cpu")


def _recipe(
    splits: Splits,
    family: str,
    placement: str,
    dropout: float | None = None,
    momentum: float | None = None,
    **model: Any,
) -> dict[str, Any]:
    widths = {"mlp": {"hidden": [32, 32]}, "cnn": {"channels": [8, 8]}}.get(family, {})
    model = {"family": family, **widths, **model}
    spec = JobSpec(name="t", dataset={"name": "digits"}, model=model)
    params: dict[str, Any] = {"placement": placement}
    if dropout is not None:
        params["dropout"] = dropout
    if momentum is not None:
        params["bn_momentum"] = momentum
    return make_recipe(spec, params, input_shape_for(splits, family), splits.n_classes)


def _curve(epochs: list[EpochMetrics]) -> list[tuple[float, ...]]:
    return [(e.epoch, e.train_loss, e.train_acc, e.val_loss, e.val_acc) for e in epochs]


def _result(result: TrainResult | NonFiniteLossError) -> TrainResult:
    assert isinstance(result, TrainResult), result
    return result


def _unpacked(
    recipe: dict[str, Any], training: TrainingSpec, data: DeviceData, seed: int
) -> TrainResult:
    return train_trial(recipe, training.model_copy(update={"seed": seed}), data)


@pytest.mark.parametrize(
    ("family", "optimizer", "weight_decay"),
    [("mlp", "adam", 0.0), ("mlp", "adamw", 0.01), ("cnn", "sgd", 1e-3)],
)
def test_a_pack_of_one_is_bit_identical_to_unpacked_training(
    digits: Splits, data: DeviceData, family: str, optimizer: str, weight_decay: float
) -> None:
    # the packed path itself (packed layers, one optimizer over stacked parameters, the packed
    # loop), not a fallback to train_trial: BN and dropout included
    recipe = _recipe(digits, family, "bn-act-drop", dropout=0.2, momentum=0.1)
    training = TrainingSpec(epochs=3, batch_size=50, optimizer=optimizer, weight_decay=weight_decay)
    plain = _unpacked(recipe, training, data, seed=3)
    (packed,) = train_packed([recipe], training, data, seeds=[3])
    packed = _result(packed)
    assert _curve(packed.epochs) == _curve(plain.epochs)
    assert packed.summary["variance_shift"]  # measured on the member's own BN slots, as unpacked
    timing = {"seconds_per_epoch"}
    assert {k: v for k, v in packed.summary.items() if k not in timing} == {
        k: v for k, v in plain.summary.items() if k not in timing
    }
    assert plain.best_state is not None and packed.best_state is not None
    assert packed.best_state.keys() == plain.best_state.keys()
    assert all(torch.equal(packed.best_state[k], plain.best_state[k]) for k in plain.best_state)


# A pack rounds differently in the last bit (the fused Adam step, a grouped convolution's weight
# gradient). Where a layer's bias feeds BN directly (bn-act) its true gradient is zero, and Adam,
# which divides by the gradient's own scale, turns rounding noise into steps of size lr: the
# unpacked run itself is then at the mercy of rounding (another thread count moves it as much).
# So bn-act runs under SGD too (where an mlp pack matches exactly) and act-bn under Adam.
@pytest.mark.parametrize(
    ("family", "placement", "optimizer"),
    [
        ("mlp", "act-bn", "adam"),
        ("mlp", "bn-act", "sgd"),
        ("cnn", "act-bn", "adam"),
        ("cnn", "bn-act", "sgd"),
    ],
)
def test_a_pack_without_dropout_reproduces_each_members_curve(
    digits: Splits, data: DeviceData, family: str, placement: str, optimizer: str
) -> None:
    momenta, seeds = [0.1, 0.01, 0.5], [1, 2, 3]
    recipes = [_recipe(digits, family, placement, momentum=m) for m in momenta]
    training = TrainingSpec(
        epochs=3, batch_size=64, optimizer=optimizer, lr=0.01 if optimizer == "sgd" else 1e-3
    )
    results = [_result(r) for r in train_packed(recipes, training, data, seeds)]
    flips = 4 / len(digits.y_val)  # early epochs: predictions near the boundary may flip
    for recipe, seed, packed in zip(recipes, seeds, results, strict=True):
        plain = _unpacked(recipe, training, data, seed)
        assert len(packed.epochs) == len(plain.epochs) == 3
        for p, u in zip(packed.epochs, plain.epochs, strict=True):
            assert p.train_loss == pytest.approx(u.train_loss, rel=2e-3)
            assert p.val_loss == pytest.approx(u.val_loss, rel=2e-3)
            assert abs(p.val_acc - u.val_acc) <= flips
            assert abs(p.train_acc - u.train_acc) <= flips
        assert packed.best_state is not None and plain.best_state is not None
        running = [k for k in plain.best_state if k.endswith("running_var")]
        assert running  # BN at its own momentum, with its own statistics
        # each member's variance shift: one ratio per BN slot of its own module
        assert len(packed.summary["variance_shift"]) == len(plain.summary["variance_shift"]) == len(running)
        for key in plain.best_state:
            assert torch.allclose(
                packed.best_state[key].float(), plain.best_state[key].float(), rtol=1e-2, atol=2e-3
            )


def test_with_dropout_each_member_lands_within_the_unpacked_seed_spread(
    digits: Splits, data: DeviceData
) -> None:
    recipes = [
        _recipe(digits, "mlp", "bn-act-drop", dropout=0.1, momentum=0.1),
        _recipe(digits, "mlp", "bn-act-drop", dropout=0.5, momentum=0.01),
    ]
    training = TrainingSpec(epochs=5, batch_size=64, lr=5e-3)  # near the plateau: a narrow spread
    packed = [_result(r) for r in train_packed(recipes, training, data, seeds=[100, 101])]
    for recipe, member in zip(recipes, packed, strict=True):
        finals = [_unpacked(recipe, training, data, seed).epochs[-1].val_acc for seed in range(5)]
        assert min(finals) - 0.02 <= member.epochs[-1].val_acc <= max(finals) + 0.02


def test_a_stopped_member_leaves_and_the_others_go_on(digits: Splits, data: DeviceData) -> None:
    recipes = [
        _recipe(digits, "mlp", "bn-act-drop", dropout=p, momentum=0.1) for p in (0.1, 0.2, 0.3)
    ]
    # SGD: no fused step, so a rebuilt pack continues exactly where the larger one was
    training = TrainingSpec(epochs=4, batch_size=64, optimizer="sgd", lr=0.05)
    calls: list[tuple[int, int]] = []

    def on_epoch(member: int, metrics: EpochMetrics) -> bool:
        calls.append((member, metrics.epoch))
        return member == 1 and metrics.epoch == 2  # pruned after its second epoch

    delivered: list[tuple[int, int]] = []  # (member, epochs the others had run by then)

    def on_result(member: int, result: object) -> None:
        delivered.append((member, max(e for m, e in calls if m != member)))

    stopped = [_result(r) for r in train_packed(recipes, training, data, [0, 1, 2], on_epoch, on_result)]
    # the stopped member's result comes at the epoch it left, the others' at the end
    assert delivered == [(1, 2), (0, 4), (2, 4)]
    assert [len(r.epochs) for r in stopped] == [4, 2, 4]
    assert [r.stopped_early for r in stopped] == [False, True, False]
    assert [r.summary["epochs_run"] for r in stopped] == [4, 2, 4]
    assert calls.count((1, 3)) == 0 and [m for m, _ in calls].count(1) == 2
    # the pack was rebuilt without member 1: the others' weights, BN state and optimizer state
    # carried over, so they train as in a pack where nobody stopped
    full = [_result(r) for r in train_packed(recipes, training, data, [0, 1, 2])]
    for i in (0, 2):
        assert [pytest.approx(c, rel=1e-6) for c in _curve(stopped[i].epochs)] == _curve(
            full[i].epochs
        )
    assert _curve(stopped[1].epochs) == _curve(full[1].epochs)[:2]


@pytest.mark.parametrize(
    ("family", "model"), [("mlp", {}), ("cnn", {}), ("vgg", {"channels": [4, 8], "head": [16]})]
)
def test_unpack_member_is_the_plain_module_with_the_members_weights(
    digits: Splits, data: DeviceData, family: str, model: dict[str, Any]
) -> None:
    recipes = [
        _recipe(digits, family, "bn-act-drop", dropout=p, momentum=m, **model)
        for p, m in ((0.1, 0.1), (0.3, 0.01), (0.0, 0.5))
    ]
    generators = [torch.Generator().manual_seed(i) for i in range(3)]
    members = []
    for seed, recipe in enumerate(recipes):
        torch.manual_seed(seed)
        members.append(build_model(recipe))
    packed = PackedModel.from_members(members, recipes, generators)
    shape = tuple(recipes[0]["input_shape"])
    x = data.x_train[:64].reshape(-1, *shape)
    packed.train()
    optimizer = make_optimizer(packed, TrainingSpec(), member_dims=1)
    for _ in range(3):  # move weights and BN statistics away from their initial values
        optimizer.zero_grad()
        packed(x.unsqueeze(0).expand(3, *x.shape)).square().mean().backward()
        optimizer.step()
    packed.eval()
    with torch.no_grad():
        outputs = packed(data.x_val.reshape(-1, *shape).unsqueeze(0).expand(3, -1, *shape))
        for i, recipe in enumerate(recipes):
            plain = unpack_member(packed, i).eval()
            assert layer_order(plain) == layer_order(build_model(recipe))
            assert plain.state_dict().keys() == build_model(recipe).state_dict().keys()
            assert torch.allclose(
                plain(data.x_val.reshape(-1, *shape)), outputs[i], rtol=1e-5, atol=1e-5
            )


def test_best_weights_rebuild_from_the_recipe_and_reproduce_test_acc(
    digits: Splits, data: DeviceData
) -> None:
    recipes = [_recipe(digits, "cnn", "act-bn-drop", dropout=p, momentum=0.1) for p in (0.1, 0.4)]
    for recipe, result in zip(
        recipes,
        train_packed(recipes, TrainingSpec(epochs=2, batch_size=64), data, [5, 6]),
        strict=True,
    ):
        result = _result(result)
        assert result.best_state is not None
        model = build_model(recipe)
        model.load_state_dict(result.best_state)
        correct = evaluate(
            model.eval(),
            data.x_test.reshape(-1, *recipe["input_shape"]),
            data.y_test,
            torch.no_grad,
        )[1]
        assert correct.item() / len(data.y_test) == result.summary["test_acc"]


def test_can_pack_only_one_structure(digits: Splits) -> None:
    base = _recipe(digits, "mlp", "bn-act-drop", dropout=0.1, momentum=0.1)
    assert can_pack([base, _recipe(digits, "mlp", "bn-act-drop", dropout=0.4, momentum=0.01)])
    assert not can_pack(
        [base, _recipe(digits, "mlp", "act-bn-drop", dropout=0.1, momentum=0.1)]
    )  # placement
    last = make_recipe(
        JobSpec(name="t", dataset={"name": "digits"}, model={"family": "mlp", "hidden": [32, 32]}),
        {
            "placement": "bn-act-drop",
            "dropout": 0.1,
            "dropout_layers": "last-1",
            "bn_momentum": 0.1,
        },
        input_shape_for(digits, "mlp"),
        digits.n_classes,
    )
    assert not can_pack([base, last])  # layer selection
    assert not can_pack(
        [base, _recipe(digits, "mlp", "bn-act-drop", dropout=0.1, momentum=0.1, hidden=[32, 16])]
    )
    assert can_pack([_recipe(digits, "cnn", "bn-act", momentum=m) for m in (0.1, 0.2)])
    assert not can_pack(
        [_recipe(digits, "resnet", "bn-act", momentum=0.1, depth=8, width=4)]
    )  # a custom block
    assert not can_pack([])
    with pytest.raises(ValueError, match="cannot train as one pack"):
        train_packed([base, last], TrainingSpec(epochs=1), to_device(digits), [0, 1])


def test_packed_weight_decay_skips_biases_and_bn(digits: Splits) -> None:
    recipes = [_recipe(digits, "mlp", "bn-act", momentum=0.1)] * 2
    packed = PackedModel.from_members(
        [build_model(r) for r in recipes], recipes, [torch.Generator()] * 2
    )
    optimizer = make_optimizer(
        packed, TrainingSpec(optimizer="adamw", weight_decay=0.1), member_dims=1
    )
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert {p.ndim for p in decayed["params"]} == {3} and {p.ndim for p in plain["params"]} == {2}


def test_a_diverged_member_fails_alone(
    digits: Splits, data: DeviceData, monkeypatch: pytest.MonkeyPatch
) -> None:
    import regsearch.worker.packed as packed_module

    def poisoned(recipe: dict[str, Any]) -> torch.nn.Module:
        model = build_model(recipe)
        if recipe["slots"][0]["dropout"] == 0.3:
            with torch.no_grad():
                model.head.weight.fill_(float("nan"))  # type: ignore[union-attr]
        return model

    monkeypatch.setattr(packed_module, "build_model", poisoned)
    recipes = [
        _recipe(digits, "mlp", "bn-act-drop", dropout=p, momentum=0.1) for p in (0.1, 0.3, 0.2)
    ]
    training = TrainingSpec(epochs=2, batch_size=64, optimizer="sgd", lr=0.05)  # exact per member
    seen: list[int] = []
    results = train_packed(recipes, training, data, [0, 1, 2], lambda i, _m: bool(seen.append(i)))
    assert isinstance(results[1], NonFiniteLossError) and results[1].epoch == 1
    assert 1 not in seen  # no epoch reported for it
    monkeypatch.undo()
    healthy = train_packed(recipes, training, data, [0, 1, 2])
    for i in (0, 2):  # the NaN stayed in its own member's slices: as in a pack where none diverged
        assert [pytest.approx(c, rel=1e-6) for c in _curve(_result(healthy[i]).epochs)] == _curve(
            _result(results[i]).epochs
        )
