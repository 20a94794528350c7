"""``ImprintedHead``: an IMPRINT weight-imprinting classifier as a scikit-learn estimator.

Pipeline (METHODS.md §2): NORMpre -> presampling -> GEN -> NORMpost on the training rows;
NORMinf -> AGG on test rows. All maths lives in :mod:`priming.imprint`.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d, validate_data

from priming.errors import ConfigError, DataError, NotFittedError, PrimingError, UnknownNameError
from priming.heads.base import BaseHead, register_head
from priming.imprint import aggregate as agg
from priming.imprint.generators import GENERATORS, GLOBAL_GENERATORS, SINGLE_PROXY_GENERATORS
from priming.imprint.generators import generate as _generate
from priming.imprint.normalize import (
    l2_normalize,
    quantile_map,
    quantile_normalize_cumulative,
    quantile_targets,
)
from priming.imprint.presample import parse_presample
from priming.imprint.presample import presample as _presample
from priming.imprint.validation import check_choice, check_int, check_random_state

__all__ = ["ImprintedHead", "PRESETS"]

log = logging.getLogger(__name__)

NORM_PRE = ("none", "l2")
NORM_POST = ("none", "l2", "quantile", "quantile_cumulative")
NORM_INF = ("none", "l2")
AGGREGATIONS = ("max", "mnn")

PRESETS: dict[str, dict[str, Any]] = {
    # name: NORMpre / GEN(k) / NORMpost / NORMinf / AGG
    "qi2018": dict(norm_pre="l2", generator="mean", n_proxies=1, norm_post="l2", norm_inf="l2",
                   aggregation="max"),
    "hosoda2024": dict(norm_pre="none", generator="mean", n_proxies=1, norm_post="quantile",
                       norm_inf="none", aggregation="max"),
    "janson2022": dict(norm_pre="none", generator="mean", n_proxies=1, norm_post="none",
                       norm_inf="none", aggregation="mnn", n_neighbors=1, metric="euclidean"),
    "imprint-best": dict(norm_pre="l2", generator="kmeans", n_proxies=20, norm_post="l2",
                         norm_inf="l2", aggregation="max"),
    "oracle-ls": dict(norm_pre="none", generator="ls", n_proxies=1, norm_post="none",
                      norm_inf="none", aggregation="max"),
    "neural-priming": dict(norm_pre="l2", generator="mean", n_proxies=1, norm_post="l2",
                           norm_inf="l2", aggregation="max"),
}  # fmt: skip
"""Named configurations (constructor keyword arguments) of published imprinting heads."""


def _wrap_validation(fn, *args, **kwargs):
    """Run a scikit-learn validation helper, turning its ValueErrors into DataError.

    Only the first line of scikit-learn's message is kept: the rest is advice for other
    estimators (imputers, HistGradientBoosting) or a dump of the offending array, which
    would turn a CLI error into a screenful.
    """
    try:
        return fn(*args, **kwargs)
    except PrimingError:
        raise
    except ValueError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        first = lines[0].rstrip(":") if lines else type(exc).__name__
        if first.startswith("Expected 2D array, got 1D array"):
            first += ". Reshape your data to (n_samples, n_features)"
        raise DataError(first) from None


@register_head("imprinted")
class ImprintedHead(BaseHead):
    """Weight-imprinting classification head (IMPRINT framework).

    Parameters
    ----------
    norm_pre : {"none", "l2"}
        Normalisation of training rows before proxy generation.
    generator : {"mean", "all", "random", "kmeans", "kmedoids", "fps", "cov_max", "ls", "kls", "none"}
        Proxy generator (see :mod:`priming.imprint.generators`).
    n_proxies : int or None
        Proxies per class ``k`` (``None``: all rows). Must be 1 for ``mean`` and ``ls``;
        ignored by ``all``. A class with at most ``k`` rows keeps all its rows.
    norm_post : {"none", "l2", "quantile", "quantile_cumulative"}
        Normalisation of the proxies. ``quantile`` uses the pooled values of all proxies
        as reference distribution (order-independent); ``quantile_cumulative`` is the
        IMPRINT reference code's class-by-class variant (order-dependent).
    norm_inf : {"none", "l2"}
        Normalisation of test rows.
    aggregation : {"max", "mnn"}
        ``max``: class score = max inner product over its proxies. ``mnn``: the
        ``n_neighbors`` nearest proxies vote.
    n_neighbors : int or None
        ``m`` for ``mnn`` (required there; must be None for ``max``).
    metric : {"cosine", "euclidean", "manhattan", "chebyshev", "mahalanobis"}
        Distance for ``mnn`` (``max`` always uses the inner product).
    weighting : {"uniform", "distance"}
        ``mnn`` votes: 1 each, or ``1 / distance``.
    presample : None, str or dict
        ``"weibull(q_lo,q_hi)"``, ``"fewshot(n)"``, both joined by ``+``, or
        ``{"weibull": (q_lo, q_hi), "n_samples": n}``.
    ls_lambda : float
        Ridge ``lambda`` of ``ls``/``kls`` (paper: 1e-4 ResNets, 0.1 ViT-B/16, 0.05 Swin-B).
    random_state : None, int or numpy Generator
        Seed of the stochastic generators and of few-shot subsampling.

    Attributes
    ----------
    classes_ : ndarray of labels (sorted).
    weights_ : (P, D) float32 proxy matrix, grouped by class in ``classes_`` order.
    proxy_labels_ : (P,) int64 index into ``classes_`` of each proxy.
    n_features_in_ : int
    quantile_targets_ : (D,) reference quantiles (only with ``norm_post='quantile'``).
    """

    proba_temperature: ClassVar[float] = 0.01
    """``predict_proba = softmax(decision_function / proba_temperature)``; 0.01 is CLIP's
    logit scale 100 for cosine scores."""
    default_temperature: ClassVar[float] = proba_temperature

    _fitted_arrays = ("weights_", "proxy_labels_", "quantile_targets_")

    def __init__(
        self,
        norm_pre: str = "l2",
        generator: str = "mean",
        n_proxies: int | None = 1,
        norm_post: str = "l2",
        norm_inf: str = "l2",
        aggregation: str = "max",
        n_neighbors: int | None = None,
        metric: str = "cosine",
        weighting: str = "uniform",
        presample: object = None,
        ls_lambda: float = 0.05,
        random_state: object = None,
    ) -> None:
        self.norm_pre = norm_pre
        self.generator = generator
        self.n_proxies = n_proxies
        self.norm_post = norm_post
        self.norm_inf = norm_inf
        self.aggregation = aggregation
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.weighting = weighting
        self.presample = presample
        self.ls_lambda = ls_lambda
        self.random_state = random_state

    # ------------------------------------------------------------------ presets
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> ImprintedHead:
        """A head configured as the named published method (see :data:`PRESETS`)."""
        if name not in PRESETS:
            raise UnknownNameError(
                f"unknown preset {name!r}; valid choices: {', '.join(sorted(PRESETS))}"
            )
        return cls(**{**PRESETS[name], **overrides})

    # --------------------------------------------------------------- validation
    def _check_params(self) -> None:
        check_choice(self.norm_pre, "norm_pre", NORM_PRE)
        if self.norm_inf in ("quantile", "quantile_cumulative"):
            raise ConfigError(
                f"norm_inf={self.norm_inf!r} is not valid: quantile normalisation applies to "
                f"proxies (norm_post) only; valid values for norm_inf: {', '.join(NORM_INF)}"
            )
        check_choice(self.norm_inf, "norm_inf", NORM_INF)
        check_choice(self.norm_post, "norm_post", NORM_POST)
        check_choice(self.generator, "generator", GENERATORS.names())
        check_choice(self.aggregation, "aggregation", AGGREGATIONS)
        check_choice(self.metric, "metric", agg.METRICS)
        check_choice(self.weighting, "weighting", agg.WEIGHTINGS)
        k = check_int(self.n_proxies, "n_proxies", allow_none=True)
        if self.generator in SINGLE_PROXY_GENERATORS and k != 1:
            raise ConfigError(
                f"n_proxies={self.n_proxies!r} is not valid with generator={self.generator!r}, "
                "which makes one proxy per class; use n_proxies=1"
            )
        if self.generator == "none" and k is None:
            raise ConfigError("n_proxies=None (all rows) is not valid with generator='none'")
        if self.aggregation == "mnn":
            if self.n_neighbors is None:
                raise ConfigError(
                    "aggregation='mnn' needs n_neighbors (an integer >= 1, the number m of "
                    "nearest proxies that vote)"
                )
            check_int(self.n_neighbors, "n_neighbors")
        else:
            if self.n_neighbors is not None:
                raise ConfigError(
                    f"n_neighbors={self.n_neighbors!r} is only used by aggregation='mnn'; "
                    "leave it None with aggregation='max' (max equals mnn with m=1)"
                )
            if self.metric != "cosine":
                raise ConfigError(
                    f"metric={self.metric!r} is only used by aggregation='mnn'; 'max' scores by "
                    "inner product (for a nearest-proxy rule with another distance use "
                    "aggregation='mnn', n_neighbors=1)"
                )
            if self.weighting != "uniform":
                raise ConfigError(
                    f"weighting={self.weighting!r} is only used by aggregation='mnn'; "
                    "aggregation='max' takes the maximum inner product"
                )
        if (
            isinstance(self.ls_lambda, bool)
            or not isinstance(self.ls_lambda, numbers.Real)
            or not np.isfinite(self.ls_lambda)
            or self.ls_lambda <= 0
        ):
            raise ConfigError(f"ls_lambda={self.ls_lambda!r} is not valid; expected a float > 0")
        parse_presample(self.presample)
        rs = self.random_state
        if not (
            rs is None
            or isinstance(rs, (np.random.Generator, np.random.RandomState))
            or (isinstance(rs, numbers.Integral) and not isinstance(rs, bool) and rs >= 0)
        ):
            raise ConfigError(
                f"random_state={rs!r} is not valid; expected None, an int >= 0, or a numpy "
                "Generator/RandomState"
            )

    def _validate_X(self, X: object, reset: bool) -> np.ndarray:
        X = _wrap_validation(
            validate_data,
            self,
            X,
            reset=reset,
            dtype=[np.float32, np.float64],
            ensure_all_finite=True,
        )
        return np.ascontiguousarray(X, dtype=np.float32)

    def _validate_Xy(self, X: object, y: object, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = _wrap_validation(
            validate_data,
            self,
            X,
            y,
            reset=reset,
            dtype=[np.float32, np.float64],
            ensure_all_finite=True,
            y_numeric=False,
        )
        y = _wrap_validation(column_or_1d, y, warn=True)
        _wrap_validation(check_classification_targets, y)
        return np.ascontiguousarray(X, dtype=np.float32), y

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    # ---------------------------------------------------------------- building
    def _build(self, X: np.ndarray, yi: np.ndarray, n_classes: int):
        """NORMpre -> presample -> GEN on rows with class indices ``yi``; raw proxies."""
        rng = check_random_state(self.random_state)
        seed = int(rng.integers(2**63 - 1))
        Xp = l2_normalize(X) if self.norm_pre == "l2" else X
        if self.presample is not None:
            Xp, yi = _presample(Xp, yi, self.presample, random_state=seed)
        return _generate(
            Xp,
            yi,
            self.generator,
            self.n_proxies,
            n_classes=n_classes,
            ls_lambda=self.ls_lambda,
            random_state=seed + 1,
        )

    def _post(self, W: np.ndarray, labels: np.ndarray, previous: np.ndarray | None = None):
        """NORMpost on new proxies (``previous``: already stored proxies, for cumulative)."""
        if self.norm_post == "l2":
            return l2_normalize(W)
        if self.norm_post == "quantile":
            if not hasattr(self, "quantile_targets_") or previous is None:
                self.quantile_targets_ = quantile_targets(W, W.shape[1]).astype(np.float32)
            return quantile_map(W, self.quantile_targets_).astype(np.float32)
        if self.norm_post == "quantile_cumulative":
            return quantile_normalize_cumulative(W, labels, initial=previous).astype(np.float32)
        return W

    def _finish(self) -> None:
        self.whitener_ = (
            agg.mahalanobis_whitener(self.weights_)
            if self.aggregation == "mnn" and self.metric == "mahalanobis"
            else None
        )

    # --------------------------------------------------------------------- API
    def fit(self, X: object, y: object) -> ImprintedHead:
        """Imprint one or more proxies per class from training rows ``X`` with labels ``y``."""
        self._check_params()
        for attr in ("quantile_targets_",):
            if hasattr(self, attr):
                delattr(self, attr)
        X, y = self._validate_Xy(X, y, reset=True)
        classes, yi = _unique_labels(y)
        W, labels = self._build(X, yi, classes.size)
        self.classes_ = classes
        self.weights_ = np.ascontiguousarray(self._post(W, labels), dtype=np.float32)
        self.proxy_labels_ = labels
        self._finish()
        return self

    def partial_fit(self, X: object, y: object, classes: object = None) -> ImprintedHead:
        """Add **new** classes without touching the proxies of existing ones.

        The first call is ``fit``. Later calls must bring only unseen labels (a
        :class:`DataError` otherwise). ``classes`` is accepted for scikit-learn
        compatibility and ignored. Not available for ``ls``/``kls`` (their proxies
        depend on all classes: :class:`ConfigError`). With ``norm_post='quantile'`` new
        proxies are mapped onto the reference quantiles fixed by the first call; with
        ``mahalanobis`` the whitening is recomputed from all proxies.
        """
        if not hasattr(self, "weights_"):
            return self.fit(X, y)
        self._check_params()
        if self.generator in GLOBAL_GENERATORS:
            raise ConfigError(
                f"partial_fit cannot add classes with generator={self.generator!r}: its "
                "least-squares solve couples all classes; call fit on the union of all classes"
            )
        X, y = self._validate_Xy(X, y, reset=False)
        new_classes, yi = _unique_labels(y)
        seen = np.isin(new_classes, self.classes_)
        if seen.any():
            raise DataError(
                f"partial_fit adds new classes only; labels {new_classes[seen][:5].tolist()} are "
                "already fitted (imprinting is class-incremental; use fit to rebuild them)"
            )
        W_new, lab_new = self._build(X, yi, new_classes.size)
        W_new = self._post(W_new, lab_new, previous=self.weights_)
        try:
            merged = np.concatenate([self.classes_, new_classes])
            merged_sorted, inverse = _unique_labels(merged)
        except DataError:
            raise DataError(
                "partial_fit: new labels cannot be ordered together with classes_"
            ) from None
        old_idx = inverse[: self.classes_.size][self.proxy_labels_]
        new_idx = inverse[self.classes_.size :][lab_new]
        labels = np.concatenate([old_idx, new_idx])
        order = np.argsort(labels, kind="stable")
        self.classes_ = merged_sorted
        self.weights_ = np.ascontiguousarray(np.concatenate([self.weights_, W_new])[order])
        self.proxy_labels_ = labels[order]
        self._finish()
        return self

    def decision_function(self, X: object) -> np.ndarray:
        """Class scores ``(n_samples, n_classes)`` in ``classes_`` order.

        ``max``: the largest inner product between the (NORMinf) row and the class's
        proxies. ``mnn``: the class's vote mass among the ``n_neighbors`` nearest proxies.
        Always 2-D, also for two classes.
        """
        self._check_fitted()
        X = self._validate_X(X, reset=False)
        if self.norm_inf == "l2":
            X = l2_normalize(X)
        if self.aggregation == "max":
            return agg.max_scores(X, self.weights_, self.proxy_labels_, self.classes_.size)
        m = int(self.n_neighbors)
        if m > self.weights_.shape[0]:
            log.warning(
                "n_neighbors=%d exceeds the %d proxies; using all proxies",
                m,
                self.weights_.shape[0],
            )
        return agg.mnn_scores(
            X,
            self.weights_,
            self.proxy_labels_,
            self.classes_.size,
            m,
            self.metric,
            self.weighting,
            whitener=self.whitener_,
        )

    def predict(self, X: object) -> np.ndarray:
        """Label with the highest score (ties: the lowest class index)."""
        return super().predict(X)

    # ---------------------------------------------------------------- storage
    @classmethod
    def _example_grid(cls) -> dict:
        return {"norm_inf": ["l2", "none"]}

    def _save_extra(self, folder: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
        if hasattr(self, "feature_names_in_"):
            meta["extra"] = {"feature_names_in": [str(v) for v in self.feature_names_in_]}

    def _load_extra(self, folder: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
        names = (meta.get("extra") or {}).get("feature_names_in")
        if names is not None:
            self.feature_names_in_ = np.asarray([str(v) for v in names], dtype=object)

    def _check_loaded(self) -> None:
        self._check_params()
        self.weights_ = np.ascontiguousarray(self.weights_, dtype=np.float32)
        self.proxy_labels_ = np.asarray(self.proxy_labels_)
        if self.weights_.ndim != 2 or self.weights_.shape[1] != self.n_features_in_:
            raise DataError(f"weights_ of shape {self.weights_.shape} do not match n_features_in")
        if self.proxy_labels_.shape != (self.weights_.shape[0],) or (
            self.proxy_labels_.dtype.kind not in "iu"
        ):
            raise DataError("proxy_labels_ do not match weights_")
        self.proxy_labels_ = self.proxy_labels_.astype(np.int64)
        n = len(self.classes_)
        if len(self.proxy_labels_) and (
            self.proxy_labels_.min() < 0 or self.proxy_labels_.max() >= n
        ):
            raise DataError(f"proxy_labels_ must index the {n} classes")
        if not np.isfinite(self.weights_).all():
            raise DataError("weights_ contain NaN or infinite values")
        self._finish()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _unique_labels(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique labels and each row's index into them (clear error on mixed types)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            classes, yi = np.unique(y, return_inverse=True)
    except TypeError:
        raise DataError("y: labels must be mutually comparable (e.g. all str or all int)") from None
    return classes, yi.ravel().astype(np.int64)
