"""TDA: training-free dynamic adapter with online positive / negative caches.

Karmanov, Guan, Lu, El Saddik, Xing: *Efficient Test-Time Adaptation of Vision-Language
Models*, CVPR 2024 (reference code: kdiAAA/TDA).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import ClassVar

import numpy as np
from scipy.special import log_softmax

from priming.errors import ConfigError
from priming.heads._support import (
    check_features,
    check_scalar,
    check_text_head,
    prepare_support,
    zero_shot_logits,
)
from priming.heads.base import BaseHead, register_head
from priming.heads.text import example_text_weights
from priming.imprint.normalize import l2_normalize

__all__ = ["TDAHead"]

_LN2 = float(np.log(2.0))


def _insert(keys, loss, extra, c: int, x, ent: float, item=None) -> None:
    """The reference's cache update for class ``c``: append while there is room, else
    replace the worst (highest-entropy) entry if ``ent`` is lower; keep entries sorted by
    entropy (stable)."""
    row = loss[c]
    n = int(np.isfinite(row).sum())
    if n < row.size:
        pos = n
    elif ent < row[-1]:
        pos = row.size - 1
    else:
        return
    keys[c, pos], row[pos] = x, ent
    if extra is not None:
        extra[c, pos] = item
    order = np.argsort(row, kind="stable")
    keys[c], loss[c] = keys[c, order], row[order]
    if extra is not None:
        extra[c] = extra[c, order]


def _cache_affinity(keys, loss, x, beta: float) -> np.ndarray:
    """``exp(−β(1 − k·x))`` for every filled entry (0 for empty slots): (C, capacity)."""
    aff = np.exp(-beta * (1.0 - keys @ x))
    return np.where(np.isfinite(loss), aff, 0.0)


@register_head("tda")
class TDAHead(BaseHead):
    """TDA (Karmanov et al., CVPR 2024): test-time adaptation with two caches, no gradient.

    Rows are processed in order. For each row: ``z = s·x̂·Tᵀ``, ``p = softmax(z)``, its
    entropy ``H`` and pseudo-label ``ĉ = argmax p``. The row enters the *positive* cache of
    class ĉ (at most ``pos_capacity`` lowest-entropy rows per class); if its normalised
    entropy ``H / ln C`` lies in ``neg_entropy`` it also enters the *negative* cache
    (``neg_capacity`` per class) with the mask ``lo < p < hi`` (``neg_mask``). Then

    ``logits = z + α₊·exp(−β₊(1 − x̂·K₊ᵀ))·L₊ − α₋·exp(−β₋(1 − x̂·K₋ᵀ))·M₋``

    with ``L₊`` one-hot pseudo-labels and ``M₋`` the stored masks.

    Parameters
    ----------
    text_weights : array (C, D); classes : sequence of C labels or None
    pos_capacity, pos_alpha, pos_beta, neg_capacity, neg_alpha, neg_beta : number
        The reference's ImageNet constants (3, 2.0, 5.0, 2, 0.117, 1.0).
    neg_entropy : (float, float)
        Band of normalised entropy for the negative cache. Default (0.2, 0.5) / ln 2: the
        reference divides the entropy in nats by log₂ C, so its band 0.2–0.5 is this one on
        the proper ``H / ln C`` scale.
    neg_mask : (float, float)
        Probability band whose classes a negative entry pushes down (0.03, 1.0).
    logit_scale : float

    Every hyperparameter is a published constant (TDA's code tunes them per dataset on
    the test stream; we do not): ``selection_`` says so. Labelled rows given to ``fit``
    (shots, or pool rows with a smaller ``sample_weight``) form a static positive cache
    that stays beside the online one and is never evicted.

    ``decision_function(X)`` processes ``X`` in order from the fitted state and leaves the
    head unchanged; :meth:`partial_predict` / :meth:`partial_decision_function` carry the
    caches over between calls (the online use), :meth:`stream` yields per batch and
    :meth:`reset` empties the online caches.
    """

    _fitted_arrays = (
        "static_keys_",
        "static_values_",
        "pos_keys_",
        "pos_loss_",
        "neg_keys_",
        "neg_loss_",
        "neg_probs_",
    )
    _fitted_values = ("selection_", "n_seen_")
    default_temperature: ClassVar[float] = 1.0

    transductive = True  # scores depend on the batch given

    def __init__(
        self,
        text_weights=None,
        classes=None,
        pos_capacity: int = 3,
        pos_alpha: float = 2.0,
        pos_beta: float = 5.0,
        neg_capacity: int = 2,
        neg_alpha: float = 0.117,
        neg_beta: float = 1.0,
        neg_entropy=(0.2 / _LN2, 0.5 / _LN2),
        neg_mask=(0.03, 1.0),
        logit_scale: float = 100.0,
    ) -> None:
        self.text_weights = text_weights
        self.classes = classes
        self.pos_capacity = pos_capacity
        self.pos_alpha = pos_alpha
        self.pos_beta = pos_beta
        self.neg_capacity = neg_capacity
        self.neg_alpha = neg_alpha
        self.neg_beta = neg_beta
        self.neg_entropy = neg_entropy
        self.neg_mask = neg_mask
        self.logit_scale = logit_scale

    @classmethod
    def _example(cls, n_classes: int, n_features: int, random_state: int = 0) -> TDAHead:
        return cls(text_weights=example_text_weights(n_classes, n_features, random_state))

    def _band(self, value, name: str) -> tuple[float, float]:
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a pair (low, high), got {value!r}") from None
        if not lo <= hi:
            raise ConfigError(f"{name} must have low <= high, got {value!r}")
        return lo, hi

    def fit(self, X=None, y=None, sample_weight=None) -> TDAHead:
        """Set up empty online caches (and the static cache of any labelled rows)."""
        T, classes_ = check_text_head(self.text_weights, self.classes)
        C, D = T.shape
        sup = prepare_support(X, y, sample_weight, classes_, D)
        for name in ("pos_capacity", "neg_capacity"):
            check_scalar(getattr(self, name), name, low=1)
        for name in ("pos_alpha", "pos_beta", "neg_alpha", "neg_beta"):
            check_scalar(getattr(self, name), name)
        check_scalar(self.logit_scale, "logit_scale", strict=True)
        self._band(self.neg_entropy, "neg_entropy")
        self._band(self.neg_mask, "neg_mask")
        self.static_keys_, self.static_values_ = sup.X, sup.one_hot(C)
        self.classes_ = classes_
        self.n_features_in_ = D
        self.selection_ = {"rule": "published constants (TDA, ImageNet config)"}
        self.reset()
        return self

    def reset(self) -> TDAHead:
        """Empty the online caches (the static cache of labelled rows stays)."""
        self._check_fitted()
        C, D = len(self.classes_), self.n_features_in_
        kp, kn = int(self.pos_capacity), int(self.neg_capacity)
        self.pos_keys_, self.pos_loss_ = np.zeros((C, kp, D)), np.full((C, kp), np.inf)
        self.neg_keys_, self.neg_loss_ = np.zeros((C, kn, D)), np.full((C, kn), np.inf)
        self.neg_probs_ = np.zeros((C, kn, C))
        self.n_seen_ = 0
        return self

    def _state(self) -> dict:
        names = ("pos_keys_", "pos_loss_", "neg_keys_", "neg_loss_", "neg_probs_")
        return {n: np.array(getattr(self, n), dtype=np.float64) for n in names}

    def _run(self, X, state: dict) -> np.ndarray:
        """Process the rows of ``X`` in order, updating ``state`` in place; (n, C) logits."""
        T = np.asarray(self.text_weights, dtype=np.float64)
        Xn = l2_normalize(check_features(X, "X", self.n_features_in_))
        Z = zero_shot_logits(Xn, T, self.logit_scale)
        logP = log_softmax(Z, axis=1)
        P = np.exp(logP)
        H = -np.sum(P * logP, axis=1)
        C = T.shape[0]
        norm_h = H / np.log(C) if C > 1 else np.zeros_like(H)
        e_lo, e_hi = self._band(self.neg_entropy, "neg_entropy")
        m_lo, m_hi = self._band(self.neg_mask, "neg_mask")
        a_p, b_p = float(self.pos_alpha), float(self.pos_beta)
        a_n, b_n = float(self.neg_alpha), float(self.neg_beta)
        sk, sv = np.asarray(self.static_keys_), np.asarray(self.static_values_)
        out = Z.copy()
        pk, pl = state["pos_keys_"], state["pos_loss_"]
        nk, nl, npb = state["neg_keys_"], state["neg_loss_"], state["neg_probs_"]
        for i in range(Xn.shape[0]):
            x, c = Xn[i], int(np.argmax(Z[i]))
            _insert(pk, pl, None, c, x, H[i])
            if e_lo < norm_h[i] < e_hi:
                _insert(nk, nl, npb, c, x, H[i], P[i])
            pos = _cache_affinity(pk, pl, x, b_p).sum(axis=1)  # (C,) per pseudo-label
            out[i] += a_p * pos
            if sk.shape[0]:
                out[i] += a_p * (np.exp(-b_p * (1.0 - sk @ x)) @ sv)
            if np.isfinite(nl).any():
                mask = ((npb > m_lo) & (npb < m_hi)).astype(np.float64)
                out[i] -= a_n * np.einsum("kj,kjc->c", _cache_affinity(nk, nl, x, b_n), mask)
        return out

    def decision_function(self, X) -> np.ndarray:
        """``(n, C)`` TDA logits of the rows of ``X`` processed in order from the fitted
        state; the head itself is not changed."""
        self._check_fitted()
        return self._run(X, self._state())

    def partial_decision_function(self, X) -> np.ndarray:
        """Like :meth:`decision_function`, but the caches keep what ``X`` taught them."""
        self._check_fitted()
        state = self._state()
        out = self._run(X, state)
        for name, value in state.items():
            setattr(self, name, value)
        self.n_seen_ = int(self.n_seen_) + int(out.shape[0])
        return out

    def partial_predict(self, X) -> np.ndarray:
        """Labels of the rows of ``X``, adapting the caches as they pass (online)."""
        return np.asarray(self.classes_)[np.argmax(self.partial_decision_function(X), axis=1)]

    def stream(self, batches: Iterable) -> Iterator[np.ndarray]:
        """Yield :meth:`partial_predict` of each batch (2-D array, or one row) in turn."""
        for batch in batches:
            B = np.asarray(batch, dtype=np.float64)
            yield self.partial_predict(B[None, :] if B.ndim == 1 else B)
