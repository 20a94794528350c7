"""Boundary checks shared by the text and primed heads (no torch, no heavy imports)."""

from __future__ import annotations

import numpy as np

from priming.errors import ConfigError, DataError

__all__ = ["check_matrix", "check_classes", "check_temperature"]


def check_matrix(
    X, name: str, n_features: int | None = None, allow_empty: bool = False, dtype=np.float32
) -> np.ndarray:
    """Validate a 2-D finite float matrix; returns it as ``dtype`` (a copy only if needed).

    Sparse and complex input, a wrong rank, 0 rows (unless ``allow_empty``) or 0 features,
    NaN/inf and a width other than ``n_features`` are DataErrors naming ``name`` (in that
    order: what is wrong with the values comes before a width mismatch)."""
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):
        raise DataError(f"{name}: sparse input is not supported; pass a dense array")
    if np.iscomplexobj(X):
        raise DataError(f"{name}: Complex data not supported")
    try:
        X = np.asarray(X, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a numeric matrix: {exc}") from None
    if X.ndim != 2:
        raise DataError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0 and not allow_empty:
        raise DataError(f"{name} is empty (0 rows)")
    if X.shape[1] == 0:
        raise DataError(
            f"{name} has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required"
        )
    if X.size and not np.isfinite(X).all():
        raise DataError(f"{name} contains NaN or infinite values")
    if n_features is not None and X.shape[1] != n_features:
        raise DataError(
            f"{name} has {X.shape[1]} features but the head expects {n_features} "
            "(embeddings from a different model?)"
        )
    return X


def check_classes(classes, n_rows: int) -> np.ndarray:
    """The ``classes_`` array for ``classes`` naming ``n_rows`` rows (row indices when
    None). Names may be any hashable values; duplicates are refused."""
    if classes is None:
        return np.arange(n_rows)
    if isinstance(classes, str):
        raise ConfigError("classes must be a sequence of names, not one string")
    items = list(classes)
    arr = np.asarray(items) if items else np.zeros(0)
    if arr.ndim != 1 or arr.dtype.kind not in "biufUS":
        arr = np.empty(len(items), dtype=object)
        arr[:] = items
    if len(arr) != n_rows:
        raise ConfigError(
            f"classes has {len(arr)} names but text_weights has {n_rows} rows; give one name per row"
        )
    try:
        n_unique = len(set(arr.tolist()))
    except TypeError:
        raise ConfigError("classes must be hashable values (str, int, tuple, ...)") from None
    if n_unique != len(arr):
        seen, dup = set(), []
        for c in arr.tolist():
            if c in seen:
                dup.append(c)
            seen.add(c)
        raise DataError(f"duplicate class names: {dup[:5]}")
    return arr


def check_temperature(temperature) -> float:
    """A temperature for ``predict_proba``: a finite number > 0."""
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        t = float("nan")
    if isinstance(temperature, bool) or not np.isfinite(t) or t <= 0:
        raise ConfigError(f"temperature must be a number > 0, got {temperature!r}")
    return t
