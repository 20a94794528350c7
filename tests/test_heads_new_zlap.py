"""ZLaP: the reference's graph + per-class CG as the oracle, invariants, improvement."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import cg
from test_heads_new_common import make_problem, unit, zero_shot_acc

from priming.heads.zlap import ZLaPHead, block_cg


def reference_zlap(features, clf, k=5, gamma=5.0, alpha=0.3):
    """do_transductive_lp of the reference, with dense brute-force k-NN and scipy's cg."""
    C, n = clf.shape[0], features.shape[0]
    s_ii = features @ features.T
    knn_ii = np.argsort(-s_ii, axis=1, kind="stable")[:, :k]
    sim_ii = np.take_along_axis(s_ii, knn_ii, axis=1)
    s_it = features @ clf.T
    kt = min(k, C)
    knn_it = np.argsort(-s_it, axis=1, kind="stable")[:, :kt]
    sim_it = np.take_along_axis(s_it, knn_it, axis=1)
    knn = np.concatenate([knn_ii + C, knn_it], axis=1)
    sim = np.concatenate([sim_ii, sim_it], axis=1)
    knn = np.concatenate([-np.ones((C, knn.shape[1]), int), knn])
    sim = np.concatenate([np.zeros((C, sim.shape[1])), sim])
    sim[sim < 0] = 0
    mask = knn < C
    sim[mask] = sim[mask] ** gamma
    N = knn.shape[0]
    W = np.zeros((N, N))
    for i in range(N):
        for j, s in zip(knn[i], sim[i]):
            if j != -1:
                W[i, j] += s
    W = W + W.T
    W = W - np.diag(np.diag(W))
    S = W.sum(axis=1)
    S[S == 0] = 1
    D = 1 / np.sqrt(S)
    Wn = D[:, None] * W * D[None, :]
    L = np.eye(N) - alpha * Wn
    scores = np.zeros((n, C))
    for c in range(C):
        Y = np.zeros(N)
        Y[c] = 1
        out = cg(sparse.csr_matrix(L), Y, rtol=1e-6, maxiter=50)[0]
        scores[:, c] = out[C:]
    return scores


def test_matches_reference_propagation():
    T, Xs, ys, Xt, yt = make_problem(seed=11, n_test=60)
    ours = ZLaPHead(T).fit(None).decision_function(Xt)
    ref = reference_zlap(unit(Xt), T)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(np.argmax(ours, 1), np.argmax(ref, 1))


def test_block_cg_solves_spd_systems():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(30, 30))
    A = A @ A.T + 30 * np.eye(30)
    B = rng.normal(size=(30, 4))
    np.testing.assert_allclose(
        block_cg(A, B, tol=1e-12, maxiter=200), np.linalg.solve(A, B), atol=1e-8
    )


def test_zero_alpha_scores_only_text_neighbours():
    # alpha = 0: Z = Y, batch rows score 0 everywhere: nothing propagates
    T, Xs, ys, Xt, yt = make_problem(seed=12, n_test=40)
    np.testing.assert_array_equal(ZLaPHead(T, alpha=0.0).fit(None).decision_function(Xt), 0.0)


def test_propagation_beats_zero_shot_and_shots_help():
    T, Xs, ys, Xt, yt = make_problem(seed=0, n_test=400)
    zs = zero_shot_acc(T, Xt, yt)
    acc = np.mean(ZLaPHead(T).fit(None).predict(Xt) == yt)
    assert acc >= zs + 0.05
    few = ZLaPHead(T).fit(Xs, ys)
    assert np.mean(few.predict(Xt) == yt) >= acc
    assert few.last_selection_["rule"].startswith("3-fold")
