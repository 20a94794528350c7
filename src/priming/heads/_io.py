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


def read_head_meta(path: str | os.PathLike, kind: str | None = None) -> dict:
    """Read ``head.json`` of a head folder: a JSON object (of ``kind`` when given).

    Anything else (no file, invalid JSON, not an object, another kind) is a DataError
    naming the folder."""
    p = Path(path)
    meta_path = p / "head.json"
    if not meta_path.is_file():
        raise DataError(f"{str(p)!r} is not a saved head folder (no head.json)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{str(meta_path)!r} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise DataError(f"{str(meta_path)!r} is not a head description (not a JSON object)")
    if kind is not None and meta.get("kind") != kind:
        raise DataError(f"{str(p)!r} holds a {meta.get('kind')!r} head, not {kind!r}")
    return meta


def read_head_arrays(path: str | os.PathLike, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Read ``arrays.npz`` of a head folder; a missing, unreadable or incomplete file is a
    DataError naming the folder."""
    import zipfile

    p = Path(path)
    f = p / "arrays.npz"
    if not f.is_file():
        raise DataError(f"{str(p)!r} is an incomplete head folder (no arrays.npz)")
    try:
        with np.load(f, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{str(f)!r} is not a readable head array file ({msg})") from None
    missing = [n for n in names if n not in arrays]
    if missing:
        raise DataError(f"{str(f)!r} lacks the array(s) {', '.join(missing)}")
    return arrays


def head_meta_error(path: str | os.PathLike, exc: Exception) -> DataError:
    """A DataError for a ``head.json`` with missing or malformed entries."""
    detail = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
    return DataError(f"{str(Path(path) / 'head.json')!r} is malformed ({detail})")
