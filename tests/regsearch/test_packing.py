"""Where a pack pays (regsearch.domain.packing): on a CPU only trials that are never pruned pack."""

from __future__ import annotations

import pytest

from regsearch.domain.packing import pack_declined


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_a_pruned_jobs_trials_train_alone_on_a_cpu(pruner: str) -> None:
    why = pack_declined(pruner=pruner, device="cpu")
    assert why is not None and why.startswith("packing declined: on cpu")


@pytest.mark.parametrize(("pruner", "device"), [("none", "cpu"), ("median", "cuda:0"), ("none", "cuda"),
                                                ("hyperband", "mps")])
def test_packs_of_unpruned_trials_and_on_an_accelerator_go_ahead(pruner: str, device: str) -> None:
    assert pack_declined(pruner=pruner, device=device) is None
