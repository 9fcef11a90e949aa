"""The convergence section's curves by placement: each placement's mean per epoch with a band."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("plotly")

from regsearch.dashboard import placement_curves


def test_each_placement_gets_its_mean_curve_and_a_95_band() -> None:
    rows = []
    for number, (placement, accs) in enumerate([("bn-act", [0.5, 0.7]), ("bn-act", [0.6, 0.8]), ("bn-act", [0.4, 0.9]),
                                                ("act", [0.3, 0.5])]):
        rows += [{"number": number, "epoch": e + 1, "val_acc": a, "train_loss": 1 - a} for e, a in enumerate(accs)]
    curves = pd.DataFrame(rows)
    placements = {0: "bn-act", 1: "bn-act", 2: "bn-act", 3: "act"}
    fig = placement_curves.placement_bands(curves, placements, "val_acc")
    lines = {t.name: t for t in fig.data if t.mode == "lines"}
    assert set(lines) == {"bn-act (n=3)", "act (n=1)"}
    assert list(lines["bn-act (n=3)"].y) == pytest.approx([0.5, 0.8])
    band = next(t for t in fig.data if t.fill == "toself" and t.legendgroup == "bn-act")
    half = 1.96 * np.std([0.5, 0.6, 0.4], ddof=1) / np.sqrt(3)
    assert band.y[0] == pytest.approx(0.5 + half) and band.y[-1] == pytest.approx(0.5 - half)
    single = next(t for t in fig.data if t.fill == "toself" and t.legendgroup == "act")
    assert list(single.y) == pytest.approx([0.3, 0.5, 0.5, 0.3]), "one trial: no band"
    assert placement_curves.placement_bands(curves, placements, "train_loss").data
