"""The user's own dataset files (npz, csv) inside the data directory, read into plain arrays.

Every failure a user can cause (a missing file or array, text in a numeric column, a path
that escapes the data directory) is a :class:`DatasetError` naming the spec field. Arrays are
read with ``allow_pickle=False``.
"""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regsearch.domain.data import DatasetError, resolve_data_path

__all__ = ["DatasetError", "RawDataset", "load_csv", "load_npz", "resolve_data_path", "write_npz_atomically"]


@dataclass
class RawDataset:
    x: np.ndarray  # (N, *sample_shape), any numeric dtype
    y: np.ndarray  # (N,) int64 in 0..K-1
    n_classes: int
    x_test: np.ndarray | None = None  # the dataset's own test split, if it brings one
    y_test: np.ndarray | None = None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def write_npz_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A cache file: several worker processes may write at once, so write privately, then rename."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only data directory only costs regenerating next time


def _encode_labels(y: np.ndarray, field: str, classes: np.ndarray | None = None) -> tuple:
    """Labels -> (codes 0..K-1, sorted classes); ``classes`` maps test labels like train's."""
    y = y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1:
        raise DatasetError(f"{field} must be one label per example, shape (N,); got {y.shape}")
    integral = y.dtype.kind != "f" or (np.isfinite(y).all() and np.array_equal(y, np.round(y)))
    if y.dtype.kind not in "biufUS" or not integral:
        raise DatasetError(f"{field} must hold integer or string class labels (dtype {y.dtype})")
    y = y.astype(np.int64) if y.dtype.kind == "f" else y
    classes = np.unique(y) if classes is None else classes
    codes = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
    unknown = classes[codes] != y
    if unknown.any():
        label = y[unknown][0].item()
        raise DatasetError(f"{field} has label {label!r} that the training labels do not contain")
    return codes.astype(np.int64), classes


def _check_features(x: np.ndarray, field: str) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise DatasetError(f"{field} must be numeric (got dtype {x.dtype})")
    if x.ndim not in (2, 3, 4) or 0 in x.shape:
        raise DatasetError(
            f"{field} must have shape (N, F), (N, H, W), (N, C, H, W) or (N, H, W, C); got {x.shape}"
        )
    if x.ndim == 4 and x.shape[3] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)  # channels last (N, H, W, C), as most image tools save it
    x32 = x.astype(np.float32)
    if not np.isfinite(x32).all():
        raise DatasetError(f"{field} contains NaN or infinite values (or too large for float32)")
    # (N, F) and (N, H, W) have one channel; (N, C, H, W) brings its own
    return x32[:, None] if x32.ndim in (2, 3) else x32


def load_npz(path: Path, shown: str) -> RawDataset:
    where = f"dataset.path: {shown}"
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises ValueError, OSError, BadZipFile...
        raise DatasetError(f"{where} is not a readable .npz file ({_reason(exc)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DatasetError(f"{where} is a single .npy array; save x and y with np.savez")
    with archive:
        names = set(archive.files)
        for required in ("x", "y"):
            if required not in names:
                raise DatasetError(f"{where} has no array {required!r}")
        if ("x_test" in names) != ("y_test" in names):
            raise DatasetError(f"{where} needs both x_test and y_test, or neither")
        arrays: dict[str, np.ndarray] = {}
        for name in ("x", "y", "x_test", "y_test"):
            try:
                if name in names:
                    arrays[name] = archive[name]
            except Exception as exc:  # noqa: BLE001 - object arrays, truncated members...
                raise DatasetError(
                    f"{where}: array {name!r} cannot be read ({_reason(exc)})"
                ) from None
    y, classes = _encode_labels(arrays["y"], f"{where}: array 'y'")
    raw = RawDataset(_check_features(arrays["x"], f"{where}: array 'x'"), y, len(classes))
    if "x_test" in arrays:
        raw.x_test = _check_features(arrays["x_test"], f"{where}: array 'x_test'")
        raw.y_test, _ = _encode_labels(arrays["y_test"], f"{where}: array 'y_test'", classes)
        if raw.x_test.shape[1:] != raw.x.shape[1:]:
            raise DatasetError(f"{where}: 'x_test' and 'x' examples differ in shape")
    for x_name, x, y in (("x", raw.x, raw.y), ("x_test", raw.x_test, raw.y_test)):
        if x is not None and y is not None and len(x) != len(y):
            y_name = x_name.replace("x", "y")
            raise DatasetError(f"{where}: {x_name!r} has {len(x)} rows but {y_name!r} has {len(y)}")
    return raw


def load_csv(path: Path, shown: str, label_column: str) -> RawDataset:
    where = f"dataset.path: {shown}"
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row]  # blank lines carry nothing
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{where} cannot be read as CSV ({_reason(exc)})") from None
    if len(rows) < 2:
        raise DatasetError(f"{where} needs a header row and at least one data row")
    header = [name.strip() for name in rows[0]]
    if label_column not in header:
        columns = ", ".join(header[:20])
        raise DatasetError(
            f"dataset.label_column: {shown} has no column {label_column!r} ({columns})"
        )
    if len(header) < 2:
        raise DatasetError(f"{where} has no feature columns besides {label_column!r}")
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DatasetError(
                f"{where} line {line} has {len(row)} fields, the header {len(header)}"
            )
    label_at = header.index(label_column)
    table = np.array([[cell.strip() for cell in row] for row in rows[1:]], dtype=str)
    cells = np.delete(table, label_at, axis=1)
    try:
        x = cells.astype(np.float64)
    except ValueError:
        r, c = next((r, c) for (r, c), cell in np.ndenumerate(cells) if not _is_float(cell))
        column = [h for i, h in enumerate(header) if i != label_at][c]
        text = str(cells[r, c])
        raise DatasetError(
            f"{where} line {r + 2}, column {column!r}: {text!r} is not a number"
        ) from None
    labels = table[:, label_at]
    try:
        y_raw: np.ndarray = labels.astype(np.int64)  # numeric labels keep their numeric order
    except ValueError:
        y_raw = labels
    y, classes = _encode_labels(y_raw, f"dataset.label_column: column {label_column!r}")
    return RawDataset(x=_check_features(x, f"dataset.path: {shown}"), y=y, n_classes=len(classes))


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
