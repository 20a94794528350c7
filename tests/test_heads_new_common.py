"""Shared synthetic problem + the estimator contract for the new training-free heads."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score

from priming.errors import ConfigError, DataError
from priming.heads.base import HEADS, load_head


def unit(A):
    A = np.asarray(A, dtype=np.float64)
    return A / np.linalg.norm(A, axis=-1, keepdims=True)


def make_problem(n_classes=4, dim=16, shots=8, n_test=200, shift=1.5, noise=0.35, seed=0):
    """Shifted clusters: the data lives around class means ``M``; the text head ``T`` points
    at ``M`` plus a large random shift, so zero-shot is imperfect and the data can fix it."""
    rng = np.random.default_rng(seed)
    M = unit(rng.normal(size=(n_classes, dim)))
    T = unit(M + shift * unit(rng.normal(size=(n_classes, dim))))

    def draw(n_per):
        y = np.repeat(np.arange(n_classes), n_per)
        X = M[y] + noise * rng.normal(size=(y.size, dim)) / np.sqrt(dim) * 3
        return X, y

    Xs, ys = draw(shots)
    Xt, yt = draw(n_test // n_classes)
    return T, Xs, ys, Xt, yt


def zero_shot_acc(T, X, y):
    return float(np.mean(np.argmax(unit(X) @ T.T, axis=1) == y))


# (module, kind, class name) of every head of this branch
NEW_HEADS = [
    ("priming.heads.tip_adapter", "tip-adapter", "TipAdapterHead"),
    ("priming.heads.gda", "gda", "GDAHead"),
    ("priming.heads.transclip", "transclip", "TransCLIPHead"),
    ("priming.heads.zlap", "zlap", "ZLaPHead"),
    ("priming.heads.tda", "tda", "TDAHead"),
    ("priming.heads.proker", "proker", "ProKeRHead"),
]


# parameters under which a head with no labelled rows must reproduce the zero-shot head
# (None: no setting reduces the head to zero-shot; its own tests cover its limits)
ZERO_SHOT_PARAMS = {
    "transclip": {"kl_weight": 1e9},
    "zlap": None,
    "tda": {"pos_alpha": 0.0, "neg_alpha": 0.0},
}


def _head_class(module, name):
    return getattr(importlib.import_module(module), name)


@pytest.fixture(params=NEW_HEADS, ids=[k for _, k, _ in NEW_HEADS])
def head_cls(request):
    module, kind, name = request.param
    cls = _head_class(module, name)
    assert HEADS.get(kind) is cls
    return cls


def test_example_clone_gridsearch_cross_val(head_cls):
    T, Xs, ys, Xt, yt = make_problem(n_classes=3, dim=8, shots=6)
    est = head_cls._example(3, 8, random_state=0)
    c = clone(est)
    assert c.get_params().keys() == est.get_params().keys()
    scores = cross_val_score(est, np.vstack([Xs, Xt[:30]]), np.r_[ys, yt[:30]], cv=3)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    param = "random_state" if "random_state" in est.get_params() else "logit_scale"
    values = [0, 1] if param == "random_state" else [50.0, 100.0]
    gs = GridSearchCV(est, {param: values}, cv=2).fit(Xs, ys)
    assert gs.best_estimator_.predict(Xt[:5]).shape == (5,)


@pytest.mark.parametrize(
    "spec",
    [h for h in NEW_HEADS if ZERO_SHOT_PARAMS.get(h[1], {}) is not None],
    ids=lambda h: h[1],
)
def test_zero_shot_without_labelled_rows(spec):
    module, kind, name = spec
    T, Xs, ys, Xt, yt = make_problem()
    head = _head_class(module, name)(text_weights=T, **ZERO_SHOT_PARAMS.get(kind, {})).fit(None)
    pred = head.predict(Xt)
    np.testing.assert_array_equal(pred, np.argmax(unit(Xt) @ T.T, axis=1))


def test_string_labels_and_save_load_round_trip(head_cls, tmp_path):
    T, Xs, ys, Xt, yt = make_problem(n_classes=3, dim=8, shots=4)
    names = ["cat", "dog", "owl"]
    head = head_cls(text_weights=T, classes=names).fit(Xs, np.asarray(names)[ys])
    p = head.save(tmp_path / "h", metadata={"model": "synthetic"})
    back = load_head(p)
    assert type(back) is head_cls
    np.testing.assert_allclose(back.decision_function(Xt), head.decision_function(Xt))
    np.testing.assert_array_equal(back.predict(Xt), head.predict(Xt))
    assert set(back.predict(Xt)) <= set(names)
    assert back.metadata_ == {"model": "synthetic"}
    if hasattr(head, "selection_"):
        assert back.selection_ == head.selection_


def test_bad_inputs_name_the_problem(head_cls):
    T, Xs, ys, Xt, yt = make_problem(n_classes=3, dim=8, shots=4)
    with pytest.raises(ConfigError, match="text_weights"):
        head_cls().fit(Xs, ys)
    with pytest.raises(DataError, match="not classes"):
        head_cls(text_weights=T).fit(Xs, ys + 5)
    head = head_cls(text_weights=T).fit(Xs, ys)
    with pytest.raises(DataError, match="features"):
        head.decision_function(Xt[:, :5])
    bad = Xs.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        head_cls(text_weights=T).fit(bad, ys)


def test_single_row_batches_and_shots_only_for_some_classes(head_cls):
    T, Xs, ys, Xt, yt = make_problem(n_classes=3, dim=8, shots=3)
    keep = ys != 2  # class 2 has no labelled rows
    head = head_cls(text_weights=T).fit(Xs[keep], ys[keep])
    for n in (1, 2):
        scores = head.decision_function(Xt[:n])
        assert scores.shape == (n, 3) and np.isfinite(scores).all()
