"""Embedding arrays with their labels and ids, and reading them from ``.npy``/``.npz``."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from priming.errors import DataError

__all__ = ["EmbeddedData", "load_embeddings"]


@dataclass
class EmbeddedData:
    """Embeddings of a dataset.

    Attributes
    ----------
    embeddings : ndarray of shape (n, dim), float32
        One row per successfully embedded item (memory-mapped when read from a cache).
    labels : ndarray of str or None
    ids : ndarray of str
    skipped : list of (id, reason)
        Items that could not be decoded, in dataset order.
    cache_path : Path or None
        The cache entry holding these embeddings.
    from_cache : bool
        True when nothing had to be computed.
    n_computed : int
        Items encoded by this call (0 on a cache hit; fewer than n after a resume).
    """

    embeddings: np.ndarray
    labels: np.ndarray | None
    ids: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cache_path: Path | None = None
    from_cache: bool = False
    n_computed: int = 0
    encoder_name: str | None = None

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])


_LABEL_SIBLINGS = (
    "{stem}.labels.npy",
    "{stem}_labels.npy",
    "{stem}.labels.txt",
    "{stem}_labels.txt",
    "labels.npy",
    "labels.txt",
)


def _read_labels(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"labels file {str(path)!r} does not exist")
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif path.suffix == ".json":
            arr = np.asarray(json.loads(path.read_text(encoding="utf-8")))
        else:
            arr = np.asarray(path.read_text(encoding="utf-8").splitlines())
    except (ValueError, OSError, EOFError) as exc:  # incl. JSON and UTF-8 decoding errors
        raise DataError(f"cannot read labels {str(path)!r}: {exc}") from None
    if arr.ndim != 1:
        raise DataError(f"labels in {str(path)!r} must be a 1-D array, got shape {arr.shape}")
    return arr.astype(str)


def _check_finite(X: np.ndarray, path: Path, chunk_rows: int = 65536) -> None:
    """Refuse NaN/inf values, reading a memory-mapped matrix in bounded chunks."""
    for start in range(0, X.shape[0], chunk_rows):
        block = np.asarray(X[start : start + chunk_rows])
        if not np.isfinite(block).all():
            bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise DataError(
                f"embeddings in {str(path)!r} contain NaN or infinite values (first in row {bad})"
            )


def load_embeddings(
    path: str | os.PathLike, labels: str | os.PathLike | None = None
) -> EmbeddedData:
    """Read precomputed embeddings.

    ``.npz``: arrays ``embeddings`` (or ``X``), optional ``labels`` (or ``y``) and ``ids``.
    ``.npy``: the embedding matrix; labels from ``labels`` if given, else a sibling file
    ``<stem>.labels.npy``, ``<stem>_labels.npy``, ``<stem>.labels.txt`` (one per line),
    ``<stem>_labels.txt``, ``labels.npy`` or ``labels.txt``. Pickled arrays are refused.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"embedding file {str(path)!r} does not exist")
    ids = lab = None
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as z:
                key = "embeddings" if "embeddings" in z else "X" if "X" in z else None
                if key is None:
                    raise DataError(
                        f"{str(path)!r} has arrays {sorted(z.files)}; expected 'embeddings' "
                        "(or 'X'), optional 'labels' (or 'y') and 'ids'"
                    )
                X = z[key]
                lkey = "labels" if "labels" in z else "y" if "y" in z else None
                lab = z[lkey].astype(str) if lkey else None
                ids = z["ids"].astype(str) if "ids" in z else None
        else:
            X = np.load(path, mmap_mode="r", allow_pickle=False)
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"cannot read embeddings {str(path)!r} (not a valid .npy/.npz file?): {exc}"
        ) from None
    if labels is not None:
        lab = _read_labels(Path(labels))
    elif lab is None:
        for pat in _LABEL_SIBLINGS:
            cand = path.parent / pat.format(stem=path.stem)
            if cand.is_file():
                lab = _read_labels(cand)
                break
    if X.ndim != 2 or X.shape[0] == 0:
        raise DataError(f"embeddings in {str(path)!r} must be a non-empty 2-D array, got {X.shape}")
    if not np.issubdtype(X.dtype, np.floating):
        raise DataError(f"embeddings in {str(path)!r} must be floating point, got {X.dtype}")
    X = X if X.dtype == np.float32 else np.asarray(X, dtype=np.float32)
    _check_finite(X, path)
    n = X.shape[0]
    if lab is not None and len(lab) != n:
        raise DataError(f"{str(path)!r}: {n} embeddings but {len(lab)} labels")
    if ids is None:
        ids = np.asarray([str(i) for i in range(n)])
    elif len(ids) != n:
        raise DataError(f"{str(path)!r}: {n} embeddings but {len(ids)} ids")
    return EmbeddedData(embeddings=X, labels=lab, ids=ids, cache_path=None, from_cache=True)
