"""Primed heads: an imprinted head over shots ∪ pool items, mixed with the text head.

``score_c(x) = α · normalise(x)·T_c + (1 − α) · AGG_c(x)`` (METHODS §3). With the
``neural-priming`` imprinting preset (l2 / mean / l2 / l2 / max) this is exactly Neural
Priming's ``W = α T + (1 − α) C`` with ``C_c`` the normalised class centroid.
"""

from __future__ import annotations

import copy
import importlib
import logging
from pathlib import Path

import numpy as np

from priming.errors import ConfigError, DataError, NotFittedError
from priming.heads._util import (
    check_matrix,
    l2_normalize,
    save_npz_atomic,
    softmax,
    to_jsonable_labels,
    write_json_atomic,
)
from priming.heads.alpha import (
    ALPHA_GRID,
    best_alpha,
    check_alpha,
    schedule_alpha,
    stratified_folds,
)
from priming.heads.text import _check_classes

log = logging.getLogger(__name__)

__all__ = ["PrimedHead"]

EMPTY_CLASS_CHOICES = ("text", "zero")


def _default_imprint():
    from priming.heads import ImprintedHead

    return ImprintedHead.from_preset("neural-priming")


def _clone(est):
    try:
        from sklearn.base import clone

        return clone(est)
    except Exception:  # not a scikit-learn style estimator
        return copy.deepcopy(est)


class PrimedHead:
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

    # -- scikit-learn protocol -------------------------------------------------------
    _PARAMS = (
        "text_weights",
        "classes",
        "alpha",
        "imprint",
        "empty_class",
        "temperature",
        "cv",
        "alpha_grid",
        "max_alpha_eval",
        "random_state",
    )

    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in self._PARAMS}

    def set_params(self, **params) -> PrimedHead:
        for k, v in params.items():
            if k not in self._PARAMS:
                raise ConfigError(f"unknown parameter {k!r}; valid: {', '.join(self._PARAMS)}")
            setattr(self, k, v)
        return self

    # -- fitting -----------------------------------------------------------------------
    def _validate(self) -> None:
        T = check_matrix(self.text_weights, "text_weights")
        self.text_weights_ = T.copy()
        self.classes_ = _check_classes(self.classes, T.shape[0])
        self.n_features_in_ = T.shape[1]
        if self.empty_class not in EMPTY_CLASS_CHOICES:
            raise ConfigError(
                f"empty_class must be one of {EMPTY_CLASS_CHOICES}, got {self.empty_class!r}"
            )
        if not float(self.temperature) > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature!r}")
        check_alpha(self.alpha)
        if int(self.cv) < 2:
            raise ConfigError(f"cv must be >= 2, got {self.cv}")

    def _encode_labels(self, y, n: int) -> np.ndarray:
        y = np.asarray(y)
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
        est = _clone(self.imprint if self.imprint is not None else _default_imprint())
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
        mixed = grid[:, None, None] * text[None] + (1 - grid[:, None, None]) * agg[None]
        correct = (mixed.argmax(axis=2) == yv[None]).sum(axis=1)
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
            mixed = grid[:, None, None] * text[None] + (1 - grid[:, None, None]) * agg[None]
            correct += (mixed.argmax(axis=2) == y[val][None]).sum(axis=1)
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
        agg = text.copy() if self.empty_class == "text" else np.zeros_like(text)
        if imprint is not None:
            present = np.asarray(imprint.classes_, dtype=np.int64)
            agg[:, present] = np.asarray(imprint.decision_function(X), dtype=agg.dtype)
        return agg

    def _check_fitted(self) -> None:
        if not hasattr(self, "alpha_"):
            raise NotFittedError("this PrimedHead is not fitted yet; call fit() first")

    def text_scores(self, X) -> np.ndarray:
        """``normalise(x)·T_c`` for every class (the zero-shot scores)."""
        self._check_fitted()
        X = check_matrix(X, "X", self.n_features_in_, allow_empty=True)
        return l2_normalize(X) @ self.text_weights_.T

    def decision_function(self, X) -> np.ndarray:
        """Mixed class scores ``α·x̂·T_c + (1−α)·AGG_c(x)``, shape (n, C), ``classes_`` order."""
        text = self.text_scores(X)
        X = np.asarray(X, dtype=np.float32)
        agg = self._agg_scores(X, text, self.imprint_)
        return self.alpha_ * text + (1.0 - self.alpha_) * agg

    def predict(self, X) -> np.ndarray:
        scores = self.decision_function(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def predict_proba(self, X) -> np.ndarray:
        return softmax(self.decision_function(X), self.temperature)

    def score(self, X, y) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y)))

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

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path, metadata: dict | None = None) -> Path:
        """Write the head into folder ``path``: ``head.json``, ``arrays.npz`` and the
        imprinted part (``imprint.npz``, its own format). No pickle. ``metadata`` (JSON-able,
        e.g. the model name) is stored in ``head.json`` and read back as ``metadata_``."""
        self._check_fitted()
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        imprint_cls = None
        if self.imprint_ is not None:
            if not callable(getattr(self.imprint_, "save", None)):
                raise ConfigError(
                    f"the imprint estimator {type(self.imprint_).__name__} has no save()"
                )
            self.imprint_.save(p / "imprint")
            imprint_cls = f"{type(self.imprint_).__module__}:{type(self.imprint_).__qualname__}"
        save_npz_atomic(
            p / "arrays.npz", text_weights=self.text_weights_, class_counts=self.class_counts_
        )
        write_json_atomic(
            p / "head.json",
            {
                "kind": "primed",
                "format_version": 1,
                "classes": None if self.classes is None else to_jsonable_labels(self.classes_),
                "alpha": self.alpha if isinstance(self.alpha, str) else float(self.alpha),
                "alpha_": float(self.alpha_),
                "alpha_source_": self.alpha_source_,
                "alpha_scores_": self.alpha_scores_,
                "n_shots_": self.n_shots_,
                "empty_class": self.empty_class,
                "temperature": float(self.temperature),
                "imprint_class": imprint_cls,
                "metadata": metadata or {},
            },
        )
        return p

    @classmethod
    def load(cls, path: str | Path, imprint_cls=None) -> PrimedHead:
        """Read a head written by :meth:`save`. The imprinted part is loaded with its
        class's ``load``; only classes from the ``priming`` package are imported by name
        (pass ``imprint_cls`` for others)."""
        from priming.heads._io import head_meta_error, read_head_arrays, read_head_meta

        p = Path(path)
        meta = read_head_meta(p, "primed")
        arrays = read_head_arrays(p, ("text_weights", "class_counts"))
        T, counts = arrays["text_weights"], arrays["class_counts"]
        try:
            head = cls(
                T,
                classes=meta["classes"],
                alpha=meta["alpha"],
                empty_class=meta["empty_class"],
                temperature=meta["temperature"],
            )
            head._validate()
            head.alpha_ = float(meta["alpha_"])
            head.alpha_source_ = meta["alpha_source_"]
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise DataError(f"{str(p)!r}: {exc}") from None
            raise head_meta_error(p, exc) from None
        if counts.shape != (T.shape[0],):
            raise DataError(
                f"{str(p / 'arrays.npz')!r}: class_counts has shape {counts.shape}, "
                f"expected ({T.shape[0]},)"
            )
        head.alpha_scores_ = meta.get("alpha_scores_")
        head.n_shots_ = meta.get("n_shots_", 0.0)
        head.metadata_ = meta.get("metadata", {})
        head.class_counts_ = counts
        head.empty_classes_ = np.flatnonzero(counts == 0)
        head.imprint_ = None
        if meta.get("imprint_class"):
            if imprint_cls is None:
                imprint_cls = _imprint_class(p, meta["imprint_class"])
            head.imprint_ = imprint_cls.load(p / "imprint")
        head._set_proxy_view()
        return head


def load_head(path: str | Path):
    """Load a head folder written by :meth:`PrimedHead.save` or :meth:`ZeroShotHead.save`."""
    from priming.heads._io import read_head_meta
    from priming.heads.text import ZeroShotHead

    p = Path(path)
    kind = read_head_meta(p).get("kind")
    if kind == "primed":
        return PrimedHead.load(p)
    if kind == "zero-shot":
        return ZeroShotHead.load(p)
    raise DataError(f"{str(p)!r} holds an unknown head kind {kind!r}")


def _imprint_class(p: Path, name) -> type:
    """The imprint estimator class named in a head's ``head.json``: only a class from the
    ``priming`` package that has ``load`` is accepted."""
    module, _, qual = str(name).partition(":")
    if not module.startswith("priming.") or not qual:
        raise DataError(
            f"{str(p)!r} names imprint class {name!r} outside the priming package; "
            "pass imprint_cls= to load it"
        )
    try:
        obj = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise DataError(f"{str(p)!r} names an unknown imprint class {name!r}") from None
    if not isinstance(obj, type) or not callable(getattr(obj, "load", None)):
        raise DataError(f"{str(p)!r} names {name!r}, which is not an imprint class")
    return obj
