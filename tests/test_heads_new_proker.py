"""ProKeR: closed form against a brute-force oracle, limits, improvement."""

from __future__ import annotations

import numpy as np
from test_heads_new_common import make_problem, unit, zero_shot_acc

from priming.heads.proker import ProKeRHead


def _softmax(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_matches_kernel_ridge_formula():
    T, Xs, ys, Xt, yt = make_problem(seed=21)
    lam, beta = 0.3, 4.0
    head = ProKeRHead(T, lam=lam, beta=beta, logit_scale=100.0).fit(Xs, ys)
    S, Q = unit(Xs), unit(Xt)
    K = np.exp(-beta * (1 - S @ S.T))
    kq = np.exp(-beta * (1 - Q @ S.T))
    f0s, f0q = _softmax(100 * S @ T.T), _softmax(100 * Q @ T.T)
    Y = np.eye(T.shape[0])[ys]
    expected = f0q + kq @ np.linalg.inv(K + lam * np.eye(len(ys))) @ (Y - f0s)
    np.testing.assert_allclose(head.decision_function(Xt), expected, atol=1e-9)


def test_minimises_the_proximal_objective_with_weights():
    # f = f0 + Σ_j k(., x_j) a_j; the weighted objective in a is
    # Σ w_i ||f0(x_i) + (K a)_i − y_i||² + λ tr(aᵀ K a); its gradient vanishes at our a.
    T, Xs, ys, Xt, yt = make_problem(seed=22, shots=3)
    w = np.linspace(0.2, 1.0, len(ys))
    head = ProKeRHead(T, lam=0.5, beta=3.0, logit_scale=100.0).fit(Xs, ys, sample_weight=w)
    S = unit(Xs)
    K = np.exp(-3.0 * (1 - S @ S.T))
    R = _softmax(100 * S @ T.T) + K @ head.dual_coef_ - np.eye(T.shape[0])[ys]
    grad = 2 * K @ (w[:, None] * R) + 2 * 0.5 * K @ head.dual_coef_
    np.testing.assert_allclose(grad, 0.0, atol=1e-9)


def test_limits_large_lambda_is_zero_shot_small_lambda_interpolates():
    T, Xs, ys, Xt, yt = make_problem(seed=23)
    big = ProKeRHead(T, lam=1e12, beta=5, logit_scale=100.0).fit(Xs, ys)
    np.testing.assert_array_equal(big.predict(Xt), np.argmax(unit(Xt) @ T.T, axis=1))
    small = ProKeRHead(T, lam=1e-8, beta=5, logit_scale=100.0).fit(Xs, ys)
    np.testing.assert_allclose(small.decision_function(Xs), np.eye(T.shape[0])[ys], atol=1e-5)


def test_cv_selection_beats_zero_shot():
    T, Xs, ys, Xt, yt = make_problem(seed=0)
    head = ProKeRHead(T).fit(Xs, ys)
    assert head.selection_["rule"].startswith("stratified 5-fold")
    assert np.mean(head.predict(Xt) == yt) >= zero_shot_acc(T, Xt, yt) + 0.1


def test_cv_selection_equals_brute_force_refits_with_weights():
    from priming.heads._support import shot_folds

    T, Xs, ys, Xt, yt = make_problem(n_classes=3, dim=6, shots=4, seed=24)
    w = np.where(np.arange(len(ys)) % 2 == 0, 1.0, 0.5)
    grids = {"lambda_grid": (0.01, 1.0), "beta_grid": (1.0, 8.0), "scale_grid": (5.0, 100.0)}
    head = ProKeRHead(T, n_folds=2, **grids).fit(Xs, ys, sample_weight=w)
    folds = shot_folds(ys, 2, 0)
    best, best_hits = None, -1.0
    for sc in grids["scale_grid"]:
        for b in grids["beta_grid"]:
            for la in grids["lambda_grid"]:
                hits = 0.0
                for held in folds:
                    tr = np.setdiff1d(np.arange(len(ys)), held)
                    h = ProKeRHead(T, lam=la, beta=b, logit_scale=sc)
                    h.fit(Xs[tr], ys[tr], sample_weight=w[tr])
                    hits += float(np.sum((h.predict(Xs[held]) == ys[held]) * w[held]))
                if hits > best_hits:
                    best, best_hits = (sc, la, b), hits
    assert (head.logit_scale_, head.lam_, head.beta_) == best
