"""The variance shift (Li et al. 2019) on hand-built modules, and its repair by recalibration.

For zero-mean inputs, inverted dropout with rate p makes its output's variance in training
Var(x) / (1 - p); a BN right after it learns that as its running variance, and at inference
(dropout off) sees Var(x): Var_eval / Var_running = 1 - p. A BN with no dropout before it sees the
same distribution in both modes: 1 within sampling error."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from regsearch.worker.variance_shift import after_training, recalibrate_bn, variance_shift

FEATURES = 32


def trained(model: nn.Module, *, batches: int = 200, batch: int = 256, seed: int = 0) -> nn.Module:
    """BN's running statistics learnt in train mode on zero-mean, unit-variance inputs (cumulative
    average, so the estimate is the whole run's, not the last batches')."""
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(batch, FEATURES))
    return model


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_a_bn_right_after_dropout_has_a_variance_shift_of_one_minus_p(p: float) -> None:
    model = trained(nn.Sequential(nn.Dropout(p), nn.BatchNorm1d(FEATURES)))
    torch.manual_seed(1)
    [shift] = variance_shift(model, torch.randn(20_000, FEATURES))
    assert shift == pytest.approx(1 - p, abs=0.02)
    assert model.training, "measured in eval mode, then its mode restored"


def test_a_bn_without_dropout_before_it_has_no_shift() -> None:
    model = trained(nn.Sequential(nn.Linear(FEATURES, FEATURES), nn.BatchNorm1d(FEATURES), nn.ReLU(),
                                  nn.Linear(FEATURES, FEATURES), nn.BatchNorm1d(FEATURES)))
    torch.manual_seed(1)
    shifts = variance_shift(model, torch.randn(20_000, FEATURES))
    assert len(shifts) == 2 and shifts == pytest.approx([1.0, 1.0], abs=0.03)


def test_in_bn_act_drop_the_bn_after_a_dropout_sees_the_shift() -> None:
    """The issue's note: in a deep bn-act-drop network the first BN sees no dropout, the second does."""
    model = trained(nn.Sequential(nn.Linear(FEATURES, FEATURES), nn.BatchNorm1d(FEATURES), nn.ReLU(), nn.Dropout(0.5),
                                  nn.Linear(FEATURES, FEATURES), nn.BatchNorm1d(FEATURES)))
    torch.manual_seed(1)
    first, second = variance_shift(model, torch.randn(20_000, FEATURES))
    assert first == pytest.approx(1.0, abs=0.03) and second < 0.9


def test_recalibration_with_dropout_off_removes_the_shift() -> None:
    model = trained(nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(FEATURES)))
    momentum_before = [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    torch.manual_seed(2)
    recalibrate_bn(model, torch.randn(20_000, FEATURES), batch_size=256)
    torch.manual_seed(1)
    [shift] = variance_shift(model, torch.randn(20_000, FEATURES))
    assert shift == pytest.approx(1.0, abs=0.03)
    assert [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm1d)] == momentum_before
    assert not model.training


def test_after_training_measures_and_repairs_only_with_bn() -> None:
    calls = []
    model = trained(nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(FEATURES)))
    x = torch.randn(2_000, FEATURES)
    found = after_training(model, recalibrate=True, x_val=x, x_train=x, batch_size=256,
                           test_accuracy=lambda: calls.append(1) or 0.5 + len(calls) / 10)
    assert set(found) == {"variance_shift", "test_acc_before_recalibration", "test_acc_after_recalibration"}
    assert (found["test_acc_before_recalibration"], found["test_acc_after_recalibration"]) == (0.6, 0.7)
    assert after_training(nn.Sequential(nn.Linear(FEATURES, 2)), recalibrate=True, x_val=x, x_train=x,
                          batch_size=256, test_accuracy=lambda: 0.0) == {}
    assert set(after_training(model, recalibrate=False, x_val=x, x_train=x, batch_size=256,
                              test_accuracy=lambda: 0.0)) == {"variance_shift"}


def test_the_built_in_loop_stores_the_shift_and_the_recalibration(digits: Any) -> None:
    """train_trial on digits: a trial with BN stores one shift per BN slot, and with
    training.bn_recalibrate the test accuracy before (= its test_acc) and after; without BN, neither."""
    from regsearch.domain.space import make_recipe
    from regsearch.domain.spec import JobSpec, TrainingSpec
    from regsearch.worker.datasets import input_shape_for
    from regsearch.worker.train import to_device, train_trial

    spec = JobSpec(name="t", dataset={"name": "digits"}, model={"family": "mlp", "hidden": [32, 32]})
    data = to_device(digits, "cpu")

    def run(params: dict[str, Any], recalibrate: bool) -> dict[str, Any]:
        recipe = make_recipe(spec, params, input_shape_for(digits, "mlp"), digits.n_classes)
        return train_trial(recipe, TrainingSpec(epochs=2, batch_size=64, bn_recalibrate=recalibrate), data).summary

    summary = run({"placement": "drop-bn-act", "dropout": 0.3, "bn_momentum": 0.1}, True)
    assert len(summary["variance_shift"]) == 2 and all(0 < s < 1.5 for s in summary["variance_shift"])
    assert summary["test_acc_before_recalibration"] == summary["test_acc"]
    assert 0 <= summary["test_acc_after_recalibration"] <= 1
    assert "test_acc_before_recalibration" not in run({"placement": "bn-act", "bn_momentum": 0.1}, False)
    assert "variance_shift" not in run({"placement": "act-drop", "dropout": 0.3}, True)
