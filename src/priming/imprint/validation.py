"""Boundary checks shared by the imprinting functions and the heads.

Every check raises :class:`~priming.errors.DataError` or
:class:`~priming.errors.ConfigError` with a message naming the input, the problem and,
where there is a choice, the valid values.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np

from priming.errors import ConfigError, DataError

__all__ = [
    "as_float_matrix",
    "check_class_indices",
    "check_choice",
    "check_int",
    "check_random_state",
]


def as_float_matrix(
    X: object, name: str = "X", *, dtype: type = np.float32, n_features: int | None = None
) -> np.ndarray:
    """Return ``X`` as a C-contiguous 2-D finite float array (a copy only when needed).

    Raises :class:`DataError` for sparse input, complex values, non-numeric values,
    a 1-D or 3-D array, an empty array, NaN/inf, or a feature count other than
    ``n_features``.
    """
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):
        raise DataError(f"{name}: sparse input is not supported; pass a dense array")
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: cannot be converted to a numeric array ({exc})") from None
    if np.iscomplexobj(arr):
        raise DataError(f"{name}: Complex data not supported")
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"{name}: must be numeric; could not convert {arr.dtype} values "
                f"(argument must be a string or a real number: {exc})"
            ) from None
    if arr.ndim != 2:
        hint = (
            " Reshape your data either using array.reshape(-1, 1) if your data has a single "
            "feature or array.reshape(1, -1) if it contains a single sample."
            if arr.ndim == 1
            else ""
        )
        raise DataError(
            f"{name}: expected a 2-D array (n_samples, n_features), got shape {arr.shape}.{hint}"
        )
    if arr.shape[0] == 0:
        raise DataError(f"{name}: empty input (0 samples); at least 1 sample is required")
    if arr.shape[1] == 0:
        raise DataError(f"{name}: 0 features; at least 1 feature is required")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        raise DataError(f"{name}: contains NaN or infinity; clean or impute the input first")
    if n_features is not None and arr.shape[1] != n_features:
        raise DataError(
            f"{name} has {arr.shape[1]} features, but the head is expecting {n_features} "
            "features as input"
        )
    return arr


def check_class_indices(y: object, n_rows: int, n_classes: int, name: str = "y") -> np.ndarray:
    """Check integer class indices in ``[0, n_classes)`` with every class present."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise DataError(f"{name}: expected a 1-D array of class indices, got shape {arr.shape}")
    if arr.shape[0] != n_rows:
        raise DataError(f"{name}: has {arr.shape[0]} entries but X has {n_rows} rows")
    if arr.dtype.kind not in "iu":
        raise DataError(f"{name}: class indices must be integers, got dtype {arr.dtype}")
    if n_rows and (arr.min() < 0 or arr.max() >= n_classes):
        raise DataError(f"{name}: class indices must lie in [0, {n_classes})")
    counts = np.bincount(arr, minlength=n_classes)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise DataError(
            f"{name}: class index {int(empty[0])} has zero rows ({empty.size} empty classes); "
            "every class needs at least one row"
        )
    return arr.astype(np.int64, copy=False)


def check_choice(value: object, name: str, choices: Iterable[str]) -> str:
    """Check that ``value`` is one of ``choices``."""
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name}={value!r} is not valid; valid values: {', '.join(choices)}")
    return value


def check_int(
    value: object, name: str, *, minimum: int = 1, allow_none: bool = False
) -> int | None:
    """Check an integer parameter ``>= minimum`` (``None`` allowed when asked)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        extra = " or None" if allow_none else ""
        raise ConfigError(f"{name}={value!r} is not valid; expected an integer >= {minimum}{extra}")
    return int(value)


def check_random_state(random_state: object) -> np.random.Generator:
    """Turn ``None``, an int, a ``Generator`` or a ``RandomState`` into a ``Generator``."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ConfigError(f"random_state={random_state!r} must be >= 0")
        return np.random.default_rng(int(random_state))
    raise ConfigError(
        f"random_state={random_state!r} is not valid; expected None, an int, or a numpy Generator"
    )
