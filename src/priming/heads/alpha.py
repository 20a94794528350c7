"""Choosing the text/imprint mixing weight α of a primed head.

Three ways (METHODS §1.4): a fixed number; the reference's hand-set values as a
schedule over the number of labelled shots per class; or ``"auto"``: α chosen by
cross-validated accuracy on the shots (or, with no shots, on held-out pool items) —
never on test labels.
"""

from __future__ import annotations

import numpy as np

from priming.errors import ConfigError

__all__ = [
    "REFERENCE_ALPHAS",
    "ALPHA_GRID",
    "schedule_alpha",
    "check_alpha",
    "stratified_folds",
    "best_alpha",
]

#: The reference's hand-set α by number of labelled shots per class:
#: 0.9 zero-shot (ImageNet, Cars), 0.58 at 2 shots (Flowers), 0.55 at 3 shots (Aircraft).
REFERENCE_ALPHAS: dict[int, float] = {0: 0.9, 2: 0.58, 3: 0.55}

#: Candidate values searched by ``alpha="auto"``.
ALPHA_GRID: np.ndarray = np.round(np.linspace(0.0, 1.0, 21), 2)


def schedule_alpha(n_shots: float) -> float:
    """α for ``n_shots`` labelled shots per class from :data:`REFERENCE_ALPHAS`,
    linearly interpolated between the reference's points and constant beyond the last."""
    if n_shots < 0:
        raise ConfigError(f"n_shots must be >= 0, got {n_shots}")
    xs = np.array(sorted(REFERENCE_ALPHAS), dtype=float)
    ys = np.array([REFERENCE_ALPHAS[int(k)] for k in xs])
    return float(np.interp(float(n_shots), xs, ys))


def check_alpha(alpha) -> float | str:
    """Validate an ``alpha`` argument: a number in [0, 1], ``"schedule"`` or ``"auto"``."""
    if isinstance(alpha, str):
        if alpha in ("schedule", "auto"):
            return alpha
        try:
            alpha = float(alpha)
        except ValueError:
            raise ConfigError(
                f"alpha must be a number in [0, 1], 'schedule' or 'auto'; got {alpha!r}"
            ) from None
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)):
        raise ConfigError(f"alpha must be a number in [0, 1], 'schedule' or 'auto'; got {alpha!r}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"alpha must lie in [0, 1], got {alpha}")
    return float(alpha)


def stratified_folds(y: np.ndarray, n_folds: int, random_state=None) -> np.ndarray:
    """Fold index per item: within each class, a random permutation dealt round-robin
    from a random starting fold, so every fold gets a near-equal share of every class."""
    rng = np.random.default_rng(random_state)
    y = np.asarray(y)
    folds = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        folds[idx] = (rng.integers(n_folds) + np.arange(len(idx))) % n_folds
    return folds


def best_alpha(correct_counts: np.ndarray, grid: np.ndarray = ALPHA_GRID) -> float:
    """The grid value with the most correct predictions; ties go to the middle one of the
    tied values (robust when a wide range of α is equally good)."""
    correct_counts = np.asarray(correct_counts)
    tied = np.flatnonzero(correct_counts == correct_counts.max())
    return float(grid[tied[len(tied) // 2]])
