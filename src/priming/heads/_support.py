"""Shared pieces of the training-free heads (Tip-Adapter, GDA, ProKeR, TransCLIP, ZLaP, TDA).

Every one of those heads is built around the zero-shot text head ``T`` (C × D) and
optionally labelled rows (shots, and priming-pool rows down-weighted through
``sample_weight``). This module holds what they have in common: validation of the
text head, classes and labelled rows, the zero-shot logits, and the cross-validation
folds over the shots used to choose hyperparameters without test labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from priming.errors import ConfigError, DataError
from priming.heads._util import check_matrix
from priming.imprint.normalize import l2_normalize

__all__ = [
    "Support",
    "check_features",
    "check_text_head",
    "prepare_support",
    "zero_shot_logits",
    "shot_folds",
    "select_on_folds",
    "entropy",
]


def check_features(X, name: str, n_features: int | None = None) -> np.ndarray:
    """A finite 2-D float64 matrix (``name`` appears in every error message)."""
    return check_matrix(X, name, n_features, dtype=np.float64)


def check_text_head(text_weights, classes) -> tuple[np.ndarray, np.ndarray]:
    """``(T, classes_)``: the text weights as float64 (C, D) and the class labels of its rows
    (``0..C-1`` when ``classes`` is None)."""
    if text_weights is None:
        raise ConfigError("text_weights is required: the zero-shot text head (C, D)")
    T = check_features(text_weights, "text_weights")
    if classes is None:
        return T, np.arange(T.shape[0])
    if isinstance(classes, str) or not isinstance(classes, Sequence | np.ndarray):
        raise ConfigError(f"classes must be a sequence of {T.shape[0]} labels, got {classes!r}")
    labels = list(classes)
    if len(labels) != T.shape[0]:
        raise ConfigError(
            f"classes has {len(labels)} labels but text_weights has {T.shape[0]} rows"
        )
    if len(set(labels)) != len(labels):
        raise ConfigError("classes contains duplicate labels")
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.dtype.kind not in "biufU":
        arr = np.empty(len(labels), dtype=object)
        arr[:] = labels
    return T, arr


def encode_labels(y, classes_: np.ndarray, n: int, name: str = "y") -> np.ndarray:
    """Row indices of ``classes_`` for the labels ``y`` (length ``n``)."""
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{name} must be 1-D with one label per row of X ({n}), got {y.shape}")
    index = {c: i for i, c in enumerate(classes_.tolist())}
    try:
        idx = np.fromiter((index.get(v, -1) for v in y.tolist()), dtype=np.int64, count=n)
    except TypeError:
        raise DataError(f"{name} holds unhashable labels") from None
    if (idx < 0).any():
        bad = sorted({repr(v) for v, i in zip(y.tolist(), idx) if i < 0})[:5]
        shown = ", ".join(repr(c) for c in classes_.tolist()[:10])
        raise DataError(
            f"{int((idx < 0).sum())} label(s) in {name} are not classes of this head: "
            f"{', '.join(bad)}; valid classes: {shown}"
            + (" ..." if len(classes_) > 10 else "")
            + " (pass classes=[...] to name the text-head rows)"
        )
    return idx


@dataclass(frozen=True)
class Support:
    """Labelled rows: normalised features, class indices and per-row weights."""

    X: np.ndarray  # (n, D) l2-normalised
    y: np.ndarray  # (n,) int class indices
    w: np.ndarray  # (n,) positive weights

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    def subset(self, rows: np.ndarray) -> Support:
        return Support(self.X[rows], self.y[rows], self.w[rows])

    def one_hot(self, n_classes: int, weighted: bool = True) -> np.ndarray:
        Y = np.zeros((self.n, n_classes))
        Y[np.arange(self.n), self.y] = self.w if weighted else 1.0
        return Y


def prepare_support(X, y, sample_weight, classes_: np.ndarray, n_features: int) -> Support:
    """Validate the labelled rows of ``fit``; ``X=None`` means no labelled rows."""
    if X is None:
        if y is not None:
            raise DataError("y was given without X")
        return Support(np.zeros((0, n_features)), np.zeros(0, dtype=np.int64), np.zeros(0))
    A = check_features(X, "X", n_features)
    if y is None:
        raise DataError("y is required with X (the labels of the shots / pool rows)")
    idx = encode_labels(y, classes_, A.shape[0])
    if sample_weight is None:
        w = np.ones(A.shape[0])
    else:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != (A.shape[0],) or not np.isfinite(w).all() or (w < 0).any():
            raise DataError(
                f"sample_weight must hold {A.shape[0]} finite non-negative weights, "
                f"got shape {w.shape}"
            )
    return Support(l2_normalize(A), idx, w)


def zero_shot_logits(Xn: np.ndarray, T: np.ndarray, logit_scale: float) -> np.ndarray:
    """``logit_scale · x̂ · Tᵀ`` for already normalised rows ``Xn`` (T used as given)."""
    return float(logit_scale) * (Xn @ T.T)


def entropy(P: np.ndarray) -> np.ndarray:
    """Row-wise Shannon entropy (nats) of probability rows."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(P > 0, P * np.log(P), 0.0), axis=1)


def check_scalar(value, name: str, low: float = 0.0, strict: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number or 'auto', got {value!r}") from None
    if not np.isfinite(v) or v < low or (strict and v == low):
        op = ">" if strict else ">="
        raise ConfigError(f"{name} must be a finite number {op} {low}, got {value!r}")
    return v


def check_grid(grid, default: Sequence[float], name: str) -> tuple[float, ...]:
    values = tuple(default if grid is None else grid)
    if not values:
        raise ConfigError(f"{name} is empty")
    return tuple(check_scalar(v, name) for v in values)


def shot_folds(y: np.ndarray, n_folds: int = 5, random_state: int = 0) -> list[np.ndarray]:
    """Held-out row sets of a class-stratified k-fold over the labelled rows.

    Every class's rows are shuffled (seeded) and dealt round-robin into the folds, so each
    fold holds about ``1/k`` of every class; the number of folds is
    ``min(n_folds, largest class count)``. Returns ``[]`` when no class has two rows
    (leave-one-out would then leave a class with nothing to learn from)."""
    y = np.asarray(y)
    if y.size == 0:
        return []
    counts = np.bincount(y)
    k = int(min(n_folds, counts.max()))
    if k < 2:
        return []
    rng = np.random.default_rng(random_state)
    fold_of = np.empty(y.size, dtype=np.int64)
    for c in np.flatnonzero(counts):
        rows = np.flatnonzero(y == c)
        rows = rows[rng.permutation(rows.size)]
        fold_of[rows] = np.arange(rows.size) % k
    return [np.flatnonzero(fold_of == f) for f in range(k)]


def select_on_folds(
    support: Support,
    n_candidates: int,
    fold_scores: Callable[[Support, Support], np.ndarray],
    n_folds: int = 5,
    random_state: int = 0,
) -> tuple[int | None, np.ndarray | None, int]:
    """Pick a candidate by weighted accuracy on held-out shot folds.

    ``fold_scores(train, held_out)`` returns an ``(n_candidates, n_held_out)`` array of
    predicted class indices. Returns ``(best index, per-candidate accuracy, n_folds)``;
    ``(None, None, 0)`` when the shots cannot be split. Ties go to the first candidate in
    grid order."""
    folds = shot_folds(support.y, n_folds, random_state)
    if not folds:
        return None, None, 0
    correct = np.zeros(n_candidates)
    total = 0.0
    every = np.arange(support.n)
    for held in folds:
        train = support.subset(np.setdiff1d(every, held))
        test = support.subset(held)
        pred = np.asarray(fold_scores(train, test))
        correct += ((pred == test.y[None, :]) * test.w[None, :]).sum(axis=1)
        total += test.w.sum()
    acc = correct / max(total, 1e-12)
    return int(np.argmax(acc)), acc, len(folds)


def select_transductive(
    sup: Support,
    Q: np.ndarray,
    grid: Sequence[float],
    solve: Callable[[np.ndarray, Support, float], np.ndarray],
    n_folds: int = 3,
    random_state: int = 0,
) -> tuple[int | None, float | None, int]:
    """Pick a grid value of a transductive head on held-out labelled rows.

    For each stratified fold of the labelled rows, the other folds stay labelled and the
    held-out rows are appended, *unlabelled*, to the batch ``Q``; ``solve(batch, train,
    value)`` returns (n_batch, C) scores and the held-out rows' argmax is compared with
    their labels (weighted). The batch's own labels are never used. Returns ``(best
    index, its accuracy, n_folds)`` or ``(None, None, 0)`` when the rows cannot be split;
    ties go to the first grid value."""
    folds = shot_folds(sup.y, n_folds, random_state) if sup.n else []
    if not folds:
        return None, None, 0
    correct = np.zeros(len(grid))
    every = np.arange(sup.n)
    for held in folds:
        train, test = sup.subset(np.setdiff1d(every, held)), sup.subset(held)
        batch = np.vstack([Q, test.X])
        for g, value in enumerate(grid):
            scores = solve(batch, train, value)
            hit = np.argmax(scores[Q.shape[0] :], axis=1) == test.y
            correct[g] += float((hit * test.w).sum())
    best = int(np.argmax(correct))
    return best, float(correct[best] / max(sup.w.sum(), 1e-12)), len(folds)
