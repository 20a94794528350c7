"""Batched k-means, k-medoids and farthest-point sampling across many classes at once.

All classes that need clustering are packed into padded 3-D blocks ``(B, n_max, D)``
(classes sorted by size, blocks bounded by :data:`BLOCK_ELEMENTS`), so each Lloyd
iteration of every class in a block is a couple of batched matrix products instead of a
Python loop calling scikit-learn once per class.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BLOCK_ELEMENTS",
    "single_threaded_blas",
    "iter_class_blocks",
    "batched_kmeans",
    "batched_kmedoids",
    "batched_fps",
    "kmeans_plusplus",
]

BLOCK_ELEMENTS = 1 << 24
"""Upper bound on ``B * n_max * max(D, n_max, k)`` elements of one padded block."""


def single_threaded_blas():
    """Context manager limiting BLAS to one thread (as scikit-learn's own KMeans does).

    The batched products here are many small matrices; BLAS threads only add
    synchronisation, which becomes very costly on a loaded machine.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def iter_class_blocks(counts: np.ndarray, classes: np.ndarray, width: int, k: int):
    """Yield arrays of class indices (sorted by size) whose padded block fits the budget."""
    order = classes[np.argsort(counts[classes], kind="stable")]
    i = 0
    while i < order.size:
        j = i + 1
        while j < order.size:
            n_next = int(counts[order[j]])
            if (j + 1 - i) * n_next * max(width, n_next, k) > BLOCK_ELEMENTS:
                break
            j += 1
        yield order[i:j]
        i = j


def pad_block(
    Xs: np.ndarray, starts: np.ndarray, counts: np.ndarray, block: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gather the rows of ``block``'s classes into ``(B, n_max, D)`` with a validity mask.

    ``Xs`` holds the rows sorted by class; returns ``(Xpad, mask, row_index)`` where
    ``row_index`` gives each padded slot's row in ``Xs`` (0 for padding).
    """
    cnt = counts[block]
    n_max = int(cnt.max())
    pos = np.arange(n_max)
    mask = pos[None, :] < cnt[:, None]
    idx = np.where(mask, starts[block][:, None] + pos[None, :], 0)
    Xpad = Xs[idx]
    Xpad[~mask] = 0
    return Xpad, mask, idx


def _sqdist(A: np.ndarray, aa: np.ndarray, B: np.ndarray, bb: np.ndarray) -> np.ndarray:
    """Batched squared distances ``(Bt, n, m)`` from norms and one batched product.

    ``B`` should be the smaller operand: its transpose is made contiguous so numpy's
    batched matmul takes the BLAS path.
    """
    d2 = np.matmul(A, np.ascontiguousarray(B.transpose(0, 2, 1)))
    d2 *= -2
    d2 += aa[:, :, None]
    d2 += bb[:, None, :]
    np.maximum(d2, 0, out=d2)
    return d2


def kmeans_plusplus(
    Xpad: np.ndarray, mask: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """Greedy k-means++ seeding (as scikit-learn: ``2 + log k`` trials per step), batched.

    Returns the chosen row positions ``(B, k)`` inside each padded class. The random
    draws are shared by every class of the block (each class sees the same uniform
    sequence), so a class's result depends only on its own rows and the generator's
    state, never on which other classes share the block.
    """
    B, n, _ = Xpad.shape
    cnt = mask.sum(1)
    xx = np.einsum("bnd,bnd->bn", Xpad, Xpad)
    n_trials = 2 + int(np.log(k))
    ar = np.arange(B)
    chosen = np.zeros((B, k), dtype=np.int64)
    chosen[:, 0] = np.minimum((rng.random() * cnt).astype(np.int64), cnt - 1)
    c0 = Xpad[ar, chosen[:, 0]][:, None, :]
    closest = _sqdist(Xpad, xx, c0, xx[ar, chosen[:, 0]][:, None])[:, :, 0]
    closest[~mask] = 0
    for j in range(1, k):
        cum = np.cumsum(closest, axis=1, dtype=np.float64)
        pot = cum[:, -1]
        r = rng.random(n_trials)[None, :] * pot[:, None]
        cand = np.empty((B, n_trials), dtype=np.int64)
        for t in range(n_trials):  # n_trials is tiny (2-5)
            cand[:, t] = (cum < r[:, t : t + 1]).sum(1)
        cand = np.minimum(cand, cnt[:, None] - 1)
        C = Xpad[ar[:, None], cand]
        d2 = _sqdist(Xpad, xx, C, xx[ar[:, None], cand]).transpose(0, 2, 1)  # (B, T, n)
        np.minimum(d2, closest[:, None, :], out=d2)
        d2[~np.broadcast_to(mask[:, None, :], d2.shape)] = 0
        best = d2.sum(2).argmin(1)
        chosen[:, j] = cand[ar, best]
        closest = d2[ar, best]
    return chosen


def _segment_means(
    Xa: np.ndarray, ma: np.ndarray, lab: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-(class, cluster) sums ``(b, k, D)`` and sizes ``(b, k)`` of the valid rows.

    One sparse (b*k x b*n) indicator times the flat rows: O(n D) work, not O(n D k).
    """
    import scipy.sparse as sp

    b, n, D = Xa.shape
    flat = (np.arange(b)[:, None] * k + lab)[ma]
    cols = (np.arange(b)[:, None] * n + np.arange(n)[None, :])[ma]
    ind = sp.csr_matrix((np.ones(flat.size, dtype=Xa.dtype), (flat, cols)), shape=(b * k, b * n))
    sums = np.asarray(ind @ Xa.reshape(b * n, D)).reshape(b, k, D)
    sizes = np.bincount(flat, minlength=b * k).reshape(b, k)
    return sums, sizes


def batched_kmeans(
    Xpad: np.ndarray,
    mask: np.ndarray,
    k: int,
    rng: np.random.Generator,
    *,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means on every class of a padded block at once.

    Returns ``(centers (B, k, D), labels (B, n))`` (padding labelled -1). Seeded with
    greedy k-means++; a class stops when no assignment changes or its total squared
    centre shift falls below ``tol`` times its mean feature variance (as scikit-learn);
    converged classes drop out of the batch; an empty cluster keeps its centre.

    When classes have fewer rows than dimensions (``n <= D``, the usual case) the
    iterations run on each class's Gram matrix: centres are kept as averaging weights
    over rows, so an iteration costs ``O(n^2 k)`` instead of ``O(n D k)``.
    """
    if Xpad.shape[1] <= Xpad.shape[2]:
        return _kmeans_gram(Xpad, mask, k, rng, max_iter=max_iter, tol=tol)
    return _kmeans_features(Xpad, mask, k, rng, max_iter=max_iter, tol=tol)


def _variance_tol(Xpad: np.ndarray, mask: np.ndarray, tol: float) -> np.ndarray:
    """scikit-learn's tolerance per class: ``tol`` times the mean feature variance."""
    cnt = mask.sum(1)
    mean = Xpad.sum(1, dtype=np.float64) / cnt[:, None]  # padding rows are zero
    sq = np.einsum("bnd,bnd->b", Xpad, Xpad, dtype=np.float64)
    return tol * np.maximum(sq / cnt - np.einsum("bd,bd->b", mean, mean), 0) / Xpad.shape[2]


def _gram_plusplus(
    G: np.ndarray, xx: np.ndarray, mask: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """Greedy k-means++ on Gram matrices (same draws as :func:`kmeans_plusplus`)."""
    B, n, _ = G.shape
    cnt = mask.sum(1)
    n_trials = 2 + int(np.log(k))
    ar = np.arange(B)
    chosen = np.zeros((B, k), dtype=np.int64)
    chosen[:, 0] = np.minimum((rng.random() * cnt).astype(np.int64), cnt - 1)
    c0 = chosen[:, 0]
    closest = np.maximum(xx + xx[ar, c0][:, None] - 2 * G[ar, c0], 0)
    closest[~mask] = 0
    for j in range(1, k):
        cum = np.cumsum(closest, axis=1, dtype=np.float64)
        r = rng.random(n_trials)[None, :] * cum[:, -1:]
        cand = np.empty((B, n_trials), dtype=np.int64)
        for t in range(n_trials):
            cand[:, t] = (cum < r[:, t : t + 1]).sum(1)
        cand = np.minimum(cand, cnt[:, None] - 1)
        d2 = xx[:, None, :] + xx[ar[:, None], cand][:, :, None] - 2 * G[ar[:, None], cand]
        np.maximum(d2, 0, out=d2)
        np.minimum(d2, closest[:, None, :], out=d2)
        d2[~np.broadcast_to(mask[:, None, :], d2.shape)] = 0
        best = d2.sum(2).argmin(1)
        chosen[:, j] = cand[ar, best]
        closest = d2[ar, best]
    return chosen


def _kmeans_gram(Xpad, mask, k, rng, *, max_iter, tol):
    B, n, D = Xpad.shape
    ar = np.arange(B)
    G = np.matmul(Xpad, np.ascontiguousarray(Xpad.transpose(0, 2, 1)))  # (B, n, n)
    xx = np.einsum("bii->bi", G).copy()
    tol_c = _variance_tol(Xpad, mask, tol)
    chosen = _gram_plusplus(G, xx, mask, k, rng)
    A = np.zeros((B, k, n), dtype=Xpad.dtype)  # centre j = A[j] @ X
    A[ar[:, None], np.arange(k)[None, :], chosen] = 1
    eye = np.eye(k, dtype=Xpad.dtype)
    fmask = mask.astype(Xpad.dtype)
    active = ar.copy()
    Ga, Aa, ma, fa = G, A, mask, fmask
    for _ in range(max_iter):
        GA = np.matmul(Ga, np.ascontiguousarray(Aa.transpose(0, 2, 1)))  # (b, n, k)
        cc = np.einsum("bkn,bnk->bk", Aa, GA)
        d = cc[:, None, :] - 2 * GA
        lab = d.argmin(2)
        onehot = eye[lab] * fa[:, :, None]  # (b, n, k)
        sizes = onehot.sum(1)  # (b, k)
        newA = np.where(
            sizes[:, :, None] > 0,
            onehot.transpose(0, 2, 1) / np.maximum(sizes, 1)[:, :, None],
            Aa,
        )
        dA = newA - Aa
        shift = np.einsum("bkn,bkn->b", np.matmul(dA, Ga), dA)
        A[active] = newA
        done = (np.abs(dA).max((1, 2)) == 0) | (shift <= tol_c[active])
        if done.all():
            break
        if done.any():
            keep = ~done
            active = active[keep]
            Ga, Aa, ma, fa = Ga[keep], newA[keep], ma[keep], fa[keep]
        else:
            Aa = newA
    # final assignment against the final centres (one more E-step, as scikit-learn)
    GA = np.matmul(G, np.ascontiguousarray(A.transpose(0, 2, 1)))
    cc = np.einsum("bkn,bnk->bk", A, GA)
    labels = (cc[:, None, :] - 2 * GA).argmin(2)
    labels[~mask] = -1
    centers = np.matmul(A, Xpad)
    return centers.astype(Xpad.dtype, copy=False), labels


def _kmeans_features(
    Xpad: np.ndarray,
    mask: np.ndarray,
    k: int,
    rng: np.random.Generator,
    *,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means in feature space (classes with more rows than dimensions).

    Returns ``(centers (B, k, D), labels (B, n))`` (padding labelled -1). A class stops
    iterating when no assignment changes or its total squared centre shift falls below
    ``tol`` times its mean feature variance (as scikit-learn); converged classes drop
    out of the batch. An empty cluster keeps its previous centre.
    """
    B, n, D = Xpad.shape
    ar = np.arange(B)
    tol_c = _variance_tol(Xpad, mask, tol)
    centers = Xpad[ar[:, None], kmeans_plusplus(Xpad, mask, k, rng)].astype(Xpad.dtype)
    labels = np.full((B, n), -1, dtype=np.int64)
    active = ar.copy()  # classes still iterating
    Xa, ma = Xpad, mask
    for _ in range(max_iter):
        Ca = centers[active]
        CaT = np.ascontiguousarray(Ca.transpose(0, 2, 1))
        cc = np.einsum("bkd,bkd->bk", Ca, Ca)
        d = np.matmul(Xa, CaT)
        d *= -2
        d += cc[:, None, :]
        lab = d.argmin(2)
        lab[~ma] = -1
        changed = (lab != labels[active]).any(1)
        labels[active] = lab
        sums, sizes = _segment_means(Xa, ma, np.maximum(lab, 0), k)
        new = np.where(sizes[:, :, None] > 0, sums / np.maximum(sizes, 1)[:, :, None], Ca)
        shift = ((new - Ca) ** 2).sum((1, 2))
        centers[active] = new
        done = ~changed | (shift <= tol_c[active])
        if done.all():
            break
        if done.any():
            keep = ~done
            active = active[keep]
            # strict convergence for the rest; final labels of finished classes
            # already match their centres up to tol (as scikit-learn's last E-step)
            Xa, ma = Xa[keep], ma[keep]
    # final assignment against the final centres (one more E-step, as scikit-learn)
    cc = np.einsum("bkd,bkd->bk", centers, centers)
    d = np.matmul(Xpad, np.ascontiguousarray(centers.transpose(0, 2, 1)))
    d *= -2
    d += cc[:, None, :]
    labels = d.argmin(2)
    labels[~mask] = -1
    return centers, labels


def batched_kmedoids(
    Xpad: np.ndarray, mask: np.ndarray, k: int, rng: np.random.Generator, *, max_iter: int = 300
) -> np.ndarray:
    """Alternating k-medoids (Euclidean) per class, batched; returns medoid positions ``(B, k)``.

    Seeded with k-means++; each step assigns rows to the nearest medoid, then moves each
    medoid to the member with the smallest summed distance to its cluster.
    """
    B, n, _ = Xpad.shape
    ar = np.arange(B)
    xx = np.einsum("bnd,bnd->bn", Xpad, Xpad)
    dist = np.sqrt(_sqdist(Xpad, xx, Xpad, xx))  # (B, n, n)
    medoids = kmeans_plusplus(Xpad, mask, k, rng)
    fmask = mask.astype(Xpad.dtype)
    eye = np.eye(k, dtype=Xpad.dtype)
    for _ in range(max_iter):
        dm = dist[ar[:, None], :, medoids].transpose(0, 2, 1)  # (B, n, k)
        lab = dm.argmin(2)
        onehot = eye[lab] * fmask[:, :, None]
        cost = np.matmul(dist, onehot)  # (B, n, k): summed distance of row i to cluster j
        cost[onehot == 0] = np.inf
        new = cost.argmin(1)
        empty = ~np.isfinite(cost.min(1))
        new = np.where(empty, medoids, new)
        if np.array_equal(new, medoids):
            break
        medoids = new
    return medoids


def batched_fps(Xpad: np.ndarray, mask: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Farthest-point sampling from a random start per class; returns positions ``(B, k)``."""
    B, n, _ = Xpad.shape
    ar = np.arange(B)
    cnt = mask.sum(1)
    xx = np.einsum("bnd,bnd->bn", Xpad, Xpad)
    chosen = np.zeros((B, k), dtype=np.int64)
    chosen[:, 0] = np.minimum((rng.random() * cnt).astype(np.int64), cnt - 1)
    mind = np.full((B, n), np.inf)
    for j in range(k):
        if j:
            chosen[:, j] = mind.argmax(1)
        c = chosen[:, j]
        d2 = _sqdist(Xpad, xx, Xpad[ar, c][:, None, :], xx[ar, c][:, None])[:, :, 0]
        mind = np.minimum(mind, d2)
        mind[~mask] = -np.inf
        mind[ar[:, None], chosen[:, : j + 1]] = -np.inf
    return chosen
