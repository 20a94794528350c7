"""The one vector top-k: known answers, a stable-argsort oracle (ties included), the
streaming form, pool_index, non-finite rows and clear errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from priming.errors import ConfigError, DataError
from priming.imprint import merge_topk, topk, topk_blocks


def oracle(Q, P, k, metric="ip", rows=None):
    """First k columns of a stable argsort of -S (ties: lower pool row first)."""
    Q = np.asarray(Q, np.float64)
    P = np.asarray(P, np.float64)
    if metric == "cosine":
        Q = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        P = P / np.maximum(np.linalg.norm(P, axis=1, keepdims=True), 1e-12)
    rows = np.arange(len(P)) if rows is None else np.sort(rows)
    S = Q @ P[rows].T
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(S, order, 1), rows[order]


def test_known_answer():
    P = np.array([[1, 0], [0, 1], [1, 1], [-1, 0], [2, 0]], np.float32)
    Q = np.array([[1, 0], [0, 1]], np.float32)
    s, i = topk(Q, P, 2, metric="ip")
    assert i.tolist() == [[4, 0], [1, 2]]  # [1,0]·[1,1] = 1 ties row 0: row 0 first
    assert s.tolist() == [[2, 1], [1, 1]]
    s, i = topk(Q, P, 3, metric="cosine")
    # cosine: rows 0 and 4 tie at 1 (lower first), then row 2 at 1/sqrt(2)
    assert i[0].tolist() == [0, 4, 2]
    np.testing.assert_allclose(s[0], [1, 1, np.sqrt(0.5)], rtol=1e-6)
    assert i.dtype == np.int64 and s.dtype == np.float32


small_ints = st.integers(-2, 2)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 120),
    m=st.integers(1, 12),
    k=st.integers(1, 20),
    chunk=st.integers(1, 70),
    qchunk=st.integers(1, 9),
    seed=st.integers(0, 10_000),
    metric=st.sampled_from(["ip", "cosine"]),
)
def test_exact_equals_stable_argsort_with_ties(n, m, k, chunk, qchunk, seed, metric):
    # integer vectors in {-2..2}^3: inner products are exact and ties are everywhere
    rng = np.random.default_rng(seed)
    P = rng.integers(-2, 3, (n, 3)).astype(np.float32)
    Q = rng.integers(-2, 3, (m, 3)).astype(np.float32)
    Q[~Q.any(axis=1)] = 1
    if metric == "cosine":
        P[~P.any(axis=1)] = 1  # cosine of a zero row is 0 either way, keep it simple
    s, i = topk(Q, P, k, metric=metric, chunk=chunk, query_chunk=qchunk)
    ref_s, ref_i = oracle(Q, P, min(k, n), metric)
    np.testing.assert_allclose(s, ref_s, atol=1e-6)
    if metric == "ip":
        assert np.array_equal(i, ref_i)
    else:  # float rounding may split a cosine tie: the returned rows carry the scores
        Pn = P / np.linalg.norm(P, axis=1, keepdims=True)
        Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        np.testing.assert_allclose(np.take_along_axis(Qn @ Pn.T, i, 1), s, atol=1e-6)
        assert all(len(set(r)) == len(r) for r in i.tolist())


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 90), k=st.integers(1, 12), seed=st.integers(0, 10_000))
def test_pool_index_unsorted_keeps_the_tie_rule(n, k, seed):
    rng = np.random.default_rng(seed)
    P = rng.integers(-2, 3, (n, 3)).astype(np.float32)
    Q = rng.integers(-2, 3, (5, 3)).astype(np.float32)
    rows = rng.choice(n, rng.integers(1, n + 1), replace=False)  # any order
    _, i = topk(Q, P, k, metric="ip", pool_index=rows, chunk=int(rng.integers(1, 20)))
    _, ref = oracle(Q, P, min(k, len(rows)), rows=rows)
    assert np.array_equal(i, ref)


def test_topk_blocks_streams_and_pads():
    rng = np.random.default_rng(0)
    P = rng.integers(-3, 4, (50, 4)).astype(np.float32)
    Q = rng.integers(-3, 4, (7, 4)).astype(np.float32)
    ids = np.arange(50) * 10  # the stream's own ids
    blocks = [(ids[a : a + 13], P[a : a + 13]) for a in range(0, 50, 13)]
    s, i = topk_blocks(Q, iter(blocks), 5, metric="ip")
    _, ref = oracle(Q, P, 5)
    assert np.array_equal(i, ids[ref])
    s, i = topk_blocks(Q, iter(blocks[:1]), 20, metric="ip")  # 13 rows, k=20: padded
    assert i.shape == (7, 20) and (i[:, 13:] == -1).all() and np.isneginf(s[:, 13:]).all()


def test_non_finite_pool_rows_are_never_returned():
    P = np.array([[1, 0], [np.nan, 0], [0.5, 0], [np.inf, 0], [0.2, 0]], np.float32)
    s, i = topk(np.array([[1.0, 0.0]]), P, 5, metric="ip")
    assert i.tolist() == [[0, 2, 4, -1, -1]]
    assert np.isneginf(s[0, 3:]).all()


def test_chunking_does_not_change_float_results():
    rng = np.random.default_rng(1)
    P = rng.standard_normal((2000, 16)).astype(np.float32)
    Q = rng.standard_normal((40, 16)).astype(np.float32)
    a = topk(Q, P, 10)
    b = topk(Q, P, 10, chunk=97, query_chunk=7)
    assert np.array_equal(a[1], b[1])
    _, ref = oracle(Q, P, 10, "cosine")
    assert np.array_equal(a[1], ref)


def test_merge_topk_orders_by_score_then_index():
    s, i = merge_topk(
        np.array([[3.0, 1.0]]),
        np.array([[9, 4]]),
        np.array([[3.0, 1.0, np.nan]]),
        np.array([[2, 1, 0]]),
        4,
    )
    assert i.tolist() == [[2, 9, 1, 4]] and s.tolist() == [[3, 3, 1, 1]]


def test_empty_and_k_larger_than_pool():
    P = np.eye(3, dtype=np.float32)
    s, i = topk(np.zeros((0, 3)), P, 2)
    assert s.shape == (0, 2)
    s, i = topk(np.ones((1, 3)), P, 10)
    assert i.shape == (1, 3) and sorted(i[0].tolist()) == [0, 1, 2]


@pytest.mark.parametrize(
    "kw, err, match",
    [
        ({"k": 0}, ConfigError, "k must be a positive integer"),
        ({"k": True}, ConfigError, "k must be a positive integer"),
        ({"k": 2.5}, ConfigError, "k must be a positive integer"),
        ({"metric": "l1"}, ConfigError, "metric must be one of"),
        ({"method": "annoy"}, ConfigError, "method must be one of"),
        ({"chunk": 0}, ConfigError, "chunk must be"),
        ({"nprobe": -1}, ConfigError, "nprobe must be"),
        ({"queries": np.ones((2, 4))}, DataError, "4 dimensions but the pool has 3"),
        ({"queries": np.array([[np.nan, 0, 0]])}, DataError, "NaN or infinite"),
        ({"queries": np.ones(3)}, DataError, "2-D"),
        ({"queries": np.array([["a", "b", "c"]])}, DataError, "real numbers"),
        ({"pool_index": np.array([0, 7])}, DataError, "outside"),
        ({"pool_index": np.array([0.5])}, DataError, "integer pool rows"),
    ],
)
def test_bad_inputs_are_clear_errors(kw, err, match):
    args = {"queries": np.ones((2, 3)), "pool": np.eye(3, dtype=np.float32), "k": 2}
    args.update(kw)
    q, p, k = args.pop("queries"), args.pop("pool"), args.pop("k")
    with pytest.raises(err, match=match):
        topk(q, p, k, **args)


def test_faiss_methods_agree_with_exact():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(2)
    P = rng.standard_normal((500, 8)).astype(np.float32)
    Q = rng.standard_normal((20, 8)).astype(np.float32)
    for metric in ("cosine", "ip"):
        _, a = topk(Q, P, 5, metric=metric)
        _, b = topk(Q, P, 5, metric=metric, method="faiss")
        _, c = topk(Q, P, 5, metric=metric, method="ivf", nprobe=1000)  # every list
        assert np.array_equal(np.sort(a, 1), np.sort(b, 1))
        assert np.array_equal(np.sort(a, 1), np.sort(c, 1))
    rows = np.arange(0, 500, 3)
    _, a = topk(Q, P, 5, pool_index=rows)
    _, b = topk(Q, P, 5, pool_index=rows, method="faiss")
    assert np.array_equal(np.sort(a, 1), np.sort(b, 1)) and np.isin(b, rows).all()
