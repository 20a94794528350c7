"""TransCLIP: the reference's updates re-implemented literally as the oracle, invariants."""

from __future__ import annotations

import numpy as np
from test_heads_new_common import make_problem, unit, zero_shot_acc

from priming.heads.transclip import TransCLIPHead


def _softmax(a):
    a = a - a.max(axis=1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=1, keepdims=True)


def reference_transclip(Q, T, shots=None, labels=None, gamma=0.0, lam=1.0, k=3):
    """The reference solver (TransCLIP_utils.py), dense and loop by loop, in numpy.

    Two deliberate differences, the ones the head documents: shot rows keep their own
    top-k neighbours, and the graph rows are ordered like the assignment rows
    (queries first, then shots)."""
    n, d = Q.shape
    K = T.shape[0]
    y_hat = _softmax(100 * Q @ T.T)
    z = y_hat.copy()
    if shots is None:
        mu = np.zeros((K, d))
        top = np.argsort(-z, axis=0, kind="stable")[:8]
        for c in range(K):
            rows = top[:, c]
            mu[c] = (Q[rows] * z[rows, c][:, None]).mean(axis=0)
    else:
        mu = np.eye(K)[labels].T @ shots
    mu = mu / np.linalg.norm(mu, axis=1, keepdims=True)
    std = np.full(d, 1.0 / d)
    aff_q = Q @ Q.T
    W = np.zeros((n + (0 if shots is None else len(shots)), n))
    for i in range(n):
        order = [j for j in np.argsort(-aff_q[i], kind="stable") if j != i][:k]
        W[i, order] = aff_q[i, order]
    if shots is not None:
        aff_s = shots @ Q.T
        for s in range(len(shots)):
            order = np.argsort(-aff_s[s], kind="stable")[:k]
            W[n + s, order] = aff_s[s, order]
        onehot = np.eye(K)[labels]
    for it in range(11):
        lik = np.zeros((n, K))
        for c in range(K):
            lik[:, c] = -0.5 * np.sum((Q - mu[c]) ** 2 / std, axis=1)
        for _ in range(5):
            zz = z if shots is None else np.vstack([z, onehot])
            inter = lik + (50 / (k * 2)) * (W.T @ zz + (W @ z)[:n])
            inter -= inter.max(axis=1, keepdims=True)
            inter = (y_hat**lam) * np.exp(inter / 50)
            z = inter / inter.sum(axis=1, keepdims=True)
        if it == 10:
            break
        new_mu = (z / n).T @ Q
        den = (z / n).sum(axis=0)[:, None]
        if shots is not None:
            wts = gamma * 50 / len(shots) * onehot
            new_mu = new_mu + wts.T @ shots
            den = den + wts.sum(axis=0)[:, None]
        new_mu /= den
        mu = new_mu / np.linalg.norm(new_mu, axis=1, keepdims=True)
        std = np.einsum("ij,ijk->k", z / n, (Q[:, None, :] - mu[None]) ** 2)
        if shots is not None and gamma > 0:
            std = std + np.einsum(
                "ij,ijk->k", gamma * 50 / len(shots) * onehot, (shots[:, None, :] - mu[None]) ** 2
            )
            std /= (z / n).sum() + gamma * 50 / len(shots) * onehot.sum()
        else:
            std /= (z / n).sum()
    return z


def test_zero_shot_matches_reference_updates():
    T, Xs, ys, Xt, yt = make_problem(seed=7, n_test=80)
    head = TransCLIPHead(T).fit(None)
    z = head.transduce(Xt)
    z_ref = reference_transclip(unit(Xt), T)
    np.testing.assert_allclose(z, z_ref, atol=1e-8)
    assert head.selection_["kl_weight"] == 1.0


def test_few_shot_matches_reference_updates_at_fixed_gamma():
    T, Xs, ys, Xt, yt = make_problem(seed=8, n_test=60, shots=3)
    head = TransCLIPHead(T, gamma=0.02).fit(Xs, ys)
    z = head.transduce(Xt)
    z_ref = reference_transclip(unit(Xt), T, unit(Xs), ys, gamma=0.02, lam=0.5)
    np.testing.assert_allclose(z, z_ref, atol=1e-8)


def test_large_kl_weight_is_zero_shot_and_runs_are_deterministic():
    T, Xs, ys, Xt, yt = make_problem(seed=9)
    head = TransCLIPHead(T, kl_weight=1e9).fit(None)
    np.testing.assert_array_equal(head.predict(Xt), np.argmax(unit(Xt) @ T.T, axis=1))
    h = TransCLIPHead(T).fit(None)
    np.testing.assert_array_equal(h.decision_function(Xt), h.decision_function(Xt))


def test_transduction_beats_zero_shot_on_shifted_clusters():
    # The synthetic cosine gaps are ~10x CLIP's, so a logit scale of 5 here gives a
    # zero-shot softmax about as peaked as CLIP's 100 on real embeddings (at 100 the KL
    # term pins every row to its zero-shot class on this problem).
    T, Xs, ys, Xt, yt = make_problem(seed=0, n_test=400)
    acc = np.mean(TransCLIPHead(T, logit_scale=5.0).fit(None).predict(Xt) == yt)
    assert acc >= zero_shot_acc(T, Xt, yt) + 0.05
    few = TransCLIPHead(T, logit_scale=5.0).fit(Xs, ys)
    acc_few = np.mean(few.predict(Xt) == yt)
    assert acc_few >= zero_shot_acc(T, Xt, yt) + 0.15
    assert few.last_selection_["gamma"] in (0.002, 0.01, 0.02, 0.2)
    assert few.last_selection_["rule"].startswith("3-fold")
    np.testing.assert_allclose(few.predict_proba(Xt).sum(axis=1), 1.0)
