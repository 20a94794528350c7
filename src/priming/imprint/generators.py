"""Proxy generators (GEN): turn each class's rows into one or more proxy vectors.

Every generator has the signature ``gen(X, y, n_classes, n_proxies, seed, ls_lambda)``
with ``y`` integer class indices in ``[0, n_classes)`` (every class present) and returns
``(W, proxy_labels)``: a float32 proxy matrix and its class indices, sorted by class so
that each class's proxies are one contiguous block. Use :func:`generate` as the entry
point; :data:`GENERATORS` is the registry.

Rule shared by every ``k``-proxy generator (as the IMPRINT reference code): a class
with at most ``k`` rows gets all its rows as proxies.

Randomness: as in the reference code (one seed for every class), every class consumes
the *same* random stream, started afresh from ``seed``. A class's proxies therefore
depend only on its own rows and the seed -- not on the other classes, their order, or
how classes are batched -- which makes the generators class-order invariant and lets
``partial_fit`` add classes exactly as ``fit`` on the union would (``none`` excepted).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg

from priming.errors import ConfigError
from priming.imprint.kmeans import (
    batched_fps,
    batched_kmeans,
    batched_kmedoids,
    iter_class_blocks,
    pad_block,
    single_threaded_blas,
)
from priming.imprint.validation import (
    as_float_matrix,
    check_class_indices,
    check_int,
    check_random_state,
)
from priming.registry import Registry

__all__ = [
    "GENERATORS",
    "SINGLE_PROXY_GENERATORS",
    "GLOBAL_GENERATORS",
    "generate",
    "class_means",
    "least_squares_weights",
    "class_uniforms",
]

Generator = Callable[..., tuple[np.ndarray, np.ndarray]]
GENERATORS: Registry[Generator] = Registry("generator")

SINGLE_PROXY_GENERATORS = frozenset({"mean", "ls"})
"""Generators that make exactly one proxy per class (``n_proxies`` must be 1)."""
GLOBAL_GENERATORS = frozenset({"ls", "kls"})
"""Generators whose proxies depend on all classes at once (no class-incremental update)."""


def _sorted_groups(y: np.ndarray, n_classes: int):
    order = np.argsort(y, kind="stable")
    counts = np.bincount(y, minlength=n_classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, counts, starts


def class_means(X: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class means ``(n_classes, D)`` in float64: one sparse indicator product."""
    import scipy.sparse as sp

    counts = np.bincount(y, minlength=n_classes)
    ind = sp.csr_matrix((np.ones(y.size), (y, np.arange(y.size))), shape=(n_classes, y.size))
    sums = np.asarray(ind @ X.astype(np.float64, copy=False))
    return sums / counts[:, None]


def _mean(X, y, n_classes, k, seed, ls_lambda):
    return class_means(X, y, n_classes).astype(np.float32), np.arange(n_classes)


def _all(X, y, n_classes, k, seed, ls_lambda):
    order = np.argsort(y, kind="stable")
    return X[order].astype(np.float32), y[order]


def _small_and_big(counts: np.ndarray, k: int):
    small = np.flatnonzero(counts <= k)
    big = np.flatnonzero(counts > k)
    return small, big


def _assemble(parts: list[tuple[np.ndarray, np.ndarray]], D: int):
    """Concatenate (W, labels) parts and sort stably by class."""
    parts = [p for p in parts if p[1].size]
    if not parts:
        return np.zeros((0, D), np.float32), np.zeros(0, np.int64)
    W = np.concatenate([p[0] for p in parts]).astype(np.float32, copy=False)
    lab = np.concatenate([p[1] for p in parts]).astype(np.int64, copy=False)
    order = np.argsort(lab, kind="stable")
    return W[order], lab[order]


def _rows_of(Xs, starts, counts, classes):
    """All rows (sorted by class) of the given classes, with their labels."""
    if classes.size == 0:
        return Xs[:0], np.zeros(0, np.int64)
    idx = np.concatenate([np.arange(starts[c], starts[c] + counts[c]) for c in classes])
    return Xs[idx], np.repeat(classes, counts[classes])


def _rank_in_class(y: np.ndarray) -> np.ndarray:
    """Position of each row among the rows of its class (in original order)."""
    order = np.argsort(y, kind="stable")
    ys = y[order]
    first = np.searchsorted(ys, ys, side="left")
    rank = np.empty_like(order)
    rank[order] = np.arange(ys.size) - first
    return rank


def class_uniforms(y: np.ndarray, seed: int) -> np.ndarray:
    """One uniform per row; every class gets the same sequence (by rank within class)."""
    rank = _rank_in_class(y)
    u = np.random.default_rng(seed).random(int(rank.max()) + 1 if rank.size else 0)
    return u[rank]


def _per_block(X, y, n_classes, k, seed, pick):
    """Shared driver: small classes keep all rows, big ones go through ``pick`` per block.

    ``pick(Xpad, mask, rng)`` returns either proxy vectors ``(B, k, D)`` or positions
    ``(B, k)`` into the padded block.
    """
    order, counts, starts = _sorted_groups(y, n_classes)
    Xs = X[order]
    small, big = _small_and_big(counts, k)
    parts = [_rows_of(Xs, starts, counts, small)]
    for block in iter_class_blocks(counts, big, X.shape[1], k):
        Xpad, mask, idx = pad_block(Xs, starts, counts, block)
        with single_threaded_blas():
            res = pick(Xpad, mask, np.random.default_rng(seed))
        if res.ndim == 2:  # positions
            res = Xs[idx[np.arange(len(block))[:, None], res]]
        parts.append((res.reshape(-1, X.shape[1]), np.repeat(block, k)))
    return _assemble(parts, X.shape[1])


def _kmeans(X, y, n_classes, k, seed, ls_lambda):
    return _per_block(X, y, n_classes, k, seed, lambda Xp, m, r: batched_kmeans(Xp, m, k, r)[0])


def _kmedoids(X, y, n_classes, k, seed, ls_lambda):
    return _per_block(X, y, n_classes, k, seed, lambda Xp, m, r: batched_kmedoids(Xp, m, k, r))


def _fps(X, y, n_classes, k, seed, ls_lambda):
    return _per_block(X, y, n_classes, k, seed, lambda Xp, m, r: batched_fps(Xp, m, k, r))


def _top_k_per_class(y: np.ndarray, key: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the ``k`` rows with the largest ``key`` in each class (all if fewer)."""
    order = np.lexsort((-key, y))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(y.size) - np.repeat(starts, counts)
    # classes with <= k rows keep all rows in their original order
    keep = order[rank < k]
    small = counts[y[keep]] <= k
    keep_small = np.flatnonzero(counts[y] <= k)
    return np.concatenate([keep[~small], keep_small])


def _random(X, y, n_classes, k, seed, ls_lambda):
    counts = np.bincount(y, minlength=n_classes)
    keep = _top_k_per_class(y, class_uniforms(y, seed), counts, k)
    return _assemble([(X[keep], y[keep])], X.shape[1])


def _cov_max(X, y, n_classes, k, seed, ls_lambda):
    """Rows with the largest column sums of the class's n x n sample covariance.

    ``np.cov(X_c)`` treats rows as variables; its column sums are
    ``z_j . sum_i z_i / (D - 1)`` with ``z`` the row-centred rows, so the n x n matrix is
    never formed.
    """
    counts = np.bincount(y, minlength=n_classes)
    Z = X.astype(np.float64) - X.mean(axis=1, keepdims=True, dtype=np.float64)
    S = np.zeros((n_classes, X.shape[1]))
    np.add.at(S, y, Z)
    key = np.einsum("ij,ij->i", Z, S[y]) / max(X.shape[1] - 1, 1)
    keep = _top_k_per_class(y, key, counts, k)
    return _assemble([(X[keep], y[keep])], X.shape[1])


def least_squares_weights(
    X: np.ndarray, y: np.ndarray, n_classes: int, ls_lambda: float
) -> np.ndarray:
    """``W = (1/C) M^T (Sigma_T + mu_G mu_G^T + lambda I)^{-1}`` by a linear solve.

    ``Sigma_T + mu_G mu_G^T`` is the (biased) second moment ``X^T X / N``; the system is
    symmetric positive definite for ``lambda > 0``. Returns ``(n_classes, D)`` float64.
    """
    Xd = X.astype(np.float64)
    A = Xd.T @ Xd / Xd.shape[0]
    A[np.diag_indices_from(A)] += ls_lambda
    M = class_means(X, y, n_classes)  # (C, D)
    try:
        sol = scipy.linalg.solve(A, M.T, assume_a="pos")
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        sol = scipy.linalg.lstsq(A, M.T)[0]
    return sol.T / n_classes


def _ls(X, y, n_classes, k, seed, ls_lambda):
    return least_squares_weights(X, y, n_classes, ls_lambda).astype(np.float32), np.arange(
        n_classes
    )


def _kls(X, y, n_classes, k, seed, ls_lambda):
    """k-means inside each class, every cluster a pseudo-class, one least-squares solve.

    A class with at most ``k`` rows contributes each row as its own pseudo-class.
    """
    order, counts, starts = _sorted_groups(y, n_classes)
    Xs = X[order]
    pseudo = np.empty(X.shape[0], dtype=np.int64)  # pseudo-class of each sorted row
    parent = []
    nxt = 0
    small, big = _small_and_big(counts, k)
    for c in small:
        pseudo[starts[c] : starts[c] + counts[c]] = np.arange(nxt, nxt + counts[c])
        parent.append(np.full(counts[c], c))
        nxt += counts[c]
    for block in iter_class_blocks(counts, big, X.shape[1], k):
        Xpad, mask, idx = pad_block(Xs, starts, counts, block)
        with single_threaded_blas():
            _, lab = batched_kmeans(Xpad, mask, k, np.random.default_rng(seed))
        base = nxt + np.arange(len(block)) * k
        pseudo[idx[mask]] = (base[:, None] + lab)[mask]
        parent.append(np.repeat(block, k))
        nxt += len(block) * k
    parent = np.concatenate(parent)
    # drop pseudo-classes that ended up empty (empty k-means clusters)
    used = np.bincount(pseudo, minlength=nxt) > 0
    remap = np.cumsum(used) - 1
    pseudo = remap[pseudo]
    parent = parent[used]
    W = least_squares_weights(Xs, pseudo, int(used.sum()), ls_lambda)
    return _assemble([(W, parent)], X.shape[1])


def _none(X, y, n_classes, k, seed, ls_lambda):
    """Random Xavier-uniform weights (a control): ``k`` per class, independent of the data."""
    P = n_classes * k
    limit = np.sqrt(6.0 / (X.shape[1] + P))
    W = np.random.default_rng(seed).uniform(-limit, limit, size=(P, X.shape[1]))
    W = W.astype(np.float32)
    return W, np.repeat(np.arange(n_classes), k)


for _name, _fn in {
    "mean": _mean,
    "all": _all,
    "random": _random,
    "kmeans": _kmeans,
    "kmedoids": _kmedoids,
    "fps": _fps,
    "cov_max": _cov_max,
    "ls": _ls,
    "kls": _kls,
    "none": _none,
}.items():
    GENERATORS.register(_name, _fn)


def generate(
    X: np.ndarray,
    y: np.ndarray,
    method: str = "mean",
    n_proxies: int | None = 1,
    *,
    n_classes: int | None = None,
    ls_lambda: float = 0.05,
    random_state: object = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate proxies for every class.

    Parameters
    ----------
    X : (n, D) array of (already NORMpre-normalised) rows.
    y : (n,) integer class indices in ``[0, n_classes)``; every class needs a row.
    method : a name in :data:`GENERATORS`.
    n_proxies : proxies per class ``k``; ``None`` means all rows. Must be 1 for
        ``mean`` and ``ls``; ignored by ``all``.
    ls_lambda : ridge ``lambda`` of ``ls``/``kls`` (> 0).
    random_state : seed or ``numpy.random.Generator`` (``random``, ``kmeans``,
        ``kmedoids``, ``fps``, ``kls``, ``none``).

    Returns
    -------
    W : (P, D) float32 proxies, grouped by class in increasing class order.
    proxy_labels : (P,) int64 class index of each proxy.
    """
    fn = GENERATORS.get(method)
    X = as_float_matrix(X, "X")
    if n_classes is None:
        n_classes = int(np.max(y)) + 1 if np.size(y) else 0
    y = check_class_indices(y, X.shape[0], n_classes)
    k = check_int(n_proxies, "n_proxies", allow_none=True)
    if method in SINGLE_PROXY_GENERATORS and k != 1:
        raise ConfigError(
            f"n_proxies={n_proxies!r} is not valid with generator={method!r}, which makes "
            "exactly one proxy per class; use n_proxies=1"
        )
    if method in ("ls", "kls") and not (np.isfinite(ls_lambda) and ls_lambda > 0):
        raise ConfigError(f"ls_lambda={ls_lambda!r} is not valid; expected a float > 0")
    if k is None:
        if method == "none":
            raise ConfigError("n_proxies=None (all rows) is not valid with generator='none'")
        if method == "kls":  # every row its own pseudo-class
            k = int(np.bincount(y, minlength=n_classes).max())
        else:
            method, fn = "all", GENERATORS.get("all")
    seed = int(check_random_state(random_state).integers(2**63 - 1))
    W, labels = fn(X, y, n_classes, k, seed, float(ls_lambda))
    return np.ascontiguousarray(W, dtype=np.float32), labels.astype(np.int64, copy=False)
