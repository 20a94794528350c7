"""k-nearest-neighbour graphs over a batch of embeddings (for the transductive heads).

Exact cosine top-k in row chunks (memory O(chunk × n)); ties go to the lower index so
graphs are deterministic. Inputs are expected l2-normalised (inner product = cosine).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["knn_search", "knn_matrix"]


def knn_search(
    Q: np.ndarray, R: np.ndarray, k: int, exclude_self: bool = False, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows of ``R`` by inner product for every row of ``Q``.

    Returns ``(indices, similarities)``, both ``(m, k')`` with ``k' = min(k, available)``,
    sorted by decreasing similarity (ties: lower index first). ``exclude_self`` (``Q`` is
    ``R``) drops each row's own index."""
    m, n = Q.shape[0], R.shape[0]
    k = int(min(k, n - 1 if exclude_self else n))
    if k <= 0 or m == 0:
        return np.zeros((m, 0), np.int64), np.zeros((m, 0))
    idx = np.empty((m, k), np.int64)
    sim = np.empty((m, k))
    for a in range(0, m, chunk):
        S = Q[a : a + chunk] @ R.T
        if exclude_self:
            rows = np.arange(S.shape[0])
            S[rows, a + rows] = -np.inf
        order = np.argsort(-S, axis=1, kind="stable")[:, :k]
        idx[a : a + len(S)] = order
        sim[a : a + len(S)] = np.take_along_axis(S, order, axis=1)
    return idx, sim


def knn_matrix(idx: np.ndarray, sim: np.ndarray, n_cols: int) -> sparse.csr_matrix:
    """Sparse ``(m, n_cols)`` matrix with ``sim[i, j]`` at ``(i, idx[i, j])``."""
    m, k = idx.shape
    rows = np.repeat(np.arange(m), k)
    return sparse.csr_matrix((sim.ravel(), (rows, idx.ravel())), shape=(m, n_cols))
