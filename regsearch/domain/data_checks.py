"""What can be told about a job's data before a worker loads it (torch-free).

- :func:`check_data_format`: the file the spec names is of the spec's kind (an ``npz`` dataset is
  a zip archive, a ``csv`` one is text), read from its first bytes only. ``regsearch validate``
  and, in the embedded mode, ``POST /jobs`` call it after
  :func:`regsearch.domain.data.resolve_data_path` found the file.
- :func:`shape_problem`: what a known sample shape (``[C, H, W]``, ``[C, L]``, ``[features]``,
  as a worker published it for an earlier job on the same data: ``regsearch.store.job_data``)
  already rules out: a family that cannot take it (a VGG whose pools do not fit the image), or
  a crop padding of half the image side or more (the crops would be mostly padding; trials end
  below chance).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from regsearch.domain.data import DatasetError
from regsearch.domain.spec import JobSpec, SpecError

__all__ = ["check_data_format", "shape_problem"]

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an npz is a zip archive (an empty one has only its end record)
SNIFF_BYTES = 4096


def check_data_format(path: Path, kind: str, shown: str) -> None:
    """Raise DatasetError naming ``dataset.path`` when file ``path`` is not a ``kind`` file
    (``shown``: the spec's relative path, for the message). Folders (``images``) pass."""
    if kind not in ("npz", "csv") or path.is_dir():
        return
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as exc:
        raise DatasetError(f"dataset.path: cannot read {shown}: {exc.strerror or exc}") from None
    is_zip = head.startswith(ZIP_MAGIC)
    if kind == "npz" and not is_zip:
        raise DatasetError(f"dataset.path: {shown} is not an .npz file (numpy.savez writes one: a zip "
                           "archive of arrays x, y); for a table of numbers use dataset name csv")
    if kind == "csv":
        if is_zip:
            raise DatasetError(f"dataset.path: {shown} is a zip archive (an .npz?), not a csv file; "
                               "use dataset name npz for it")
        if b"\x00" in head:
            raise DatasetError(f"dataset.path: {shown} is a binary file, not a csv file (text with a header row)")


def _field_message(exc: ValueError, default_field: str) -> tuple[str, str]:
    """``model.channels: ...`` split into its field and message (families name their knob)."""
    text = str(exc)
    head, sep, rest = text.partition(": ")
    if sep and head.startswith(default_field.split(".")[0] + "."):
        return head, rest
    return default_field, text


def shape_problem(spec: JobSpec, sample_shape: Sequence[int]) -> SpecError | None:
    """Why ``spec`` cannot train on examples shaped ``sample_shape``; None when nothing rules it out."""
    shape = [int(d) for d in sample_shape]
    try:
        spec.model.info.input_shape(spec.model.knobs, shape)
    except ValueError as exc:
        field, message = _field_message(exc, "model")
        if field == "model":
            message = f"family {spec.model.family!r} cannot take examples shaped {shape}: {message}"
        return SpecError(field, message)
    augment = spec.training.augment
    if augment is not None and augment.crop_padding > 0 and len(shape) == 3:
        side = min(shape[1:])
        if 2 * augment.crop_padding >= side:
            return SpecError("training.augment.crop_padding",
                             f"{augment.crop_padding} is half the side of these {shape[1]}x{shape[2]} images or "
                             f"more: most of each random crop would be padding (use at most {(side - 1) // 2}, "
                             "an eighth of the side is usual)")
    return None
