"""Primed heads: an imprinted head over shots ∪ pool items, mixed with the text head.

``score_c(x) = α · normalise(x)·T_c + (1 − α) · AGG_c(x)`` (METHODS §3). With the
``neural-priming`` imprinting preset (l2 / mean / l2 / l2 / max) this is exactly Neural
Priming's ``W = α T + (1 − α) C`` with ``C_c`` the normalised class centroid.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
from sklearn.base import clone

from priming.errors import ConfigError, DataError, NotFittedError
from priming.heads._util import check_classes, check_matrix, check_temperature
from priming.heads.alpha import (
    ALPHA_GRID,
    best_alpha,
    check_alpha,
    schedule_alpha,
    stratified_folds,
)
from priming.heads.base import BaseHead, register_head
from priming.imprint.normalize import l2_normalize

log = logging.getLogger(__name__)

__all__ = ["PrimedHead", "primed_scores", "EMPTY_CLASS_CHOICES"]

EMPTY_CLASS_CHOICES = ("text", "zero")


def _default_imprint():
    from priming.heads.imprinted import ImprintedHead

    return ImprintedHead.from_preset("neural-priming")


def _clone(est):
    """scikit-learn's ``clone``; a deep copy for duck-typed estimators it refuses."""
    try:
        return clone(est)
    except TypeError:
        return copy.deepcopy(est)


def _label_array(y) -> np.ndarray:
    """``y`` as a 1-D array; a list of tuples (hashable labels) becomes an object array."""
    arr = np.asarray(y)
    if arr.ndim > 1 and isinstance(y, list | tuple) and all(isinstance(v, tuple) for v in y):
        out = np.empty(len(y), dtype=object)
        out[:] = list(y)
        return out
    return arr


def _check_empty_class(empty_class) -> str:
    if empty_class not in EMPTY_CLASS_CHOICES:
        raise ConfigError(f"empty_class must be one of {EMPTY_CLASS_CHOICES}, got {empty_class!r}")
    return empty_class


def _fill_empty(text: np.ndarray, agg_scores, present, empty_class: str) -> np.ndarray:
    """``AGG`` for every class: ``agg_scores`` in the columns ``present``; the other
    (empty) classes score ``text`` (``"text"``) or 0 (``"zero"``)."""
    full = text.copy() if empty_class == "text" else np.zeros_like(text)
    if agg_scores is not None:
        cols = slice(None) if present is None else np.asarray(present, dtype=np.int64)
        full[:, cols] = np.asarray(agg_scores, dtype=full.dtype)
    return full


def _mix(text: np.ndarray, full_agg: np.ndarray, alpha):
    """``α·text + (1−α)·AGG``; ``alpha`` a number, or a 1-D grid giving (G, n, C)."""
    if np.ndim(alpha) == 0:
        return alpha * text + (1.0 - alpha) * full_agg
    a = np.asarray(alpha, dtype=float)[:, None, None]
    return a * text[None] + (1 - a) * full_agg[None]


def primed_scores(
    X, T, agg_scores, alpha: float, present=None, empty_class: str = "text"
) -> np.ndarray:
    """THE primed score (METHODS §3), shape (n, C): ``α·normalise(x)·T_c + (1−α)·AGG_c(x)``.

    ``T`` (C, D) is used as given (not re-normalised: CuPL's ``(T + T_desc)/2`` is not
    unit). ``agg_scores`` holds the imprinted head's scores (``decision_function``) for
    the classes ``present`` (column indices into T, in the order of its columns; None:
    all C classes); a class not in ``present`` has no items and scores
    ``normalise(x)·T_c`` (``empty_class="text"``) or 0 (``"zero"``) in place of AGG.
    ``agg_scores=None`` means no class has items. ``PrimedHead.decision_function`` is
    this function applied to its fitted state."""
    _check_empty_class(empty_class)
    X = check_matrix(X, "X", allow_empty=True)
    T = check_matrix(T, "T", X.shape[1])
    text = l2_normalize(X) @ T.T
    if agg_scores is not None:
        agg_scores = np.asarray(agg_scores)
        n_cols = T.shape[0] if present is None else len(present)
        if agg_scores.shape != (X.shape[0], n_cols):
            raise DataError(
                f"agg_scores has shape {agg_scores.shape}, expected ({X.shape[0]}, {n_cols})"
            )
    return _mix(text, _fill_empty(text, agg_scores, present, empty_class), alpha)


@register_head("primed")
class PrimedHead(BaseHead):
    """Neural Priming head generalised to any imprinting configuration.

    Parameters
    ----------
    text_weights : array (C, D)
        Zero-shot text weights; every row is a class, whether or not ``fit`` sees items
        of it.
    classes : sequence of C labels or None
        Names of the rows. ``y`` in ``fit`` and predictions use these names; with None
        they are row indices ``0..C-1``.
    alpha : float, "schedule" or "auto"
        Weight of the text head. ``"schedule"``: the reference's hand-set values by
        number of shots per class (:func:`priming.heads.alpha.schedule_alpha`).
        ``"auto"``: cross-validated accuracy on the shots when ``fit`` is told which
        rows are shots (at least 2), otherwise on held-out pool items. Chosen value in
        ``alpha_``.
    imprint : estimator or None
        The imprinting head fitted on shots ∪ pool (default:
        ``ImprintedHead.from_preset("neural-priming")``); cloned, never modified.
    empty_class : {"text", "zero"}
        A class with no items scores ``normalise(x)·T_c`` in place of ``AGG_c(x)``
        (``"text"``, i.e. ``C_c := T_c``), or 0 as in the reference (``"zero"``).
    temperature : float
        ``predict_proba`` is ``softmax(decision_function / temperature)``.
    cv : int
        Folds for ``alpha="auto"``.
    alpha_grid : sequence of float or None
        Candidates for ``alpha="auto"`` (default 0, 0.05, ..., 1).
    max_alpha_eval : int
        At most this many held-out items are scored for ``alpha="auto"``.
    random_state : int, Generator or None
        Seeds the folds of ``alpha="auto"``.
    """

    def __init__(
        self,
        text_weights,
        classes=None,
        alpha="schedule",
        imprint=None,
        empty_class: str = "text",
        temperature: float = 0.01,
        cv: int = 5,
        alpha_grid=None,
        max_alpha_eval: int = 5000,
        random_state=None,
    ) -> None:
        self.text_weights = text_weights
        self.classes = classes
        self.alpha = alpha
        self.imprint = imprint
        self.empty_class = empty_class
        self.temperature = temperature
        self.cv = cv
        self.alpha_grid = alpha_grid
        self.max_alpha_eval = max_alpha_eval
        self.random_state = random_state

    _fitted_arrays = (
        "text_weights_",
        "class_counts_",
        "empty_classes_",
        "present_classes_",
        "weights_",
        "proxy_labels_",
    )
    _fitted_values = ("alpha_", "alpha_source_", "alpha_scores_", "n_shots_")
    _fitted_heads = ("imprint_",)

    # -- scikit-learn protocol -------------------------------------------------------
    def set_params(self, **params) -> PrimedHead:
        """Also sets nested ``imprint__<name>`` parameters when ``imprint`` is None (the
        default): the default imprinting head is then made explicit first."""
        nested = any(k.startswith("imprint__") for k in params)
        if nested and self.imprint is None and "imprint" not in params:
            self.imprint = _default_imprint()
        return super().set_params(**params)

    @classmethod
    def _example(cls, n_classes=3, n_features=8, random_state=None) -> PrimedHead:
        from priming.heads.text import example_text_weights

        return cls(example_text_weights(n_classes, n_features, random_state), alpha=0.5)

    @classmethod
    def _example_grid(cls) -> dict:
        return {"alpha": [0.3, 0.7], "imprint__aggregation": ["max"]}

    # -- fitting -----------------------------------------------------------------------
    def _validate(self) -> None:
        T = check_matrix(self.text_weights, "text_weights")
        self._check_params()
        self.text_weights_ = T.copy()
        self.classes_ = check_classes(self.classes, T.shape[0])
        self.n_features_in_ = T.shape[1]

    def _check_params(self) -> None:
        _check_empty_class(self.empty_class)
        check_temperature(self.temperature)
        check_alpha(self.alpha)
        if isinstance(self.cv, bool) or not isinstance(self.cv, int | np.integer) or self.cv < 2:
            raise ConfigError(f"cv must be an integer >= 2, got {self.cv!r}")
        im = self.imprint
        if im is not None and not all(
            callable(getattr(im, m, None)) for m in ("fit", "decision_function")
        ):
            raise ConfigError(
                "imprint must be a head with fit() and decision_function() (e.g. an "
                f"ImprintedHead) or None, got {type(im).__name__}"
            )

    def _encode_labels(self, y, n: int) -> np.ndarray:
        y = _label_array(y)
        if y.ndim != 1 or len(y) != n:
            raise DataError(f"y must be 1-D with one label per row of X ({n}), got shape {y.shape}")
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        if self.classes is None:
            if not np.issubdtype(y.dtype, np.integer):
                raise DataError(
                    "y must hold row indices of text_weights (integers) when classes is None; "
                    f"got dtype {y.dtype}. Pass classes=[...] to use names."
                )
            bad = np.unique(y[(y < 0) | (y >= len(self.classes_))])
        else:
            index = {c: i for i, c in enumerate(self.classes_.tolist())}
            codes = np.fromiter((index.get(v, -1) for v in y.tolist()), dtype=np.int64, count=n)
            bad = np.unique(y[codes < 0])
            y = codes
        if len(bad):
            shown = ", ".join(repr(b) for b in bad.tolist()[:5])
            valid = ", ".join(repr(c) for c in self.classes_.tolist()[:10])
            more = " ..." if len(self.classes_) > 10 else ""
            raise DataError(
                f"{len(bad)} label(s) in y are not classes of this head: {shown}; "
                f"valid classes: {valid}{more}"
            )
        return y.astype(np.int64)

    def _fit_imprint(self, X: np.ndarray, y: np.ndarray):
        if len(y) == 0:
            return None
        est = _clone(self.imprint) if self.imprint is not None else _default_imprint()
        return est.fit(X, y)

    def fit(self, X, y, shots=None, validation=None) -> PrimedHead:
        """Fit on pool ∪ shots.

        Parameters
        ----------
        X : array (n, D)
            Embeddings of shots and pool items (each counted once).
        y : array (n,)
            Row indices of ``text_weights``, or names from ``classes``.
        shots : bool array (n,) or None
            Which rows are labelled shots (used by ``alpha="schedule"`` and
            ``alpha="auto"``); None means all rows are pool items.
        validation : (X_val, y_val) or None
            Labelled items *not* in ``X`` (e.g. held-out pool items with their caption
            labels, ``build_pool(holdout=...)``); when given and there are fewer than 2
            shots, ``alpha="auto"`` maximises accuracy on them instead of cross-validating.
        """
        self._validate()
        X = check_matrix(X, "X", self.n_features_in_, allow_empty=True)
        y = self._encode_labels(y, X.shape[0])
        C = len(self.classes_)
        if shots is None:
            shots = np.zeros(len(y), dtype=bool)
        shots = np.asarray(shots, dtype=bool)
        if shots.shape != y.shape:
            raise DataError(
                f"shots must be a boolean mask with {len(y)} entries, got {shots.shape}"
            )
        self.class_counts_ = np.bincount(y, minlength=C)
        self.n_shots_ = float(np.mean(np.bincount(y[shots], minlength=C))) if shots.any() else 0.0
        self.empty_classes_ = np.flatnonzero(self.class_counts_ == 0)
        if len(y) == 0:
            log.warning(
                "no pool items or shots: every class keeps its text weight%s",
                "" if self.empty_class == "text" else " (empty_class='zero': all scores are α·x·T)",
            )
        elif len(self.empty_classes_):
            log.info("%d class(es) have no items", len(self.empty_classes_))

        alpha = check_alpha(self.alpha)
        self.alpha_scores_ = None
        if alpha == "schedule":
            self.alpha_, self.alpha_source_ = schedule_alpha(self.n_shots_), "schedule"
        elif alpha == "auto" and validation is not None and shots.sum() < 2:
            Xv = check_matrix(validation[0], "validation X", self.n_features_in_, allow_empty=True)
            yv = self._encode_labels(validation[1], Xv.shape[0])
            if len(yv) == 0:
                self.alpha_, self.alpha_source_, self.alpha_scores_ = self._auto_alpha(X, y, shots)
            else:
                self.alpha_, self.alpha_source_, self.alpha_scores_ = self._validation_alpha(
                    X, y, Xv, yv
                )
        elif alpha == "auto":
            self.alpha_, self.alpha_source_, self.alpha_scores_ = self._auto_alpha(X, y, shots)
        else:
            self.alpha_, self.alpha_source_ = float(alpha), "fixed"
        self.imprint_ = self._fit_imprint(X, y)
        self._set_proxy_view()
        return self

    def _set_proxy_view(self) -> None:
        im = self.imprint_
        if im is None:
            self.present_classes_ = np.zeros(0, dtype=np.int64)
            self.weights_ = np.zeros((0, self.n_features_in_), np.float32)
            self.proxy_labels_ = np.zeros(0, dtype=np.int64)
            return
        self.present_classes_ = np.asarray(im.classes_, dtype=np.int64)
        self.weights_ = np.asarray(im.weights_, dtype=np.float32)
        self.proxy_labels_ = self.present_classes_[np.asarray(im.proxy_labels_, dtype=np.int64)]

    def _grid(self) -> np.ndarray:
        grid = np.asarray(ALPHA_GRID if self.alpha_grid is None else self.alpha_grid, dtype=float)
        if grid.ndim != 1 or len(grid) == 0 or (grid < 0).any() or (grid > 1).any():
            raise ConfigError("alpha_grid must be a non-empty list of numbers in [0, 1]")
        return grid

    def _validation_alpha(self, X, y, Xv, yv):
        grid = self._grid()
        im = self._fit_imprint(X, y)
        text = l2_normalize(Xv) @ self.text_weights_.T
        agg = self._agg_scores(Xv, text, im)
        correct = (_mix(text, agg, grid).argmax(axis=2) == yv[None]).sum(axis=1)
        scores = {float(a): float(c) / len(yv) for a, c in zip(grid, correct)}
        best = best_alpha(correct, grid)
        log.info("alpha='auto' (validation, %d items): chose %.2f", len(yv), best)
        return best, "validation", scores

    def _auto_alpha(self, X, y, shots):
        grid = self._grid()
        rng = np.random.default_rng(self.random_state)
        if shots.sum() >= 2:
            candidates, source = np.flatnonzero(shots), "cv-shots"
        elif len(y) >= 2:
            candidates, source = np.flatnonzero(~shots), "cv-pool"
            log.warning(
                "alpha='auto' without shots or validation rows: cross-validating on pool items, "
                "whose labels came from the same zero-shot filter, favours the text head; pass "
                "fit(..., validation=(pool.heldout.embeddings, labels)) from "
                "build_pool(holdout=...) for an independent signal"
            )
        else:
            fallback = schedule_alpha(self.n_shots_)
            log.warning(
                "alpha='auto' needs at least 2 items; using the schedule value %.2f", fallback
            )
            return fallback, "schedule (too few items for auto)", None
        if len(candidates) > self.max_alpha_eval:
            candidates = np.sort(rng.choice(candidates, self.max_alpha_eval, replace=False))
        n_folds = int(min(self.cv, len(candidates)))
        folds = stratified_folds(y[candidates], n_folds, rng)
        correct = np.zeros(len(grid), dtype=np.int64)
        Xn = l2_normalize(X)
        for f in range(n_folds):
            val = candidates[folds == f]
            train = np.ones(len(y), dtype=bool)
            train[val] = False
            im = self._fit_imprint(X[train], y[train])
            text = Xn[val] @ self.text_weights_.T
            agg = self._agg_scores(X[val], text, im)
            correct += (_mix(text, agg, grid).argmax(axis=2) == y[val][None]).sum(axis=1)
        scores = {float(a): float(c) / len(candidates) for a, c in zip(grid, correct)}
        best = best_alpha(correct, grid)
        log.info(
            "alpha='auto' (%s, %d items, %d folds): chose %.2f",
            source,
            len(candidates),
            n_folds,
            best,
        )
        return best, source, scores

    # -- scoring -----------------------------------------------------------------------
    def _agg_scores(self, X, text, imprint) -> np.ndarray:
        """AGG for every class (empty classes by the ``empty_class`` rule)."""
        if imprint is None:
            return _fill_empty(text, None, None, self.empty_class)
        scores = imprint.decision_function(X)
        return _fill_empty(text, scores, np.asarray(imprint.classes_), self.empty_class)

    def _check_fitted(self) -> None:
        if not hasattr(self, "alpha_"):
            raise NotFittedError("this PrimedHead is not fitted yet; call fit() first")

    def _check_loaded(self) -> None:
        self._check_params()
        alpha = check_alpha(self.alpha_)
        if isinstance(alpha, str):
            raise DataError(f"alpha_ must be a number in [0, 1], got {self.alpha_!r}")
        self.alpha_ = alpha
        T = check_matrix(self.text_weights_, "text_weights_")
        C = T.shape[0]
        if T.shape[1] != self.n_features_in_ or len(self.classes_) != C:
            raise DataError(
                f"text_weights_ has shape {T.shape} but the head has {len(self.classes_)} "
                f"classes of {self.n_features_in_} features"
            )
        counts = np.asarray(self.class_counts_)
        if counts.shape != (C,):
            raise DataError(f"class_counts_ has shape {counts.shape}, expected ({C},)")
        present = np.asarray(self.present_classes_)
        im = self.imprint_
        n_present = 0 if im is None else len(im.classes_)
        if present.shape != (n_present,) or (
            n_present and (present.min() < 0 or present.max() >= C)
        ):
            raise DataError("present_classes_ does not match the imprinted head")
        if im is not None and im.n_features_in_ != self.n_features_in_:
            raise DataError("the imprinted head has another width than text_weights_")
        if isinstance(self.alpha_scores_, dict):
            self.alpha_scores_ = {float(k): v for k, v in self.alpha_scores_.items()}
        self.text_weights_ = T

    def text_scores(self, X) -> np.ndarray:
        """``normalise(x)·T_c`` for every class (the zero-shot scores)."""
        self._check_fitted()
        X = check_matrix(X, "X", self.n_features_in_, allow_empty=True)
        return l2_normalize(X) @ self.text_weights_.T

    def decision_function(self, X) -> np.ndarray:
        """Mixed class scores ``α·x̂·T_c + (1−α)·AGG_c(x)``, shape (n, C), ``classes_``
        order: :func:`primed_scores` on the fitted state."""
        text = self.text_scores(X)
        X = np.asarray(X, dtype=np.float32)
        return _mix(text, self._agg_scores(X, text, self.imprint_), self.alpha_)

    # -- export --------------------------------------------------------------------------
    def to_linear(self) -> tuple[np.ndarray, None]:
        """Export as a plain linear layer: ``(W, None)`` with scores ``normalise(x) @ W.T``.

        Needs at most one proxy per class, ``max`` aggregation and L2 NORMinf (e.g. the
        ``neural-priming`` preset); then ``W = α T + (1 − α) C``.
        """
        self._check_fitted()
        W_c = (
            self.text_weights_.copy()
            if self.empty_class == "text"
            else np.zeros_like(self.text_weights_)
        )
        if self.imprint_ is not None:
            params = self.imprint_.get_params() if hasattr(self.imprint_, "get_params") else {}
            problems = []
            if np.bincount(self.proxy_labels_, minlength=len(self.classes_)).max() > 1:
                problems.append("some class has several proxies")
            if params.get("aggregation", "max") != "max":
                problems.append(f"aggregation is {params.get('aggregation')!r}, not 'max'")
            if params.get("norm_inf", "l2") != "l2":
                problems.append(f"norm_inf is {params.get('norm_inf')!r}, not 'l2'")
            if problems:
                raise ConfigError(
                    "this primed head is not a single linear layer: "
                    + "; ".join(problems)
                    + " (use n_proxies=1, aggregation='max', norm_inf='l2')"
                )
            W_c[self.proxy_labels_] = self.weights_
        W = self.alpha_ * self.text_weights_ + (1.0 - self.alpha_) * W_c
        return W.astype(np.float32), None
