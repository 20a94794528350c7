"""The few-shot protocol: seeded per-class sampling and median-with-spread summaries.

Shots are drawn per class from a seeded permutation, so (i) every method evaluated with the
same ``(labels, seed)`` sees exactly the same shots, and (ii) shots are nested: the 1-shot set
is contained in the 2-shot set of the same seed, and so on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from priming.errors import ConfigError, DataError

__all__ = ["sample_few_shot", "summarize", "SEEDS"]

#: Default seeds for repeated runs (IMPRINT reports the median over 3 seeds).
SEEDS: tuple[int, ...] = (0, 1, 2)


def sample_few_shot(
    labels: Sequence[Any] | np.ndarray,
    n_shots: int | None,
    random_state: int,
    *,
    strict: bool = False,
) -> np.ndarray:
    """Indices of ``n_shots`` rows per class, chosen by a seeded permutation.

    Parameters
    ----------
    labels : array-like, shape (n,)
        Training labels.
    n_shots : int or None
        Rows per class; ``None`` keeps every row.
    random_state : int
        Seed. The selection for a class depends only on the seed, the class's position in the
        sorted label set and its rows, never on the method that uses the shots.
    strict : bool
        If true, a class with fewer than ``n_shots`` rows is an error; otherwise it keeps all
        its rows.

    Returns
    -------
    ndarray of int64
        Sorted row indices into ``labels``.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise DataError(f"labels must be 1-D, got shape {y.shape}")
    if len(y) == 0:
        raise DataError("labels is empty")
    if n_shots is None:
        return np.arange(len(y), dtype=np.int64)
    if isinstance(n_shots, bool) or not isinstance(n_shots, (int, np.integer)) or n_shots < 1:
        raise ConfigError(f"n_shots must be a positive integer or None, got {n_shots!r}")
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise ConfigError(f"random_state must be an int seed, got {random_state!r}")
    classes, inverse = np.unique(y, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(classes) + 1))
    picked = []
    for c in range(len(classes)):
        rows = order[bounds[c] : bounds[c + 1]]
        if strict and len(rows) < n_shots:
            raise DataError(
                f"class {classes[c]!r} has {len(rows)} rows, fewer than n_shots={n_shots}"
            )
        rng = np.random.default_rng([int(random_state), c])
        picked.append(rows[rng.permutation(len(rows))[:n_shots]])
    return np.sort(np.concatenate(picked)).astype(np.int64)


def summarize(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Median and spread of repeated runs: ``median``, ``min``, ``max``, ``q25``, ``q75``,
    ``std`` (ddof=0) and ``n``."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or len(v) == 0:
        raise DataError("summarize needs a non-empty 1-D sequence of numbers")
    return {
        "median": float(np.median(v)),
        "min": float(v.min()),
        "max": float(v.max()),
        "q25": float(np.quantile(v, 0.25)),
        "q75": float(np.quantile(v, 0.75)),
        "std": float(v.std()),
        "n": int(len(v)),
    }
