"""Tip-Adapter and GDA: known answers, reference-formula oracles, invariants, improvement."""

from __future__ import annotations

import numpy as np
import pytest
from test_heads_new_common import make_problem, unit, zero_shot_acc

from priming.heads._support import prepare_support, shot_folds
from priming.heads.gda import GDAHead, gda_parameters
from priming.heads.tip_adapter import TipAdapterHead


# ---------------------------------------------------------------- Tip-Adapter
def test_tip_adapter_known_answer_by_hand():
    # 2 classes in 2-D; one shot per class on the axes; query at 45 degrees.
    T = np.array([[1.0, 0.0], [0.0, 1.0]])
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    head = TipAdapterHead(T, alpha=2.0, beta=3.0, logit_scale=10.0).fit(X, [0, 1])
    q = np.array([[3.0, 1.0]])  # not normalised on purpose
    qn = q / np.sqrt(10.0)
    c0, c1 = qn[0]
    expected = np.array(
        [[10 * c0 + 2 * np.exp(-3 * (1 - c0)), 10 * c1 + 2 * np.exp(-3 * (1 - c1))]]
    )
    np.testing.assert_allclose(head.decision_function(q), expected)
    assert head.selection_["rule"] == "given"


def test_tip_adapter_matches_reference_formula():
    """The reference computes ((-1) * (beta - beta * affinity)).exp() @ cache_values."""
    T, Xs, ys, Xt, yt = make_problem(seed=3)
    a, b = 1.7, 4.2
    head = TipAdapterHead(T, alpha=a, beta=b).fit(Xs, ys)
    keys = unit(Xs).T  # (D, N) as in the reference
    values = np.eye(T.shape[0])[ys]
    feats = unit(Xt)
    clip_logits = 100.0 * feats @ T.T
    affinity = feats @ keys
    cache_logits = np.exp((-1) * (b - b * affinity)) @ values
    np.testing.assert_allclose(head.decision_function(Xt), clip_logits + cache_logits * a)


def test_tip_adapter_zero_alpha_is_zero_shot_and_pool_weight_scales_values():
    T, Xs, ys, Xt, yt = make_problem()
    z = 100.0 * unit(Xt) @ T.T
    np.testing.assert_allclose(
        TipAdapterHead(T, alpha=0.0, beta=5).fit(Xs, ys).decision_function(Xt), z
    )
    w = np.full(len(ys), 0.5)
    half = TipAdapterHead(T, alpha=1.0, beta=5).fit(Xs, ys, sample_weight=w)
    full = TipAdapterHead(T, alpha=0.5, beta=5).fit(Xs, ys)
    np.testing.assert_allclose(half.decision_function(Xt), full.decision_function(Xt))


def test_tip_adapter_auto_selection_is_cv_and_beats_zero_shot():
    T, Xs, ys, Xt, yt = make_problem(seed=1)
    head = TipAdapterHead(T).fit(Xs, ys)
    assert head.selection_["rule"].startswith("stratified 5-fold")
    assert head.alpha_ in (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
    acc = np.mean(head.predict(Xt) == yt)
    assert acc >= zero_shot_acc(T, Xt, yt) + 0.02


def test_tip_adapter_selection_equals_brute_force_loop():
    T, Xs, ys, Xt, yt = make_problem(n_classes=3, dim=6, shots=4, seed=5)
    grid_a, grid_b = (0.5, 3.0), (1.0, 8.0)
    head = TipAdapterHead(T, alpha_grid=grid_a, beta_grid=grid_b, n_folds=2).fit(Xs, ys)
    folds = shot_folds(ys, 2, 0)
    best, best_acc = None, -1
    for b in grid_b:
        for a in grid_a:
            hits = 0
            for held in folds:
                tr = np.setdiff1d(np.arange(len(ys)), held)
                h = TipAdapterHead(T, alpha=a, beta=b).fit(Xs[tr], ys[tr])
                hits += int(np.sum(h.predict(Xs[held]) == ys[held]))
            if hits > best_acc:
                best, best_acc = (a, b), hits
    assert (head.alpha_, head.beta_) == best
    assert head.selection_["cv_accuracy"] == pytest.approx(best_acc / len(ys))


def test_tip_adapter_one_shot_falls_back_to_paper_defaults():
    T, Xs, ys, Xt, yt = make_problem(shots=1)
    head = TipAdapterHead(T).fit(Xs, ys)
    assert (head.alpha_, head.beta_) == (1.0, 5.5)
    assert "default" in head.selection_["rule"]


# ------------------------------------------------------------------------ GDA
def _reference_gda(vecs, labels, C):
    """The reference's estimator, line by line in numpy (ICLR24 main_few_shots.run)."""
    mus = np.concatenate([vecs[labels == i].mean(axis=0, keepdims=True) for i in range(C)])
    center = np.concatenate([vecs[labels == i] - mus[i][None] for i in range(C)])
    cov = np.cov(center.T)
    cov_inv = center.shape[1] * np.linalg.pinv(
        (center.shape[0] - 1) * cov + np.trace(cov) * np.eye(center.shape[1])
    )
    ps = np.ones(C) / C
    W = np.einsum("nd,dc->cn", mus, cov_inv)
    b = np.log(ps) - np.einsum("nd,dc,nc->n", mus, cov_inv, mus) / 2
    return W, b


def test_gda_matches_reference_estimator():
    T, Xs, ys, Xt, yt = make_problem(seed=2)
    C = T.shape[0]
    W_ref, b_ref = _reference_gda(unit(Xs), ys, C)
    head = GDAHead(T, alpha=0.3).fit(Xs, ys)
    np.testing.assert_allclose(head.coef_, W_ref.T, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(head.intercept_, b_ref, rtol=1e-7, atol=1e-9)
    feats = unit(Xt)
    ref_logits = 100.0 * feats @ T.T + 0.3 * (feats @ W_ref + b_ref)
    np.testing.assert_allclose(head.decision_function(Xt), ref_logits, rtol=1e-7, atol=1e-7)


def test_gda_known_answer_by_hand():
    # 1-D: class 0 rows {-1, -3}·e, class 1 rows {1, 3}·e in 2-D after normalisation
    # gives means (-1, 0)/(1, 0) and zero scatter along x; add a y spread so S != 0.
    X = np.array([[-1.0, 0.5], [-1.0, -0.5], [1.0, 0.5], [1.0, -0.5]])
    Xn = unit(X)
    sup = prepare_support(X, np.array([0, 0, 1, 1]), None, np.arange(2), 2)
    W, b = gda_parameters(sup, np.eye(2))
    mu = np.array([[Xn[0, 0], 0.0], [Xn[2, 0], 0.0]])
    s = 4 * Xn[0, 1] ** 2  # scatter is diag(0, s)
    ridge = s / 3
    prec = 2 * np.diag([1 / ridge, 1 / (s + ridge)])
    np.testing.assert_allclose(W, mu @ prec)
    np.testing.assert_allclose(b, np.log(0.5) - 0.5 * np.einsum("cd,dk,ck->c", mu, prec, mu))


def test_gda_invariants_and_improvement():
    T, Xs, ys, Xt, yt = make_problem(seed=4)
    z = 100.0 * unit(Xt) @ T.T
    np.testing.assert_allclose(GDAHead(T, alpha=0.0).fit(Xs, ys).decision_function(Xt), z)
    head = GDAHead(T).fit(Xs, ys)
    assert head.selection_["rule"].startswith("stratified")
    assert np.mean(head.predict(Xt) == yt) >= zero_shot_acc(T, Xt, yt) + 0.1
    # one shot per class: no within-class scatter, the GDA term is a constant: zero-shot
    T1, X1, y1, _, _ = make_problem(seed=4, shots=1)
    h1 = GDAHead(T1, alpha=5.0).fit(X1, y1)
    np.testing.assert_array_equal(h1.predict(Xt), np.argmax(z, axis=1))


def test_gda_uniform_weights_equal_unweighted_and_class_without_rows_keeps_text():
    T, Xs, ys, Xt, yt = make_problem(seed=6)
    a = GDAHead(T, alpha=1.0).fit(Xs, ys)
    b = GDAHead(T, alpha=1.0).fit(Xs, ys, sample_weight=np.ones(len(ys)))
    np.testing.assert_allclose(a.decision_function(Xt), b.decision_function(Xt))
    keep = ys != 2
    h = GDAHead(T, alpha=1.0).fit(Xs[keep], ys[keep])
    assert np.isfinite(h.decision_function(Xt)).all()
    assert (h.predict(Xt) == 2).any()
