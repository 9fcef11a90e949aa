"""Fixtures of the trainer tests: digits on the CPU, one torch thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from regsearch.domain.spec import DatasetSpec
from regsearch.worker.datasets import Splits, load_dataset


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    # tiny models gain nothing from intra-op threads, and on a shared 2-core runner OpenMP
    # threads spinning against other processes made a small conv run 20x slower
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Splits:
    return load_dataset(DatasetSpec(name="digits"), tmp_path_factory.mktemp("data"))
