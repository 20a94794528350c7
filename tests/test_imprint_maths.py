"""priming.imprint: pure functions checked against hand-computed answers and brute-force oracles."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans

from priming.errors import ConfigError, DataError, UnknownNameError
from priming.imprint import (
    GENERATORS,
    generate,
    l2_normalize,
    least_squares_weights,
    mahalanobis_whitener,
    max_scores,
    mnn_scores,
    nc1,
    nearest_proxies,
    normalize,
    parse_presample,
    presample,
    quantile_normalize,
    quantile_normalize_cumulative,
    weibull_mask,
)


def _data(n_classes=4, n_per=12, dim=6, seed=0, uneven=False):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 2 * n_per, size=n_classes) if uneven else np.full(n_classes, n_per)
    y = np.repeat(np.arange(n_classes), counts)
    X = rng.normal(size=(y.size, dim)) + 3 * rng.normal(size=(n_classes, dim))[y]
    return X.astype(np.float32), y


# ---------------------------------------------------------------- normalisations
def test_l2_normalize_known_and_zero_row():
    X = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    out = l2_normalize(X)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]], atol=1e-7)
    assert out.dtype == np.float32 and X[0, 0] == 3.0


def test_quantile_known_answer():
    # pooled values 1..6, D=3: targets = quantiles at 1/6, 1/2, 5/6 (linear interpolation)
    X = np.array([[3.0, 1.0, 2.0], [4.0, 6.0, 5.0]])
    t = np.quantile(np.arange(1.0, 7.0), [1 / 6, 1 / 2, 5 / 6])
    out = quantile_normalize(X)
    np.testing.assert_allclose(out, [[t[2], t[0], t[1]], [t[0], t[2], t[1]]])


@given(
    n=st.integers(1, 6),
    d=st.integers(1, 70),
    seed=st.integers(0, 2**16),
)
def test_quantile_rows_take_reference_quantiles_for_every_d(n, d, seed):
    X = np.random.default_rng(seed).normal(size=(n, d))
    out = quantile_normalize(X)
    target = np.quantile(X.ravel(), (np.arange(d) + 0.5) / d)
    np.testing.assert_allclose(np.sort(out, axis=1), np.broadcast_to(target, (n, d)))
    # rank order within each row is preserved
    assert np.array_equal(np.argsort(out, 1, kind="stable"), np.argsort(X, 1, kind="stable"))
    # order independent: permuting rows permutes the output rows
    p = np.random.default_rng(seed + 1).permutation(n)
    np.testing.assert_allclose(quantile_normalize(X[p]), out[p])


def test_quantile_cumulative_matches_reference_behaviour():
    X = np.array([[1.0, 2.0], [10.0, 30.0], [5.0, -5.0]])
    labels = np.array([0, 1, 2])
    out = quantile_normalize_cumulative(X, labels)
    np.testing.assert_array_equal(out[0], X[0])  # the first class stays raw
    np.testing.assert_allclose(out[1], np.quantile([1.0, 2.0], [0.25, 0.75]))
    ref = np.concatenate([out[0], out[1]])
    np.testing.assert_allclose(out[2], np.quantile(ref, [0.25, 0.75])[::-1])


def test_normalize_registry():
    X = np.array([[3.0, 4.0]])
    np.testing.assert_allclose(normalize(X, "l2"), [[0.6, 0.8]])
    np.testing.assert_array_equal(normalize(X, "none"), X)
    with pytest.raises(UnknownNameError, match="l2, none, quantile"):
        normalize(X, "zscore")


# ------------------------------------------------------------------- generators
def test_generator_registry_is_complete():
    assert set(GENERATORS.names()) == {
        "mean", "all", "random", "kmeans", "kmedoids", "fps", "cov_max", "ls", "kls", "none",
    }  # fmt: skip


def test_mean_and_all_known_answers():
    X = np.array([[1.0, 2.0], [5.0, 6.0], [3.0, 0.0], [0.0, 0.0]])
    y = np.array([1, 0, 1, 1])
    W, lab = generate(X, y, "mean")
    np.testing.assert_allclose(W, [[5.0, 6.0], [4 / 3, 2 / 3]])
    assert lab.tolist() == [0, 1]
    W, lab = generate(X, y, "all", n_proxies=None)
    np.testing.assert_array_equal(W, X[[1, 0, 2, 3]])
    assert lab.tolist() == [0, 1, 1, 1]


@pytest.mark.parametrize("method", ["random", "kmeans", "kmedoids", "fps", "cov_max", "kls"])
def test_fewer_rows_than_k_gives_all_rows(method):
    X, y = _data(n_classes=3, n_per=4)
    W, lab = generate(X, y, method, n_proxies=4, random_state=0, ls_lambda=0.1)
    assert np.bincount(lab).tolist() == [4, 4, 4]
    if method != "kls":
        for c in range(3):
            assert {tuple(r) for r in W[lab == c]} == {tuple(r) for r in X[y == c]}


@pytest.mark.parametrize("method", ["random", "kmedoids", "fps", "cov_max"])
def test_selecting_generators_return_k_rows_of_the_class(method):
    X, y = _data(n_classes=5, n_per=15, uneven=True, seed=3)
    k = 3
    W, lab = generate(X, y, method, n_proxies=k, random_state=1)
    counts = np.bincount(y)
    assert np.bincount(lab).tolist() == np.minimum(counts, k).tolist()
    for c in range(5):
        rows = {tuple(r) for r in X[y == c]}
        chosen = [tuple(r) for r in W[lab == c]]
        assert set(chosen) <= rows and len(set(chosen)) == len(chosen)


def test_cov_max_matches_np_cov_oracle():
    X, y = _data(n_classes=3, n_per=9, dim=7, seed=5)
    W, lab = generate(X, y, "cov_max", n_proxies=2)
    for c in range(3):
        Xc = X[y == c].astype(np.float64)
        top = np.argsort(-np.cov(Xc).sum(0))[:2]
        np.testing.assert_allclose(W[lab == c], Xc[top], rtol=1e-6)


def test_fps_is_greedy_farthest_point():
    X, y = _data(n_classes=3, n_per=20, dim=4, seed=7)
    W, lab = generate(X, y, "fps", n_proxies=5, random_state=3)
    for c in range(3):
        Xc, Wc = X[y == c].astype(np.float64), W[lab == c].astype(np.float64)
        for j in range(1, 5):
            mind = cdist(Xc, Wc[:j]).min(1)
            assert np.linalg.norm(Wc[j] - Wc[:j], axis=1).min() == pytest.approx(
                mind.max(), rel=1e-5
            )


def test_kmeans_is_a_lloyd_fixed_point_and_matches_sklearn_inertia():
    rng = np.random.default_rng(0)
    # classes made of 3 well separated sub-clusters
    cent = 6 * rng.normal(size=(4, 3, 5))
    y = np.repeat(np.arange(4), 60)
    sub = np.tile(np.arange(3), 80)
    X = (cent[y, sub] + 0.3 * rng.normal(size=(240, 5))).astype(np.float32)
    W, lab = generate(X, y, "kmeans", n_proxies=3, random_state=0)
    for c in range(4):
        Xc, Wc = X[y == c].astype(np.float64), W[lab == c].astype(np.float64)
        assign = cdist(Xc, Wc).argmin(1)
        for j in range(3):
            np.testing.assert_allclose(Wc[j], Xc[assign == j].mean(0), atol=1e-4)
        ours = (cdist(Xc, Wc) ** 2).min(1).sum()
        ref = KMeans(3, n_init=5, random_state=0).fit(Xc).inertia_
        assert ours <= ref * 1.01
        # the true sub-cluster centres are recovered
        assert cdist(cent[c], Wc).min(1).max() < 0.3


def test_kmedoids_medoids_minimise_within_cluster_distance():
    X, y = _data(n_classes=3, n_per=25, dim=3, seed=9)
    W, lab = generate(X, y, "kmedoids", n_proxies=3, random_state=0)
    for c in range(3):
        Xc, Wc = X[y == c].astype(np.float64), W[lab == c].astype(np.float64)
        assign = cdist(Xc, Wc).argmin(1)
        for j in range(3):
            members = Xc[assign == j]
            costs = cdist(members, members).sum(1)
            own = cdist(Wc[j : j + 1], members).sum()
            assert own <= costs.min() + 1e-6


def test_least_squares_matches_closed_form_with_explicit_inverse():
    X, y = _data(n_classes=4, n_per=10, dim=6, seed=11)
    lam = 0.1
    Xd = X.astype(np.float64)
    mu = Xd.mean(0)
    sigma_t = (Xd - mu).T @ (Xd - mu) / len(Xd)
    M = np.stack([Xd[y == c].mean(0) for c in range(4)]).T
    oracle = (M.T @ np.linalg.inv(sigma_t + np.outer(mu, mu) + lam * np.eye(6))) / 4
    np.testing.assert_allclose(least_squares_weights(X, y, 4, lam), oracle, rtol=1e-6, atol=1e-9)
    W, lab = generate(X, y, "ls", ls_lambda=lam)
    np.testing.assert_allclose(W, oracle, rtol=1e-4, atol=1e-6)
    assert lab.tolist() == [0, 1, 2, 3]


def test_kls_with_single_row_pseudo_classes_is_ls_over_rows():
    X, y = _data(n_classes=3, n_per=3, dim=5, seed=2)
    W, lab = generate(X, y, "kls", n_proxies=5, ls_lambda=0.2)
    oracle = least_squares_weights(X, np.arange(len(X)), len(X), 0.2)
    order = np.argsort(y, kind="stable")
    np.testing.assert_allclose(W, oracle[order], rtol=1e-4, atol=1e-6)
    assert lab.tolist() == y[order].tolist()


def test_none_generator_is_xavier_uniform():
    X, y = _data(n_classes=5, n_per=3, dim=8)
    W, lab = generate(X, y, "none", n_proxies=2, random_state=0)
    assert W.shape == (10, 8) and np.bincount(lab).tolist() == [2] * 5
    assert np.abs(W).max() <= np.sqrt(6 / (8 + 10))


def test_generators_are_seeded_and_do_not_mutate():
    X, y = _data(uneven=True, seed=4)
    X0 = X.copy()
    for m in ["random", "kmeans", "kmedoids", "fps", "kls", "none"]:
        a = generate(X, y, m, n_proxies=3, random_state=7)[0]
        b = generate(X, y, m, n_proxies=3, random_state=7)[0]
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(X, X0)


def test_generate_validation():
    X, y = _data()
    with pytest.raises(ConfigError, match="n_proxies"):
        generate(X, y, "mean", n_proxies=3)
    with pytest.raises(ConfigError, match="ls_lambda"):
        generate(X, y, "ls", ls_lambda=-1.0)
    with pytest.raises(UnknownNameError, match="kmeans"):
        generate(X, y, "gmm")
    with pytest.raises(DataError, match="zero rows"):
        generate(X, y, "mean", n_classes=9)
    with pytest.raises(DataError, match="rows"):
        generate(X, y[:-1], "mean")
    with pytest.raises(DataError, match="NaN"):
        generate(np.full((2, 2), np.nan), [0, 1], "mean")


@given(
    counts=st.lists(st.integers(1, 9), min_size=1, max_size=6),
    k=st.integers(1, 5),
    method=st.sampled_from(["random", "kmeans", "kmedoids", "fps", "cov_max"]),
    seed=st.integers(0, 1000),
)
def test_generator_shapes_property(counts, k, method, seed):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts)), counts)
    X = rng.normal(size=(y.size, 3)).astype(np.float32)
    W, lab = generate(X, y, method, n_proxies=k, random_state=seed)
    assert W.dtype == np.float32 and W.shape == (lab.size, 3)
    assert np.all(np.diff(lab) >= 0)
    assert np.bincount(lab, minlength=len(counts)).tolist() == np.minimum(counts, k).tolist()
    assert np.isfinite(W).all()


# ------------------------------------------------------------------ aggregation
def _dense_max_oracle(X, W, lab, C):
    S = X.astype(np.float64) @ W.astype(np.float64).T
    out = np.full((len(X), C), -np.inf)
    for c in range(C):
        if np.any(lab == c):
            out[:, c] = S[:, lab == c].max(1)
    return out


@given(
    n=st.integers(1, 30),
    counts=st.lists(st.integers(0, 4), min_size=1, max_size=7),
    d=st.integers(1, 6),
    chunk=st.sampled_from([1, 64, 10**9]),
    shuffle=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_max_scores_matches_dense_loop(n, counts, d, chunk, shuffle, seed):
    rng = np.random.default_rng(seed)
    lab = np.repeat(np.arange(len(counts)), counts)
    W = rng.normal(size=(lab.size, d)).astype(np.float32)
    if shuffle:
        p = rng.permutation(lab.size)
        W, lab = W[p], lab[p]
    X = rng.normal(size=(n, d)).astype(np.float32)
    out = max_scores(X, W, lab, len(counts), chunk_bytes=chunk)
    np.testing.assert_allclose(out, _dense_max_oracle(X, W, lab, len(counts)), rtol=1e-5, atol=1e-5)


def test_max_scores_memory_is_bounded_by_chunk():
    rng = np.random.default_rng(0)
    n, P, C = 4000, 2000, 100
    X = rng.normal(size=(n, 16)).astype(np.float32)
    W = rng.normal(size=(P, 16)).astype(np.float32)
    lab = np.repeat(np.arange(C), P // C)
    tracemalloc.start()
    out = max_scores(X, W, lab, C, chunk_bytes=1 << 20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    dense = n * P * 4  # 32 MB
    assert peak < out.nbytes + W.nbytes * 2 + 4 * (1 << 20)
    assert peak < dense / 3


def _table_oracle(X, W, lab, C, m, metric, weighting, VI=None):
    kw = {"VI": VI} if metric == "mahalanobis" else {}
    name = {"manhattan": "cityblock"}.get(metric, metric)
    D = cdist(X.astype(np.float64), W.astype(np.float64), name, **kw)
    out = np.zeros((len(X), C))
    for i in range(len(X)):
        order = np.lexsort((np.arange(len(W)), D[i]))[:m]
        for j in order:
            out[i, lab[j]] += 1.0 if weighting == "uniform" else 1.0 / (D[i, j] + 1e-10)
    return out


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "manhattan", "chebyshev", "mahalanobis"])
@pytest.mark.parametrize("weighting", ["uniform", "distance"])
def test_mnn_matches_sorted_distance_table(metric, weighting):
    rng = np.random.default_rng(1)
    W = rng.normal(size=(40, 5)).astype(np.float32)
    lab = np.repeat(np.arange(8), 5)
    X = rng.normal(size=(25, 5)).astype(np.float32)
    VI = None
    if metric == "mahalanobis":
        cov = np.cov(W.astype(np.float64), rowvar=False) + 1e-6 * np.eye(5)
        VI = np.linalg.inv(cov)
    out = mnn_scores(X, W, lab, 8, 4, metric, weighting, chunk_bytes=256)
    oracle = _table_oracle(X, W, lab, 8, 4, metric, weighting, VI)
    np.testing.assert_allclose(out, oracle, rtol=1e-4)


def test_mahalanobis_whitener_reproduces_distance():
    rng = np.random.default_rng(2)
    W = rng.normal(size=(30, 4))
    L = mahalanobis_whitener(W)
    VI = np.linalg.inv(np.cov(W, rowvar=False) + 1e-6 * np.eye(4))
    a, b = rng.normal(size=4), rng.normal(size=4)
    assert np.linalg.norm((a - b) @ L) == pytest.approx(np.sqrt((a - b) @ VI @ (a - b)))


def test_mnn_ties_go_to_lowest_class_by_hand():
    # two proxies at equal distance, one per class; m=2 uniform -> 1 vote each -> class 0
    W = np.array([[1.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    scores = mnn_scores(np.array([[0.0, 1.0]]), W, np.array([1, 0]), 2, 2, "euclidean")
    np.testing.assert_array_equal(scores, [[1.0, 1.0]])
    assert int(np.argmax(scores)) == 0
    d, idx = nearest_proxies(np.array([[0.2, 0.0]]), W, 2, "euclidean")
    np.testing.assert_allclose(d, [[0.8, 1.2]], rtol=1e-6)
    assert idx.tolist() == [[0, 1]]


def test_mnn_m_larger_than_proxies_uses_all():
    W = np.eye(3, dtype=np.float32)
    s = mnn_scores(np.ones((2, 3)), W, np.array([0, 1, 1]), 2, 10, "euclidean")
    np.testing.assert_array_equal(s, [[1, 2], [1, 2]])


@given(seed=st.integers(0, 500), m=st.integers(1, 6))
def test_max_equals_mnn_m1_cosine_on_unit_rows(seed, m):
    rng = np.random.default_rng(seed)
    W = l2_normalize(rng.normal(size=(12, 4)).astype(np.float32))
    lab = rng.integers(0, 4, size=12)
    lab[:4] = np.arange(4)
    X = l2_normalize(rng.normal(size=(9, 4)).astype(np.float32))
    a = max_scores(X, W, lab, 4).argmax(1)
    b = mnn_scores(X, W, lab, 4, 1, "cosine").argmax(1)
    c = mnn_scores(X, W, lab, 4, 1, "euclidean").argmax(1)
    assert np.array_equal(a, b) and np.array_equal(a, c)


# ------------------------------------------------------------------- presampling
def test_parse_presample_forms():
    p = parse_presample("weibull(0.05, 0.95) + fewshot(4)")
    assert p.weibull == (0.05, 0.95) and p.n_samples == 4
    assert parse_presample({"weibull": None, "n_samples": 2}).n_samples == 2
    assert parse_presample(None) is None
    for bad in ["weibull(0.5)", "fewshot(0)", "weibull(0.2,1.5)", 3, {"weibull": (1, 2, 3)}]:
        with pytest.raises(ConfigError):
            parse_presample(bad)


def test_weibull_mask_matches_scipy_oracle():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 4))
    keep = weibull_mask(X, 0.1, 0.9)
    d = np.linalg.norm(X - X.mean(0), axis=1)
    params = stats.weibull_min.fit(d)
    lo, hi = stats.weibull_min.ppf([0.1, 0.9], *params)
    np.testing.assert_array_equal(keep, (d >= lo) & (d <= hi))
    assert 0.6 < keep.mean() < 0.95
    assert weibull_mask(X[:2], 0.1, 0.9).all()


def test_presample_fewshot_counts_and_seed():
    X, y = _data(n_classes=4, n_per=10, uneven=True, seed=8)
    Xs, ys = presample(X, y, "fewshot(3)", random_state=0)
    assert np.bincount(ys, minlength=4).tolist() == np.minimum(np.bincount(y), 3).tolist()
    Xs2, _ = presample(X, y, "fewshot(3)", random_state=0)
    np.testing.assert_array_equal(Xs, Xs2)
    for row, c in zip(Xs, ys):
        assert any(np.array_equal(row, r) for r in X[y == c])


# -------------------------------------------------------------------------- NC1
def test_nc1_textbook_and_reference_known_answers():
    rng = np.random.default_rng(4)
    means = 5 * rng.normal(size=(3, 4))
    y = np.repeat(np.arange(3), 50)
    X = means[y] + rng.normal(size=(150, 4)) + 2.0  # non-zero global mean
    mu_c = np.stack([X[y == c].mean(0) for c in range(3)])
    mu_g = X.mean(0)
    Sw = sum((X[i] - mu_c[y[i]])[:, None] * (X[i] - mu_c[y[i]])[None] for i in range(150)) / 150
    Sb = (mu_c - mu_g).T @ (mu_c - mu_g) / 3
    expect = np.trace(Sw @ np.linalg.pinv(Sb)) / 3
    assert nc1(X, y) == pytest.approx(expect, rel=1e-6)
    expect_ref = np.trace((Sw + np.outer(mu_g, mu_g)) @ np.linalg.pinv(Sb)) / 3
    assert nc1(X, y, variant="reference") == pytest.approx(expect_ref, rel=1e-6)
    # collapsed classes: every row at its class mean
    assert nc1(means[y], y) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ConfigError, match="textbook, reference"):
        nc1(X, y, variant="papyan")


@given(
    seed=st.integers(0, 10_000),
    m=st.integers(1, 4),
    metric=st.sampled_from(["cosine", "euclidean", "mahalanobis"]),
    shuffle=st.booleans(),
)
def test_class_pruned_mnn_matches_sorted_distance_table(seed, m, metric, shuffle):
    # many classes, few proxies each: the class-pruned search path is taken
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 5, size=30)
    lab = np.repeat(np.arange(30), counts)
    W = rng.normal(size=(lab.size, 4)).astype(np.float32)
    if shuffle:
        p = rng.permutation(lab.size)
        W, lab = W[p], lab[p]
    X = rng.normal(size=(17, 4)).astype(np.float32)
    VI = None
    if metric == "mahalanobis":
        VI = np.linalg.inv(np.cov(W.astype(np.float64), rowvar=False) + 1e-6 * np.eye(4))
    for weighting in ("uniform", "distance"):
        out = mnn_scores(X, W, lab, 30, m, metric, weighting, chunk_bytes=512)
        oracle = _table_oracle(X, W, lab, 30, m, metric, weighting, VI)
        np.testing.assert_allclose(out, oracle, rtol=1e-4)
    _, idx_pruned = nearest_proxies(X, W, m, metric, proxy_labels=lab, n_classes=30)
    _, idx_full = nearest_proxies(X, W, m, metric)
    np.testing.assert_array_equal(idx_pruned, idx_full)


@pytest.mark.parametrize("dim", [5, 64])
def test_kmeans_gram_and_feature_paths_agree(dim):
    from priming.imprint.kmeans import _kmeans_features, _kmeans_gram

    rng = np.random.default_rng(dim)
    cent = 4 * rng.normal(size=(6, 3, dim))
    n = 30
    sub = np.tile(np.arange(3), n // 3)
    Xpad = (cent[:, sub] + 0.5 * rng.normal(size=(6, n, dim))).astype(np.float32)
    Xpad[0, 20:] = 0  # a padded class with 20 rows
    mask = np.ones((6, n), dtype=bool)
    mask[0, 20:] = False
    cg, lg = _kmeans_gram(Xpad, mask, 3, np.random.default_rng(1), max_iter=300, tol=1e-4)
    cf, lf = _kmeans_features(Xpad, mask, 3, np.random.default_rng(1), max_iter=300, tol=1e-4)
    np.testing.assert_allclose(cg, cf, atol=1e-3)
    np.testing.assert_array_equal(lg, lf)
    assert (lg[0, 20:] == -1).all() and (lg[0, :20] >= 0).all()
    for b in range(6):  # a Lloyd fixed point: every centre is the mean of its rows
        for j in range(3):
            rows = Xpad[b][mask[b] & (lg[b] == j)]
            np.testing.assert_allclose(cg[b, j], rows.mean(0), atol=1e-4)
