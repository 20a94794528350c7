"""ImprintedHead: known answers, invariants, validation, scikit-learn compatibility, storage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.utils.estimator_checks import parametrize_with_checks

from priming.errors import ConfigError, DataError, NotFittedError, PrimingError, UnknownNameError
from priming.heads import PRESETS, ImprintedHead


def _blobs(n_classes=5, n_per=30, dim=8, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim))
    y = np.repeat(np.arange(n_classes), n_per)
    X = centers[y] + spread * rng.normal(size=(y.size, dim))
    return X.astype(np.float32), y


def _l2(a):
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


# ---------------------------------------------------------------- known answers
def test_mean_head_known_answer_by_hand():
    # two classes in 2-D; l2 / mean / l2 / l2 / max computed by hand
    X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [-1.0, -1.0]])
    y = np.array(["a", "a", "b", "b"])
    head = ImprintedHead.from_preset("neural-priming").fit(X, y)
    s = np.sqrt(0.5)
    # class a: mean of (1,0),(0,1) = (.5,.5) -> (s, s); class b: mean of (-1,0),(-s,-s)
    b = np.array([-(1 + s) / 2, -s / 2])
    b /= np.linalg.norm(b)
    np.testing.assert_allclose(head.weights_, [[s, s], b], atol=1e-6)
    assert head.classes_.tolist() == ["a", "b"]
    assert head.proxy_labels_.tolist() == [0, 1]
    scores = head.decision_function([[2.0, 0.0], [0.0, -3.0]])
    np.testing.assert_allclose(scores, [[s, b[0]], [-s, -b[1]]], atol=1e-6)
    assert head.predict([[2.0, 0.0], [0.0, -3.0]]).tolist() == ["a", "b"]


def test_neural_priming_preset_is_nearest_normalised_centroid():
    X, y = _blobs(n_classes=7, n_per=20, dim=12, spread=1.0, seed=3)
    Xt, _ = _blobs(n_classes=7, n_per=10, dim=12, spread=1.5, seed=4)
    head = ImprintedHead.from_preset("neural-priming").fit(X, y)
    # independent oracle: centroid of normalised rows, normalised; cosine argmax
    cent = np.stack([_l2(X[y == c]).sum(0) for c in range(7)])
    oracle = np.argmax(_l2(Xt) @ _l2(cent).T, axis=1)
    assert np.array_equal(head.predict(Xt), oracle)
    np.testing.assert_allclose(head.decision_function(Xt), _l2(Xt) @ _l2(cent).T, atol=1e-5)


def test_qi2018_equals_neural_priming_and_presets_complete():
    assert set(PRESETS) == {
        "qi2018",
        "hosoda2024",
        "janson2022",
        "imprint-best",
        "oracle-ls",
        "neural-priming",
    }
    assert PRESETS["qi2018"] == PRESETS["neural-priming"]
    best = ImprintedHead.from_preset("imprint-best")
    assert (best.generator, best.n_proxies, best.aggregation) == ("kmeans", 20, "max")
    with pytest.raises(UnknownNameError, match="imprint-best"):
        ImprintedHead.from_preset("nope")


def test_from_preset_overrides():
    head = ImprintedHead.from_preset("imprint-best", n_proxies=3, random_state=1)
    assert head.n_proxies == 3 and head.random_state == 1


def test_max_equals_mnn_m1_on_l2_data():
    X, y = _blobs(n_classes=6, n_per=25, dim=10, spread=1.2, seed=5)
    Xt, _ = _blobs(n_classes=6, n_per=15, dim=10, spread=1.5, seed=6)
    kw = dict(generator="kmeans", n_proxies=4, random_state=0)
    a = ImprintedHead(**kw).fit(X, y).predict(Xt)
    for metric in ("cosine", "euclidean"):
        b = ImprintedHead(aggregation="mnn", n_neighbors=1, metric=metric, **kw).fit(X, y)
        assert np.array_equal(a, b.predict(Xt)), metric


def test_predict_proba_is_softmax_of_scores():
    X, y = _blobs()
    head = ImprintedHead().fit(X, y)
    p = head.predict_proba(X[:7])
    s = head.decision_function(X[:7]).astype(np.float64) / ImprintedHead.proba_temperature
    e = np.exp(s - s.max(1, keepdims=True))
    np.testing.assert_allclose(p, e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert np.array_equal(p.argmax(1), np.searchsorted(head.classes_, head.predict(X[:7])))


def test_decision_function_is_2d_for_two_classes():
    X, y = _blobs(n_classes=2)
    assert ImprintedHead().fit(X, y).decision_function(X).shape == (X.shape[0], 2)


def test_score_is_accuracy_and_blobs_are_learned():
    X, y = _blobs(n_classes=4, spread=0.2)
    for name in PRESETS:
        head = ImprintedHead.from_preset(name, random_state=0).fit(X, y)
        acc = head.score(X, y)
        assert acc == pytest.approx(np.mean(head.predict(X) == y))
        assert acc > 0.9, name


def test_few_rows_fewer_than_k_gives_all_rows():
    X, y = _blobs(n_classes=3, n_per=4)
    head = ImprintedHead(generator="kmeans", n_proxies=20, random_state=0).fit(X, y)
    assert head.weights_.shape == (12, X.shape[1])
    np.testing.assert_allclose(head.weights_, _l2(_l2(X)), atol=1e-6)


# ------------------------------------------------------------------- invariants
ORDER_INDEPENDENT = [
    dict(),
    dict(generator="kmeans", n_proxies=3, random_state=0),
    dict(generator="kmedoids", n_proxies=3, random_state=0),
    dict(generator="fps", n_proxies=3, random_state=0),
    dict(generator="random", n_proxies=3, random_state=0),
    dict(generator="cov_max", n_proxies=3),
    # uniform votes tie and ties go to the lowest class index; distance votes do not tie
    dict(
        generator="all", aggregation="mnn", n_neighbors=3, metric="euclidean", weighting="distance"
    ),
    dict(norm_pre="none", norm_post="quantile", norm_inf="none"),
    dict(norm_pre="none", generator="ls", norm_post="none", norm_inf="none"),
    dict(generator="kls", n_proxies=2, random_state=0, norm_post="none"),
    dict(presample="weibull(0.05,0.95)+fewshot(10)", random_state=0),
]


@pytest.mark.parametrize("kw", ORDER_INDEPENDENT, ids=lambda kw: str(sorted(kw.items()))[:60])
def test_class_order_permutation_invariance(kw):
    X, y = _blobs(n_classes=6, n_per=15, dim=8, spread=1.0, seed=11)
    Xt, _ = _blobs(n_classes=6, n_per=5, dim=8, spread=1.5, seed=12)
    names = np.array([f"c{i}" for i in range(6)])
    perm = np.array([3, 5, 0, 1, 4, 2])
    a = ImprintedHead(**kw).fit(X, names[y]).predict(Xt)
    # relabel classes so that their sorted order changes and reorder the class blocks;
    # rows keep their order within a class (seeded generators draw by row position)
    rows = np.argsort(perm[y], kind="stable")
    relabel = np.array([f"z{perm[i]}" for i in range(6)])
    b = ImprintedHead(**kw).fit(X[rows], relabel[y[rows]]).predict(Xt)
    back = dict(zip(relabel, names))
    assert [back[v] for v in b] == a.tolist()


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(generator="kmeans", n_proxies=3, random_state=0),
        dict(generator="all", aggregation="mnn", n_neighbors=3),
        dict(
            generator="cov_max", n_proxies=2, aggregation="mnn", n_neighbors=2, metric="manhattan"
        ),
    ],
)
def test_partial_fit_equals_fit_on_union(kw):
    X, y = _blobs(n_classes=6, n_per=12, dim=8, spread=1.0, seed=21)
    Xt, _ = _blobs(n_classes=6, n_per=6, dim=8, spread=1.5, seed=22)
    full = ImprintedHead(**kw).fit(X, y)
    inc = ImprintedHead(**kw)
    for group in ([0, 4], [1], [5, 2, 3]):
        m = np.isin(y, group)
        inc.partial_fit(X[m], y[m])
    assert inc.classes_.tolist() == full.classes_.tolist()
    np.testing.assert_allclose(inc.weights_, full.weights_, atol=1e-5)
    assert np.array_equal(inc.proxy_labels_, full.proxy_labels_)
    assert np.array_equal(inc.predict(Xt), full.predict(Xt))


def test_partial_fit_leaves_existing_proxies_untouched():
    X, y = _blobs(n_classes=4, seed=2)
    head = ImprintedHead(norm_pre="none", norm_post="quantile", norm_inf="none")
    head.partial_fit(X[y < 2], y[y < 2])
    before = head.weights_.copy()
    head.partial_fit(X[y >= 2], y[y >= 2])
    np.testing.assert_array_equal(head.weights_[head.proxy_labels_ < 2], before)
    with pytest.raises(DataError, match="new classes only"):
        head.partial_fit(X[y == 0], y[y == 0])


def test_partial_fit_refuses_least_squares():
    X, y = _blobs(n_classes=4)
    head = ImprintedHead(generator="ls").partial_fit(X[y < 2], y[y < 2])
    with pytest.raises(ConfigError, match="ls"):
        head.partial_fit(X[y >= 2], y[y >= 2])


def test_fit_does_not_mutate_inputs():
    X, y = _blobs()
    X0, y0 = X.copy(), y.copy()
    ImprintedHead(norm_post="quantile", generator="kmeans", n_proxies=3, random_state=0).fit(X, y)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


# ------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(aggregation="mnn"), "n_neighbors"),
        (dict(norm_inf="quantile"), "norm_inf"),
        (dict(norm_pre="quantile"), "norm_pre.*none, l2"),
        (dict(norm_post="zscore"), "norm_post"),
        (dict(generator="gmm"), "generator.*kmeans"),
        (dict(aggregation="mean"), "aggregation.*max, mnn"),
        (dict(aggregation="mnn", n_neighbors=0), "n_neighbors"),
        (dict(n_neighbors=3), "n_neighbors.*mnn"),
        (dict(weighting="distance"), "weighting"),
        (dict(metric="euclidean"), "metric.*mnn"),
        (dict(aggregation="mnn", n_neighbors=2, metric="cos"), "metric.*cosine"),
        (dict(aggregation="mnn", n_neighbors=2, weighting="inverse"), "weighting.*uniform"),
        (dict(generator="mean", n_proxies=5), "n_proxies"),
        (dict(generator="ls", n_proxies=2), "n_proxies"),
        (dict(generator="kmeans", n_proxies=0), "n_proxies"),
        (dict(generator="kmeans", n_proxies=2.5), "n_proxies"),
        (dict(ls_lambda=0.0), "ls_lambda"),
        (dict(ls_lambda=float("nan")), "ls_lambda"),
        (dict(presample="weibull(0.9,0.1)"), "q_lo < q_hi"),
        (dict(presample="gaussian(1)"), "presample"),
        (dict(presample={"n": 3}), "presample"),
        (dict(random_state="seed"), "random_state"),
    ],
)
def test_invalid_configurations(kw, match):
    X, y = _blobs()
    with pytest.raises(ConfigError, match=match) as info:
        ImprintedHead(**kw).fit(X, y)
    assert isinstance(info.value, (PrimingError, ValueError))


@pytest.mark.parametrize(
    "X, y, match",
    [
        (np.array([[1.0, np.nan], [0.0, 1.0]]), [0, 1], "NaN"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), [0, 1], "infinity"),
        (np.ones(4), [0, 1, 0, 1], "2D array"),
        (np.ones((0, 3)), [], "0 sample"),
        (np.ones((3, 2)), [0, 1], "inconsistent numbers of samples"),
        (np.ones((3, 2)), [0.5, 1.5, 2.5], "Unknown label type"),
    ],
)
def test_bad_training_data(X, y, match):
    with pytest.raises(DataError, match=match):
        ImprintedHead().fit(X, y)


def test_bad_test_data_and_unfitted():
    X, y = _blobs()
    with pytest.raises(NotFittedError):
        ImprintedHead().predict(X)
    head = ImprintedHead().fit(X, y)
    with pytest.raises(DataError, match="features"):
        head.predict(X[:, :3])
    with pytest.raises(DataError, match="NaN"):
        head.predict(np.full((2, X.shape[1]), np.nan))
    with pytest.raises(DataError):
        head.predict(X[0])


def test_zero_rows_are_safe():
    X = np.zeros((4, 3))
    y = np.array([0, 0, 1, 1])
    X[2:] = 1.0
    head = ImprintedHead().fit(X, y)
    assert np.isfinite(head.weights_).all()
    assert np.isfinite(head.decision_function(np.zeros((1, 3)))).all()


# ---------------------------------------------------------------------- storage
@pytest.mark.parametrize(
    "labels",
    [
        np.array(["cat", "dog", "emu", "fox"]),
        np.array([3, 1, 4, 1 + 1]),
        np.array([1.0, 2.0, 3.0, 4.0]),
    ],
)
@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(generator="kmeans", n_proxies=3, random_state=0),
        dict(norm_pre="none", norm_post="quantile", norm_inf="none"),
        dict(aggregation="mnn", n_neighbors=3, metric="mahalanobis", weighting="distance"),
        dict(presample={"weibull": (0.1, 0.9), "n_samples": 5}, random_state=1),
    ],
)
def test_save_load_round_trip(tmp_path, labels, kw):
    X, y = _blobs(n_classes=4)
    head = ImprintedHead(**kw).fit(X, labels[y])
    path = head.save(tmp_path / "head.npz")
    loaded = ImprintedHead.load(path)
    assert loaded.get_params() == {**head.get_params(), **({"presample": loaded.presample})}
    assert loaded.classes_.tolist() == head.classes_.tolist()
    np.testing.assert_array_equal(loaded.weights_, head.weights_)
    np.testing.assert_array_equal(loaded.decision_function(X), head.decision_function(X))
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_save_is_a_head_folder_and_load_errors(tmp_path):
    X, y = _blobs(n_classes=3)
    p = ImprintedHead().fit(X, y).save(tmp_path / "h")
    assert p == tmp_path / "h" and (p / "head.json").is_file() and (p / "arrays.npz").is_file()
    assert ImprintedHead.load(tmp_path / "h").n_features_in_ == X.shape[1]
    with pytest.raises(DataError, match="no head.json"):
        ImprintedHead.load(tmp_path / "missing")
    (tmp_path / "h" / "arrays.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="arrays.npz"):
        ImprintedHead.load(tmp_path / "h")
    with pytest.raises(NotFittedError):
        ImprintedHead().save(tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_saved_file_needs_no_pickle(tmp_path):
    X, y = _blobs(n_classes=3)
    path = ImprintedHead().fit(X, np.array(["a", "b", "c"])[y]).save(tmp_path / "h")
    with np.load(path / "arrays.npz", allow_pickle=False) as z:
        assert {"fitted:weights_", "fitted:proxy_labels_", "classes_"} <= set(z.files)
    meta = json.loads((path / "head.json").read_text())
    assert meta["kind"] == "imprinted" and meta["params"]["generator"] == "mean"


# ---------------------------------------------------- scikit-learn compatibility
# Expected failures, each by design:
# - check_classifiers_train, check_classifiers_classes, check_decision_proba_consistency:
#   decision_function is (n_samples, n_classes) also for two classes (the heads'
#   contract, used by PrimedHead); scikit-learn expects a 1-D score for binary problems.
# - check_fit_score_takes_y: it calls partial_fit with already-fitted classes;
#   partial_fit is class-incremental and only accepts new classes.
_BINARY_2D = {
    "check_classifiers_train": "decision_function is 2-D for binary problems (by design)",
    "check_classifiers_classes": "decision_function is 2-D for binary problems (by design)",
    "check_decision_proba_consistency": "decision_function is 2-D for binary problems",
    "check_fit_score_takes_y": "partial_fit only adds new classes (class-incremental)",
}


@parametrize_with_checks(
    [
        ImprintedHead(),
        ImprintedHead.from_preset("imprint-best", n_proxies=3, random_state=0),
        ImprintedHead.from_preset("janson2022"),
        ImprintedHead(aggregation="mnn", n_neighbors=3, weighting="distance"),
    ],
    expected_failed_checks=lambda est: {
        k: v
        for k, v in _BINARY_2D.items()
        # one-hot votes (mnn, m=1) rank probabilities exactly like the scores
        if not (k == "check_decision_proba_consistency" and est.n_neighbors == 1)
    },
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# ------------------------------------------------------------ property tests


@given(
    seed=st.integers(0, 10_000),
    n_classes=st.integers(2, 6),
    k=st.integers(1, 4),
    generator=st.sampled_from(["mean", "kmeans", "fps", "cov_max", "all"]),
)
def test_property_partial_fit_in_random_groups_equals_fit(seed, n_classes, k, generator):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 9, size=n_classes)
    y = np.repeat(np.arange(n_classes), counts)
    X = (rng.normal(size=(y.size, 5)) + 2 * rng.normal(size=(n_classes, 5))[y]).astype(np.float32)
    kw = dict(generator=generator, n_proxies=1 if generator == "mean" else k, random_state=seed)
    full = ImprintedHead(**kw).fit(X, y)
    inc = ImprintedHead(**kw)
    groups = np.array_split(rng.permutation(n_classes), rng.integers(1, n_classes + 1))
    for g in groups:
        m = np.isin(y, g)
        inc.partial_fit(X[m], y[m])
    np.testing.assert_allclose(inc.weights_, full.weights_, atol=1e-5)
    Xt = rng.normal(size=(7, 5)).astype(np.float32)
    np.testing.assert_allclose(inc.decision_function(Xt), full.decision_function(Xt), atol=1e-5)


@given(seed=st.integers(0, 10_000), perm_seed=st.integers(0, 100))
def test_property_class_relabelling_permutes_score_columns(seed, perm_seed):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(5), 6)
    X = rng.normal(size=(30, 4)).astype(np.float32)
    perm = np.random.default_rng(perm_seed).permutation(5)
    a = ImprintedHead(generator="kmeans", n_proxies=2, random_state=0).fit(X, y)
    b = ImprintedHead(generator="kmeans", n_proxies=2, random_state=0).fit(X, perm[y])
    Xt = rng.normal(size=(8, 4)).astype(np.float32)
    # column perm[c] of b is column c of a
    np.testing.assert_allclose(b.decision_function(Xt)[:, perm], a.decision_function(Xt), atol=1e-5)
