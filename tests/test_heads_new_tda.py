"""TDA: the reference's dict-of-lists caches re-implemented literally as the oracle."""

from __future__ import annotations

import math
import operator

import numpy as np
import pytest
from test_heads_new_common import make_problem, unit, zero_shot_acc

from priming.heads.base import load_head
from priming.heads.tda import TDAHead


def _update_cache(cache, pred, item, cap):
    if pred in cache:
        if len(cache[pred]) < cap:
            cache[pred].append(item)
        elif item[1] < cache[pred][-1][1]:
            cache[pred][-1] = item
        cache[pred] = sorted(cache[pred], key=operator.itemgetter(1))
    else:
        cache[pred] = [item]


def _cache_logits(x, cache, alpha, beta, C, neg=None):
    keys, values = [], []
    for c in sorted(cache):
        for item in cache[c]:
            keys.append(item[0])
            values.append(item[2] if neg else np.eye(C)[c])
    keys = np.stack(keys).T
    values = np.stack(values)
    if neg:
        values = ((values > neg[0]) & (values < neg[1])).astype(float)
    return alpha * (np.exp(-1 * (beta - beta * (x @ keys))) @ values)


def reference_tda(
    feats, W, pos=(3, 2.0, 5.0), neg=(2, 0.117, 1.0), ent=(0.2, 0.5), mask=(0.03, 1.0)
):
    """run_test_tda for single-view features (rows in order); W is (D, C)."""
    C = W.shape[1]
    pos_cache, neg_cache, out = {}, {}, []
    for x in feats:
        logits = 100.0 * x @ W
        p = np.exp(logits - logits.max())
        p /= p.sum()
        loss = float(-(p * np.log(p)).sum())
        prop_entropy = loss / math.log2(C)  # the reference's scale
        pred = int(np.argmax(logits))
        _update_cache(pos_cache, pred, [x, loss], pos[0])
        if ent[0] < prop_entropy < ent[1]:
            _update_cache(neg_cache, pred, [x, loss, p], neg[0])
        final = logits.copy()
        if pos_cache:
            final += _cache_logits(x, pos_cache, pos[1], pos[2], C)
        if neg_cache:
            final -= _cache_logits(x, neg_cache, neg[1], neg[2], C, mask)
        out.append(final)
    return np.stack(out)


def _soft_problem(seed):
    # logit scale 100 on cosines scaled by 0.05 keeps softmax entropies in the negative band
    T, Xs, ys, Xt, yt = make_problem(seed=seed, n_test=120)
    return T * 0.05, Xs, ys, Xt, yt


def test_matches_reference_stream():
    T, Xs, ys, Xt, yt = _soft_problem(13)
    head = TDAHead(T).fit(None)
    ours = head.decision_function(Xt)
    ref = reference_tda(unit(Xt), T.T)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)
    # the band is hit on this problem, so the negative cache matters
    head.partial_decision_function(Xt)
    assert np.isfinite(head.neg_loss_).any() and np.isfinite(head.pos_loss_).any()


def test_partial_predict_and_stream_equal_one_pass_and_decision_function_is_pure():
    T, Xs, ys, Xt, yt = _soft_problem(14)
    head = TDAHead(T).fit(None)
    full = head.predict(Xt)
    assert not np.isfinite(head.pos_loss_).any()  # decision_function left it unchanged
    parts = np.concatenate(list(head.stream([Xt[:50], Xt[50:51][0], Xt[51:]])))
    np.testing.assert_array_equal(parts, full)
    assert head.n_seen_ == len(Xt)
    head.reset()
    np.testing.assert_array_equal(head.partial_predict(Xt), full)


def test_zero_cache_weights_are_zero_shot_and_capacity_holds():
    T, Xs, ys, Xt, yt = _soft_problem(15)
    head = TDAHead(T, pos_alpha=0.0, neg_alpha=0.0).fit(None)
    np.testing.assert_allclose(head.decision_function(Xt), 100.0 * unit(Xt) @ T.T)
    h = TDAHead(T, pos_capacity=2).fit(None)
    h.partial_predict(Xt)
    filled = np.isfinite(h.pos_loss_)
    assert filled.sum(axis=1).max() <= 2
    assert np.all(np.diff(np.where(filled, h.pos_loss_, np.inf), axis=1) >= 0)


def test_online_state_survives_save_load(tmp_path):
    T, Xs, ys, Xt, yt = _soft_problem(16)
    head = TDAHead(T).fit(Xs, ys)
    head.partial_predict(Xt[:60])
    back = load_head(head.save(tmp_path / "tda"))
    np.testing.assert_allclose(
        back.partial_decision_function(Xt[60:]), head.partial_decision_function(Xt[60:])
    )


def test_caches_beat_zero_shot_with_shots():
    T, Xs, ys, Xt, yt = make_problem(seed=0, n_test=400)
    Ts = T * 0.05
    zs = zero_shot_acc(T, Xt, yt)
    acc = np.mean(TDAHead(Ts).fit(Xs, ys).predict(Xt) == yt)
    assert acc >= zs + 0.05


def test_bad_band():
    T, Xs, ys, Xt, yt = _soft_problem(1)
    with pytest.raises(ValueError, match="neg_mask"):
        TDAHead(T, neg_mask=(0.5, 0.1)).fit(None)
