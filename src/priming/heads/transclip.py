"""TransCLIP: transductive Gaussian mixture + Laplacian + KL towards the text head.

Zanella, Gérin, Ben Ayed: *Boosting Vision-Language Models with Transduction*,
NeurIPS 2024 (reference code: MaxZanella/transduction-for-vlms, AGPL-3.0; read, not
copied).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import sparse
from scipy.special import log_softmax, softmax

from priming.heads._graph import knn_matrix, knn_search
from priming.heads._support import (
    Support,
    check_features,
    check_grid,
    check_scalar,
    check_text_head,
    prepare_support,
    select_transductive,
    zero_shot_logits,
)
from priming.heads.base import BaseHead, register_head
from priming.heads.text import example_text_weights
from priming.imprint.normalize import l2_normalize

__all__ = ["TransCLIPHead", "transclip_solve", "TransCLIPSettings"]

GAMMA_GRID = (0.002, 0.01, 0.02, 0.2)
#: the reference's fixed scale of the Gaussian and Laplacian terms (its "50")
TERM_SCALE = 50.0


@dataclass(frozen=True)
class TransCLIPSettings:
    kl_weight: float = 1.0  # λ: exponent of the zero-shot prior ŷ
    gamma: float = 0.0  # weight of the labelled rows in the means / variance
    n_neighbors: int = 3
    n_iter: int = 10
    n_z_iter: int = 5
    n_confident: int = 8


def _init_means(Q, z, sup: Support, n_classes: int, n_confident: int) -> np.ndarray:
    """Zero-shot: per class, the mean of ``z_ic x_i`` over its ``n_confident`` most
    confident batch rows; with labelled rows, their (weighted) class sum."""
    top = np.argsort(-z, axis=0, kind="stable")[: min(n_confident, Q.shape[0])]  # (k, C)
    cols = np.arange(n_classes)
    mu = np.einsum("kc,kcd->cd", z[top, cols], Q[top]) / top.shape[0]
    if sup.n:
        sums = np.zeros_like(mu)
        np.add.at(sums, sup.y, sup.X * sup.w[:, None])
        has = np.bincount(sup.y, weights=sup.w, minlength=n_classes) > 0
        mu[has] = sums[has]
    return l2_normalize(mu)


def _affinity(Q, sup: Support, k: int):
    """Sparse k-NN affinities: rows = batch rows then labelled rows, columns = batch rows."""
    iq, sq = knn_search(Q, Q, k, exclude_self=True)
    W = knn_matrix(iq, sq, Q.shape[0])
    if sup.n:
        i_s, s_s = knn_search(sup.X, Q, k)
        W = sparse.vstack([W, knn_matrix(i_s, s_s, Q.shape[0])]).tocsr()
    return W


def _gauss_loglik(Q, Q2, mu, std) -> np.ndarray:
    """``−½ Σ_d (x_d − μ_kd)² / σ_d`` for every row and class, without an n × C × D tensor."""
    inv = 1.0 / std
    return -0.5 * ((Q2 @ inv)[:, None] - 2.0 * Q @ (mu * inv).T + ((mu**2) @ inv)[None, :])


def _update_stats(Q, Q2, z, sup: Support, gamma: float, mu_old):
    """Means and the shared diagonal variance from the soft assignments (+ labelled rows)."""
    n, C = z.shape
    a = z / n
    num = a.T @ Q
    den_all = a.sum()
    b = None
    if sup.n and gamma > 0:
        b = sup.one_hot(C) * (gamma * TERM_SCALE / sup.w.sum())
        num = num + b.T @ sup.X
    mu = l2_normalize(num)
    empty = np.linalg.norm(num, axis=1) == 0
    mu[empty] = mu_old[empty]
    var = a.sum(axis=1) @ Q2 - 2.0 * np.sum((a.T @ Q) * mu, axis=0) + a.sum(axis=0) @ mu**2
    if b is not None:
        diff = sup.X - mu[sup.y]
        var = var + (b.sum(axis=1)[:, None] * diff**2).sum(axis=0)
        den_all = den_all + b.sum()
    return mu, np.maximum(var / den_all, 1e-12)


def transclip_solve(Q, T, logit_scale: float, sup: Support, cfg: TransCLIPSettings):
    """Log assignments ``log z`` (n, C) of TransCLIP over the normalised batch ``Q``.

    Block coordinate descent: ``z_i ∝ ŷ_i^λ · exp(log N(x_i | μ_k, diag σ)/50
    + (1/2k) Σ_j (w_ij + w_ji) z_j)`` (``n_z_iter`` passes, labelled rows fixed to their
    one-hot labels), then ``μ_k`` (normalised) and the shared ``σ`` from ``z`` and the
    labelled rows weighted by ``γ``; ``n_iter`` rounds and a final z-update."""
    n, C = Q.shape[0], T.shape[0]
    y_log = log_softmax(zero_shot_logits(Q, T, logit_scale), axis=1)
    z = np.exp(y_log)
    mu = _init_means(Q, z, sup, C, cfg.n_confident)
    std = np.full(Q.shape[1], 1.0 / Q.shape[1])
    k = max(int(cfg.n_neighbors), 1)
    W = _affinity(Q, sup, k)
    Wq, Wt = W[:n], W.T.tocsr()
    fixed = sup.one_hot(C, weighted=False)
    Q2 = Q**2
    log_z = y_log
    for it in range(cfg.n_iter + 1):
        base = cfg.kl_weight * y_log + _gauss_loglik(Q, Q2, mu, std) / TERM_SCALE
        for _ in range(cfg.n_z_iter):
            msg = Wt @ np.vstack([z, fixed]) + Wq @ z
            log_z = log_softmax(base + msg / (2.0 * k), axis=1)
            z = np.exp(log_z)
        if it == cfg.n_iter:
            break
        mu, std = _update_stats(Q, Q2, z, sup, cfg.gamma, mu)
    return log_z


@register_head("transclip")
class TransCLIPHead(BaseHead):
    """TransCLIP (Zanella et al., NeurIPS 2024): transductive inference over the batch.

    A Gaussian mixture with one shared diagonal covariance over the rows being
    predicted, a Laplacian term over their k-NN graph and a KL term pulling each
    assignment towards the zero-shot softmax ``ŷ = softmax(s · x̂·Tᵀ)`` (see
    :func:`transclip_solve`). ``decision_function(X)`` / :meth:`transduce` run it over the
    batch ``X`` given (deterministic); labelled rows from ``fit`` (shots, pool rows with a
    smaller ``sample_weight``) anchor the initial means and pull the means / variance with
    weight ``γ``, and join the graph with their labels fixed.

    Parameters
    ----------
    text_weights : array (C, D); classes : sequence of C labels or None
    kl_weight : float or None
        λ, the weight of the KL term. None: the paper's values, 1 without labelled rows and
        0.5 with them (no selection: published constants, label-free). λ → ∞ gives the
        zero-shot prediction.
    gamma : float or "auto"
        Weight of the labelled rows. ``"auto"``: each grid value of ``gamma_grid`` is run
        with one fold of the labelled rows held out and appended, unlabelled, to the batch;
        the value with the best accuracy on those rows (summed over ``n_folds`` stratified
        folds) wins (never the batch's labels). Without enough labelled rows: 0.02.
    n_neighbors, n_iter, n_z_iter, n_confident : int
        The paper's constants: 3 graph neighbours, 10 rounds, 5 z-passes, 8 confident rows
        per class to initialise the means without shots.
    logit_scale : float

    The last batch's γ and its rule are in ``last_selection_``. Differences from the
    reference code: labelled rows keep their own top-k neighbours (the reference drops
    each one's first neighbour as if it were itself) and the graph rows line up with the
    assignment rows (the reference stacks them in opposite orders).
    """

    _fitted_arrays = ("support_X_", "support_y_", "support_w_")
    _fitted_values = ("selection_",)
    default_temperature: ClassVar[float] = 1.0

    transductive = True  # scores depend on the batch given

    def __init__(
        self,
        text_weights=None,
        classes=None,
        kl_weight=None,
        gamma="auto",
        gamma_grid=None,
        n_neighbors: int = 3,
        n_iter: int = 10,
        n_z_iter: int = 5,
        n_confident: int = 8,
        logit_scale: float = 100.0,
        n_folds: int = 3,
        random_state: int = 0,
    ) -> None:
        self.text_weights = text_weights
        self.classes = classes
        self.kl_weight = kl_weight
        self.gamma = gamma
        self.gamma_grid = gamma_grid
        self.n_neighbors = n_neighbors
        self.n_iter = n_iter
        self.n_z_iter = n_z_iter
        self.n_confident = n_confident
        self.logit_scale = logit_scale
        self.n_folds = n_folds
        self.random_state = random_state

    @classmethod
    def _example(cls, n_classes: int, n_features: int, random_state: int = 0) -> TransCLIPHead:
        T = example_text_weights(n_classes, n_features, random_state)
        return cls(text_weights=T, gamma_grid=(0.01, 0.2), n_iter=3, n_folds=2)

    def fit(self, X=None, y=None, sample_weight=None) -> TransCLIPHead:
        """Store the labelled rows (optional); the work happens at prediction time."""
        T, classes_ = check_text_head(self.text_weights, self.classes)
        sup = prepare_support(X, y, sample_weight, classes_, T.shape[1])
        for name in ("n_neighbors", "n_iter", "n_z_iter", "n_confident"):
            check_scalar(getattr(self, name), name, low=1)
        kl = self.kl_weight
        lam = (0.5 if sup.n else 1.0) if kl is None else check_scalar(kl, "kl_weight")
        if self.gamma != "auto":
            check_scalar(self.gamma, "gamma")
        check_grid(self.gamma_grid, GAMMA_GRID, "gamma_grid")
        self.support_X_, self.support_y_, self.support_w_ = sup.X, sup.y, sup.w
        self.selection_ = {
            "kl_weight": lam,
            "kl_weight_rule": "paper constant" if kl is None else "given",
            "gamma_rule": (
                "per batch: held-out labelled folds appended to the batch"
                if self.gamma == "auto"
                else "given"
            ),
            "n_neighbors": int(self.n_neighbors),
        }
        self.classes_ = classes_
        self.n_features_in_ = T.shape[1]
        return self

    def _settings(self, gamma: float) -> TransCLIPSettings:
        return TransCLIPSettings(
            kl_weight=float(self.selection_["kl_weight"]),
            gamma=gamma,
            n_neighbors=int(self.n_neighbors),
            n_iter=int(self.n_iter),
            n_z_iter=int(self.n_z_iter),
            n_confident=int(self.n_confident),
        )

    def _support(self) -> Support:
        return Support(
            np.asarray(self.support_X_, dtype=np.float64),
            np.asarray(self.support_y_, dtype=np.int64),
            np.asarray(self.support_w_, dtype=np.float64),
        )

    def _choose_gamma(self, Q, T, sup: Support) -> tuple[float, dict]:
        if self.gamma != "auto":
            return float(self.gamma), {"rule": "given"}
        grid = check_grid(self.gamma_grid, GAMMA_GRID, "gamma_grid")

        def solve(batch, train, gamma):
            return transclip_solve(batch, T, self.logit_scale, train, self._settings(gamma))

        best, acc, k = select_transductive(sup, Q, grid, solve, self.n_folds, self.random_state)
        if best is None:
            return 0.02 if sup.n else 0.0, {"rule": "default (too few labelled rows)"}
        return grid[best], {"rule": f"{k}-fold held-out labelled rows", "accuracy": acc}

    def _log_assignments(self, X) -> np.ndarray:
        self._check_fitted()
        T = np.asarray(self.text_weights, dtype=np.float64)
        Q = l2_normalize(check_features(X, "X", self.n_features_in_))
        sup = self._support()
        gamma, info = self._choose_gamma(Q, T, sup)
        self.last_selection_ = {**info, "gamma": gamma}
        return transclip_solve(Q, T, self.logit_scale, sup, self._settings(gamma))

    def decision_function(self, X) -> np.ndarray:
        """``(n, C)`` log assignments of TransCLIP run over the batch ``X``."""
        return self._log_assignments(X)

    def transduce(self, X) -> np.ndarray:
        """``(n, C)`` assignment probabilities ``z`` of the batch ``X``."""
        return softmax(self._log_assignments(X), axis=1)

    def predict_proba(self, X) -> np.ndarray:
        return self.transduce(X)
