"""Chunked exact cosine top-k: memory O(queries × k + chunk), never the full matrix."""

from __future__ import annotations

import numpy as np

__all__ = ["cosine_topk"]

_EPS = 1e-12


def _merge(best_s, best_i, cand_rows, cand_s, cand_i, k):
    """Merge per-row candidates into the running per-row top-k (all vectorised)."""
    qb = best_s.shape[0]
    rows = np.concatenate([np.repeat(np.arange(qb), k), cand_rows])
    s = np.concatenate([best_s.ravel(), cand_s])
    i = np.concatenate([best_i.ravel(), cand_i])
    order = np.lexsort((-s, rows))
    rows, s, i = rows[order], s[order], i[order]
    start = np.searchsorted(rows, np.arange(qb))
    rank = np.arange(len(rows)) - start[rows]
    keep = rank < k
    return s[keep].reshape(qb, k), i[keep].reshape(qb, k)


def _candidates(S: np.ndarray, start: int, tau: np.ndarray, seg: int = 64):
    """(row, col) of entries of ``S[:, start:]`` above the row's threshold ``tau``.

    Segment maxima first (one fast pass), then an exact look only inside the segments
    whose maximum beats the threshold, so the expensive index extraction touches few
    entries once the running top-k is good.
    """
    qb, n = S.shape
    n_seg = (n - start) // seg
    rows, cols = [], []
    if n_seg:
        end = start + n_seg * seg
        blocks = S[:, start:end].reshape(qb, n_seg, seg)
        hit_r, hit_s = np.nonzero(blocks.max(axis=2) > tau[:, None])
        if len(hit_r):
            vals = blocks[hit_r, hit_s]  # (h, seg)
            rr, jj = np.nonzero(vals > tau[hit_r, None])
            rows.append(hit_r[rr])
            cols.append(start + hit_s[rr] * seg + jj)
        start = end
    if start < n:
        rr, cc = np.nonzero(S[:, start:] > tau[:, None])
        rows.append(rr)
        cols.append(start + cc)
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(cols)


def _row_norms(P: np.ndarray, index: np.ndarray | None, chunk: int) -> np.ndarray:
    n = len(P) if index is None else len(index)
    out = np.empty(n, dtype=np.float32)
    for a in range(0, n, chunk):
        block = P[a : a + chunk] if index is None else P[index[a : a + chunk]]
        out[a : a + len(block)] = np.linalg.norm(block, axis=1)
    return out


def cosine_topk(
    queries: np.ndarray,
    pool: np.ndarray,
    k: int,
    *,
    pool_index: np.ndarray | None = None,
    query_chunk: int = 1024,
    pool_chunk: int = 16384,
    pool_normalized: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` pool rows by cosine similarity for every query.

    Works block by block (``query_chunk`` × ``pool_chunk`` scores at a time) and keeps a
    running top-k per query, pruning each block with the current k-th best score, so
    memory is O(queries × k + chunk) beyond the inputs.

    Parameters
    ----------
    queries : array (m, D)
    pool : array (n, D)
        May be a ``np.memmap``; it is only read in chunks.
    k : int
        Neighbours per query (capped at the number of searchable rows).
    pool_index : int array or None
        Restrict the search to these pool rows; returned indices are still pool rows.
    pool_normalized : bool or None
        Whether pool rows are already unit length (None: checked in one chunked pass).

    Returns
    -------
    scores : float32 (m, k') sorted descending, indices : int64 (m, k') pool rows.
    """
    Q = np.asarray(queries, dtype=np.float32)
    Q = Q / np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), _EPS)
    n = len(pool) if pool_index is None else len(pool_index)
    k = int(min(k, n))
    m = Q.shape[0]
    if k <= 0 or m == 0:
        return np.zeros((m, max(k, 0)), np.float32), np.zeros((m, max(k, 0)), np.int64)
    inv = None
    if pool_normalized is not True:
        norms = _row_norms(pool, pool_index, pool_chunk)
        if pool_normalized is None and np.all(np.abs(norms - 1) < 1e-4):
            inv = None
        else:
            inv = 1.0 / np.maximum(norms, _EPS)
    out_s = np.empty((m, k), np.float32)
    out_i = np.empty((m, k), np.int64)
    buf = np.empty((min(query_chunk, m), min(pool_chunk, n)), np.float32)
    for qa in range(0, m, query_chunk):
        Qb = Q[qa : qa + query_chunk]
        qb = len(Qb)
        best_s = np.full((qb, k), -np.inf, np.float32)
        best_i = np.full((qb, k), -1, np.int64)
        for pa in range(0, n, pool_chunk):
            if pool_index is None:
                Pb = np.asarray(pool[pa : pa + pool_chunk], dtype=np.float32)
                ids = np.arange(pa, pa + len(Pb))
            else:
                ids = np.asarray(pool_index[pa : pa + pool_chunk], dtype=np.int64)
                Pb = np.asarray(pool[ids], dtype=np.float32)
            S = buf[:qb, : len(Pb)]
            np.matmul(Qb, Pb.T, out=S)
            if inv is not None:
                S *= inv[pa : pa + len(Pb)]
            start = 0
            if pa == 0:
                # seed the running top-k from the first few columns (a small argpartition)
                start = min(len(Pb), max(4 * k, 256))
                head = S[:, :start]
                kk = min(k, start)
                top = np.argpartition(head, start - kk, axis=1)[:, start - kk :]
                r = np.repeat(np.arange(qb), kk)
                c = top.ravel()
                best_s, best_i = _merge(best_s, best_i, r, S[r, c], ids[c], k)
                if start == len(Pb):
                    continue
            r, c = _candidates(S, start, best_s[:, -1])
            best_s, best_i = _merge(best_s, best_i, r, S[r, c], ids[c], k)
        out_s[qa : qa + qb] = best_s
        out_i[qa : qa + qb] = best_i
    return out_s, out_i
