"""ZLaP: zero-shot label propagation over a k-NN graph of the batch and the text nodes.

Stojnić, Kalantidis, Tolias: *Label Propagation for Zero-shot Classification with
Vision-Language Models*, CVPR 2024 (reference code: vladan-stojnic/ZLaP).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from priming.errors import ConfigError
from priming.heads._graph import knn_search
from priming.heads._support import (
    Support,
    check_features,
    check_grid,
    check_scalar,
    check_text_head,
    prepare_support,
    select_transductive,
)
from priming.heads.base import BaseHead, register_head
from priming.heads.text import example_text_weights
from priming.imprint.normalize import l2_normalize

__all__ = ["ZLaPHead", "zlap_graph", "block_cg", "zlap_propagate"]

ALPHA_GRID = (0.1, 0.3, 0.5, 0.7, 0.9)


def zlap_graph(F: np.ndarray, T: np.ndarray, k: int, gamma: float) -> sparse.csr_matrix:
    """Symmetrically normalised adjacency over ``C`` text nodes then ``n`` image nodes.

    Every image node links to its ``k`` nearest image nodes (itself included, as the
    reference searches; self loops are removed below) and to its ``min(k, C)`` nearest text
    nodes with similarity raised to ``γ``; negative similarities count as 0; text nodes
    have no out-links. ``W ← W + Wᵀ``, diagonal removed, ``D^{-1/2} W D^{-1/2}``."""
    C, n = T.shape[0], F.shape[0]
    ii, si = knn_search(F, F, k)
    it, st = knn_search(F, l2_normalize(T).astype(np.float64), k)
    si, st = np.maximum(si, 0.0), np.maximum(st, 0.0) ** gamma
    rows = np.concatenate(
        [np.repeat(np.arange(n), ii.shape[1]), np.repeat(np.arange(n), it.shape[1])]
    )
    cols = np.concatenate([ii.ravel() + C, it.ravel()])
    vals = np.concatenate([si.ravel(), st.ravel()])
    N = C + n
    W = sparse.csr_matrix((vals, (rows + C, cols)), shape=(N, N))
    W = (W + W.T).tocsr()
    W.setdiag(0.0)
    W.eliminate_zeros()
    deg = np.asarray(W.sum(axis=1)).ravel()
    deg[deg == 0] = 1.0
    d = sparse.diags(1.0 / np.sqrt(deg))
    return (d @ W @ d).tocsr()


def block_cg(A, B: np.ndarray, tol: float = 1e-6, maxiter: int = 50) -> np.ndarray:
    """Conjugate gradients for ``A X = B``, every column its own CG run (as ``cg`` per
    column), all columns in one product per step; a column stops once
    ``‖r‖ ≤ tol · ‖b‖``."""
    X = np.zeros_like(B)
    R = B.copy()
    P = R.copy()
    rs = np.einsum("ij,ij->j", R, R)
    stop = tol * np.sqrt(np.einsum("ij,ij->j", B, B))
    active = np.sqrt(rs) > stop
    for _ in range(maxiter):
        if not active.any():
            break
        AP = A @ P
        pap = np.einsum("ij,ij->j", P, AP)
        step = np.where(active, rs / np.where(pap == 0, 1.0, pap), 0.0)
        X += P * step
        R -= AP * step
        rs_new = np.einsum("ij,ij->j", R, R)
        beta = np.where(active, rs_new / np.where(rs == 0, 1.0, rs), 0.0)
        P = np.where(active, R + P * beta, P)
        rs = np.where(active, rs_new, rs)
        active = active & (np.sqrt(rs) > stop)
    return X


def zlap_propagate(
    Q: np.ndarray, T: np.ndarray, sup: Support, k: int, gamma: float, alpha: float
) -> np.ndarray:
    """``(n, C)`` label-propagation scores of the batch ``Q`` (normalised rows).

    Solves ``(I − α Ŵ) Z = Y`` by CG (tol 1e-6, 50 iterations as the reference), ``Y`` one
    column per class: 1 at its text node, plus ``w_i / n_c`` at each labelled row's own
    image node (labelled rows join the graph as image nodes after the batch; a class's
    ``n_c`` rows of weight 1 together carry the mass of its text node — with unit mass
    per row the shots drowned the text nodes, whose edges are shrunk by the power γ)."""
    C, n = T.shape[0], Q.shape[0]
    F = np.vstack([Q, sup.X]) if sup.n else Q
    Wn = zlap_graph(F, T, k, gamma)
    L = sparse.identity(Wn.shape[0], format="csr") - alpha * Wn
    Y = np.zeros((Wn.shape[0], C))
    Y[np.arange(C), np.arange(C)] = 1.0
    if sup.n:
        count = np.bincount(sup.y, minlength=C)
        Y[C + n + np.arange(sup.n), sup.y] = sup.w / count[sup.y]
    Z = block_cg(L, Y)
    return Z[C : C + n]


@register_head("zlap")
class ZLaPHead(BaseHead):
    """ZLaP (Stojnić et al., CVPR 2024): transductive label propagation.

    Nodes: the C text weights (labelled, one class each) and the rows of the batch given
    to ``decision_function`` (plus any labelled rows from ``fit``); edges: each image
    node's ``k`` nearest image nodes and ``k`` nearest text nodes (similarity ** γ);
    scores: the solution of ``(I − α Ŵ) Z = Y`` on the batch nodes (see
    :func:`zlap_propagate`).

    Parameters
    ----------
    text_weights : array (C, D); classes : sequence of C labels or None
    n_neighbors : int
        k (the paper's 5).
    gamma : float
        Power on the image→text similarities (the paper's 5).
    alpha : float or "auto"
        Propagation strength in (0, 1). Without labelled rows: the paper's 0.3 (a published
        constant; nothing label-free to select it on). ``"auto"`` with labelled rows: each
        value of ``alpha_grid`` is run with a fold of the labelled rows held out and
        appended, unlabelled, to the batch; the best accuracy on those rows wins.
    alpha_grid : sequence of float or None
    n_folds, random_state : int

    With a priming pool, pass its rows to ``fit`` with a ``sample_weight`` below 1: they
    join the graph as image nodes carrying that much (per-class normalised) label mass. The batch's chosen α is
    in ``last_selection_``. The reference's inductive variants are not implemented.
    """

    _fitted_arrays = ("support_X_", "support_y_", "support_w_")
    _fitted_values = ("selection_",)

    transductive = True  # scores depend on the batch given

    def __init__(
        self,
        text_weights=None,
        classes=None,
        n_neighbors: int = 5,
        gamma: float = 5.0,
        alpha="auto",
        alpha_grid=None,
        n_folds: int = 3,
        random_state: int = 0,
    ) -> None:
        self.text_weights = text_weights
        self.classes = classes
        self.n_neighbors = n_neighbors
        self.gamma = gamma
        self.alpha = alpha
        self.alpha_grid = alpha_grid
        self.n_folds = n_folds
        self.random_state = random_state

    @classmethod
    def _example(cls, n_classes: int, n_features: int, random_state: int = 0) -> ZLaPHead:
        T = example_text_weights(n_classes, n_features, random_state)
        return cls(text_weights=T, alpha_grid=(0.3, 0.7), n_folds=2)

    def fit(self, X=None, y=None, sample_weight=None) -> ZLaPHead:
        """Store the labelled rows (optional); propagation happens at prediction time."""
        T, classes_ = check_text_head(self.text_weights, self.classes)
        sup = prepare_support(X, y, sample_weight, classes_, T.shape[1])
        check_scalar(self.n_neighbors, "n_neighbors", low=1)
        check_scalar(self.gamma, "gamma")
        values = [self.alpha] if self.alpha != "auto" else []
        values += list(check_grid(self.alpha_grid, ALPHA_GRID, "alpha_grid"))
        for a in values:
            if not 0 <= check_scalar(a, "alpha") < 1:
                raise ConfigError(f"alpha must lie in [0, 1), got {a!r}")
        self.support_X_, self.support_y_, self.support_w_ = sup.X, sup.y, sup.w
        self.selection_ = {
            "n_neighbors": int(self.n_neighbors),
            "gamma": float(self.gamma),
            "alpha_rule": (
                "per batch: held-out labelled folds appended to the batch (paper's 0.3 "
                "without labelled rows)"
                if self.alpha == "auto"
                else "given"
            ),
        }
        self.classes_ = classes_
        self.n_features_in_ = T.shape[1]
        return self

    def decision_function(self, X) -> np.ndarray:
        """``(n, C)`` propagated scores of the batch ``X``."""
        self._check_fitted()
        T = np.asarray(self.text_weights, dtype=np.float64)
        Q = l2_normalize(check_features(X, "X", self.n_features_in_))
        sup = Support(
            np.asarray(self.support_X_, dtype=np.float64),
            np.asarray(self.support_y_, dtype=np.int64),
            np.asarray(self.support_w_, dtype=np.float64),
        )
        k, g = int(self.n_neighbors), float(self.gamma)
        if self.alpha != "auto":
            alpha, info = float(self.alpha), {"rule": "given"}
        else:
            grid = check_grid(self.alpha_grid, ALPHA_GRID, "alpha_grid")

            def solve(batch, train, a):
                return zlap_propagate(batch, T, train, k, g, a)

            best, acc, nf = select_transductive(
                sup, Q, grid, solve, self.n_folds, self.random_state
            )
            if best is None:
                alpha, info = 0.3, {"rule": "paper constant"}
            else:
                alpha = grid[best]
                info = {"rule": f"{nf}-fold held-out labelled rows", "accuracy": acc}
        self.last_selection_ = {**info, "alpha": alpha}
        return zlap_propagate(Q, T, sup, k, g, alpha)
