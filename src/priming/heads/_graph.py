"""k-nearest-neighbour graphs over a batch of embeddings (for the transductive heads).

Exact cosine top-k in row chunks (memory O(chunk × n)); ties go to the lower index so
graphs are deterministic. Inputs are expected l2-normalised (inner product = cosine).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from priming.imprint.topk import topk

__all__ = ["knn_search", "knn_matrix"]


def knn_search(
    Q: np.ndarray, R: np.ndarray, k: int, exclude_self: bool = False, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows of ``R`` by inner product for every row of ``Q``.

    Returns ``(indices, similarities)``, both ``(m, k')`` with ``k' = min(k, available)``,
    sorted by decreasing similarity (ties: lower index first). ``exclude_self`` (``Q`` is
    ``R``) drops each row's own index. The search is :func:`priming.imprint.topk.topk`;
    the similarities of the rows it found are recomputed in ``Q``'s precision."""
    m, n = Q.shape[0], R.shape[0]
    k = int(min(k, n - 1 if exclude_self else n))
    if k <= 0 or m == 0:
        return np.zeros((m, 0), np.int64), np.zeros((m, 0))
    _, idx = topk(Q, R, k + int(exclude_self), metric="ip", query_chunk=chunk)
    if exclude_self:
        own = idx == np.arange(m)[:, None]
        # drop each row's own index (or, when it fell outside, the last candidate)
        own[:, -1] |= ~own.any(axis=1)
        idx = idx[~own].reshape(m, k)
    sim = np.einsum("md,mkd->mk", Q, R[idx])
    return idx, sim


def knn_matrix(idx: np.ndarray, sim: np.ndarray, n_cols: int) -> sparse.csr_matrix:
    """Sparse ``(m, n_cols)`` matrix with ``sim[i, j]`` at ``(i, idx[i, j])``."""
    m, k = idx.shape
    rows = np.repeat(np.arange(m), k)
    return sparse.csr_matrix((sim.ravel(), (rows, idx.ravel())), shape=(m, n_cols))
