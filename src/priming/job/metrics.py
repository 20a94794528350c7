"""Classification metrics for one evaluation run (also :mod:`priming.eval.metrics`).

:func:`classification_report` returns top-1, top-5, balanced accuracy, macro / weighted F1,
per-class accuracy and the confusion matrix in one dict; :func:`save_predictions` writes the
predictions (and optionally scores) of a run next to it, atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from priming._fs import write_bytes_atomic
from priming.errors import DataError

__all__ = ["classification_report", "top_k_accuracy", "save_predictions", "report_to_json"]


def _as_1d(name: str, a: Any) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def top_k_accuracy(y_true_idx: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Fraction of rows whose true column index is among the ``k`` highest scores.

    Ties are broken against the true class (a tie at the k-th place does not count as a hit
    unless the true score is strictly above the k-th largest *other* score), so constant
    scores never inflate top-k.
    """
    k = min(int(k), scores.shape[1])
    true_score = scores[np.arange(len(y_true_idx)), y_true_idx]
    n_higher = (scores > true_score[:, None]).sum(axis=1)
    n_equal = (scores == true_score[:, None]).sum(axis=1) - 1  # other classes tied with it
    return float(np.mean(n_higher + n_equal < k))


def classification_report(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    scores: np.ndarray | None = None,
    labels: Sequence[Any] | np.ndarray | None = None,
) -> dict[str, Any]:
    """All metrics of one run.

    Parameters
    ----------
    y_true, y_pred : array-like, shape (n,)
        True and predicted labels (any hashable values).
    scores : array, shape (n, n_labels), optional
        Class scores whose columns follow ``labels``; needed for top-5.
    labels : array-like, optional
        The label space in column order (e.g. a head's ``classes_``). Default: the sorted
        union of ``y_true`` and ``y_pred``; required when ``scores`` is given.

    Returns
    -------
    dict
        ``n``, ``labels`` (list), ``top1``, ``top5`` (None without scores; with fewer than 5
        classes it is top-``n_labels``), ``balanced_accuracy`` (mean recall over classes that
        occur in ``y_true``), ``macro_f1``, ``weighted_f1``, ``per_class`` (label -> accuracy,
        NaN for a class absent from ``y_true``), ``confusion`` (``n_labels x n_labels`` int
        array, rows = true, columns = predicted).
    """
    yt = _as_1d("y_true", y_true)
    yp = _as_1d("y_pred", y_pred)
    if len(yt) != len(yp):
        raise DataError(f"y_true has {len(yt)} rows but y_pred has {len(yp)}")
    if len(yt) == 0:
        raise DataError("y_true is empty; nothing to evaluate")
    if labels is None:
        if scores is not None:
            raise DataError("scores were given without labels; pass labels in column order")
        labels_arr = np.unique(np.concatenate([yt, yp]))
    else:
        labels_arr = _as_1d("labels", labels)
        if len(np.unique(labels_arr)) != len(labels_arr):
            raise DataError("labels contains duplicates")
    index = {lab: i for i, lab in enumerate(labels_arr.tolist())}
    try:
        ti = np.array([index[v] for v in yt.tolist()], dtype=np.int64)
        pi = np.array([index[v] for v in yp.tolist()], dtype=np.int64)
    except KeyError as exc:
        raise DataError(f"label {exc.args[0]!r} is not in labels") from None
    n_lab = len(labels_arr)
    confusion = np.zeros((n_lab, n_lab), dtype=np.int64)
    np.add.at(confusion, (ti, pi), 1)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    tp = np.diag(confusion).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        denom = precision + np.nan_to_num(recall)
        f1 = np.where(denom > 0, 2 * precision * np.nan_to_num(recall) / denom, 0.0)
    present = support > 0
    # F1 over the classes that occur in y_true or y_pred (scikit-learn's default label set)
    used = present | (predicted > 0)
    top5 = None
    if scores is not None:
        S = np.asarray(scores, dtype=np.float64)
        if S.shape != (len(yt), n_lab):
            raise DataError(f"scores must have shape ({len(yt)}, {n_lab}), got {S.shape}")
        if not np.all(np.isfinite(S)):
            raise DataError("scores contain NaN or inf")
        top5 = top_k_accuracy(ti, S, 5)
    return {
        "n": int(len(yt)),
        "labels": labels_arr.tolist(),
        "top1": float(np.mean(ti == pi)),
        "top5": top5,
        "balanced_accuracy": float(np.mean(recall[present])),
        "macro_f1": float(np.mean(f1[used])),
        "weighted_f1": float(np.sum(f1 * support) / support.sum()),
        "per_class": {lab: float(r) for lab, r in zip(labels_arr.tolist(), recall)},
        "confusion": confusion,
    }


def save_predictions(
    path: str | os.PathLike[str],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    scores: np.ndarray | None = None,
    labels: Sequence[Any] | None = None,
    ids: Sequence[str] | None = None,
) -> Path:
    """Write predictions to ``path`` (``.npz``, no pickle): ``y_true``, ``y_pred`` (as strings),
    optional ``scores``, ``labels`` and ``ids``. Atomic (temporary file + rename)."""
    import io

    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "y_true": np.asarray([str(v) for v in np.asarray(y_true).tolist()]),
        "y_pred": np.asarray([str(v) for v in np.asarray(y_pred).tolist()]),
    }
    if scores is not None:
        arrays["scores"] = np.asarray(scores, dtype=np.float32)
    if labels is not None:
        arrays["labels"] = np.asarray([str(v) for v in labels])
    if ids is not None:
        arrays["ids"] = np.asarray([str(v) for v in ids])
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())
    return path


def report_to_json(report: dict[str, Any]) -> str:
    """Serialise a :func:`classification_report` dict to JSON (NaN -> null)."""

    def conv(o: Any) -> Any:
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, float) and not np.isfinite(o):
            return None
        if isinstance(o, dict):
            return {str(k): conv(v) for k, v in o.items()}
        if isinstance(o, list):
            return [conv(v) for v in o]
        if isinstance(o, np.generic):
            return o.item()
        return o

    return json.dumps(conv(report))
