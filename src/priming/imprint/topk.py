"""The one vector top-k: each query's ``k`` best pool rows by cosine or inner product.

``method="exact"`` (the default) works block by block — ``query_chunk`` × ``chunk``
scores at a time — and keeps a running top-k per query, pruning each block with the
current k-th best score, so memory is O(queries × k + chunk) beyond the inputs and the
pool may be a ``np.memmap`` (or a stream of blocks, :func:`topk_blocks`).

Tie rule (exact): rows are ordered by score descending, equal scores by the lower pool
row index first, so the result is the first ``k`` columns of a stable ``argsort(-S)``.
Rows whose score is not finite (NaN or infinite embeddings) are never returned; where a
query has fewer than ``k`` finite scores the row is padded with score ``-inf`` and index
``-1``.

``method="faiss"`` is faiss's exact flat search (ties in faiss's order); ``"ivf"`` an
approximate faiss inverted-file index (≈√n lists, k-means on a sample, ``nprobe`` lists
scanned per query) for large pools: measure its recall against ``"exact"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from priming._optional import require
from priming.errors import ConfigError, DataError

__all__ = ["TOPK_METHODS", "TOPK_METRICS", "check_queries", "merge_topk", "topk", "topk_blocks"]

TOPK_METRICS = ("cosine", "ip")
TOPK_METHODS = ("exact", "faiss", "ivf")

_EPS = 1e-12
_NO_ID = np.iinfo(np.int64).max  # sorts the -1 placeholders after every real row


# ------------------------------------------------------------------------- validation
def _positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ConfigError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _check_choice(name: str, v, choices) -> None:
    if v not in choices:
        raise ConfigError(f"{name} must be one of {choices}, got {v!r}")


def check_queries(queries, dim: int | None) -> np.ndarray:
    """``queries`` as a finite float32 (m, D) array (``D == dim`` unless None), or a DataError."""
    Q = np.asarray(queries)
    if Q.ndim != 2:
        raise DataError(f"query embeddings must be 2-D (n, D), got shape {Q.shape}")
    if not np.issubdtype(Q.dtype, np.number) or np.issubdtype(Q.dtype, np.complexfloating):
        raise DataError(f"query embeddings must be real numbers, got dtype {Q.dtype}")
    if dim is not None and Q.shape[1] != dim:
        raise DataError(
            f"query embeddings have {Q.shape[1]} dimensions but the pool has {dim} "
            "(embeddings from different models?)"
        )
    Q = np.ascontiguousarray(Q, dtype=np.float32)
    if not np.isfinite(Q).all():
        raise DataError("query embeddings contain NaN or infinite values")
    return Q


def _unit_rows(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), _EPS)


# ---------------------------------------------------------------------- exact kernel
def merge_topk(best_s, best_i, cand_s, cand_i, k: int, cand_rows=None):
    """Merge candidates into a running per-query top-``k`` with the module's tie rule.

    ``best_s``/``best_i`` are (q, k') arrays; candidates are either (q, c) arrays
    (``cand_rows=None``) or flat arrays with ``cand_rows`` giving each one's query.
    Non-finite candidate scores are dropped. Returns (q, k) arrays, best first.
    """
    best_s = np.asarray(best_s, np.float32)
    best_i = np.asarray(best_i, np.int64)
    qb = best_s.shape[0]
    cand_s = np.asarray(cand_s, np.float32)
    cand_i = np.asarray(cand_i, np.int64)
    if cand_rows is None:
        cand_rows = np.repeat(np.arange(qb), cand_s.shape[1] if cand_s.ndim == 2 else 0)
    rows = np.concatenate([np.repeat(np.arange(qb), best_s.shape[1]), cand_rows])
    s = np.concatenate([best_s.ravel(), cand_s.ravel()])
    i = np.concatenate([best_i.ravel(), cand_i.ravel()])
    bad = ~np.isfinite(s)
    s = np.where(bad, -np.inf, s)
    i = np.where(bad, -1, i)
    order = np.lexsort((np.where(i < 0, _NO_ID, i), -s, rows))
    rows, s, i = rows[order], s[order], i[order]
    start = np.searchsorted(rows, np.arange(qb))
    rank = np.arange(len(rows)) - start[rows]
    out_s = np.full((qb, k), -np.inf, np.float32)
    out_i = np.full((qb, k), -1, np.int64)
    keep = rank < k
    out_s[rows[keep], rank[keep]] = s[keep]
    out_i[rows[keep], rank[keep]] = i[keep]
    return out_s, out_i


def _candidates(S: np.ndarray, start: int, tau: np.ndarray, seg: int = 64):
    """(row, col) of entries of ``S[:, start:]`` at or above the row's threshold ``tau``.

    Segment maxima first (one fast pass), then an exact look only inside the segments
    whose maximum reaches the threshold, so the expensive index extraction touches few
    entries once the running top-k is good. A segment is ``seg`` columns spaced ``n_seg``
    apart (column ``a * n_seg + b`` is entry ``a`` of segment ``b``), so the maxima are
    an element-wise maximum over contiguous rows, several times faster than reducing
    short contiguous runs. ``>=`` keeps a tie with the k-th best, which the merge then
    orders by row index.
    """
    qb, n = S.shape
    n_seg = (n - start) // seg
    rows, cols = [], []
    if n_seg:
        end = start + n_seg * seg
        blocks = S[:, start:end].reshape(qb, seg, n_seg)
        hit_r, hit_b = np.nonzero(blocks.max(axis=1) >= tau[:, None])
        if len(hit_r):
            vals = blocks[hit_r, :, hit_b]  # (h, seg)
            rr, aa = np.nonzero(vals >= tau[hit_r, None])
            rows.append(hit_r[rr])
            cols.append(start + aa * n_seg + hit_b[rr])
        start = end
    if start < n:
        rr, cc = np.nonzero(S[:, start:] >= tau[:, None])
        rows.append(rr)
        cols.append(start + cc)
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(cols)


def _seed(S: np.ndarray, ids: np.ndarray, best_s, best_i, k: int):
    """Start a query chunk's top-k from the first columns of its first block (a small
    partition; every entry tied with the k-th goes to the merge, so ties stay exact)."""
    start = min(S.shape[1], max(4 * k, 256))
    head = S[:, :start]
    head = np.where(np.isfinite(head), head, -np.inf)
    kk = min(k, start)
    kth = np.partition(head, start - kk, axis=1)[:, start - kk]
    r, c = np.nonzero(head >= kth[:, None])
    best_s, best_i = merge_topk(best_s, best_i, head[r, c], ids[c], k, cand_rows=r)
    return start, best_s, best_i


def _stream(Q: np.ndarray, blocks: Iterable, k: int, query_chunk: int):
    """The exact kernel: ``blocks`` yields ``(ids, block, inv_norms or None)``; every
    block is scored against all queries, ``query_chunk`` at a time."""
    m = Q.shape[0]
    best_s = np.full((m, k), -np.inf, np.float32)
    best_i = np.full((m, k), -1, np.int64)
    seeded = np.zeros(m, bool)
    buf = None
    for ids, Pb, inv in blocks:
        if len(ids) == 0:
            continue
        if buf is None or buf.shape[1] < len(ids):
            buf = np.empty((min(query_chunk, m), len(ids)), np.float32)
        PbT = Pb.T
        for qa in range(0, m, query_chunk):
            qs = slice(qa, min(m, qa + query_chunk))
            qb = qs.stop - qa
            S = buf[:qb, : len(ids)]
            np.matmul(Q[qs], PbT, out=S)
            if inv is not None:
                S *= inv
            bs, bi = best_s[qs], best_i[qs]
            start = 0
            if not seeded[qa]:
                start, bs, bi = _seed(S, ids, bs, bi, k)
                seeded[qs] = True
            if start < S.shape[1]:
                r, c = _candidates(S, start, bs[:, -1])
                if len(r):
                    bs, bi = merge_topk(bs, bi, S[r, c], ids[c], k, cand_rows=r)
            best_s[qs], best_i[qs] = bs, bi
    return best_s, best_i


def _array_blocks(P, pool_index, chunk: int, metric: str, pool_normalized) -> Iterator:
    """(ids, float32 block, inverse norms or None) over ``P`` (or its rows ``pool_index``);
    for cosine the pool norms are read in one chunked pass and the rescaling skipped
    when every row is already unit length."""
    n = len(P) if pool_index is None else len(pool_index)

    def block(a):
        if pool_index is None:
            return np.arange(a, min(n, a + chunk)), np.asarray(P[a : a + chunk], np.float32)
        ids = np.asarray(pool_index[a : a + chunk], dtype=np.int64)
        return ids, np.asarray(P[ids], np.float32)

    inv = None
    if metric == "cosine" and pool_normalized is not True:
        norms = np.empty(n, np.float32)
        for a in range(0, n, chunk):
            b = block(a)[1]
            norms[a : a + len(b)] = np.linalg.norm(b, axis=1)
        if pool_normalized is not None or not np.all(np.abs(norms - 1) < 1e-4):
            inv = 1.0 / np.maximum(norms, _EPS)
    for a in range(0, n, chunk):
        ids, b = block(a)
        yield ids, b, None if inv is None else inv[a : a + len(b)]


# ------------------------------------------------------------------------------ API
def topk_blocks(
    queries,
    blocks: Iterable,
    k: int,
    *,
    metric: str = "cosine",
    query_chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` over a stream of pool blocks ``(ids, block)`` (e.g. the shards of
    a corpus, :meth:`priming.corpus.Corpus.iter_valid_embeddings`); returned indices
    are those ids. Always ``k`` columns: padded with ``-inf`` / ``-1`` when the stream
    holds fewer rows. Same tie rule as :func:`topk` (lower id first)."""
    _check_choice("metric", metric, TOPK_METRICS)
    k = _positive_int("k", k)
    query_chunk = _positive_int("query_chunk", query_chunk)
    Q = check_queries(queries, None)
    if metric == "cosine":
        Q = _unit_rows(Q)
    D = Q.shape[1]

    def prepared():
        for ids, b in blocks:
            b = np.asarray(b, np.float32)
            if b.ndim != 2 or b.shape[1] != D:
                raise DataError(f"pool block has shape {b.shape}; the queries are {D}-d")
            inv = None
            if metric == "cosine":
                inv = 1.0 / np.maximum(np.linalg.norm(b, axis=1), _EPS)
            yield np.asarray(ids, np.int64), b, inv

    if len(Q) == 0:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return _stream(Q, prepared(), k, query_chunk)


def topk(
    queries,
    pool,
    k: int,
    *,
    metric: str = "cosine",
    method: str = "exact",
    pool_index=None,
    chunk: int = 16384,
    query_chunk: int = 1024,
    pool_normalized: bool | None = None,
    nprobe: int = 16,
    random_state=0,
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's top-``k`` pool rows: ``(scores float32 (m, k'), indices int64 (m, k'))``
    sorted best first, ``k' = min(k, searchable rows)``.

    Parameters
    ----------
    queries : array (m, D)
    pool : array (n, D)
        May be a ``np.memmap``; the exact method reads it ``chunk`` rows at a time.
    k : int
        Neighbours per query.
    metric : {"cosine", "ip"}
        Cosine similarity (both sides scaled to unit length) or the raw inner product.
    method : {"exact", "faiss", "ivf"}
        See the module docstring; ``faiss`` and ``ivf`` need ``priming[corpus]``.
    pool_index : int array or None
        Search only these pool rows; the returned indices are still pool rows.
    chunk, query_chunk : int
        Block sizes of the exact search (pool rows × queries per score block).
    pool_normalized : bool or None
        For cosine: whether pool rows are already unit length (None: checked).
    nprobe, random_state
        The ``ivf`` method's lists scanned per query and k-means seed.
    """
    _check_choice("metric", metric, TOPK_METRICS)
    _check_choice("method", method, TOPK_METHODS)
    k = _positive_int("k", k)
    chunk = _positive_int("chunk", chunk)
    query_chunk = _positive_int("query_chunk", query_chunk)
    nprobe = _positive_int("nprobe", nprobe)
    if getattr(pool, "ndim", None) != 2:
        raise DataError(f"pool embeddings must be 2-D (n, D), got shape {np.shape(pool)}")
    Q = check_queries(queries, pool.shape[1])
    if pool_index is not None:
        pool_index = np.asarray(pool_index)
        if pool_index.ndim != 1 or (pool_index.size and pool_index.dtype.kind not in "iu"):
            raise DataError("pool_index must be a 1-D array of integer pool rows")
        if pool_index.size and (pool_index.min() < 0 or pool_index.max() >= len(pool)):
            raise DataError(f"pool_index has rows outside [0, {len(pool)})")
    n = len(pool) if pool_index is None else len(pool_index)
    k = min(k, n)
    m = len(Q)
    if k == 0 or m == 0:
        return np.zeros((m, k), np.float32), np.zeros((m, k), np.int64)
    if metric == "cosine":
        Q = _unit_rows(Q)
    if method == "exact":
        blocks = _array_blocks(pool, pool_index, chunk, metric, pool_normalized)
        return _stream(Q, blocks, k, query_chunk)
    P = pool if pool_index is None else pool[pool_index]
    if method == "faiss":
        s, i = _faiss_flat(Q, P, k, metric)
    else:
        s, i = _faiss_ivf(Q, P, k, metric, nprobe, 4 * chunk, random_state)
    if pool_index is not None:
        i = np.where(i >= 0, pool_index[np.maximum(i, 0)], -1)
    return s, i


# ------------------------------------------------------------------------------ faiss
def _faiss():
    return require("faiss", extra="corpus", package="faiss-cpu")


def _faiss_flat(Q: np.ndarray, P, k: int, metric: str):
    faiss = _faiss()
    P = np.ascontiguousarray(P, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(P, axis=1, keepdims=True)
        if not np.allclose(norms, 1.0, atol=1e-3):
            P = P / np.maximum(norms, _EPS)
    s, i = faiss.knn(np.ascontiguousarray(Q), P, k, metric=faiss.METRIC_INNER_PRODUCT)
    return s.astype(np.float32), i.astype(np.int64)


def _faiss_ivf(Q: np.ndarray, P, k: int, metric: str, nprobe: int, chunk: int, random_state):
    faiss = _faiss()
    n, d = P.shape
    nlist = int(max(1, min(round(np.sqrt(n)), n // 39 or 1)))
    rng = np.random.default_rng(random_state)
    sample = np.sort(rng.choice(n, min(n, 40 * nlist), replace=False))
    scale = _unit_rows if metric == "cosine" else (lambda X: X)
    quant = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = int(rng.integers(2**31 - 1))
    index.cp.niter = 10
    index.train(np.ascontiguousarray(scale(np.asarray(P[sample], np.float32))))
    for a in range(0, n, chunk):
        index.add(np.ascontiguousarray(scale(np.asarray(P[a : a + chunk], np.float32))))
    index.nprobe = int(min(nprobe, nlist))
    s, i = index.search(np.ascontiguousarray(Q, dtype=np.float32), k)
    return s.astype(np.float32), i.astype(np.int64)
