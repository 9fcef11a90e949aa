"""The spec's data: which dataset, how it is split, the augmentation of image data, and where
its files are.

Torch-free: what can be checked from the spec alone is checked here (a path that escapes the
data directory, knobs of another dataset, augmentation of data that is not made of images);
the files are read by the worker's loader (``regsearch.worker.datasets``), and in the embedded
mode the API checks at submit that they exist (:func:`resolve_data_path`).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import Field, field_validator, model_validator

from regsearch.domain.strict import Strict

__all__ = ["FILE_DATASETS", "IMAGE_DATASETS", "NOT_IMAGE_DATASETS", "AugmentSpec", "DatasetError", "DatasetSpec",
           "resolve_data_path"]

DatasetName = Literal["mnist1d", "digits", "synthetic", "npz", "csv", "images"]
FILE_DATASETS = ("npz", "csv", "images")  # read from the data directory: they take a path
IMAGE_DATASETS = ("digits", "images")  # always images; an npz file may hold images too
NOT_IMAGE_DATASETS = ("mnist1d", "synthetic", "csv")  # sequences or flat features


class DatasetSpec(Strict):
    """Where the data comes from; ``path`` is relative to the data directory (npz, csv, images).

    A dataset that brings its own test split (mnist1d's official 4,000/1,000, npz ``x_test`` /
    ``y_test``, an ``images`` folder with ``train/`` and ``test/``) keeps it; validation is then
    ``val_fraction`` of the training part, and ``test_fraction`` is not used.
    """

    name: DatasetName
    path: str | None = None
    label_column: str = "label"
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    split_seed: int = Field(default=0, ge=0)
    # synthetic knobs (refused, when given, for other datasets)
    n_samples: int | None = Field(default=None, ge=30, le=2_000_000)
    n_features: int | None = Field(default=None, ge=2, le=10_000)
    n_classes: int | None = Field(default=None, ge=2, le=1_000)
    noise: float | None = Field(default=None, ge=0, le=1)
    # images knobs: every image is resized to size [height, width] and read as 1 or 3 channels
    size: tuple[int, int] | None = None
    channels: Literal[1, 3] | None = None

    @field_validator("path")
    @classmethod
    def _inside_data_dir(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value or "\x00" in value:
            raise ValueError("path must be a non-empty file name inside the data directory")
        posix = PurePosixPath(value.replace("\\", "/"))
        if posix.is_absolute() or re.match(r"^[A-Za-z]:", value) or ".." in posix.parts:
            raise ValueError(
                f"path {value!r} must be relative to the data directory and stay inside it"
            )
        return str(posix)

    @field_validator("size")
    @classmethod
    def _sensible_size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not all(1 <= side <= 1024 for side in value):
            raise ValueError("size must be [height, width], each from 1 to 1024 pixels")
        return value

    @model_validator(mode="after")
    def _fields_fit_name(self) -> DatasetSpec:
        if self.name in FILE_DATASETS and not self.path:
            raise ValueError(f"dataset {self.name!r} needs a path inside the data directory")
        if self.name not in FILE_DATASETS and self.path is not None:
            raise ValueError(f"dataset {self.name!r} takes no path")
        knobs = [k for k in ("n_samples", "n_features", "n_classes", "noise") if getattr(self, k) is not None]
        if knobs and self.name != "synthetic":
            raise ValueError(f"{knobs[0]} applies only to the synthetic dataset")
        image_knobs = [k for k in ("size", "channels") if getattr(self, k) is not None]
        if image_knobs and self.name != "images":
            raise ValueError(f"{image_knobs[0]} applies only to the images dataset")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% for training")
        return self


class AugmentSpec(Strict):
    """Augmentation of image training batches, on the device, seeded by the trial's seed.

    ``crop_padding``: pad each image by this many pixels (zeros) and crop a random window of the
    original size; ``hflip``: flip half of the images left-right. Validation and test data are
    never augmented.
    """

    crop_padding: int = Field(default=0, ge=0, le=64)
    hflip: bool = False

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.hflip


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names the spec field (``dataset.path: ...``)."""


def resolve_data_path(data_dir: Path, relative: str, folder: bool = False) -> Path:
    """The file (or ``folder``) ``relative`` inside ``data_dir``; refuses anything outside it."""
    root = Path(data_dir).resolve()
    rel = PurePosixPath(relative.replace("\\", "/"))
    if not relative or rel.is_absolute() or ".." in rel.parts or "\x00" in relative:
        raise DatasetError(
            f"dataset.path: {relative!r} must be relative, inside the data directory"
        )
    # resolve() follows symlinks, so a link pointing outside the data directory is caught here
    full = (root / rel).resolve()
    if not full.is_relative_to(root):
        raise DatasetError(f"dataset.path: {relative} resolves outside the data directory")
    if not full.exists():
        raise DatasetError(f"dataset.path: {relative} does not exist in the data directory")
    if folder and not full.is_dir():
        raise DatasetError(f"dataset.path: {relative} is a file; the images dataset reads a folder")
    if not folder and not full.is_file():
        raise DatasetError(f"dataset.path: {relative} is a folder; this dataset reads one file")
    return full
