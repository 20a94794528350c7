import logging

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from priming.errors import ConfigError, DataError, NotFittedError
from priming.heads.alpha import check_alpha, schedule_alpha, stratified_folds
from priming.heads.primed import PrimedHead
from tests._fakes import FakeImprint


def l2(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def by_hand_W(T, X, y, alpha, empty="text"):
    """Neural Priming's W = αT + (1−α)C, C_c = normalise(Σ normalise(x)), written out."""
    W = np.zeros_like(T, dtype=np.float64)
    for c in range(T.shape[0]):
        rows = [X[i] / np.linalg.norm(X[i]) for i in range(len(y)) if y[i] == c]
        if rows:
            s = np.sum(rows, axis=0)
            C = s / np.linalg.norm(s)
        else:
            C = T[c] if empty == "text" else np.zeros(T.shape[1])
        W[c] = alpha * T[c] + (1 - alpha) * C
    return W


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    T = l2(rng.standard_normal((4, 6)))
    X = rng.standard_normal((30, 6))
    y = rng.integers(0, 3, 30)  # class 3 has no items
    Xt = rng.standard_normal((20, 6))
    return T, X, y, Xt


@pytest.mark.parametrize("empty", ["text", "zero"])
def test_equals_neural_priming_formula(problem, empty):
    T, X, y, Xt = problem
    head = PrimedHead(T, alpha=0.7, imprint=FakeImprint(), empty_class=empty).fit(X, y)
    W = by_hand_W(T, X, y, 0.7, empty)
    np.testing.assert_allclose(head.decision_function(Xt), l2(Xt) @ W.T, atol=1e-5)
    W_lin, b = head.to_linear()
    assert b is None
    np.testing.assert_allclose(W_lin, W, atol=1e-6)
    assert head.alpha_ == 0.7 and head.alpha_source_ == "fixed"
    assert head.empty_classes_.tolist() == [3]


@given(
    alpha=st.floats(0, 1),
    seed=st.integers(0, 10_000),
    n=st.integers(0, 25),
)
def test_formula_property(alpha, seed, n):
    rng = np.random.default_rng(seed)
    T = l2(rng.standard_normal((3, 5)))
    X = rng.standard_normal((n, 5)) + 0.1
    y = rng.integers(0, 3, n)
    Xt = rng.standard_normal((7, 5))
    head = PrimedHead(T, alpha=alpha, imprint=FakeImprint()).fit(X, y)
    np.testing.assert_allclose(
        head.decision_function(Xt), l2(Xt) @ by_hand_W(T, X, y, alpha).T, atol=1e-5
    )


def test_names_and_bad_labels(problem):
    T, X, y, Xt = problem
    names = np.array(["ant", "bee", "cat", "dog"])
    head = PrimedHead(T, classes=list(names), alpha=0.5, imprint=FakeImprint()).fit(X, names[y])
    ref = PrimedHead(T, alpha=0.5, imprint=FakeImprint()).fit(X, y)
    assert head.predict(Xt).tolist() == names[ref.predict(Xt)].tolist()
    with pytest.raises(DataError, match=r"'eel'.*valid classes: 'ant', 'bee'"):
        head.fit(X, np.where(y == 0, "eel", names[y]))
    with pytest.raises(DataError, match="row indices"):
        PrimedHead(T, imprint=FakeImprint()).fit(X, names[y])
    with pytest.raises(DataError, match="not classes of this head: 7"):
        PrimedHead(T, imprint=FakeImprint()).fit(X, np.where(y == 0, 7, y))
    with pytest.raises(DataError, match="6 features but the head expects 6|has 5 features"):
        ref.predict(Xt[:, :5])


def test_bad_params(problem):
    T, X, y, _ = problem
    with pytest.raises(ConfigError, match="empty_class"):
        PrimedHead(T, empty_class="none", imprint=FakeImprint()).fit(X, y)
    with pytest.raises(ConfigError, match="alpha"):
        PrimedHead(T, alpha=1.5, imprint=FakeImprint()).fit(X, y)
    with pytest.raises(ConfigError, match="'schedule' or 'auto'"):
        check_alpha("best")
    with pytest.raises(NotFittedError):
        PrimedHead(T).predict(X)


def test_empty_pool_is_zero_shot(problem, caplog):
    T, _, _, Xt = problem
    with caplog.at_level(logging.WARNING):
        head = PrimedHead(T, alpha=0.3, imprint=FakeImprint()).fit(
            np.zeros((0, 6)), np.zeros(0, int)
        )
    assert "no pool items" in caplog.text
    np.testing.assert_allclose(head.decision_function(Xt), l2(Xt) @ T.T, atol=1e-6)


def test_schedule():
    assert schedule_alpha(0) == 0.9
    assert schedule_alpha(2) == pytest.approx(0.58)
    assert schedule_alpha(3) == pytest.approx(0.55)
    assert schedule_alpha(16) == pytest.approx(0.55)
    assert 0.58 < schedule_alpha(1) < 0.9
    rng = np.random.default_rng(1)
    T = l2(rng.standard_normal((3, 4)))
    X = rng.standard_normal((12, 4))
    y = np.repeat([0, 1, 2], 4)
    shots = np.tile([True, True, False, False], 3)
    h = PrimedHead(T, imprint=FakeImprint()).fit(X, y, shots=shots)
    assert h.alpha_ == pytest.approx(0.58) and h.n_shots_ == 2
    assert PrimedHead(T, imprint=FakeImprint()).fit(X, y).alpha_ == pytest.approx(0.9)


def _clusters(rng, n_per, centers, noise=0.3):
    X = np.concatenate([c + noise * rng.standard_normal((n_per, len(c))) for c in centers])
    y = np.repeat(np.arange(len(centers)), n_per)
    return X, y


def test_auto_alpha_prefers_centroids_when_text_is_wrong():
    rng = np.random.default_rng(2)
    centers = 3 * l2(rng.standard_normal((4, 8)))
    X, y = _clusters(rng, 10, centers)
    T = l2(centers[[1, 2, 3, 0]])  # text head points at the wrong classes
    shots = np.zeros(len(y), bool)
    shots[::2] = True
    h = PrimedHead(T, alpha="auto", imprint=FakeImprint(), random_state=0).fit(X, y, shots=shots)
    assert h.alpha_source_ == "cv-shots"
    assert h.alpha_ <= 0.3
    assert set(h.alpha_scores_) == {float(a) for a in np.round(np.linspace(0, 1, 21), 2)}


def test_auto_alpha_prefers_text_when_pool_is_mislabelled():
    rng = np.random.default_rng(3)
    centers = 3 * l2(rng.standard_normal((4, 8)))
    T = l2(centers)
    X_shots, y_shots = _clusters(rng, 3, centers)
    X_pool, y_pool = _clusters(rng, 20, centers)
    y_pool = (y_pool + 1) % 4  # captions lie
    X = np.concatenate([X_shots, X_pool])
    y = np.concatenate([y_shots, y_pool])
    shots = np.arange(len(y)) < len(y_shots)
    h = PrimedHead(T, alpha="auto", imprint=FakeImprint(), random_state=0).fit(X, y, shots=shots)
    assert h.alpha_ >= 0.6
    # no shots: validation on held-out pool items, which trust the (lying) captions
    h2 = PrimedHead(T, alpha="auto", imprint=FakeImprint(), random_state=0).fit(X_pool, y_pool)
    assert h2.alpha_source_ == "cv-pool" and h2.alpha_ <= 0.4


def test_stratified_folds_balanced():
    y = np.repeat([0, 1, 2], [10, 5, 1])
    f = stratified_folds(y, 5, random_state=0)
    assert np.bincount(f[y == 0], minlength=5).tolist() == [2, 2, 2, 2, 2]
    assert np.bincount(f[y == 1], minlength=5).tolist() == [1, 1, 1, 1, 1]
    assert np.array_equal(f, stratified_folds(y, 5, random_state=0))


def test_multi_proxy_mix_and_no_linear_export(problem):
    T, X, y, Xt = problem
    head = PrimedHead(T, alpha=0.25, imprint=FakeImprint(generator="all")).fit(X, y)
    Xn, Xtn = l2(X), l2(Xt)
    agg = Xtn @ T.T  # class 3 empty -> its text score
    for c in range(3):
        agg[:, c] = (Xtn @ Xn[y == c].T).max(axis=1)
    np.testing.assert_allclose(
        head.decision_function(Xt), 0.25 * (Xtn @ T.T) + 0.75 * agg, atol=1e-5
    )
    with pytest.raises(ConfigError, match="several proxies"):
        head.to_linear()


def test_save_refuses_a_duck_typed_imprint(problem, tmp_path):
    T, X, y, Xt = problem
    names = ["ant", "bee", "cat", "dog"]
    head = PrimedHead(T, classes=names, alpha="auto", imprint=FakeImprint(), random_state=0)
    head.fit(X, np.array(names)[y])
    with pytest.raises(DataError, match="cannot save 'imprint'"):
        head.save(tmp_path / "head")
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    with pytest.raises(DataError, match="no head.json"):
        PrimedHead.load(tmp_path)


# -- with the real ImprintedHead --------------------------------------------------------


@pytest.mark.parametrize("empty", ["text", "zero"])
def test_default_preset_equals_formula_real_imprint(problem, empty):
    T, X, y, Xt = problem
    head = PrimedHead(T, alpha=0.58, empty_class=empty).fit(X, y)
    W = by_hand_W(T, X, y, 0.58, empty)
    np.testing.assert_allclose(head.decision_function(Xt), l2(Xt) @ W.T, atol=1e-5)
    np.testing.assert_allclose(head.to_linear()[0], W, atol=1e-5)
    assert head.predict(Xt).tolist() == np.argmax(l2(Xt) @ W.T, axis=1).tolist()


def test_real_multi_proxy_and_save_load(problem, tmp_path):
    from priming.heads import ImprintedHead

    T, X, y, Xt = problem
    im = ImprintedHead.from_preset("imprint-best", n_proxies=3, random_state=0)
    head = PrimedHead(T, classes=["a", "b", "c", "d"], alpha="auto", imprint=im, random_state=0)
    head.fit(X, np.array(["a", "b", "c", "d"])[y])
    assert head.weights_.shape[0] > 3  # several proxies per class
    with pytest.raises(ConfigError, match="not a single linear layer"):
        head.to_linear()
    head.save(tmp_path / "h")
    assert (tmp_path / "h" / "fitted" / "imprint_" / "head.json").is_file()
    back = PrimedHead.load(tmp_path / "h")
    assert isinstance(back.imprint, ImprintedHead) and back.imprint.n_proxies == 3
    assert back.alpha_scores_ == head.alpha_scores_
    np.testing.assert_allclose(back.decision_function(Xt), head.decision_function(Xt), atol=1e-6)
    assert back.predict(Xt).tolist() == head.predict(Xt).tolist()
    assert 0 <= back.alpha_ <= 1 and back.alpha_source_ == "cv-pool"


def test_mnn_imprint_mixes(problem):
    from priming.heads import ImprintedHead

    T, X, y, Xt = problem
    im = ImprintedHead.from_preset("janson2022")
    head = PrimedHead(T, alpha=0.5, imprint=im).fit(X, y)
    ref = ImprintedHead.from_preset("janson2022").fit(X, y)
    expected = 0.5 * (l2(Xt) @ T.T)
    agg = l2(Xt) @ T.T  # class 3 empty -> text score
    agg[:, :3] = ref.decision_function(Xt)
    np.testing.assert_allclose(head.decision_function(Xt), expected + 0.5 * agg, atol=1e-5)


def test_auto_alpha_on_validation_items():
    rng = np.random.default_rng(5)
    centers = 3 * l2(rng.standard_normal((4, 8)))
    X, y = _clusters(rng, 10, centers)
    Xv, yv = _clusters(rng, 5, centers)
    T = l2(centers[[1, 2, 3, 0]])  # wrong text head: validation must pull alpha down
    h = PrimedHead(T, alpha="auto", imprint=FakeImprint()).fit(X, y, validation=(Xv, yv))
    assert h.alpha_source_ == "validation" and h.alpha_ <= 0.3
    T_good = l2(centers)
    y_lies = (y + 1) % 4  # pool captions lie, validation labels are right
    h2 = PrimedHead(T_good, alpha="auto", imprint=FakeImprint()).fit(X, y_lies, validation=(Xv, yv))
    assert h2.alpha_ >= 0.6


def test_auto_alpha_on_the_filtered_pool_warns_that_it_is_biased(caplog):
    """α auto with neither shots nor validation rows falls back to cross-validation on the
    pool itself — a signal made by the filter that labelled it: never silently."""
    rng = np.random.default_rng(0)
    T = rng.normal(size=(3, 8)).astype(np.float32)
    X = np.repeat(T, 4, axis=0) + 0.1 * rng.normal(size=(12, 8)).astype(np.float32)
    y = np.repeat(np.arange(3), 4)
    with caplog.at_level(logging.WARNING, logger="priming.heads.primed"):
        head = PrimedHead(T, alpha="auto").fit(X, y)
    assert head.alpha_source_ == "cv-pool"
    assert any("favours the text head" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="priming.heads.primed"):
        head = PrimedHead(T, alpha="auto").fit(X, y, validation=(X[:6], y[:6]))
    assert head.alpha_source_ == "validation"
    assert not any("favours the text head" in r.getMessage() for r in caplog.records)
