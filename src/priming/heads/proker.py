"""ProKeR: proximal kernel ridge regression around the zero-shot head (closed form).

Bendou, Ouasfi, Gripon, Boukhayma: *ProKeR: A Kernel Perspective on Few-Shot Adaptation
of Large Vision-Language Models*, CVPR 2025.
"""

from __future__ import annotations

import numpy as np
from scipy.special import softmax

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

__all__ = ["ProKeRHead", "proker_coefficients"]

DEFAULT_LAMBDA = 1.0
DEFAULT_BETA = 5.5
LAMBDA_GRID = (1e-3, 0.01, 0.1, 1.0, 10.0)
BETA_GRID = (0.25, 0.5, 1.0, 2.0, 5.5, 10.0, 20.0)
DEFAULT_SCALE = 100.0
SCALE_GRID = (5.0, 10.0, 20.0, 50.0, 100.0)


def rbf(A: np.ndarray, B: np.ndarray, beta: float) -> np.ndarray:
    """``exp(−β (1 − â·b̂))`` = ``exp(−β/2 ‖â − b̂‖²)`` for normalised rows."""
    return np.exp(-float(beta) * (1.0 - A @ B.T))


def proker_coefficients(
    sup: Support, prior: np.ndarray, n_classes: int, lam: float, beta: float
) -> np.ndarray:
    """Dual coefficients ``(W K + λ I)⁻¹ W (Y − f₀(X))`` (n, C) of the weighted problem
    ``min_f Σ w_i ‖f(x_i) − y_i‖² + λ ‖f − f₀‖²_H`` (``W = diag(w)``; with unit weights
    this is ``(K + λ I)⁻¹ (Y − f₀(X))``)."""
    K = rbf(sup.X, sup.X, beta)
    Y = sup.one_hot(n_classes, weighted=False)
    A = sup.w[:, None] * K + lam * np.eye(sup.n)
    return np.linalg.solve(A, sup.w[:, None] * (Y - prior))


@register_head("proker")
class ProKeRHead(BaseHead):
    """ProKeR (Bendou et al., CVPR 2025): kernel ridge regression of the one-hot labels in an
    RKHS, regularised towards the zero-shot head instead of towards zero.

    ``f(x) = f₀(x) + k(x, X) (K + λ I)⁻¹ (Y − f₀(X))`` with ``f₀(x) = softmax(s · x̂·Tᵀ)``
    (the zero-shot class probabilities, on the scale of the one-hot targets ``Y``) and the
    RBF kernel ``k(x, x') = exp(−β (1 − x̂·x̂'))`` over the normalised labelled rows
    (Tip-Adapter's affinity, which ProKeR shows is a Nadaraya–Watson version of this).
    ``λ → ∞`` gives the zero-shot head; ``λ → 0`` interpolates the labelled rows.

    Parameters
    ----------
    text_weights : array (C, D); classes : sequence of C labels or None
    lam, beta : float or "auto"
        Ridge λ and kernel sharpness β. ``"auto"``: grid ``lambda_grid`` × ``beta_grid``
        searched by accuracy on held-out stratified folds of the labelled rows; ties go to
        the first grid point; with too few labelled rows λ = 1, β = 5.5.
    logit_scale : float or "auto"
        ``s``, the temperature of the zero-shot prior. It matters: the prior is on the
        one-hot scale, and a prior too peaked for the embedding model leaves the labelled
        rows nothing to correct. ``"auto"``: searched with λ and β on ``scale_grid`` (5 …
        100) by the same shot folds; with too few labelled rows CLIP's 100.
    lambda_grid, beta_grid, scale_grid : sequence of float or None
    n_folds, random_state : int

    With a priming pool, fit on shots ∪ pool rows with ``sample_weight`` < 1 for the pool:
    the weights enter the squared loss (``W`` above). ``fit(None)`` gives the zero-shot
    head. ``decision_function`` returns ``f(x)`` (probability scale).
    """

    _fitted_arrays = ("support_X_", "dual_coef_")
    _fitted_values = ("lam_", "beta_", "logit_scale_", "selection_")

    def __init__(
        self,
        text_weights=None,
        classes=None,
        lam="auto",
        beta="auto",
        logit_scale="auto",
        lambda_grid=None,
        beta_grid=None,
        scale_grid=None,
        n_folds: int = 5,
        random_state: int = 0,
    ) -> None:
        self.text_weights = text_weights
        self.classes = classes
        self.lam = lam
        self.beta = beta
        self.logit_scale = logit_scale
        self.lambda_grid = lambda_grid
        self.beta_grid = beta_grid
        self.scale_grid = scale_grid
        self.n_folds = n_folds
        self.random_state = random_state

    @classmethod
    def _example(cls, n_classes: int, n_features: int, random_state: int = 0) -> ProKeRHead:
        T = example_text_weights(n_classes, n_features, random_state)
        return cls(
            text_weights=T,
            lambda_grid=(0.1, 1.0),
            beta_grid=(2.0, 5.5),
            scale_grid=(10.0, 100.0),
            n_folds=3,
        )

    @staticmethod
    def _prior(Xn: np.ndarray, T: np.ndarray, scale: float) -> np.ndarray:
        return softmax(zero_shot_logits(Xn, T, scale), axis=1)

    def fit(self, X=None, y=None, sample_weight=None) -> ProKeRHead:
        """Solve the proximal kernel ridge regression; pick λ, β on shot folds."""
        T, classes_ = check_text_head(self.text_weights, self.classes)
        C, D = T.shape
        sup = prepare_support(X, y, sample_weight, classes_, D)
        scales = (
            check_grid(self.scale_grid, SCALE_GRID, "scale_grid")
            if self.logit_scale == "auto"
            else (check_scalar(self.logit_scale, "logit_scale", strict=True),)
        )
        lams = (
            check_grid(self.lambda_grid, LAMBDA_GRID, "lambda_grid")
            if self.lam == "auto"
            else (check_scalar(self.lam, "lam", strict=True),)
        )
        betas = (
            check_grid(self.beta_grid, BETA_GRID, "beta_grid")
            if self.beta == "auto"
            else (check_scalar(self.beta, "beta"),)
        )
        cands = [(sc, la, b) for sc in scales for b in betas for la in lams]
        auto = "auto" in (self.lam, self.beta, self.logit_scale)

        def fold_predictions(train, test):
            # one eigendecomposition of W^½ K W^½ per β serves every λ and scale
            out = np.empty((len(cands), test.n), dtype=np.int64)
            Y = train.one_hot(C, weighted=False)
            r = np.sqrt(train.w)
            for b in betas:
                ev, V = np.linalg.eigh(r[:, None] * rbf(train.X, train.X, b) * r[None, :])
                K_te = rbf(test.X, train.X, b)
                for sc in scales:
                    p_te = self._prior(test.X, T, sc)
                    proj = V.T @ (r[:, None] * (Y - self._prior(train.X, T, sc)))
                    for la in lams:
                        coef = r[:, None] * (V @ (proj / (ev + la)[:, None]))
                        out[cands.index((sc, la, b))] = np.argmax(p_te + K_te @ coef, axis=1)
            return out

        best, acc, k = (None, None, 0)
        if auto and sup.n:
            best, acc, k = select_on_folds(
                sup, len(cands), fold_predictions, self.n_folds, self.random_state
            )
        if best is not None:
            self.logit_scale_, self.lam_, self.beta_ = cands[best]
            rule = f"stratified {k}-fold cross-validation on the labelled rows"
            self.selection_ = {"rule": rule, "cv_accuracy": float(acc[best]), "n_folds": k}
        else:
            self.lam_ = DEFAULT_LAMBDA if self.lam == "auto" else lams[0]
            self.beta_ = DEFAULT_BETA if self.beta == "auto" else betas[0]
            self.logit_scale_ = DEFAULT_SCALE if self.logit_scale == "auto" else scales[0]
            why = "default (too few labelled rows to validate)" if auto else "given"
            self.selection_ = {"rule": why}
        self.selection_.update(lam=self.lam_, beta=self.beta_, logit_scale=self.logit_scale_)
        self.support_X_ = sup.X
        if sup.n:
            self.dual_coef_ = proker_coefficients(
                sup, self._prior(sup.X, T, self.logit_scale_), C, self.lam_, self.beta_
            )
        else:
            self.dual_coef_ = np.zeros((0, C))
        self.classes_ = classes_
        self.n_features_in_ = D
        return self

    def decision_function(self, X) -> np.ndarray:
        """``(n, C)``: the zero-shot probabilities plus the kernel correction."""
        self._check_fitted()
        T = np.asarray(self.text_weights, dtype=np.float64)
        Xn = l2_normalize(check_features(X, "X", self.n_features_in_))
        f0 = self._prior(Xn, T, self.logit_scale_)
        S = np.asarray(self.support_X_, dtype=np.float64)
        if S.shape[0] == 0:
            return f0
        return f0 + rbf(Xn, S, self.beta_) @ np.asarray(self.dual_coef_)
