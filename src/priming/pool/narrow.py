"""Transductive priming: narrow a pool to the neighbours of the (unlabelled) test set."""

from __future__ import annotations

import logging

import numpy as np

from priming.errors import ConfigError, DataError
from priming.imprint.topk import TOPK_METHODS, check_queries, topk
from priming.pool.pool import PrimingPool

log = logging.getLogger(__name__)

__all__ = ["narrow_pool", "pool_neighbors"]


def pool_neighbors(
    pool_embeddings: np.ndarray,
    query_embeddings: np.ndarray,
    k: int = 10,
    *,
    pool_labels: np.ndarray | None = None,
    same_class: np.ndarray | None = None,
    method: str = "exact",
    chunk_size: int = 16384,
    query_chunk: int = 1024,
    nprobe: int = 16,
    random_state=0,
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's ``k`` nearest pool rows by cosine similarity: ``(scores, rows)``.

    With ``same_class`` (one class index per query) a query only sees pool rows whose
    ``pool_labels`` equal its class; classes with fewer than ``k`` rows pad with -1.
    ``method="exact"`` is the chunked numpy search; ``"faiss"`` uses ``faiss.knn`` (also
    exact). ``"ivf"`` builds a faiss inverted-file index (≈√n lists, k-means on a sample)
    and scans the ``nprobe`` nearest lists per query: approximate, for large pools
    (measure its recall against ``"exact"`` on your data; ``benchmarks/bench_priming.py``
    reports it). ``same_class`` always uses the exact search within each class.
    """
    if int(k) < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    k = int(k)
    P = pool_embeddings
    Q = check_queries(query_embeddings, P.shape[1])
    if method not in TOPK_METHODS:
        raise ConfigError(f"method must be one of {TOPK_METHODS}, got {method!r}")
    if same_class is None:
        return topk(
            Q,
            P,
            k,
            method=method,
            chunk=chunk_size,
            query_chunk=query_chunk,
            nprobe=nprobe,
            random_state=random_state,
        )
    if pool_labels is None:
        raise ConfigError("same_class needs pool_labels")
    same_class = np.asarray(same_class)
    if same_class.shape != (len(Q),):
        raise DataError(
            f"same_class must have one class per query ({len(Q)}), got {same_class.shape}"
        )
    kk = min(k, len(P))
    scores = np.full((len(Q), kk), -np.inf, np.float32)
    rows = np.full((len(Q), kk), -1, np.int64)
    order = np.argsort(pool_labels, kind="stable")
    sorted_labels = np.asarray(pool_labels)[order]
    for c in np.unique(same_class):
        q = np.flatnonzero(same_class == c)
        lo = np.searchsorted(sorted_labels, c, "left")
        hi = np.searchsorted(sorted_labels, c, "right")
        members = order[lo:hi]
        if len(members) == 0:
            continue
        s, i = topk(Q[q], P, kk, pool_index=members, chunk=chunk_size, query_chunk=query_chunk)
        scores[q, : s.shape[1]] = s
        rows[q, : i.shape[1]] = i
    return scores, rows


def narrow_pool(
    pool: PrimingPool,
    query_embeddings: np.ndarray,
    k: int = 10,
    same_class=None,
    *,
    method: str = "exact",
    chunk_size: int = 16384,
    nprobe: int = 16,
) -> PrimingPool:
    """Transductive narrowing (METHODS §1.5): the union of every query's ``k`` nearest
    pool items (cosine), keeping their caption labels. Query labels are never used —
    except in the few-shot-guided variant, where ``same_class`` gives each query's (shot's)
    class (index into ``pool.class_names`` or a class name) and neighbours are drawn from
    that class only. Memory stays O(queries × k + chunk). ``method``: ``"exact"``
    (default), ``"faiss"`` (exact) or ``"ivf"`` (approximate faiss index for large
    pools, ``nprobe`` lists per query); see :func:`pool_neighbors`.

    Returns a new :class:`PrimingPool` with a ``"transductive"`` step in its stats.
    """
    if not isinstance(pool, PrimingPool):
        raise ConfigError("narrow_pool expects a PrimingPool (use pool_neighbors for raw arrays)")
    Q = check_queries(
        query_embeddings, pool.dim if len(pool) else np.asarray(query_embeddings).shape[-1]
    )
    if len(pool) == 0 or len(Q) == 0:
        log.warning("narrow_pool: empty pool or no queries; the narrowed pool is empty")
        return pool.subset(
            np.zeros(0, dtype=np.int64), step="transductive", reason="no queries to narrow to"
        )
    sc = None
    if same_class is not None:
        sc = np.asarray(same_class)
        if not np.issubdtype(sc.dtype, np.integer):
            index = {n: i for i, n in enumerate(pool.class_names)}
            unknown = sorted({str(v) for v in sc.tolist() if v not in index})
            if unknown:
                raise DataError(
                    f"same_class has labels that are not pool classes: {unknown[:5]}; "
                    f"valid: {pool.class_names[:10]}"
                )
            sc = np.array([index[v] for v in sc.tolist()], dtype=np.int64)
    _, rows = pool_neighbors(
        pool.embeddings,
        Q,
        k,
        pool_labels=pool.labels,
        same_class=sc,
        method=method,
        chunk_size=chunk_size,
        nprobe=nprobe,
    )
    keep = np.unique(rows[rows >= 0])
    log.info(
        "transductive narrowing: %d queries x k=%d -> %d of %d pool items",
        len(Q),
        k,
        len(keep),
        len(pool),
    )
    step = "transductive" if sc is None else "transductive (same class)"
    near = "an unlabelled query's" if sc is None else "a same-class shot's"
    return pool.subset(keep, step=step, reason=f"not among {near} {k} nearest pool items")
