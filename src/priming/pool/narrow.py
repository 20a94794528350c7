"""Transductive priming: narrow a pool to the neighbours of the (unlabelled) test set."""

from __future__ import annotations

import logging

import numpy as np

from priming.errors import ConfigError, DataError
from priming.pool.knn import cosine_topk
from priming.pool.pool import PrimingPool

log = logging.getLogger(__name__)

__all__ = ["narrow_pool", "pool_neighbors"]


def _check_queries(Q, dim: int) -> np.ndarray:
    Q = np.asarray(Q, dtype=np.float32)
    if Q.ndim != 2:
        raise DataError(f"query embeddings must be 2-D (n, D), got shape {Q.shape}")
    if Q.shape[1] != dim:
        raise DataError(
            f"query embeddings have {Q.shape[1]} dimensions but the pool has {dim} "
            "(embeddings from different models?)"
        )
    if not np.isfinite(Q).all():
        raise DataError("query embeddings contain NaN or infinite values")
    return Q


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
    Q = _check_queries(query_embeddings, P.shape[1])
    if method not in ("exact", "faiss", "ivf"):
        raise ConfigError(f"method must be 'exact', 'faiss' or 'ivf', got {method!r}")
    if same_class is None:
        if method == "faiss":
            return _faiss_knn(Q, P, k)
        if method == "ivf":
            return _faiss_ivf(
                Q, P, k, nprobe=nprobe, chunk=chunk_size * 4, random_state=random_state
            )
        s, i = cosine_topk(Q, P, k, pool_chunk=chunk_size, query_chunk=query_chunk)
        return s, i
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
        s, i = cosine_topk(
            Q[q], P, kk, pool_index=members, pool_chunk=chunk_size, query_chunk=query_chunk
        )
        scores[q, : s.shape[1]] = s
        rows[q, : i.shape[1]] = i
    return scores, rows


def _faiss_knn(Q: np.ndarray, P: np.ndarray, k: int):
    try:
        import faiss
    except ImportError:
        from priming.errors import missing_dependency

        raise missing_dependency("faiss-cpu", "corpus") from None
    Qn = Q / np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-12)
    P = np.ascontiguousarray(P, dtype=np.float32)
    norms = np.linalg.norm(P, axis=1, keepdims=True)
    if not np.allclose(norms, 1.0, atol=1e-3):  # cosine, not inner product
        P = P / np.maximum(norms, 1e-12)
    s, i = faiss.knn(
        np.ascontiguousarray(Qn),
        P,
        min(k, len(P)),
        metric=faiss.METRIC_INNER_PRODUCT,
    )
    return s.astype(np.float32), i.astype(np.int64)


def _faiss_ivf(Q: np.ndarray, P: np.ndarray, k: int, nprobe: int, chunk: int, random_state):
    try:
        import faiss
    except ImportError:
        from priming.errors import missing_dependency

        raise missing_dependency("faiss-cpu", "corpus") from None
    n, d = P.shape
    nlist = int(max(1, min(round(np.sqrt(n)), n // 39 or 1)))
    rng = np.random.default_rng(random_state)
    sample = np.sort(rng.choice(n, min(n, 40 * nlist), replace=False))
    Ps = P[sample].astype(np.float32)
    Ps /= np.maximum(np.linalg.norm(Ps, axis=1, keepdims=True), 1e-12)
    quant = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = int(rng.integers(2**31 - 1))
    index.cp.niter = 10
    index.train(Ps)
    for a in range(0, n, chunk):
        block = np.asarray(P[a : a + chunk], dtype=np.float32)
        block = block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        index.add(block)
    index.nprobe = int(min(nprobe, nlist))
    Qn = Q / np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-12)
    s, i = index.search(np.ascontiguousarray(Qn, dtype=np.float32), min(k, n))
    return s.astype(np.float32), i.astype(np.int64)


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
    Q = _check_queries(
        query_embeddings, pool.dim if len(pool) else np.asarray(query_embeddings).shape[-1]
    )
    if len(pool) == 0 or len(Q) == 0:
        log.warning("narrow_pool: empty pool or no queries; the narrowed pool is empty")
        return pool.subset(np.zeros(0, dtype=np.int64), step="transductive")
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
    return pool.subset(keep, step="transductive" if sc is None else "transductive (same class)")
