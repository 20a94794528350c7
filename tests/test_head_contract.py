"""The head contract over the registry: every registered head kind (heads added later are
covered automatically) runs scikit-learn's estimator checks, works in clone /
GridSearchCV / cross_val_score with nested parameters, and saves in the one folder format;
hostile head files are refused with a DataError naming the file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from priming.errors import ConfigError, DataError
from priming.heads import (
    HEADS,
    ImprintedHead,
    PrimedHead,
    ZeroShotHead,
    load_head,
    primed_scores,
    read_head_metadata,
)
from priming.imprint.normalize import l2_normalize


def _import_head_modules() -> None:
    """Import every public module of priming.heads so that each head kind registers, even
    one that priming/heads/__init__.py does not import yet."""
    import importlib
    import pkgutil

    import priming.heads

    for info in pkgutil.iter_modules(priming.heads.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"priming.heads.{info.name}")


_import_head_modules()
KINDS = HEADS.names()
N_CLASSES, N_FEATURES = 3, 8


def _problem(head, n_per_class=30, noise=0.15, seed=0, labels=None):
    """A separable problem for ``head``: the class centres are its text weights when it
    has them (so any text weights work), else random unit directions. ``labels``: the
    head's class names if it has ``classes``, else these (default: row indices)."""
    rng = np.random.default_rng(seed)
    T = getattr(head, "text_weights", None)
    centers = (
        l2_normalize(np.asarray(T, dtype=np.float64))
        if T is not None
        else l2_normalize(rng.standard_normal((N_CLASSES, N_FEATURES)))
    )
    C, D = centers.shape
    yi = np.repeat(np.arange(C), n_per_class)
    X = centers[yi] + noise * rng.standard_normal((len(yi), D)) / np.sqrt(D)
    names = getattr(head, "classes", None)
    if names is None:
        names = labels
    y = yi if names is None else np.asarray(names, dtype=object)[yi]
    return X.astype(np.float32), y


def _transductive(kind) -> bool:
    """Kinds whose scores depend on the batch (transductive and test-time heads)."""
    return bool(HEADS.get(kind).transductive)


def _example(kind, random_state=0):
    return HEADS.get(kind)._example(N_CLASSES, N_FEATURES, random_state)


# ------------------------------------------------------------- scikit-learn's checks
# Documented expected failures, by head kind.
# Heads built on fixed text weights T (C x D: "zero-shot", "primed") refuse X of any other
# width than T's (a DataError naming the mismatch: embeddings from another model), and
# their classes are T's rows, not the labels of y. scikit-learn's checks fit on data of
# 1 to 10 features with their own labels, so every check that fits or predicts on such
# data fails by design; what is checked for them is construction, get/set_params, clone,
# and not-fitted errors. Their fit/predict behaviour is tested below on data of T's width
# (GridSearchCV, cross_val_score, round trips) and in test_primed_head / test_text_heads.
_FIXED_WIDTH = (
    "fixed text weights: the check's X has another width than T or labels outside T's rows"
)
_FIXED_WIDTH_CHECKS = (
    "check_fit_score_takes_y check_estimators_overwrite_params check_dont_overwrite_parameters "
    "check_estimators_fit_returns_self check_readonly_memmap_input "
    "check_n_features_in_after_fitting check_positive_only_tag_during_fit "
    "check_estimators_dtypes check_dtype_object "
    "check_estimators_empty_data_messages check_pipeline_consistency check_estimators_nan_inf "
    "check_estimators_pickle check_f_contiguous_array_estimator "
    "check_classifier_data_not_an_array check_classifiers_one_label check_classifiers_classes "
    "check_classifiers_train check_classifiers_regression_target check_supervised_y_2d "
    "check_decision_proba_consistency check_methods_sample_order_invariance "
    "check_methods_subset_invariance check_fit2d_1sample check_fit2d_1feature "
    "check_dict_unchanged check_fit_idempotent check_fit_check_is_fitted check_n_features_in "
    "check_fit2d_predict1d check_requires_y_none"
).split()
# the same, with weights, for heads whose fit takes sample_weight
_FIXED_WIDTH_WEIGHT_CHECKS = (
    "check_sample_weights_pandas_series check_sample_weights_not_an_array "
    "check_sample_weights_list check_sample_weights_shape check_sample_weights_not_overwritten "
    "check_sample_weight_equivalence_on_dense_data check_all_zero_sample_weights_error "
    "check_classifiers_one_label_sample_weights"
).split()
# ImprintedHead (see also test_imprinted_head.py): decision_function is (n, C) also for
# two classes (the heads' contract, used by PrimedHead) where scikit-learn expects a 1-D
# binary score; partial_fit is class-incremental and refuses already-fitted classes.
_IMPRINTED = {
    "check_classifiers_train": "decision_function is 2-D for binary problems (by design)",
    "check_classifiers_classes": "decision_function is 2-D for binary problems (by design)",
    "check_decision_proba_consistency": "decision_function is 2-D for binary problems",
    "check_fit_score_takes_y": "partial_fit only adds new classes (class-incremental)",
}
EXPECTED_FAILURES = {
    "imprinted": _IMPRINTED,
    "zero-shot": dict.fromkeys(_FIXED_WIDTH_CHECKS, _FIXED_WIDTH),
    "primed": dict.fromkeys(_FIXED_WIDTH_CHECKS, _FIXED_WIDTH),
}


def _expected_failures(est) -> dict:
    """The documented failures of ``est``'s kind; a kind not listed here that is built on
    text weights gets the fixed-width failures (the same reason as for "zero-shot"), any
    other kind none until it documents some here."""
    if est.kind in EXPECTED_FAILURES:
        return EXPECTED_FAILURES[est.kind]
    if getattr(est, "text_weights", None) is not None:
        import inspect

        names = list(_FIXED_WIDTH_CHECKS)
        if "sample_weight" in inspect.signature(est.fit).parameters:
            names += _FIXED_WIDTH_WEIGHT_CHECKS
        return dict.fromkeys(names, _FIXED_WIDTH)
    return {}


@parametrize_with_checks([_example(k) for k in KINDS], expected_failed_checks=_expected_failures)
def test_sklearn_checks_on_every_registered_head(estimator, check):
    check(estimator)


# ------------------------------------------------------------- the contract per kind
@pytest.mark.parametrize("kind", KINDS)
def test_registered_kind_is_a_base_head_with_its_kind(kind):
    from priming.heads.base import BaseHead

    cls = HEADS.get(kind)
    assert issubclass(cls, BaseHead) and cls.kind == kind
    head = _example(kind)
    assert isinstance(head, cls)


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_parameter_is_refused(kind):
    head = _example(kind)
    with pytest.raises(ConfigError, match="nonsense"):
        head.set_params(nonsense=1)


@pytest.mark.parametrize("kind", KINDS)
def test_clone_gives_an_unfitted_equal_copy(kind):
    X, y = _problem(_example(kind))
    head = _example(kind).fit(X, y)
    twin = clone(head)
    assert not hasattr(twin, "classes_")
    assert twin.get_params().keys() == head.get_params().keys()
    np.testing.assert_array_equal(twin.fit(X, y).predict(X), head.predict(X))


@pytest.mark.parametrize("kind", KINDS)
def test_grid_search_and_cross_val_score_on_a_separable_problem(kind):
    head = _example(kind)
    X, y = _problem(head)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(head, X, y, cv=cv)
    assert scores.shape == (3,) and scores.min() >= 0.9, scores
    grid = HEADS.get(kind)._example_grid()
    search = GridSearchCV(head, grid, cv=cv).fit(X, y)
    assert search.best_score_ >= 0.9
    assert set(search.best_params_) == set(grid)
    assert search.score(X, y) >= 0.9


@pytest.mark.parametrize("kind", KINDS)
def test_fit_predict_invariants_on_the_heads_own_width(kind):
    """What scikit-learn's checks cannot test on fixed-width heads, tested on data of the
    head's width for every kind: inputs untouched, read-only input, idempotent fit,
    subset and order invariance of the scores, n_features_in_, wrong width refused."""
    head = _example(kind)
    X, y = _problem(head)
    X0, y0 = X.copy(), np.array(y, copy=True)
    Xr = X.copy()
    Xr.flags.writeable = False
    head.fit(Xr, y)
    assert np.array_equal(X, X0) and np.array_equal(y, y0)
    assert head.n_features_in_ == X.shape[1] and len(head.classes_) == N_CLASSES
    S = head.decision_function(Xr)
    assert S.shape == (len(X), N_CLASSES) and np.isfinite(S).all()
    np.testing.assert_array_equal(clone(head).fit(X, y).decision_function(X), S)
    np.testing.assert_allclose(head.decision_function(X.astype(np.float64)), S, atol=1e-6)
    if not _transductive(kind):
        order = np.random.default_rng(0).permutation(len(X))
        np.testing.assert_allclose(head.decision_function(X[order]), S[order], atol=1e-6)
        np.testing.assert_allclose(head.decision_function(X[5:9]), S[5:9], atol=1e-6)
    P = head.predict_proba(X)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-6)
    assert np.array_equal(head.classes_[P.argmax(axis=1)], head.predict(X))
    with pytest.raises(DataError, match="features"):
        head.predict(np.ones((2, N_FEATURES + 1), np.float32))
    with pytest.raises(DataError):
        head.predict(np.full((2, N_FEATURES), np.nan, np.float32))


@pytest.mark.parametrize("kind", KINDS)
def test_not_fitted_is_a_clear_error(kind, tmp_path):
    from priming.errors import NotFittedError

    head = _example(kind)
    assert head.__sklearn_is_fitted__() is False
    with pytest.raises(NotFittedError):
        head.decision_function(np.ones((1, N_FEATURES), np.float32))
    with pytest.raises(NotFittedError):
        head.save(tmp_path / "h")


@pytest.mark.parametrize("kind", KINDS)
def test_string_labels(kind):
    head = _example(kind)
    names = ["ant", "bee", "cat"]
    if "classes" in head.get_params():
        head.set_params(classes=names)
    X, y = _problem(head, labels=names)
    pred = head.fit(X, y).predict(X)
    assert set(pred.tolist()) <= set(names) and np.mean(pred == y) >= 0.9


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_through_the_registry(kind, tmp_path):
    head = _example(kind)
    X, y = _problem(head)
    head.fit(X, y)
    meta = {"model": {"name": "fake:bow", "fingerprint": "abc123"}}
    path = head.save(tmp_path / "h", metadata=meta)
    back = load_head(path)
    assert type(back) is type(head) and back.get_params().keys() == head.get_params().keys()
    np.testing.assert_allclose(back.decision_function(X), head.decision_function(X), atol=1e-6)
    np.testing.assert_array_equal(back.predict(X), head.predict(X))
    assert back.classes_.tolist() == head.classes_.tolist()
    assert back.metadata_ == meta and read_head_metadata(path) == meta
    # saving the loaded head keeps the metadata; saving again replaces the folder
    back.save(tmp_path / "h")
    assert read_head_metadata(tmp_path / "h") == meta
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h"]


def test_hashable_labels_tuples_for_text_weight_heads(tmp_path):
    names = [("dog", 1), ("cat", 2), ("owl", 3)]
    for cls in (ZeroShotHead, PrimedHead):
        head = cls._example(N_CLASSES, N_FEATURES, 0).set_params(classes=names)
        X, _ = _problem(head)
        y = [names[i] for i in np.repeat(np.arange(3), 30)]
        pred = head.fit(X, y).predict(X)
        assert pred.dtype == object and all(isinstance(p, tuple) for p in pred)
        assert np.mean([p == t for p, t in zip(pred, y)]) >= 0.9
        with pytest.raises(DataError, match="cannot save class labels"):
            head.save(tmp_path / cls.kind)
        assert not (tmp_path / cls.kind).exists()


def test_zero_row_scores_zero_not_nan():
    head = ZeroShotHead._example(N_CLASSES, N_FEATURES, 0).fit()
    X = np.zeros((2, N_FEATURES), np.float32)
    assert np.array_equal(head.decision_function(X), np.zeros((2, N_CLASSES)))
    primed = PrimedHead._example(N_CLASSES, N_FEATURES, 0)
    Xf, y = _problem(primed)
    assert np.isfinite(primed.fit(Xf, y).decision_function(X)).all()


# ------------------------------------------------------------- nested parameters
def test_primed_nested_imprint_parameters():
    T = ZeroShotHead._example(N_CLASSES, N_FEATURES, 0).text_weights
    head = PrimedHead(T, alpha=0.5).set_params(imprint__n_proxies=3, imprint__generator="kmeans")
    assert isinstance(head.imprint, ImprintedHead)
    assert head.get_params()["imprint__n_proxies"] == 3
    X, y = _problem(head)
    head.fit(X, y)
    assert head.imprint_.n_proxies == 3 and head.weights_.shape[0] == 3 * N_CLASSES
    assert head.imprint.__sklearn_is_fitted__() is False  # the template is never fitted


def test_grid_search_over_imprint_aggregation():
    T = ZeroShotHead._example(N_CLASSES, N_FEATURES, 1).text_weights
    head = PrimedHead(T, alpha=0.5)
    X, y = _problem(head, seed=1)
    grid = {"imprint__aggregation": ["max", "mnn"], "imprint__n_neighbors": [None, 3]}
    search = GridSearchCV(head, grid, cv=3, error_score="raise")
    with pytest.raises(ConfigError, match="n_neighbors"):
        search.fit(X, y)  # max with n_neighbors=3 is refused, never silently ignored
    grid = [
        {"imprint__aggregation": ["max"]},
        {"imprint__aggregation": ["mnn"], "imprint__n_neighbors": [3]},
    ]
    search = GridSearchCV(head, grid, cv=3).fit(X, y)
    assert len(search.cv_results_["params"]) == 2 and search.best_score_ >= 0.9


# ------------------------------------------------------------- the one primed score
def test_primed_scores_equals_decision_function_on_a_non_unit_T():
    rng = np.random.default_rng(3)
    T = (rng.standard_normal((4, N_FEATURES)) * [[0.5], [2], [1], [3]]).astype(np.float32)
    X = rng.standard_normal((40, N_FEATURES)).astype(np.float32)
    y = rng.integers(0, 3, 40)  # class 3 is empty
    Xt = rng.standard_normal((25, N_FEATURES)).astype(np.float32)
    for empty in ("text", "zero"):
        head = PrimedHead(T, alpha=0.3, empty_class=empty).fit(X, y)
        agg = head.imprint_.decision_function(Xt)
        got = primed_scores(Xt, T, agg, 0.3, present=head.imprint_.classes_, empty_class=empty)
        np.testing.assert_array_equal(got, head.decision_function(Xt))
        # by hand: T is used as given, the empty class scores x̂·T_3 or 0
        xn = Xt / np.linalg.norm(Xt, axis=1, keepdims=True)
        text = xn @ T.T
        A = text.copy() if empty == "text" else np.zeros_like(text)
        A[:, :3] = agg
        np.testing.assert_allclose(got, 0.3 * text + 0.7 * A, atol=1e-5)
    assert primed_scores(Xt, T, None, 1.0).shape == (25, 4)
    with pytest.raises(DataError, match="agg_scores"):
        primed_scores(Xt, T, agg[:, :2], 0.3, present=[0, 1, 2])


# ------------------------------------------------------------- hostile head files
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("heads")
    out = {}
    for kind in KINDS:
        head = _example(kind)
        X, y = _problem(head)
        out[kind] = head.fit(X, y).save(tmp / kind)
    return out


def _copy(src, tmp_path):
    dst = tmp_path / "h"
    shutil.copytree(src, dst)
    return dst


def _edit(folder, **changes):
    meta = json.loads((folder / "head.json").read_text())
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            meta[outer][inner] = value
        else:
            meta[key] = value
    (folder / "head.json").write_text(json.dumps(meta))


def test_alpha_out_of_range_is_refused(saved, tmp_path):
    h = _copy(saved["primed"], tmp_path)
    _edit(h, **{"fitted.alpha_": 5.0})
    with pytest.raises(DataError, match="alpha") as exc:
        load_head(h)
    assert str(h) in str(exc.value)


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_format_version_is_refused(saved, tmp_path, kind):
    h = _copy(saved[kind], tmp_path)
    _edit(h, format_version=99)
    with pytest.raises(DataError, match="format version 99") as exc:
        load_head(h)
    assert str(h / "head.json") in str(exc.value)


def test_previous_release_format_gets_a_clear_error(tmp_path):
    h = tmp_path / "old"
    h.mkdir()
    (h / "head.json").write_text(json.dumps({"kind": "primed", "format_version": 1}))
    with pytest.raises(DataError, match="earlier priming"):
        load_head(h)


def test_previous_release_imprinted_npz_gets_a_clear_error(tmp_path):
    f = tmp_path / "head.npz"
    np.savez(f, weights=np.eye(2), __meta__=np.asarray('{"format": "priming.ImprintedHead/1"}'))
    with pytest.raises(DataError, match="is a file, not a saved head folder"):
        load_head(f)


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_arrays_are_a_data_error(saved, tmp_path, kind):
    h = _copy(saved[kind], tmp_path)
    data = (h / "arrays.npz").read_bytes()
    (h / "arrays.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="arrays.npz") as exc:
        load_head(h)
    assert str(h) in str(exc.value)


def test_truncated_sub_head_arrays_name_the_sub_folder(saved, tmp_path):
    h = _copy(saved["primed"], tmp_path)
    f = h / "fitted" / "imprint_" / "arrays.npz"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(DataError, match="imprint_"):
        load_head(h)


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"kind": "nonsense"}, "unknown head kind"),
        ({"kind": ["primed"]}, "unknown head kind"),
        ({"surprise": 1}, "surprise"),
        ({"params.nonsense": 1}, "nonsense"),
        ({"fitted.decision_function": 1}, "decision_function"),
        ({"params.temperature": -1.0}, "temperature"),
        ({"params": []}, "params"),
        ({"n_features_in": 5}, "features"),
    ],
)
def test_edited_head_json_is_refused(saved, tmp_path, change, needle):
    h = _copy(saved["primed"], tmp_path)
    _edit(h, **change)
    with pytest.raises(DataError, match=needle):
        load_head(h)


def test_imprinted_arrays_that_do_not_fit_are_refused(saved, tmp_path):
    h = _copy(saved["imprinted"], tmp_path)
    with np.load(h / "arrays.npz") as z:
        arrays = dict(z)
    arrays["fitted:proxy_labels_"] = arrays["fitted:proxy_labels_"] + 10
    np.savez(h / "arrays.npz", **arrays)
    with pytest.raises(DataError, match="proxy_labels_"):
        load_head(h)


def test_unsavable_parameter_is_a_clear_error(tmp_path):
    head = ZeroShotHead._example(N_CLASSES, N_FEATURES, 0)
    X, y = _problem(head)
    head.fit(X, y)
    head.temperature = object()  # set after fit: not JSON-able
    with pytest.raises(DataError, match="temperature"):
        head.save(tmp_path / "h")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------- the documented example
def test_docs_add_a_head_example_runs(tmp_path, monkeypatch):
    """The "Adding a head" example of docs/imprinting.md works as written (registered in
    a throw-away registry so the real one stays as it is)."""
    import re
    from pathlib import Path

    import priming.heads as heads_pkg
    from priming.heads.base import register_head as real_register

    registered = {}

    def fake_register(kind):
        def add(cls):
            cls.kind = kind
            registered[kind] = cls
            return cls

        return add

    text = (Path(__file__).parents[1] / "docs" / "imprinting.md").read_text()
    section = text[text.index("### Adding a head") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.setattr(heads_pkg, "register_head", fake_register)
    ns: dict = {}
    exec(compile(code, "docs/imprinting.md", "exec"), ns)
    assert heads_pkg.register_head is not real_register
    cls = registered["nearest-mean"]
    head = cls()
    X, y = _problem(head, labels=["a", "b", "c"])
    assert np.mean(cross_val_score(head, X, y, cv=3)) >= 0.9
    head.fit(X, y).save(tmp_path / "h")
    back = cls.load(tmp_path / "h")
    np.testing.assert_array_equal(back.predict(X), head.predict(X))
    assert "nearest-mean" not in HEADS
