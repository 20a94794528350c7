"""Aggregation (AGG): from proxy similarities to class scores, in bounded memory.

``max``: the score of class ``c`` is the largest inner product between the test row and
any of ``c``'s proxies. The proxies are one flat matrix sorted by class, so the
reduction is a segment max over contiguous column blocks of the score matrix, computed
for one chunk of test rows at a time (memory ~ ``chunk_bytes``, never ``n x P``).

``mnn``: the ``m`` nearest proxies of each test row vote for their classes, uniformly or
weighted by ``1/distance``; the class score is its vote mass. Ties in ``argmax`` go to
the lowest class index.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg
from scipy.spatial.distance import cdist

from priming.errors import ConfigError, DataError
from priming.imprint.normalize import l2_normalize
from priming.registry import Registry

__all__ = [
    "AGGREGATIONS",
    "METRICS",
    "WEIGHTINGS",
    "DEFAULT_CHUNK_BYTES",
    "chunk_rows",
    "slot_layout",
    "max_scores",
    "mnn_scores",
    "nearest_proxies",
    "mahalanobis_whitener",
]

DEFAULT_CHUNK_BYTES = 128 * 2**20
"""Default memory budget for one chunk of the score / distance matrix (128 MiB)."""

METRICS = ("cosine", "euclidean", "manhattan", "chebyshev", "mahalanobis")
WEIGHTINGS = ("uniform", "distance")

AGGREGATIONS: Registry[Callable[..., np.ndarray]] = Registry("aggregation")


def chunk_rows(n_cols: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES, itemsize: int = 4) -> int:
    """Rows per chunk so that a ``rows x n_cols`` matrix fits in ``chunk_bytes``."""
    return int(max(1, min(1 << 20, chunk_bytes // max(1, n_cols * itemsize))))


def _check_sorted_labels(proxy_labels: np.ndarray, n_classes: int) -> np.ndarray:
    labels = np.asarray(proxy_labels)
    if labels.ndim != 1:
        raise DataError("proxy_labels must be 1-D")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"proxy_labels must lie in [0, {n_classes})")
    return labels.astype(np.int64, copy=False)


def _gather_transposed(W: np.ndarray, perm: np.ndarray, dtype, block: int = 8192) -> np.ndarray:
    """``W[perm].T`` as a contiguous ``(D, P)`` array, built in blocks (no full temporary)."""
    out = np.empty((W.shape[1], perm.size), dtype=dtype)
    for j in range(0, perm.size, block):
        out[:, j : j + block] = W[perm[j : j + block]].T
    return out


def slot_layout(labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Slot-major proxy order for fast segment maxima, or ``None`` if not worthwhile.

    Returns ``(perm, table)``: ``table`` is ``(C, k_max)`` proxy indices per class
    (-1 padding); ``perm`` lists ``table`` column by column (slot 0 of every class, then
    slot 1, ...) with padding replaced by the class's first proxy (a duplicate cannot
    change a maximum). Scores in this column order reshape to ``(n, k_max, C)``, whose
    max over axis 1 is a fast element-wise reduction over contiguous rows. ``None`` when
    a class has no proxy or padding would add more than half the proxies again.
    """
    table = _class_table(labels, n_classes)
    if table.size == 0 or (table[:, 0] < 0).any() or table.size > 1.5 * max(labels.size, 1):
        return None
    return np.where(table >= 0, table, table[:, :1]).T.ravel(), table


def max_scores(
    X: np.ndarray,
    W: np.ndarray,
    proxy_labels: np.ndarray,
    n_classes: int,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> np.ndarray:
    """Class scores ``(n, n_classes)``: max inner product over each class's proxies.

    Computed for one chunk of rows at a time (the chunk's score matrix fits in
    ``chunk_bytes``): one BLAS product, then a segment max -- over slot-major columns
    (see :func:`slot_layout`), else ``np.maximum.reduceat`` over class-sorted columns.
    With exactly one proxy per class (Neural Priming's head) the product is the result
    and is written straight into the output. A class without proxies scores ``-inf``.
    """
    labels = _check_sorted_labels(proxy_labels, n_classes)
    X = np.asarray(X)
    dtype = np.result_type(X.dtype, W.dtype, np.float32)
    X = np.asarray(X, dtype=dtype)
    layout = slot_layout(labels, n_classes) if W.shape[0] else None
    if layout is not None and layout[1].shape[1] == 1:
        return _single_proxy_scores(X, W, layout[0], dtype, chunk_bytes)
    out = np.full((X.shape[0], n_classes), -np.inf, dtype=dtype)
    if W.shape[0] == 0:
        return out
    # proxies, transposed and in the column order of the score matrix: one O(P x D) copy.
    # (A contiguous (D, P) operand keeps every row's scores independent of the chunk
    # size; a transposed view would let BLAS pick size-dependent kernels.)
    if layout is not None:
        perm, table = layout
        kmax = table.shape[1]
    else:
        perm = np.argsort(labels, kind="stable")
        counts = np.bincount(labels, minlength=n_classes)
        present = np.flatnonzero(counts)
        starts = np.concatenate([[0], np.cumsum(counts[present])[:-1]])
    WT = _gather_transposed(W, perm, dtype)
    step = chunk_rows(WT.shape[1], chunk_bytes, np.dtype(dtype).itemsize)
    buf = np.empty((min(step, X.shape[0]), WT.shape[1]), dtype=dtype)
    for i in range(0, X.shape[0], step):
        xs = X[i : i + step]
        S = buf[: xs.shape[0]]
        np.matmul(xs, WT, out=S)
        if layout is not None:
            S.reshape(xs.shape[0], kmax, n_classes).max(axis=1, out=out[i : i + step])
        else:
            out[i : i + step, present] = np.maximum.reduceat(S, starts, axis=1)
    return out


PRODUCT_BLOCK_BYTES = 16 * 2**20
"""Output block of the one-proxy-per-class ``max`` path (about a last-level cache): large
enough that a multi-threaded BLAS call amortises its thread start-up."""


def _single_proxy_scores(
    X: np.ndarray, W: np.ndarray, perm: np.ndarray, dtype, chunk_bytes: int
) -> np.ndarray:
    """``max`` scores when every class has exactly one proxy: the score matrix is the
    output. The product is written straight into it, one cache-sized block of rows at a
    time (no scratch buffer, no segment reduction, no ``-inf`` fill)."""
    WT = _gather_transposed(W, perm, dtype)  # (D, C) in class order, as the general path
    out = np.empty((X.shape[0], WT.shape[1]), dtype=dtype)
    block = min(chunk_bytes, PRODUCT_BLOCK_BYTES)
    step = chunk_rows(WT.shape[1], block, np.dtype(dtype).itemsize)
    for i in range(0, X.shape[0], step):
        np.matmul(X[i : i + step], WT, out=out[i : i + step])
    return out


def mahalanobis_whitener(W: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    """Matrix ``L`` with ``(x - w) L`` Euclidean == Mahalanobis distance under ``cov(W) + ridge I``.

    As the IMPRINT reference code, the covariance is that of the proxy vectors. Uses a
    Cholesky factor and a triangular solve, never an explicit inverse.
    """
    W = np.asarray(W, dtype=np.float64)
    D = W.shape[1]
    cov = np.cov(W, rowvar=False).reshape(D, D) if W.shape[0] > 1 else np.zeros((D, D))
    cov[np.diag_indices(D)] += ridge
    R = np.linalg.cholesky(cov)  # cov = R R^T  ->  cov^-1 = R^-T R^-1
    return scipy.linalg.solve_triangular(R, np.eye(D), lower=True).T  # R^-T


def _distances(xs: np.ndarray, W: np.ndarray, ww: np.ndarray | None, metric: str) -> np.ndarray:
    """Distances ``(rows, P)`` between a chunk of (prepared) test rows and the proxies."""
    if metric == "cosine":
        d = xs @ W.T
        np.subtract(1.0, d, out=d)
        return d
    if metric in ("euclidean", "mahalanobis"):  # squared; sqrt taken on the m kept
        d = xs @ W.T
        d *= -2
        d += np.einsum("ij,ij->i", xs, xs)[:, None]
        d += ww[None, :]
        np.maximum(d, 0, out=d)
        return d
    if metric == "manhattan":
        return cdist(xs, W, "cityblock")
    if metric == "chebyshev":
        return cdist(xs, W, "chebyshev")
    raise ConfigError(f"metric={metric!r} is not valid; valid values: {', '.join(METRICS)}")


def _pair_distances(xs: np.ndarray, W: np.ndarray, part: np.ndarray, metric: str) -> np.ndarray:
    """Float64 distances between each row of ``xs`` and its candidate proxies ``part``."""
    diff_needed = metric != "cosine"
    x = xs.astype(np.float64)[:, None, :]
    w = W[part].astype(np.float64)  # (rows, m, D)
    if not diff_needed:
        return 1.0 - np.einsum("rmd,rmd->rm", np.broadcast_to(x, w.shape), w)
    diff = w - x
    if metric in ("euclidean", "mahalanobis"):
        return np.sqrt(np.einsum("rmd,rmd->rm", diff, diff))
    if metric == "manhattan":
        return np.abs(diff).sum(2)
    return np.abs(diff).max(2)


def _class_table(labels: np.ndarray, n_classes: int | None) -> np.ndarray:
    """``(C, k_max)`` proxy indices per class, padded with -1."""
    C = int(labels.max()) + 1 if n_classes is None else n_classes
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=C)
    kmax = max(int(counts.max()), 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(kmax)
    valid = pos[None, :] < counts[:, None]
    return np.where(valid, order[np.minimum(starts[:, None] + pos, labels.size - 1)], -1)


def _pruned_candidates(
    xs: np.ndarray,
    WT: np.ndarray,
    shift: np.ndarray | None,
    table: np.ndarray,
    m: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Proxies of the ``m`` best classes per row: ``(candidates, key)``, ``(rows, m*k_max)``.

    ``WT`` holds the proxies in slot-major order (:func:`slot_layout`); the similarity is ``x.w``
    (cosine) or ``x.w - |w|^2/2`` (``shift``; Euclidean, same order as the distance).
    ``key`` is the negated similarity (+inf on padding slots, whose index is -1).
    """
    C, kmax = table.shape
    S = xs @ WT
    if shift is not None:
        S -= shift[None, :]
    S3 = S.reshape(len(xs), kmax, C)
    best = S3.max(axis=1)  # (rows, C) segment max
    top = np.argpartition(best, C - m, axis=1)[:, C - m :]  # the m best classes
    rows = np.arange(len(xs))[:, None, None]
    key = -S3[rows, np.arange(kmax)[None, None, :], top[:, :, None]]  # (rows, m, kmax)
    cand = table[top]  # (rows, m, kmax)
    key[cand < 0] = np.inf
    return cand.reshape(len(xs), -1), key.reshape(len(xs), -1)


def nearest_proxies(
    X: np.ndarray,
    W: np.ndarray,
    n_neighbors: int,
    metric: str = "cosine",
    *,
    whitener: np.ndarray | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    proxy_labels: np.ndarray | None = None,
    n_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` nearest proxies of each row: ``(distances, indices)``, both ``(n, m)``,
    sorted by increasing distance (ties by proxy index).

    Cosine distance is ``1 - cos``; ``mahalanobis`` uses ``whitener`` (default: from
    :func:`mahalanobis_whitener` on ``W``).

    With ``proxy_labels`` (and an inner-product metric: cosine, euclidean, mahalanobis)
    the search is pruned by class: the ``m`` nearest proxies lie in the ``m`` classes
    whose nearest proxy is nearest (each of those proxies' classes has a proxy at least
    as near), so only those classes' proxies are ranked exactly. The cost is then one
    score-matrix product plus a segment max, as for ``max`` aggregation.
    """
    if metric not in METRICS:
        raise ConfigError(f"metric={metric!r} is not valid; valid values: {', '.join(METRICS)}")
    X = np.asarray(X, dtype=np.float32)
    W = np.asarray(W, dtype=np.float32)
    P = W.shape[0]
    if not 1 <= n_neighbors:
        raise ConfigError(f"n_neighbors={n_neighbors!r} must be >= 1")
    m = min(int(n_neighbors), P)
    if metric == "cosine":
        X, W = l2_normalize(X), l2_normalize(W)
    elif metric == "mahalanobis":
        L = mahalanobis_whitener(W) if whitener is None else whitener
        X = (X.astype(np.float64) @ L).astype(np.float32)
        W = (W.astype(np.float64) @ L).astype(np.float32)
    ww = np.einsum("ij,ij->i", W, W) if metric in ("euclidean", "mahalanobis") else None
    n = X.shape[0]
    dist = np.empty((n, m), dtype=np.float64)
    idx = np.empty((n, m), dtype=np.int64)
    if metric in ("manhattan", "chebyshev"):
        X, W = X.astype(np.float64), W.astype(np.float64)
    layout = None
    if proxy_labels is not None and metric not in ("manhattan", "chebyshev"):
        labels = np.asarray(proxy_labels, dtype=np.int64)
        layout = slot_layout(labels, int(labels.max()) + 1 if n_classes is None else n_classes)
        if layout is not None:
            perm, table = layout
            if m < table.shape[0] and m * table.shape[1] < P // 2:
                WT = _gather_transposed(W, perm, W.dtype)  # (D, P) contiguous, one copy
                shift = None if ww is None else 0.5 * ww[perm]
            else:
                layout = None
    pruned = layout is not None
    step = chunk_rows(P, chunk_bytes, 8 if metric in ("manhattan", "chebyshev") else 4)
    step = min(step, max(1, chunk_bytes // (m * X.shape[1] * 8)))  # exact-distance gather
    for i in range(0, n, step):
        xs = X[i : i + step]
        rows = np.arange(xs.shape[0])[:, None]
        if pruned:
            cand, key = _pruned_candidates(xs, WT, shift, table, m)
            part = cand[rows, np.argpartition(key, m - 1, axis=1)[:, :m]]
        else:
            d = _distances(xs, W, ww, metric)
            if m < P:
                part = np.argpartition(d, m - 1, axis=1)[:, :m]
            else:
                part = np.broadcast_to(np.arange(P), d.shape).copy()
        # exact float64 distances of the kept pairs: independent of chunking and BLAS
        dm = _pair_distances(xs, W, part, metric)
        o = np.lexsort((part, dm), axis=1)
        idx[i : i + step] = part[rows, o]
        dist[i : i + step] = dm[rows, o]
    return dist, idx


def mnn_scores(
    X: np.ndarray,
    W: np.ndarray,
    proxy_labels: np.ndarray,
    n_classes: int,
    n_neighbors: int,
    metric: str = "cosine",
    weighting: str = "uniform",
    *,
    whitener: np.ndarray | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> np.ndarray:
    """Vote mass ``(n, n_classes)`` of the ``m`` nearest proxies.

    ``weighting='uniform'``: each neighbour adds 1; ``'distance'``: adds
    ``1 / (distance + 1e-10)`` (as the reference code).
    """
    if weighting not in WEIGHTINGS:
        raise ConfigError(
            f"weighting={weighting!r} is not valid; valid values: {', '.join(WEIGHTINGS)}"
        )
    labels = _check_sorted_labels(proxy_labels, n_classes)
    dist, idx = nearest_proxies(
        X,
        W,
        n_neighbors,
        metric,
        whitener=whitener,
        chunk_bytes=chunk_bytes,
        proxy_labels=labels,
        n_classes=n_classes,
    )
    n, m = idx.shape
    votes = np.ones((n, m)) if weighting == "uniform" else 1.0 / (np.maximum(dist, 0) + 1e-10)
    flat = (np.arange(n)[:, None] * n_classes + labels[idx]).ravel()
    out = np.bincount(flat, weights=votes.ravel(), minlength=n * n_classes)
    return out.reshape(n, n_classes)


AGGREGATIONS.register("max", max_scores)
AGGREGATIONS.register("mnn", mnn_scores)
