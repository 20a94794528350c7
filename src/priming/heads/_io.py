"""Safe storage for heads: one ``.npz`` file of plain arrays plus a JSON metadata string.

No pickle: arrays are saved and loaded with ``allow_pickle=False``; labels are stored
as a plain numeric/string array or, for mixed JSON-able labels, in the JSON metadata.
Writes are atomic (temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from priming._fs import atomic_output
from priming.errors import DataError

__all__ = ["save_npz", "load_npz", "encode_labels", "decode_labels", "FORMAT_KEY"]

FORMAT_KEY = "__meta__"


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write ``arrays`` and the JSON-serialisable ``meta`` to ``path`` atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in payload.items():
        if v.dtype.hasobject:
            raise DataError(f"cannot save array {k!r} of dtype object without pickle")
    payload[FORMAT_KEY] = np.asarray(json.dumps(meta, sort_keys=True))
    with atomic_output(path) as fh:
        np.savez(fh, **payload)
    return path


def load_npz(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Read a file written by :func:`save_npz`: ``(arrays, meta)``."""
    path = Path(path)
    if not path.exists() and path.with_name(path.name + ".npz").exists():
        path = path.with_name(path.name + ".npz")
    if not path.is_file():
        raise DataError(f"no saved head at {str(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{str(path)!r} is not a readable head file ({exc})") from None
    if FORMAT_KEY not in arrays:
        raise DataError(f"{str(path)!r} is not a priming head file (no metadata)")
    meta = json.loads(str(arrays.pop(FORMAT_KEY)))
    return arrays, meta


def encode_labels(classes: np.ndarray) -> tuple[np.ndarray | None, list | None]:
    """Store labels as an array when numeric/str/bool, else as a JSON list."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "biufU":
        return classes, None
    items = classes.tolist()
    ok = all(isinstance(v, (str, int, float, bool)) or v is None for v in items)
    if not ok:
        raise DataError(
            "class labels must be numbers, strings or booleans to be saved without pickle"
        )
    return None, items


def decode_labels(array: np.ndarray | None, items: list | None) -> np.ndarray:
    if array is not None:
        return array
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out
