"""Gaussian discriminant analysis over the shots, mixed with the zero-shot head.

Wang, Lian, Wang, Kang, Shao, Wang: *A Hard-to-Beat Baseline for Training-free CLIP-based
Adaptation*, ICLR 2024 (reference code: mrflogs/ICLR24).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from priming.heads._support import (
    Support,
    check_features,
    check_grid,
    check_scalar,
    check_text_head,
    prepare_support,
    select_on_folds,
    zero_shot_logits,
)
from priming.heads.base import BaseHead, register_head
from priming.heads.text import example_text_weights
from priming.imprint.normalize import l2_normalize

__all__ = ["GDAHead", "gda_parameters"]

DEFAULT_ALPHA = 1.0
ALPHA_GRID = (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)


def gda_parameters(sup: Support, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` of GDA with a shared covariance and uniform class priors.

    ``μ_c`` = weighted mean of class c's normalised rows (a class without rows takes its
    normalised text weight); ``S`` = the within-class scatter ``Σ w (x − μ_y)(x − μ_y)ᵀ``;
    the precision is the paper's shrinkage estimate ``Σ⁻¹ = D · pinv(S + tr(S)/(n−1) · I)``
    (n = Σ w); ``W = μ Σ⁻¹``, ``b_c = log(1/C) − ½ μ_c Σ⁻¹ μ_cᵀ``."""
    C, D = T.shape
    counts = np.bincount(sup.y, weights=sup.w, minlength=C)
    sums = np.zeros((C, D))
    np.add.at(sums, sup.y, sup.X * sup.w[:, None])
    mu = l2_normalize(T).astype(np.float64)
    has = counts > 0
    mu[has] = sums[has] / counts[has, None]
    centred = sup.X - mu[sup.y]
    scatter = (centred * sup.w[:, None]).T @ centred
    n_eff = float(sup.w.sum())
    ridge = np.trace(scatter) / max(n_eff - 1.0, 1.0)
    precision = D * np.linalg.pinv(scatter + ridge * np.eye(D), hermitian=True)
    W = mu @ precision
    b = np.log(1.0 / C) - 0.5 * np.einsum("cd,cd->c", W, mu)
    return W, b


@register_head("gda")
class GDAHead(BaseHead):
    """GDA (Wang et al., ICLR 2024): a linear Gaussian-discriminant classifier from the shots,
    added to the zero-shot logits.

    ``logits(x) = s · x̂·Tᵀ + α · (x̂·Wᵀ + b)`` with ``W, b`` from :func:`gda_parameters`
    (class means of the normalised shots, one shared covariance with the paper's
    trace-ridge shrinkage, uniform priors).

    Parameters
    ----------
    text_weights : array (C, D)
        The zero-shot text head.
    classes : sequence of C labels or None
        Labels of the rows of ``text_weights`` (``0..C-1`` when None).
    alpha : float or "auto"
        Weight of the GDA logits. ``"auto"``: the paper's grid ``alpha_grid`` (10⁻⁴ … 10²)
        searched by accuracy on held-out folds of the shots (stratified ``n_folds``-fold;
        each fold's GDA is estimated on the other folds), never on a validation or test
        split; ties go to the smaller α. With too few shots to validate, α = 1.
    logit_scale : float
        ``s`` (CLIP's 100); ``predict_proba`` is the plain softmax of the logits.
    alpha_grid : sequence of float or None
    n_folds, random_state : int

    A class with no labelled row keeps its normalised text weight as its mean. With a
    priming pool, fit on shots ∪ pool rows and down-weight the pool with ``sample_weight``
    (weighted means and scatter). ``fit(None)`` gives the zero-shot head.
    """

    _fitted_arrays = ("coef_", "intercept_")
    _fitted_values = ("alpha_", "selection_")
    default_temperature: ClassVar[float] = 1.0

    def __init__(
        self,
        text_weights=None,
        classes=None,
        alpha="auto",
        logit_scale: float = 100.0,
        alpha_grid=None,
        n_folds: int = 5,
        random_state: int = 0,
    ) -> None:
        self.text_weights = text_weights
        self.classes = classes
        self.alpha = alpha
        self.logit_scale = logit_scale
        self.alpha_grid = alpha_grid
        self.n_folds = n_folds
        self.random_state = random_state

    @classmethod
    def _example(cls, n_classes: int, n_features: int, random_state: int = 0) -> GDAHead:
        T = example_text_weights(n_classes, n_features, random_state)
        return cls(text_weights=T, alpha_grid=(0.1, 10.0), n_folds=3)

    def fit(self, X=None, y=None, sample_weight=None) -> GDAHead:
        """Estimate the class means and the shared covariance; pick α on shot folds."""
        T, classes_ = check_text_head(self.text_weights, self.classes)
        C, D = T.shape
        sup = prepare_support(X, y, sample_weight, classes_, D)
        scale = check_scalar(self.logit_scale, "logit_scale", strict=True)
        auto = self.alpha == "auto"
        grid = check_grid(self.alpha_grid, ALPHA_GRID, "alpha_grid") if auto else ()

        def fold_predictions(train, test):
            W, b = gda_parameters(train, T)
            z = zero_shot_logits(test.X, T, scale)
            g = test.X @ W.T + b
            return np.stack([np.argmax(z + a * g, axis=1) for a in grid])

        best, acc, k = (None, None, 0)
        if auto and sup.n:
            best, acc, k = select_on_folds(
                sup, len(grid), fold_predictions, self.n_folds, self.random_state
            )
        if best is not None:
            self.alpha_ = grid[best]
            rule = f"stratified {k}-fold cross-validation on the labelled rows"
            self.selection_ = {"rule": rule, "cv_accuracy": float(acc[best]), "n_folds": k}
        else:
            self.alpha_ = DEFAULT_ALPHA if auto else check_scalar(self.alpha, "alpha")
            why = "default (too few labelled rows to validate)" if auto else "given"
            self.selection_ = {"rule": why}
        self.selection_["alpha"] = self.alpha_
        if sup.n:
            self.coef_, self.intercept_ = gda_parameters(sup, T)
        else:
            self.coef_, self.intercept_ = np.zeros((C, D)), np.zeros(C)
        self.classes_ = classes_
        self.n_features_in_ = D
        return self

    def decision_function(self, X) -> np.ndarray:
        """``(n, C)`` logits: zero-shot plus α times the GDA logits."""
        self._check_fitted()
        T = np.asarray(self.text_weights, dtype=np.float64)
        Xn = l2_normalize(check_features(X, "X", self.n_features_in_))
        z = zero_shot_logits(Xn, T, self.logit_scale)
        return z + self.alpha_ * (Xn @ np.asarray(self.coef_).T + np.asarray(self.intercept_))
