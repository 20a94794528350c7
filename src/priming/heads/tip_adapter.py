"""Tip-Adapter's training-free cache head.

Zhang, Zhang, Fang, Gao, Li, Dai, Qiao, Li: *Tip-Adapter: Training-free Adaption of CLIP
for Few-shot Classification*, ECCV 2022 (reference code: gaopengcuhk/Tip-Adapter).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from priming.heads._support import (
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

__all__ = ["TipAdapterHead"]

DEFAULT_ALPHA = 1.0
DEFAULT_BETA = 5.5
ALPHA_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
BETA_GRID = (0.5, 1.0, 2.0, 3.5, 5.5, 7.5, 10.0)


def cache_affinity(Xn: np.ndarray, keys: np.ndarray, beta: float) -> np.ndarray:
    """``exp(−β (1 − x̂·kᵀ))`` for normalised rows and keys: (n, n_keys)."""
    return np.exp(-float(beta) * (1.0 - Xn @ keys.T))


@register_head("tip-adapter")
class TipAdapterHead(BaseHead):
    """Tip-Adapter (Zhang et al., ECCV 2022), training-free: a key–value cache of the shots.

    ``logits(x) = s · x̂·Tᵀ + α · exp(−β (1 − x̂·Fᵀ)) · L`` with ``F`` the l2-normalised
    labelled rows (keys), ``L`` their one-hot labels times their ``sample_weight``
    (values), ``s`` the logit scale (CLIP's 100) and ``T`` the text head as given.

    Parameters
    ----------
    text_weights : array (C, D)
        The zero-shot text head.
    classes : sequence of C labels or None
        Labels of the rows of ``text_weights`` (``0..C-1`` when None).
    alpha, beta : float or "auto"
        Cache weight and sharpness. ``"auto"``: chosen on the grid ``alpha_grid`` ×
        ``beta_grid`` by the accuracy on held-out folds of the labelled rows (stratified
        ``n_folds``-fold over the shots; each fold's cache is built from the other folds);
        ties go to the first grid point. When no class has two labelled rows, the paper's
        defaults α = 1, β = 5.5 are used. The rule and the values are in ``selection_``.
    logit_scale : float
        ``s``; ``decision_function`` returns logits on this scale and ``predict_proba`` is
        their plain softmax.
    alpha_grid, beta_grid : sequence of float or None
        Search grids (None: module defaults ``ALPHA_GRID``, ``BETA_GRID``).
    n_folds, random_state : int
        Folds of the shot cross-validation and the seed that deals rows into folds.

    With a priming pool, fit on shots ∪ pool rows and give pool rows a ``sample_weight``
    below 1 (e.g. 0.5): their cache values are scaled by it and the selection weights
    held-out rows the same way. ``fit(None)`` gives the zero-shot head.
    """

    _fitted_arrays = ("cache_keys_", "cache_values_")
    _fitted_values = ("alpha_", "beta_", "selection_")
    default_temperature: ClassVar[float] = 1.0

    def __init__(
        self,
        text_weights=None,
        classes=None,
        alpha="auto",
        beta="auto",
        logit_scale: float = 100.0,
        alpha_grid=None,
        beta_grid=None,
        n_folds: int = 5,
        random_state: int = 0,
    ) -> None:
        self.text_weights = text_weights
        self.classes = classes
        self.alpha = alpha
        self.beta = beta
        self.logit_scale = logit_scale
        self.alpha_grid = alpha_grid
        self.beta_grid = beta_grid
        self.n_folds = n_folds
        self.random_state = random_state

    @classmethod
    def _example(cls, n_classes: int, n_features: int, random_state: int = 0) -> TipAdapterHead:
        T = example_text_weights(n_classes, n_features, random_state)
        return cls(text_weights=T, alpha_grid=(0.5, 2.0), beta_grid=(1.0, 5.5), n_folds=3)

    def _candidates(self) -> list[tuple[float, float]]:
        alphas = (
            check_grid(self.alpha_grid, ALPHA_GRID, "alpha_grid")
            if self.alpha == "auto"
            else (check_scalar(self.alpha, "alpha"),)
        )
        betas = (
            check_grid(self.beta_grid, BETA_GRID, "beta_grid")
            if self.beta == "auto"
            else (check_scalar(self.beta, "beta"),)
        )
        return [(a, b) for b in betas for a in alphas]

    def fit(self, X=None, y=None, sample_weight=None) -> TipAdapterHead:
        """Build the cache from the labelled rows ``X, y`` (shots, pool rows) and pick α, β."""
        T, classes_ = check_text_head(self.text_weights, self.classes)
        C, D = T.shape
        sup = prepare_support(X, y, sample_weight, classes_, D)
        cands = self._candidates()
        scale = check_scalar(self.logit_scale, "logit_scale", strict=True)
        auto = self.alpha == "auto" or self.beta == "auto"

        def fold_predictions(train, test):
            z = zero_shot_logits(test.X, T, scale)
            L = train.one_hot(C)
            out = np.empty((len(cands), test.n), dtype=np.int64)
            for i, (a, b) in enumerate(cands):
                out[i] = np.argmax(z + a * (cache_affinity(test.X, train.X, b) @ L), axis=1)
            return out

        best, acc, k = (None, None, 0)
        if auto and sup.n:
            best, acc, k = select_on_folds(
                sup, len(cands), fold_predictions, self.n_folds, self.random_state
            )
        if best is not None:
            self.alpha_, self.beta_ = cands[best]
            rule = f"stratified {k}-fold cross-validation on the labelled rows"
            self.selection_ = {"rule": rule, "cv_accuracy": float(acc[best]), "n_folds": k}
        else:
            a = DEFAULT_ALPHA if self.alpha == "auto" else check_scalar(self.alpha, "alpha")
            b = DEFAULT_BETA if self.beta == "auto" else check_scalar(self.beta, "beta")
            self.alpha_, self.beta_ = a, b
            why = "given" if not auto else "paper default (too few labelled rows to validate)"
            self.selection_ = {"rule": why}
        self.selection_.update(alpha=self.alpha_, beta=self.beta_)
        self.cache_keys_ = sup.X
        self.cache_values_ = sup.one_hot(C)
        self.classes_ = classes_
        self.n_features_in_ = D
        return self

    def decision_function(self, X) -> np.ndarray:
        """``(n, C)`` logits: zero-shot plus the weighted cache affinity."""
        self._check_fitted()
        T = np.asarray(self.text_weights, dtype=np.float64)
        Xn = l2_normalize(check_features(X, "X", self.n_features_in_))
        z = zero_shot_logits(Xn, T, self.logit_scale)
        keys = np.asarray(self.cache_keys_, dtype=np.float64)
        if keys.shape[0] == 0 or self.alpha_ == 0:
            return z
        return z + self.alpha_ * (cache_affinity(Xn, keys, self.beta_) @ self.cache_values_)
