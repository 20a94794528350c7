"""Row normalisations: ``none``, ``l2`` and ``quantile`` (NORMpre / NORMpost / NORMinf).

``quantile`` maps each row's sorted values onto the quantiles ``(j + 1/2)/D``,
``j = 0..D-1``, of a reference distribution. By default the reference distribution is
the pooled values of *all* rows passed in (all proxies of all classes), so the result
does not depend on class order. ``quantile_cumulative`` reproduces the IMPRINT reference
code: classes are processed in order and each class is mapped onto the values of the
proxies normalised before it (the first class stays raw).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from priming.errors import ConfigError, DataError
from priming.registry import Registry

__all__ = [
    "EPS",
    "NORMALIZATIONS",
    "l2_normalize",
    "quantile_targets",
    "quantile_map",
    "quantile_normalize",
    "quantile_normalize_cumulative",
    "normalize",
]

EPS = 1e-12
"""Added to row norms so a zero row stays zero instead of becoming NaN."""

NORMALIZATIONS: Registry[Callable[..., np.ndarray]] = Registry("normalization")


def l2_normalize(X: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Divide each row by its L2 norm (plus ``eps``); returns a new array."""
    X = np.asarray(X)
    if X.dtype.kind != "f":
        X = X.astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", X, X), dtype=np.float64)
    inv = (1.0 / (norms + eps)).astype(X.dtype)
    return X * inv[:, None]


def quantile_targets(reference: np.ndarray, n_features: int) -> np.ndarray:
    """The ``n_features`` target values: quantiles ``(j+1/2)/D`` of the pooled ``reference``.

    Works for every ``D >= 1`` (the probabilities are built from integers, not by
    stepping a float range).
    """
    ref = np.asarray(reference, dtype=np.float64).ravel()
    if ref.size == 0:
        raise DataError("quantile normalisation: the reference distribution is empty")
    probs = (np.arange(n_features, dtype=np.float64) + 0.5) / n_features
    return np.quantile(ref, probs)


def quantile_map(X: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Replace each row's values, rank by rank, with the sorted ``targets``."""
    X = np.asarray(X)
    targets = np.sort(np.asarray(targets, dtype=np.float64))
    if targets.shape != (X.shape[1],):
        raise DataError(
            f"quantile normalisation: {targets.shape[0]} target values for rows of width {X.shape[1]}"
        )
    ranks = np.argsort(np.argsort(X, axis=1, kind="stable"), axis=1, kind="stable")
    return targets[ranks].astype(X.dtype if X.dtype.kind == "f" else np.float64, copy=False)


def quantile_normalize(X: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Order-independent quantile normalisation of the rows of ``X``.

    The reference distribution is ``reference`` if given, else the pooled values of
    ``X`` itself.
    """
    X = np.asarray(X)
    return quantile_map(X, quantile_targets(X if reference is None else reference, X.shape[1]))


def quantile_normalize_cumulative(X: np.ndarray, labels: np.ndarray, initial=None) -> np.ndarray:
    """The IMPRINT reference code's quantile normalisation (compatibility option).

    Classes are processed in increasing label order; the rows of a class are mapped onto
    the pooled values of all rows *already normalised* (``initial`` followed by the
    earlier classes). With no ``initial`` rows the first class stays raw, so results
    depend on class order.
    """
    X = np.asarray(X)
    labels = np.asarray(labels)
    out = X.astype(np.float64 if X.dtype.kind != "f" else X.dtype, copy=True)
    done = [] if initial is None or len(initial) == 0 else [np.asarray(initial, dtype=np.float64)]
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if done:
            ref = np.concatenate([d.ravel() for d in done])
            out[rows] = quantile_map(X[rows], quantile_targets(ref, X.shape[1]))
        done.append(out[rows].astype(np.float64))
    return out


def _none(X: np.ndarray) -> np.ndarray:
    return np.array(X, copy=True)


NORMALIZATIONS.register("none", _none)
NORMALIZATIONS.register("l2", l2_normalize)
NORMALIZATIONS.register("quantile", quantile_normalize)


def normalize(X: np.ndarray, method: str) -> np.ndarray:
    """Apply the row normalisation ``method`` (``none``, ``l2``, ``quantile``) to ``X``."""
    if method == "quantile_cumulative":
        raise ConfigError(
            "normalization 'quantile_cumulative' needs class labels; use "
            "quantile_normalize_cumulative(X, labels)"
        )
    return NORMALIZATIONS.get(method)(X)
