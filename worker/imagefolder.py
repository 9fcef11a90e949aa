"""The ``images`` dataset: a folder tree of PNG/JPEG files, one sub-folder per class.

``path/<class>/*.png|jpg`` is one pool (split by the job); ``path/train/<class>/...`` plus
``path/test/<class>/...`` keeps the given test split. Every image is converted to ``channels``
(1: grayscale, 3: RGB; default: 3 if any image has colour, else 1) and resized to ``size``
(default: the first image's size). Decoded arrays are cached in ``<data dir>/datasets`` under a
key of the folder's file list, sizes and modification times, so a second worker process (or a
restart) reads one ``.npz`` instead of decoding every file again; the cache holds plain arrays
(``allow_pickle=False``). Loading shows its progress in the worker log.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from regsearch.worker.datafiles import DatasetError, RawDataset, write_npz_atomically

log = logging.getLogger("regsearch.worker.images")
SUFFIXES = (".png", ".jpg", ".jpeg")
PROGRESS_EVERY = 2000  # images between progress lines in the log


def _classes(root: Path, shown: str) -> list[tuple[str, list[Path]]]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    found = [(f.name, sorted(p for p in f.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()))
             for f in folders]
    found = [(name, files) for name, files in found if files]
    if len(found) < 2:
        raise DatasetError(f"dataset.path: {shown} needs at least 2 class folders with "
                           f"{'/'.join(s.lstrip('.') for s in SUFFIXES)} images, found {len(found)}")
    return found


def _cache_key(parts: list[tuple[str, list[tuple[str, list[Path]]]]], size: tuple[int, int] | None,
               channels: int | None) -> str:
    digest = hashlib.sha256(f"{size}|{channels}".encode())
    for part, classes in parts:
        for name, files in classes:
            for path in files:
                stat = path.stat()
                digest.update(f"{part}/{name}/{path.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _decode(files: list[tuple[int, Path]], shown: str, size: tuple[int, int], mode: str,
            done: int, total: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(files), size[0], size[1], 3 if mode == "RGB" else 1), dtype=np.uint8)
    for i, (_, path) in enumerate(files):
        try:
            with Image.open(path) as image:
                image = image.convert(mode)
                if image.size != (size[1], size[0]):
                    image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DatasetError(f"dataset.path: {shown}: {path.name} is not a readable image ({exc})") from None
        out[i] = pixels.reshape(out.shape[1:])
        if (done + i + 1) % PROGRESS_EVERY == 0:
            log.info("images %s: decoded %d/%d", shown, done + i + 1, total)
    return out.transpose(0, 3, 1, 2)  # N, C, H, W


def _first_image(parts: list[tuple[str, list[tuple[str, list[Path]]]]]) -> tuple[tuple[int, int], bool]:
    """(height, width) of the first image, and whether any of the first few has colour."""
    from PIL import Image

    paths = [p for _, classes in parts for _, files in classes for p in files[:3]]
    colour = False
    size: tuple[int, int] | None = None
    for path in paths[:30]:
        with Image.open(path) as image:
            size = size or (image.height, image.width)
            colour = colour or image.mode not in ("L", "1", "I", "I;16", "F", "LA")
    assert size is not None
    return size, colour


def load_images(root: Path, shown: str, cache_dir: Path, size: tuple[int, int] | None,
                channels: int | None) -> RawDataset:
    """Read (or take from the cache) the folder tree at ``root`` as N×C×H×W uint8 arrays."""
    if not root.is_dir():
        raise DatasetError(f"dataset.path: {shown} is not a folder in the data directory")
    split = (root / "train").is_dir() and (root / "test").is_dir()
    parts = [("train", _classes(root / "train", shown)), ("test", _classes(root / "test", shown))] \
        if split else [("all", _classes(root, shown))]
    names = [name for name, _ in parts[0][1]]
    if split and [name for name, _ in parts[1][1]] != names:
        raise DatasetError(f"dataset.path: {shown}: train/ and test/ must have the same class folders")
    cache = cache_dir / f"images-{_cache_key(parts, size, channels)}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
            log.info("images %s: %d examples from the cache", shown, len(arrays["y"]))
            return _raw(arrays, len(names))
        except Exception as exc:  # noqa: BLE001 - a truncated or foreign cache file is decoded again
            log.warning("images %s: cache %s unreadable (%s); decoding again", shown, cache.name, exc)
    first_size, colour = _first_image(parts)
    size = size or first_size
    mode = "RGB" if (channels or (3 if colour else 1)) == 3 else "L"
    total = sum(len(files) for _, classes in parts for _, files in classes)
    log.info("images %s: decoding %d files (%s, %dx%d)", shown, total, mode, size[0], size[1])
    arrays: dict[str, np.ndarray] = {}
    done = 0
    for part, classes in parts:
        files = [(label, path) for label, (_, paths) in enumerate(classes) for path in paths]
        x = _decode(files, shown, size, mode, done, total)
        done += len(files)
        key = "_test" if part == "test" else ""
        arrays["x" + key], arrays["y" + key] = x, np.array([label for label, _ in files], dtype=np.int64)
    log.info("images %s: %d examples decoded", shown, total)
    write_npz_atomically(cache, arrays)
    return _raw(arrays, len(names))


def _raw(arrays: dict[str, np.ndarray], n_classes: int) -> RawDataset:
    return RawDataset(arrays["x"], arrays["y"], n_classes, arrays.get("x_test"), arrays.get("y_test"))

