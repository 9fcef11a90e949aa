"""Datasets: every source, deterministic stratified splits, train-only standardization, refusals."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from regsearch.domain.spec import DatasetSpec
from regsearch.worker.datasets import (
    MNIST1D_CACHE,
    DatasetError,
    Splits,
    input_shape_for,
    load_dataset,
    load_dataset_cached,
    resolve_data_path,
)


def _npz(data_dir: Path, name: str = "d.npz", **arrays: np.ndarray) -> DatasetSpec:
    np.savez(data_dir / name, **arrays)
    return DatasetSpec(name="npz", path=name)


def _blobs(
    n: int = 120, features: int = 5, classes: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, features)) + y[:, None]
    return x, y


def _sizes(s: Splits) -> tuple[int, int, int]:
    return len(s.y_train), len(s.y_val), len(s.y_test)


def test_mnist1d_is_generated_offline_and_cached(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("mnist1d must be generated offline, never downloaded")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    cache = data_dir / "datasets" / MNIST1D_CACHE
    cache.parent.mkdir()
    cache.write_bytes(b"a truncated download")  # a broken cache is regenerated, not fatal
    spec = DatasetSpec(name="mnist1d")
    first = load_dataset(spec, data_dir)
    assert first.sample_shape == (1, 40) and first.n_classes == 10 and first.name == "mnist1d"
    # the official split: 4,000 train (validation carved from it: 20%) and 1,000 test
    assert _sizes(first) == (3200, 800, 1000)
    assert first.x_train.dtype == np.float32 and first.y_train.dtype == np.int64
    with np.load(cache, allow_pickle=False) as archive:
        assert archive["x"].shape == (4000, 40) and archive["x_test"].shape == (1000, 40)
    again = load_dataset(spec, data_dir)  # from the cache
    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.y_test, again.y_test)


def test_digits_is_stratified_with_fractions_of_the_whole(data_dir: Path) -> None:
    splits = load_dataset(DatasetSpec(name="digits"), data_dir)
    assert splits.sample_shape == (1, 8, 8) and splits.x_train.shape[1:] == (1, 8, 8)
    assert _sizes(splits) == (1079, 359, 359)  # 1797 * 0.2 -> 359 for val and test
    assert set(np.unique(splits.y_train)) == set(range(10))
    for part in (splits.y_val, splits.y_test):
        counts = np.bincount(part, minlength=10)
        assert counts.max() - counts.min() <= 2  # classes are balanced in digits, so stay so
    assert input_shape_for(splits, "mlp") == [64]
    assert input_shape_for(splits, "cnn") == [1, 8, 8]


def test_splits_are_deterministic_per_seed(data_dir: Path) -> None:
    a = load_dataset(DatasetSpec(name="synthetic", n_samples=300), data_dir)
    b = load_dataset(DatasetSpec(name="synthetic", n_samples=300), data_dir)
    c = load_dataset(DatasetSpec(name="synthetic", n_samples=300, split_seed=1), data_dir)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.y_val, c.y_val)
    assert _sizes(a) == _sizes(c) == (180, 60, 60)


def test_synthetic_knobs(data_dir: Path) -> None:
    spec = DatasetSpec(
        name="synthetic",
        n_samples=400,
        n_features=7,
        n_classes=4,
        noise=0.0,
        val_fraction=0.25,
        test_fraction=0.25,
    )
    splits = load_dataset(spec, data_dir)
    assert splits.sample_shape == (1, 7) and splits.n_classes == 4
    assert _sizes(splits) == (200, 100, 100)
    assert input_shape_for(splits, "mlp") == [7] and input_shape_for(splits, "cnn") == [1, 7]


def test_standardization_is_fitted_on_the_training_split_only(data_dir: Path) -> None:
    x, y = _blobs(200, 4)
    x[:, 3] = 5.0  # a constant feature must not divide by zero
    x_test, y_test = _blobs(50, 4, seed=1)
    x_test += 100.0  # were test statistics used, this offset would vanish
    splits = load_dataset(_npz(data_dir, x=x, y=y, x_test=x_test, y_test=y_test), data_dir)
    train = splits.x_train.reshape(len(splits.x_train), -1)
    np.testing.assert_allclose(train[:, :3].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train[:, :3].std(axis=0), 1.0, atol=1e-4)
    assert np.all(train[:, 3] == 0.0) and np.all(splits.x_val[..., 3] == 0.0)
    assert (
        splits.x_test.reshape(50, -1)[:, :3].mean() > 50
    )  # shifted by train stats, not re-centred
    val = splits.x_val.reshape(len(splits.x_val), -1)[:, :3]
    assert np.abs(val.mean(axis=0)).max() > 1e-3  # val is transformed, not refitted
    assert not splits.x_train.flags.writeable  # shared by every trial of the process


def test_npz_own_test_split_is_the_test_split(data_dir: Path) -> None:
    x, y = _blobs(160)
    x_test, y_test = _blobs(37, seed=2)
    splits = load_dataset(_npz(data_dir, x=x, y=y, x_test=x_test, y_test=y_test), data_dir)
    # validation is carved from the given training part: 20% of the 160 -> 32
    assert _sizes(splits) == (128, 32, 37)
    np.testing.assert_array_equal(splits.y_test, y_test)


@pytest.mark.parametrize(
    ("shape", "sample_shape"),
    [((60, 6), (1, 6)), ((60, 4, 5), (1, 4, 5)), ((60, 3, 4, 5), (3, 4, 5))],
)
def test_npz_sample_shapes(
    data_dir: Path, shape: tuple[int, ...], sample_shape: tuple[int, ...]
) -> None:
    x = np.random.default_rng(0).normal(size=shape).astype(np.float64)
    splits = load_dataset(_npz(data_dir, x=x, y=np.arange(60) % 2), data_dir)
    assert splits.sample_shape == sample_shape
    assert splits.x_train.shape[1:] == sample_shape


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (np.array([3, 7, 9] * 20), [0, 1, 2]),
        (np.array(["b", "a", "c"] * 20), [1, 0, 2]),
        (np.array([1.0, 2.0] * 30), [0, 1]),
    ],
)
def test_npz_labels_become_0_to_k(data_dir: Path, labels: np.ndarray, expected: list[int]) -> None:
    x = np.random.default_rng(0).normal(size=(60, 3))
    splits = load_dataset(_npz(data_dir, x=x, y=labels), data_dir)
    assert splits.n_classes == len(set(expected))
    assert sorted(
        np.unique(np.concatenate([splits.y_train, splits.y_val, splits.y_test]))
    ) == sorted(set(expected))


def _bad_npz(data_dir: Path, case: str) -> DatasetSpec:
    x, y = _blobs(60)
    if case == "not a zip":
        (data_dir / "d.npz").write_bytes(b"\x00garbage" * 10)
        return DatasetSpec(name="npz", path="d.npz")
    if case == "single npy":
        np.save(data_dir / "d.npz", x)
        (data_dir / "d.npz.npy").rename(data_dir / "d.npz")
        return DatasetSpec(name="npz", path="d.npz")
    if case == "object array":
        np.savez(data_dir / "d.npz", x=np.array([{"a": 1}] * 60, dtype=object), y=y)
        return DatasetSpec(name="npz", path="d.npz")
    arrays = {
        "missing y": {"x": x},
        "text features": {"x": x.astype(str), "y": y},
        "nan feature": {"x": np.where(np.arange(60)[:, None] == 5, np.nan, x), "y": y},
        "lengths": {"x": x, "y": y[:-1]},
        "one class": {"x": x, "y": np.zeros(60, dtype=int)},
        "fractional labels": {"x": x, "y": y + 0.5},
        "x_test alone": {"x": x, "y": y, "x_test": x},
        "unknown test label": {"x": x, "y": y, "x_test": x[:5], "y_test": np.full(5, 42)},
        "1d x": {"x": x[:, 0], "y": y},
    }[case]
    return _npz(data_dir, **arrays)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not a zip", "not a readable .npz"),
        ("single npy", "single .npy array"),
        ("object array", "cannot be read"),
        ("missing y", "d.npz has no array 'y'"),
        ("text features", "must be numeric"),
        ("nan feature", "NaN or infinite"),
        ("lengths", "'x' has 60 rows but 'y' has 59"),
        ("one class", "at least 2 classes"),
        ("fractional labels", "integer or string class labels"),
        ("x_test alone", "both x_test and y_test"),
        ("unknown test label", "label 42"),
        ("1d x", "must have shape"),
    ],
)
def test_broken_npz_is_a_dataset_error_naming_the_field(
    data_dir: Path, case: str, message: str
) -> None:
    spec = _bad_npz(data_dir, case)
    with pytest.raises(DatasetError, match="^dataset.path: ") as info:
        load_dataset(spec, data_dir)
    assert message in str(info.value)


def test_missing_file(data_dir: Path) -> None:
    with pytest.raises(DatasetError, match="dataset.path: nope/x.npz does not exist"):
        load_dataset(DatasetSpec(name="npz", path="nope/x.npz"), data_dir)


def test_csv_with_string_labels(data_dir: Path) -> None:
    rows = ["a,species,b"] + [f"{i * 0.5},{'cat' if i % 2 else 'ant'},{-i}" for i in range(40)]
    (data_dir / "t.csv").write_text("\n".join(rows) + "\n\n")
    splits = load_dataset(DatasetSpec(name="csv", path="t.csv", label_column="species"), data_dir)
    assert splits.sample_shape == (1, 2) and splits.n_classes == 2
    assert _sizes(splits) == (24, 8, 8)
    assert np.array_equal(np.bincount(splits.y_test), [4, 4])  # "ant" -> 0, "cat" -> 1, stratified


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("a,b\n1,2\n3,4\n", "dataset.label_column", "has no column 'label'"),
        (
            "a,label\n1,0\nx,1\n" + "1,0\n" * 10,
            "dataset.path",
            "line 3, column 'a': 'x' is not a number",
        ),
        ("a,label\n1,0\n1,2,3\n", "dataset.path", "line 3 has 3 fields"),
        ("a,label\n", "dataset.path", "at least one data row"),
        ("a,label\n" + "1,0\n" * 20, "dataset.label_column", "at least 2 classes"),
        ("a,label\nnan,0\n" + "1,1\n" * 20, "dataset.path", "NaN or infinite"),
    ],
)
def test_broken_csv(data_dir: Path, text: str, field: str, message: str) -> None:
    (data_dir / "t.csv").write_text(text)
    with pytest.raises(DatasetError, match=f"^{field}: ") as info:
        load_dataset(DatasetSpec(name="csv", path="t.csv"), data_dir)
    assert message in str(info.value)


def test_symlinks_out_of_the_data_directory_are_refused(tmp_path: Path, data_dir: Path) -> None:
    outside = tmp_path / "secret.npz"
    x, y = _blobs(60)
    np.savez(outside, x=x, y=y)
    (data_dir / "link.npz").symlink_to(outside)
    (data_dir / "dir").symlink_to(tmp_path)
    for path in ("link.npz", "dir/secret.npz"):
        with pytest.raises(DatasetError, match="outside the data directory"):
            load_dataset(DatasetSpec(name="npz", path=path), data_dir)
    # the spec already refuses these; the loader refuses them again (defence in depth)
    for path in ("../secret.npz", str(outside), ""):
        with pytest.raises(DatasetError, match="^dataset.path: "):
            resolve_data_path(data_dir, path)
    inside = data_dir / "real.npz"
    np.savez(inside, x=x, y=y)
    (data_dir / "ok.npz").symlink_to(inside)  # a link that stays inside is fine
    assert load_dataset(DatasetSpec(name="npz", path="ok.npz"), data_dir).n_classes == 3


def test_cached_loader_loads_once_per_spec_and_dir(data_dir: Path, tmp_path: Path) -> None:
    spec = DatasetSpec(name="synthetic", n_samples=100)
    first = load_dataset_cached(spec, data_dir)
    assert load_dataset_cached(spec, data_dir) is first
    assert load_dataset_cached(spec, tmp_path) is not first
    assert load_dataset_cached(DatasetSpec(name="synthetic", n_samples=101), data_dir) is not first
