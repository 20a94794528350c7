"""Small array helpers shared by the heads (no torch, no heavy imports)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from priming.errors import DataError

EPS = 1e-12


def l2_normalize(X: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm; a zero row stays zero (never NaN). Returns a new array."""
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=-1, keepdims=True)
    return X / np.maximum(norms, EPS)


def softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``scores / temperature`` (numerically stable)."""
    z = np.asarray(scores, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def check_matrix(
    X, name: str, n_features: int | None = None, allow_empty: bool = False
) -> np.ndarray:
    """Validate a 2-D finite float matrix; returns it as float32 (a copy only if needed)."""
    try:
        X = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a numeric matrix: {exc}") from None
    if X.ndim != 2:
        raise DataError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0 and not allow_empty:
        raise DataError(f"{name} is empty (0 rows)")
    if n_features is not None and X.shape[1] != n_features:
        raise DataError(
            f"{name} has {X.shape[1]} features but the head expects {n_features} "
            "(embeddings from a different model?)"
        )
    if X.size and not np.isfinite(X).all():
        raise DataError(f"{name} contains NaN or infinite values")
    return X


def write_json_atomic(path: Path, obj: object) -> None:
    """Write JSON to ``path`` atomically (temp file in the same folder + os.replace)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path`` atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_jsonable_labels(classes: np.ndarray) -> list:
    """Class labels as a JSON list (numpy scalars converted to Python values)."""
    return [c.item() if isinstance(c, np.generic) else c for c in np.asarray(classes).tolist()]
