"""Fast paths must give the general paths' answers (issue 12 section 3)."""

from __future__ import annotations

import numpy as np
import pytest

from priming.heads import ImprintedHead
from priming.imprint.aggregate import max_scores


def _general(X, W, labels, C, **kw):
    """The same scores through the multi-proxy path: every proxy duplicated (a
    duplicate cannot change a maximum)."""
    order = np.argsort(np.concatenate([labels, labels]), kind="stable")
    W2 = np.concatenate([W, W])[order]
    l2 = np.concatenate([labels, labels])[order]
    return max_scores(X, W2, l2, C, **kw)


def _int_data(rng, n, C, D):
    # small integers: every product and sum is exact in float32, so ties are real ties
    X = rng.integers(-2, 3, size=(n, D)).astype(np.float32)
    W = rng.integers(-2, 3, size=(C, D)).astype(np.float32)
    W[C // 2] = W[0]  # two classes with the same proxy: tied scores on every row
    return X, W


@pytest.mark.parametrize("chunk_bytes", [64, 4096, 128 * 2**20])
def test_one_proxy_equals_general_path_exactly_with_ties(chunk_bytes):
    rng = np.random.default_rng(0)
    C, D = 37, 8
    X, W = _int_data(rng, 301, C, D)
    labels = np.arange(C)
    got = max_scores(X, W, labels, C, chunk_bytes=chunk_bytes)
    assert got.shape == (301, C) and got.dtype == np.float32
    np.testing.assert_array_equal(got, X.astype(np.float64) @ W.T.astype(np.float64))
    np.testing.assert_array_equal(got, _general(X, W, labels, C, chunk_bytes=chunk_bytes))
    assert (got[:, 0] == got[:, C // 2]).all()
    assert (got.argmax(1) != C // 2).all()  # ties go to the lowest class index


def test_one_proxy_unsorted_labels_follow_class_order():
    rng = np.random.default_rng(1)
    C, D = 20, 6
    X, W = _int_data(rng, 50, C, D)
    perm = rng.permutation(C)  # proxy j belongs to class perm[j]
    got = max_scores(X, W, perm, C)
    want = np.empty((50, C), np.float32)
    want[:, perm] = X @ W.T
    np.testing.assert_array_equal(got, want)


def test_one_proxy_random_data_matches_general_path():
    rng = np.random.default_rng(2)
    C, D = 300, 64
    X = rng.normal(size=(2000, D)).astype(np.float32)
    W = rng.normal(size=(C, D)).astype(np.float32)
    labels = np.arange(C)
    got = max_scores(X, W, labels, C, chunk_bytes=50_000)
    ref = _general(X, W, labels, C)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
    np.testing.assert_allclose(got, X.astype(np.float64) @ W.T, rtol=0, atol=1e-4)
    # float64 input stays float64 and exact to float64 rounding
    g64 = max_scores(X.astype(np.float64), W, labels, C)
    assert g64.dtype == np.float64
    np.testing.assert_allclose(g64, X.astype(np.float64) @ W.T, rtol=1e-12, atol=1e-12)


def test_missing_class_keeps_general_path_and_minus_inf():
    rng = np.random.default_rng(3)
    X, W = _int_data(rng, 10, 5, 4)
    got = max_scores(X, W[:4], np.array([0, 1, 3, 4]), 5)
    assert np.isneginf(got[:, 2]).all()
    np.testing.assert_array_equal(got[:, [0, 1, 3, 4]], X @ W[:4].T)


def test_zero_rows_and_zero_proxies():
    W = np.ones((3, 4), np.float32)
    assert max_scores(np.zeros((0, 4), np.float32), W, np.arange(3), 3).shape == (0, 3)
    empty = max_scores(np.ones((2, 4), np.float32), W[:0], np.arange(0), 3)
    assert empty.shape == (2, 3) and np.isneginf(empty).all()


def test_neural_priming_head_decision_function_is_the_product():
    rng = np.random.default_rng(4)
    C, D = 50, 16
    Xtr = rng.normal(size=(C * 4, D)).astype(np.float32)
    y = np.repeat(np.arange(C), 4)
    head = ImprintedHead.from_preset("neural-priming").fit(Xtr, y)
    X = rng.normal(size=(400, D)).astype(np.float32)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    got = head.decision_function(X)
    np.testing.assert_allclose(got, Xn.astype(np.float64) @ head.weights_.T, atol=1e-5)
    # the same head with each proxy duplicated goes through the segment max
    dup = ImprintedHead.from_preset("neural-priming").fit(Xtr, y)
    dup.weights_ = np.repeat(head.weights_, 2, axis=0)
    dup.proxy_labels_ = np.repeat(head.proxy_labels_, 2)
    np.testing.assert_allclose(got, dup.decision_function(X), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(head.predict(X), np.asarray(head.classes_)[got.argmax(1)])
