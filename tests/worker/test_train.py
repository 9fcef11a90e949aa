"""The training loop, with real (small) training runs on CPU."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from regsearch.domain.metrics import SUMMARY_FIELDS, EpochMetrics
from regsearch.domain.space import make_recipe
from regsearch.domain.spec import JobSpec, TrainingSpec
from regsearch.worker.datasets import Splits, input_shape_for
from regsearch.worker.loop import NonFiniteLossError, snapshot_state
from regsearch.worker.models import build_model
from regsearch.worker.train import (
    DeviceData,
    select_device,
    to_device,
    train_trial,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/worker/conftest.py


@pytest.fixture(scope="module")
def digits_cpu(digits: Splits) -> DeviceData:
    return to_device(digits, "cpu")


def _recipe(
    splits: Splits, params: dict[str, Any], family: str = "mlp", widths: list[int] | None = None
) -> dict[str, Any]:
    model: dict[str, Any] = {
        "family": family,
        ("hidden" if family == "mlp" else "channels"): widths or [32, 32],
    }
    spec = JobSpec(name="t", dataset={"name": "digits"}, model=model)
    return make_recipe(spec, params, input_shape_for(splits, family), splits.n_classes)


BN_DROP = {"placement": "bn-act-drop", "dropout": 0.2, "bn_momentum": 0.1}


def _curve(epochs: list[EpochMetrics]) -> list[tuple[float, ...]]:
    return [(e.epoch, e.train_loss, e.train_acc, e.val_loss, e.val_acc) for e in epochs]


def test_learns_digits_and_summarizes(digits: Splits, digits_cpu: DeviceData) -> None:
    result = train_trial(
        _recipe(digits, BN_DROP, widths=[64]), TrainingSpec(epochs=4, batch_size=64), digits_cpu
    )
    assert [e.epoch for e in result.epochs] == [1, 2, 3, 4]
    assert result.summary["val_acc"] > 0.8
    assert set(SUMMARY_FIELDS) <= set(result.summary)
    assert 0.5 < result.summary["test_acc"] <= 1.0
    assert result.device == "cpu" and not result.stopped_early
    assert all(e.seconds > 0 and 0 <= e.train_acc <= 1 for e in result.epochs)


def test_same_seed_is_bit_reproducible_on_cpu(digits: Splits, digits_cpu: DeviceData) -> None:
    recipe = _recipe(digits, BN_DROP)
    training = TrainingSpec(epochs=2, batch_size=50, seed=3)
    first = train_trial(recipe, training, digits_cpu)
    second = train_trial(recipe, training, digits_cpu)
    other = train_trial(recipe, training.model_copy(update={"seed": 4}), digits_cpu)
    assert _curve(first.epochs) == _curve(second.epochs)
    assert first.summary["test_acc"] == second.summary["test_acc"]
    assert _curve(first.epochs) != _curve(other.epochs)


def test_callback_true_stops_after_that_epoch(digits: Splits, digits_cpu: DeviceData) -> None:
    seen: list[EpochMetrics] = []

    def on_epoch(metrics: EpochMetrics) -> bool:
        seen.append(metrics)
        return metrics.epoch == 2

    result = train_trial(
        _recipe(digits, {"placement": "act"}), TrainingSpec(epochs=6), digits_cpu, on_epoch=on_epoch
    )
    assert result.stopped_early and len(result.epochs) == 2 and seen == result.epochs
    assert result.summary["epochs_run"] == 2 and result.summary["test_acc"] is not None


def test_callback_exceptions_propagate(digits: Splits, digits_cpu: DeviceData) -> None:
    class Cancelled(Exception):
        pass

    def on_epoch(metrics: EpochMetrics) -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        train_trial(
            _recipe(digits, {"placement": "act"}),
            TrainingSpec(epochs=3),
            digits_cpu,
            on_epoch=on_epoch,
        )


def test_test_accuracy_comes_from_the_best_validation_weights(digits: Splits) -> None:
    # Validation (and test, the same examples) carry the opposite labels of training: the more
    # the model learns, the worse validation gets, so the best epoch is early and the weights
    # of the last epoch would score differently. Test == val makes the check exact.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 1, 6)).astype(np.float32)
    y = (x[:, 0, 0] > 0).astype(np.int64)
    splits = Splits(
        x_train=x[:300],
        y_train=y[:300],
        x_val=x[300:],
        y_val=1 - y[300:],
        x_test=x[300:],
        y_test=1 - y[300:],
        sample_shape=(1, 6),
        n_classes=2,
        name="flipped",
    )
    result = train_trial(
        _recipe(splits, {"placement": "act"}, widths=[16]),
        TrainingSpec(epochs=6, lr=3e-3),
        to_device(splits),
    )
    best = result.summary["best_epoch"]
    assert best < len(result.epochs) and result.epochs[-1].val_acc < result.epochs[best - 1].val_acc
    assert result.summary["test_acc"] == result.epochs[best - 1].val_acc
    assert result.summary["test_acc"] != result.epochs[-1].val_acc


def _resnet_recipe(splits: Splits) -> dict[str, Any]:
    spec = JobSpec(name="t", dataset={"name": "digits"}, model={"family": "resnet", "depth": 8, "width": 8})
    params = {"placement": "bn-act", "bn_momentum": 0.1}
    return make_recipe(spec, params, input_shape_for(splits, spec.model), splits.n_classes)


def _test_acc_of(recipe: dict[str, Any], state: dict[str, torch.Tensor], data: DeviceData) -> float:
    # the reference: a fresh module given the state with load_state_dict, the whole split at once
    model = build_model(recipe)
    model.load_state_dict(state)
    model.eval()
    with torch.inference_mode():
        logits = model(data.x_test.reshape(-1, *recipe["input_shape"]))
    return (logits.argmax(dim=1) == data.y_test).sum().item() / len(data.y_test)


@pytest.mark.parametrize("flipped", [False, True], ids=["best-is-last", "best-is-earlier"])
def test_test_accuracy_is_the_best_epochs_as_if_evaluated_then(digits: Splits, flipped: bool) -> None:
    # A resnet (BN running statistics and num_batches_tracked in its state). The full run's
    # test_acc (the best epoch's weights brought back, or kept when the last epoch is the best)
    # equals the test accuracy of a run stopped right after the best epoch (CPU runs with the
    # same seed are bit-reproducible), i.e. of test evaluated in that epoch, and the weights are
    # exactly that epoch's.
    if flipped:  # validation carries the opposite labels: the best epoch comes early
        splits = replace(digits, y_val=(digits.y_val + 1) % digits.n_classes,
                         x_test=digits.x_val, y_test=(digits.y_val + 1) % digits.n_classes)
    else:
        splits = digits
    data = to_device(splits)
    recipe = _resnet_recipe(splits)
    full = train_trial(recipe, TrainingSpec(epochs=4, batch_size=64, lr=3e-3), data)
    best = full.summary["best_epoch"]
    assert (best < len(full.epochs)) == flipped
    stopped = train_trial(recipe, TrainingSpec(epochs=best, batch_size=64, lr=3e-3), data)
    assert _curve(stopped.epochs) == _curve(full.epochs[:best])
    assert full.summary["test_acc"] == stopped.summary["test_acc"]
    assert full.summary["test_acc"] == _test_acc_of(recipe, full.best_state, data)
    assert full.best_state is not None and stopped.best_state is not None
    assert full.best_state.keys() == stopped.best_state.keys()
    assert all(torch.equal(full.best_state[k], stopped.best_state[k]) for k in full.best_state)


def test_snapshot_state_copies_into_the_given_storage() -> None:
    source = {"w": torch.randn(3, 4), "n": torch.tensor(7)}
    first = snapshot_state(source, None)
    assert all(torch.equal(first[k], source[k]) and first[k].data_ptr() != source[k].data_ptr() for k in source)
    source["w"].add_(1.0)
    source["n"].add_(1)
    pointers = {k: v.data_ptr() for k, v in first.items()}
    again = snapshot_state(source, first)
    assert again is first and {k: v.data_ptr() for k, v in again.items()} == pointers
    assert all(torch.equal(again[k], source[k]) for k in source)


def test_diverging_training_raises(digits: Splits) -> None:
    # features a thousand times their standardized scale and a huge step: the weights overflow
    loud = to_device(replace(digits, x_train=digits.x_train * 1e3))
    training = TrainingSpec(epochs=3, lr=10.0, optimizer="sgd", momentum=0.99)
    with pytest.raises(NonFiniteLossError, match=r"^training loss became (nan|inf) in epoch \d"):
        train_trial(_recipe(digits, {"placement": "act"}, widths=[256, 256]), training, loud)


def test_non_finite_data_raises(digits: Splits) -> None:
    x_train = digits.x_train.copy()
    x_train[5, 0, 2, 3] = np.nan
    data = to_device(replace(digits, x_train=x_train))
    with pytest.raises(NonFiniteLossError, match="training loss became nan in epoch 1"):
        train_trial(_recipe(digits, BN_DROP), TrainingSpec(epochs=2), data)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_other_optimizers_learn(digits: Splits, digits_cpu: DeviceData, optimizer: str) -> None:
    lr = 0.05 if optimizer == "sgd" else 3e-3
    training = TrainingSpec(epochs=3, optimizer=optimizer, lr=lr, weight_decay=1e-4, batch_size=64)
    result = train_trial(_recipe(digits, BN_DROP), training, digits_cpu)
    assert result.summary["val_acc"] > 0.7


@pytest.mark.parametrize("family", ["cnn", "mlp"])
def test_cnn_and_mlp_train_on_images(digits: Splits, digits_cpu: DeviceData, family: str) -> None:
    recipe = _recipe(
        digits,
        {"placement": "act-bn-drop", "dropout": 0.1, "bn_momentum": 0.2},
        family=family,
        widths=[16],
    )
    result = train_trial(recipe, TrainingSpec(epochs=3, batch_size=32), digits_cpu)
    assert result.summary["val_acc"] > 0.5


def test_batch_norm_needs_batches_of_two(digits: Splits, digits_cpu: DeviceData) -> None:
    with pytest.raises(ValueError, match="^training.batch_size"):
        train_trial(_recipe(digits, BN_DROP), TrainingSpec(epochs=1, batch_size=1), digits_cpu)
    # 1079 training examples in batches of 2: a trailing batch of one is skipped, not an error
    assert len(digits.y_train) % 2 == 1
    train_trial(
        _recipe(digits, BN_DROP, widths=[8]), TrainingSpec(epochs=1, batch_size=2), digits_cpu
    )


def test_input_shape_must_fit_the_data(digits: Splits, digits_cpu: DeviceData) -> None:
    recipe = _recipe(digits, {"placement": "act"})
    recipe["input_shape"] = [40]
    with pytest.raises(ValueError, match="^recipe.input_shape"):
        train_trial(recipe, TrainingSpec(epochs=1), digits_cpu)


def test_to_device_keeps_a_fixed_train_sample_as_large_as_val(digits: Splits) -> None:
    first, second = to_device(digits), to_device(digits)
    assert len(first.y_train_sample) == len(digits.y_val)
    assert torch.equal(first.x_train_sample, second.x_train_sample)
    assert first.x_train.dtype == torch.float32 and first.y_train.dtype == torch.int64
    assert first.x_train.shape == (len(digits.y_train), 1, 8, 8) and first.device == torch.device(
        "cpu"
    )


def test_select_device() -> None:
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="^device: 'tpu'"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda:0")
    else:
        with pytest.raises(ValueError, match="does not exist"):
            select_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_with_bf16_autocast(digits: Splits) -> None:
    data = to_device(digits, select_device("cuda"))
    assert data.x_train.is_cuda and data.x_train_sample.is_cuda
    for family in ("mlp", "cnn"):
        recipe = _recipe(digits, BN_DROP, family=family, widths=[64])
        result = train_trial(recipe, TrainingSpec(epochs=4, batch_size=64), data)
        assert result.device.startswith("cuda") and result.summary["val_acc"] > 0.8
