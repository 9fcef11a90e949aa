"""Datasets: built-in sources and the user's own npz/csv files and image folders, split and standardized.

Every failure a user can cause (a missing file, a missing array, text in a numeric column, a
path that escapes the data directory) is a :class:`DatasetError` whose message names the spec
field, never a numpy traceback. Features are float32 shaped ``(N, *sample_shape)``; labels are
int64 in ``0..n_classes-1``. Nothing here is pickled: arrays are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import csv
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from regsearch.domain.spec import DatasetSpec
from regsearch.worker.datafiles import (
    DatasetError,
    RawDataset,
    load_csv,
    load_npz,
    resolve_data_path,
    write_npz_atomically,
)
from regsearch.worker.imagefolder import load_images

# The mnist1d package's defaults (5000 examples, 4000/1000 train/test, seed 42), pinned here so
# the cache file name says what is in it without importing the package (which pulls matplotlib).
MNIST1D_SAMPLES = 5000
MNIST1D_SEED = 42
MNIST1D_CACHE = f"mnist1d-n{MNIST1D_SAMPLES}-seed{MNIST1D_SEED}.npz"
SYNTHETIC_SEED = 0  # the synthetic set is fixed; split_seed only changes how it is split
CACHE_ENTRIES = 8  # datasets kept per worker process


@dataclass(frozen=True, eq=False)  # identity equality: comparing arrays elementwise is an error
class Splits:
    """Train/val/test arrays (read-only), standardized with statistics of the training split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    sample_shape: tuple[int, ...]
    n_classes: int
    name: str

    def summary(self) -> dict[str, Any]:
        """What the job's ``data`` says (docs/interface.md "Datasets")."""
        return {"n_train": len(self.y_train), "n_val": len(self.y_val), "n_test": len(self.y_test),
                "sample_shape": list(self.sample_shape), "n_classes": self.n_classes}

    @property
    def nbytes(self) -> int:
        """Bytes the splits take on a device (float32 features, int64 labels)."""
        return sum(a.nbytes for a in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test))


def _mnist1d(data_dir: Path) -> RawDataset:
    """mnist1d generated offline by its own package (never downloaded), cached as .npz."""
    cache = Path(data_dir) / "datasets" / MNIST1D_CACHE
    arrays: dict[str, np.ndarray] | None = None
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in ("x", "y", "x_test", "y_test")}
        except Exception:  # noqa: BLE001 - a truncated or foreign cache file is regenerated
            arrays = None
    if arrays is None:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples, args.seed = MNIST1D_SAMPLES, MNIST1D_SEED
        # make_dataset seeds the global numpy/random generators; restore them for our callers
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            made = make_dataset(args)
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
        arrays = {k: np.asarray(made[k]) for k in ("x", "y", "x_test", "y_test")}
        write_npz_atomically(cache, arrays)
    x, y, x_test, y_test = (arrays[k] for k in ("x", "y", "x_test", "y_test"))
    return RawDataset(x[:, None], y.astype(np.int64), 10, x_test[:, None], y_test.astype(np.int64))


def _digits() -> RawDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return RawDataset(x=bunch.data.reshape(-1, 1, 8, 8), y=bunch.target.astype(np.int64), n_classes=10)


def _synthetic(spec: DatasetSpec) -> RawDataset:
    from sklearn.datasets import make_classification

    n_samples = spec.n_samples or 2000
    n_features = spec.n_features or 20
    n_classes = spec.n_classes or 3
    informative = min(n_features, max(2, n_features // 2))
    # sklearn places each class's clusters on hypercube vertices: 2**informative must suffice
    clusters = 2 if n_classes * 2 <= 2 ** min(informative, 30) else 1
    if n_classes > 2 ** min(informative, 30):
        raise DatasetError(f"dataset.n_classes: {n_classes} classes need more features")
    if n_samples < 2 * n_classes:
        raise DatasetError(f"dataset.n_samples: {n_samples} are too few for {n_classes} classes")
    x, y = make_classification(
        n_samples=n_samples, n_features=n_features, n_informative=informative,
        n_redundant=min(2, n_features - informative), n_classes=n_classes,
        n_clusters_per_class=clusters, flip_y=0.01 if spec.noise is None else spec.noise,
        random_state=SYNTHETIC_SEED,
    )  # fmt: skip
    return RawDataset(x=x[:, None, :], y=y.astype(np.int64), n_classes=n_classes)


def _raw(spec: DatasetSpec, data_dir: Path) -> RawDataset:
    if spec.name == "mnist1d":
        return _mnist1d(data_dir)
    if spec.name == "digits":
        return _digits()
    if spec.name == "synthetic":
        return _synthetic(spec)
    if spec.name == "images":
        folder = resolve_data_path(data_dir, spec.path or "", folder=True)
        return load_images(folder, spec.path or "", Path(data_dir) / "datasets", spec.size, spec.channels)
    path = resolve_data_path(data_dir, spec.path or "")
    if spec.name == "npz":
        return load_npz(path, spec.path or "")
    return load_csv(path, spec.path or "", spec.label_column)


def _hold_out(y: np.ndarray, n_out: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out), stratified by ``y`` where every class can be split."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    try:
        kept, out = train_test_split(index, test_size=n_out, random_state=seed, stratify=y)
    except ValueError:  # a class with one example, or fewer held-out slots than classes
        kept, out = train_test_split(index, test_size=n_out, random_state=seed)
    return np.asarray(kept), np.asarray(out)


def load_dataset(spec: DatasetSpec, data_dir: Path) -> Splits:
    """Load ``spec``'s dataset, split it with ``spec.split_seed`` and standardize it."""
    raw = _raw(spec, Path(data_dir))
    if raw.n_classes < 2:
        field = {"csv": "label_column", "npz": "path"}.get(spec.name, "name")
        raise DatasetError(f"dataset.{field}: needs at least 2 classes, found {raw.n_classes}")
    x, y = raw.x, raw.y
    if raw.x_test is not None and raw.y_test is not None:
        # the dataset's own test split (mnist1d's official 4,000/1,000): validation is carved
        # from its training part
        x_test, y_test = raw.x_test, raw.y_test
        n_val = max(1, round(len(y) * spec.val_fraction))
    else:
        n_test = max(1, round(len(y) * spec.test_fraction))
        if len(y) - n_test < 2:
            raise DatasetError(f"dataset: {len(y)} examples are too few to split in three")
        rest, test = _hold_out(y, n_test, spec.split_seed)
        x_test, y_test, x, y = x[test], y[test], x[rest], y[rest]
        n_val = max(1, round((len(rest) + n_test) * spec.val_fraction))
    if len(y) - n_val < 1:
        raise DatasetError(f"dataset: {len(y)} examples are too few to split in three")
    train, val = _hold_out(y, n_val, spec.split_seed)
    x_train, y_train, x_val, y_val = x[train], y[train], x[val], y[val]

    # statistics of the training split only (val/test must not leak into them): per channel for
    # images (N, C, H, W), so every pixel of a channel is scaled alike; per feature otherwise
    axes = (0, 2, 3) if x_train.ndim == 4 else (0,)
    as64 = x_train.astype(np.float64)
    mean = as64.mean(axis=axes, keepdims=True)
    std = as64.std(axis=axes, keepdims=True)
    std[std < 1e-12] = 1.0  # a constant feature stays constant (0) instead of dividing by zero
    del as64

    def standardize(a: np.ndarray) -> np.ndarray:
        out = ((a - mean) / std).astype(np.float32)
        out.flags.writeable = False  # cached and shared within a process: never mutated
        return out

    def labels(a: np.ndarray) -> np.ndarray:
        out = np.ascontiguousarray(a, dtype=np.int64)
        out.flags.writeable = False
        return out

    return Splits(
        standardize(x_train), labels(y_train), standardize(x_val), labels(y_val),
        standardize(x_test), labels(y_test), sample_shape=tuple(int(d) for d in x.shape[1:]),
        n_classes=int(raw.n_classes), name=spec.name,
    )  # fmt: skip


def input_shape_for(splits: Splits, model: Any) -> list[int]:
    """The model's input shape for these data, as ``model``'s family takes it.

    ``model`` is a ``ModelSpec`` or a family name (then with the family's default knobs): an
    mlp flattens the sample (``[features]``), the conv families take it as it is (``[C, L]`` or
    ``[C, H, W]``). A family that cannot take the data raises ValueError saying why.
    """
    from regsearch.worker import families  # the registry: built-ins and installed plugins

    if isinstance(model, str):
        family = families.get(model)
        knobs = family.impl.Knobs()
    else:
        family, knobs = families.get(model.family), model.knobs
    return [int(d) for d in family.info.input_shape(knobs, splits.sample_shape)]


# -- regression data (task: regression): float targets, standardized too -----------------
@dataclass(frozen=True, eq=False)
class RegressionSplits(Splits):
    """Splits with float targets standardized by the training split's ``y_mean`` and ``y_std``."""

    y_mean: float = 0.0
    y_std: float = 1.0


def _targets(y: Any, field: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "fiu":
        raise DatasetError(f"{field} must be one number per example, shape (N,) (a regression target)")
    y = y.astype(np.float64)
    if not np.isfinite(y).all():
        raise DatasetError(f"{field} holds a value that is not a finite number")
    return y


def _read(spec: DatasetSpec, data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    path = resolve_data_path(data_dir, spec.path or "")
    where = f"dataset.path: {spec.path}"
    if spec.name == "npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
        except Exception as exc:  # noqa: BLE001 - numpy raises ValueError, OSError, BadZipFile...
            raise DatasetError(f"{where} is not a readable .npz file ({exc})") from None
        if "x" not in arrays or "y" not in arrays:
            raise DatasetError(f"{where} needs arrays 'x' and 'y'")
        x_test = arrays.get("x_test")
        y_test = None if "y_test" not in arrays else _targets(arrays["y_test"], f"{where}: array 'y_test'")
        return (np.asarray(arrays["x"], dtype=np.float64), _targets(arrays["y"], f"{where}: array 'y'"),
                None if x_test is None else np.asarray(x_test, dtype=np.float64), y_test)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if row]
    header = [h.strip() for h in rows[0]]
    if spec.label_column not in header:
        raise DatasetError(f"dataset.label_column: {spec.path} has no column {spec.label_column!r}")
    try:
        table = np.array([[float(cell) for cell in row] for row in rows[1:]], dtype=np.float64)
    except ValueError as exc:
        raise DatasetError(f"{where}: a cell is not a number ({exc})") from None
    at = header.index(spec.label_column)
    return np.delete(table, at, axis=1), _targets(table[:, at], f"dataset.label_column: {spec.label_column!r}"), None, None


def load_regression(spec: DatasetSpec, data_dir: Path) -> RegressionSplits:
    """``spec``'s data with float targets, split with ``spec.split_seed`` and standardized."""
    x, y, x_test, y_test = _read(spec, Path(data_dir))
    if len(x) != len(y):
        raise DatasetError(f"dataset.path: {spec.path}: 'x' has {len(x)} rows but 'y' has {len(y)}")
    rng = np.random.default_rng(spec.split_seed)
    order = rng.permutation(len(y))
    if x_test is None or y_test is None:
        n_test = max(1, round(len(y) * spec.test_fraction))
        x_test, y_test, order = x[order[:n_test]], y[order[:n_test]], order[n_test:]
    n_val = max(1, round(len(y) * spec.val_fraction))
    if len(order) - n_val < 2:
        raise DatasetError(f"dataset: {len(y)} examples are too few to split in three")
    val, train = order[:n_val], order[n_val:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    std[std < 1e-12] = 1.0
    y_mean, y_std = float(y[train].mean()), float(y[train].std()) or 1.0

    def features(a: np.ndarray) -> np.ndarray:
        out = ((a - mean) / std).astype(np.float32)
        out.flags.writeable = False
        return out

    def targets(a: np.ndarray) -> np.ndarray:
        out = ((a - y_mean) / y_std).astype(np.float32)
        out.flags.writeable = False
        return out

    return RegressionSplits(
        features(x[train]), targets(y[train]), features(x[val]), targets(y[val]), features(x_test),
        targets(y_test), sample_shape=tuple(int(d) for d in x.shape[1:]), n_classes=1, name=spec.name,
        y_mean=y_mean, y_std=y_std)


_cache: OrderedDict[tuple[str, str], Splits] = OrderedDict()
_cache_lock = threading.Lock()


def load_dataset_cached(spec: DatasetSpec, data_dir: Path, task: str = "classification") -> Splits:
    """:func:`load_dataset`, loaded once per process per (spec, data_dir, task); least recent
    evicted. A regression job's data (float targets) is ``regsearch.worker.regression``'s."""
    key = (spec.model_dump_json() + task, str(Path(data_dir).resolve()))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    if task == "regression":
        splits: Splits = load_regression(spec, data_dir)
    else:
        splits = load_dataset(spec, data_dir)  # outside the lock: loading may take seconds
    with _cache_lock:
        _cache[key] = splits
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)
    return splits
