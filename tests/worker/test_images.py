"""Image data: folders of PNG/JPEG files, image-shaped npz, per-channel standardization,
augmentation on the device, and the device-size check."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from regsearch.domain.data import AugmentSpec, DatasetError
from regsearch.domain.spec import DatasetSpec, SpecError, validate_spec
from regsearch.worker import train
from regsearch.worker.augment import make_augment
from regsearch.worker.datasets import load_dataset


def write_images(root: Path, classes: int = 2, per_class: int = 12, size: int = 10, mode: str = "L",
                 seed: int = 0) -> None:
    """Class k: a bright square at a class-specific place, plus noise."""
    rng = np.random.default_rng(seed)
    for label in range(classes):
        folder = root / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
            pixels[label * 3: label * 3 + 4, 2:6] = 250
            image = Image.fromarray(pixels, "RGB").convert(mode)
            image.save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")


def test_an_image_folder_loads_as_nchw_standardized_per_channel(data_dir: Path) -> None:
    write_images(data_dir / "shapes", classes=3, per_class=20, mode="RGB")
    splits = load_dataset(DatasetSpec(name="images", path="shapes", size=(8, 8)), data_dir)
    assert splits.sample_shape == (3, 8, 8) and splits.n_classes == 3
    assert len(splits.y_train) + len(splits.y_val) + len(splits.y_test) == 60
    per_channel = splits.x_train.transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(per_channel.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(per_channel.std(axis=1), 1.0, atol=1e-4)
    gray = load_dataset(DatasetSpec(name="images", path="shapes", channels=1), data_dir)
    assert gray.sample_shape == (1, 10, 10)  # the first image's size when no size is given


def test_train_and_test_folders_keep_the_given_test_split(data_dir: Path) -> None:
    write_images(data_dir / "split" / "train", per_class=20)
    write_images(data_dir / "split" / "test", per_class=5, seed=1)
    splits = load_dataset(DatasetSpec(name="images", path="split"), data_dir)
    assert len(splits.y_test) == 10 and sorted(np.bincount(splits.y_test)) == [5, 5]
    assert (len(splits.y_train), len(splits.y_val)) == (32, 8)  # validation carved from train


def test_a_decoded_folder_is_read_from_the_cache_the_second_time(data_dir: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    write_images(data_dir / "cached")
    spec = DatasetSpec(name="images", path="cached")
    with caplog.at_level(logging.INFO, logger="regsearch.worker.images"):
        first = load_dataset(spec, data_dir)
        assert "decoding 24 files" in caplog.text
        caplog.clear()
        second = load_dataset(spec, data_dir)
    assert "from the cache" in caplog.text and "decoding" not in caplog.text
    np.testing.assert_array_equal(first.x_train, second.x_train)
    assert list((data_dir / "datasets").glob("images-*.npz"))


@pytest.mark.parametrize(("layout", "why"), [
    ("one-class", "at least 2 class folders"), ("file", "is a file"), ("missing", "does not exist"),
    ("broken", "is not a readable image"),
])
def test_bad_image_folders_name_the_field(data_dir: Path, layout: str, why: str) -> None:
    if layout == "one-class":
        write_images(data_dir / "bad", classes=1)
    elif layout == "file":
        (data_dir / "bad").write_text("not a folder")
    elif layout == "broken":
        write_images(data_dir / "bad")
        (data_dir / "bad" / "class0" / "zz.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=f"^dataset.path: bad.*{why}"):
        load_dataset(DatasetSpec(name="images", path="bad"), data_dir)


def test_npz_images_may_be_channels_last(data_dir: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 6, 6, 3)).astype(np.float32)
    x[..., 2] += 5.0  # a channel of its own scale: standardized per channel, not per pixel
    np.savez(data_dir / "hwc.npz", x=x, y=np.arange(60) % 3)
    splits = load_dataset(DatasetSpec(name="npz", path="hwc.npz"), data_dir)
    assert splits.sample_shape == (3, 6, 6)
    np.testing.assert_allclose(splits.x_train[:, 2].mean(), 0.0, atol=1e-5)


def test_augmentation_is_seeded_keeps_shape_and_moves_content() -> None:
    x = torch.arange(2 * 16, dtype=torch.float32).reshape(2, 1, 4, 4) + 1
    spec = AugmentSpec(crop_padding=1, hflip=True)
    one = make_augment(spec, (1, 4, 4), seed=3, device=torch.device("cpu"))
    two = make_augment(spec, (1, 4, 4), seed=3, device=torch.device("cpu"))
    assert one is not None and two is not None
    batches = [one(x) for _ in range(8)]
    assert all(b.shape == x.shape for b in batches)
    assert all(torch.equal(a, two(x)) for a in batches), "the same seed augments alike"
    assert any(not torch.equal(b, x) for b in batches)
    flip = make_augment(AugmentSpec(hflip=True), (1, 4, 4), seed=0, device=torch.device("cpu"))
    assert flip is not None
    for out in (flip(x) for _ in range(8)):
        for i in range(2):  # each image is itself or its mirror image
            assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(2))
    assert make_augment(AugmentSpec(), (1, 4, 4), 0, torch.device("cpu")) is None


def test_augmentation_is_refused_for_data_that_is_not_images() -> None:
    with pytest.raises(DatasetError, match="^training.augment: applies to images"):
        make_augment(AugmentSpec(hflip=True), (1, 40), 0, torch.device("cpu"))
    base = {"name": "x", "training": {"augment": {"hflip": True}}}
    for name in ("mnist1d", "synthetic"):
        with pytest.raises(SpecError) as refused:
            validate_spec({**base, "dataset": {"name": name}})
        assert refused.value.field == "training.augment"
    assert validate_spec({**base, "dataset": {"name": "digits"}}).training.augment == AugmentSpec(hflip=True)


def test_a_dataset_too_large_for_the_device_is_refused_with_its_size(data_dir: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    splits = load_dataset(DatasetSpec(name="digits"), data_dir)
    monkeypatch.setattr(train, "free_bytes", lambda device: 2**19)  # the device's answer: 0.5 MiB free
    with pytest.raises(DatasetError, match=r"^dataset: digits needs 0\.\d MiB as tensors.*0\.5 MiB free on cpu"):
        train.to_device(splits, "cpu")
    monkeypatch.undo()
    assert train.to_device(splits, "cpu").x_train.shape[0] == len(splits.y_train)


def test_a_spec_refuses_image_knobs_elsewhere() -> None:
    with pytest.raises(ValueError, match="size applies only to the images dataset"):
        DatasetSpec(name="npz", path="x.npz", size=(8, 8))
    with pytest.raises(ValueError, match="needs a path"):
        DatasetSpec(name="images")
