import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from priming.errors import DataError
from priming.imprint.topk import topk
from priming.pool import PrimingPool, narrow_pool, pool_neighbors


def brute(Q, P, k, allowed=None):
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    Pn = P / np.linalg.norm(P, axis=1, keepdims=True)
    S = Qn @ Pn.T
    if allowed is not None:
        S = np.where(allowed, S, -np.inf)
    return np.argsort(-S, axis=1, kind="stable")[:, :k], S


@given(
    n=st.integers(1, 300),
    m=st.integers(1, 40),
    k=st.integers(1, 15),
    chunk=st.integers(1, 128),
    qchunk=st.integers(1, 50),
    seed=st.integers(0, 1000),
)
def test_cosine_topk_matches_brute_force(n, m, k, chunk, qchunk, seed):
    rng = np.random.default_rng(seed)
    P = rng.standard_normal((n, 6)).astype(np.float32) * rng.uniform(0.2, 3, (n, 1)).astype(
        np.float32
    )
    Q = rng.standard_normal((m, 6)).astype(np.float32)
    s, i = topk(Q, P, k, chunk=chunk, query_chunk=qchunk)
    ref, S = brute(Q, P, min(k, n))
    assert i.shape == (m, min(k, n))
    np.testing.assert_allclose(s, np.take_along_axis(S, ref, 1), atol=1e-5)
    np.testing.assert_allclose(
        np.take_along_axis(S, i, 1), s, atol=1e-5
    )  # rows really have those scores
    assert all(len(set(r)) == len(r) for r in i.tolist())


def make_pool(rng, n=200, C=4, D=8):
    E = rng.standard_normal((n, D)).astype(np.float32)
    y = rng.integers(0, C, n)
    pool = PrimingPool(E, y, [f"c{j}" for j in range(C)], row_ids=np.arange(n) + 1000)
    pool.record_step("search")
    return pool


def test_narrow_pool_union_and_stats():
    rng = np.random.default_rng(0)
    pool = make_pool(rng)
    Q = rng.standard_normal((15, 8)).astype(np.float32)
    out = narrow_pool(pool, Q, k=5, chunk_size=17)
    ref, _ = brute(Q, pool.embeddings, 5)
    assert sorted(out.row_ids.tolist()) == sorted((np.unique(ref) + 1000).tolist())
    assert list(out.stats()) == ["search", "transductive"]
    assert sum(out.stats()["transductive"].values()) == len(out)
    # labels follow their rows
    assert np.array_equal(out.labels, pool.labels[out.row_ids - 1000])


def test_narrow_pool_same_class():
    rng = np.random.default_rng(1)
    pool = make_pool(rng)
    Q = rng.standard_normal((12, 8)).astype(np.float32)
    qc = rng.integers(0, 4, 12)
    s, rows = pool_neighbors(
        pool.embeddings, Q, 3, pool_labels=pool.labels, same_class=qc, chunk_size=7
    )
    allowed = pool.labels[None, :] == qc[:, None]
    ref, _ = brute(Q, pool.embeddings, 3, allowed)
    assert np.array_equal(np.sort(rows, 1), np.sort(ref, 1))
    out = narrow_pool(pool, Q, k=3, same_class=np.array(pool.class_names)[qc])
    assert set(out.row_ids.tolist()) == set((np.unique(ref) + 1000).tolist())
    with pytest.raises(DataError, match="not pool classes"):
        narrow_pool(pool, Q, k=3, same_class=["nope"] * 12)


def test_narrow_pool_small_class_pads():
    E = np.eye(4, dtype=np.float32)
    pool = PrimingPool(E, [0, 1, 1, 1], ["a", "b"])
    s, rows = pool_neighbors(E, E[:1], 3, pool_labels=pool.labels, same_class=np.array([0]))
    assert rows.tolist() == [[0, -1, -1]]


def test_narrow_pool_dim_mismatch_and_empty():
    rng = np.random.default_rng(2)
    pool = make_pool(rng)
    with pytest.raises(DataError, match="7 dimensions but the pool has 8"):
        narrow_pool(pool, np.zeros((3, 7)), k=2)
    empty = pool.subset(np.zeros(0, int))
    assert len(narrow_pool(empty, np.ones((3, 8)), k=2)) == 0


def test_faiss_method_agrees():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(3)
    P = rng.standard_normal((300, 8)).astype(np.float32)
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    Q = rng.standard_normal((20, 8)).astype(np.float32)
    _, a = pool_neighbors(P, Q, 5, method="exact")
    _, b = pool_neighbors(P, Q, 5, method="faiss")
    assert np.array_equal(np.sort(a, 1), np.sort(b, 1))


def test_pool_save_load(tmp_path):
    rng = np.random.default_rng(4)
    pool = make_pool(rng, n=20)
    pool.captions = np.array([f"cap {i} ünïcode" for i in range(20)], dtype=object)
    pool.meta["corpus"] = "abc"
    pool.save(tmp_path / "pool")
    pool.save(tmp_path / "pool")  # overwrite in place
    back = PrimingPool.load(tmp_path / "pool")
    assert np.array_equal(back.embeddings, pool.embeddings)
    assert back.labels.tolist() == pool.labels.tolist()
    assert back.captions.tolist() == pool.captions.tolist()
    assert back.stats() == pool.stats() and back.meta == {"corpus": "abc"}
    assert "| **total** | 20 |" in back.stats_table()
    with pytest.raises(DataError, match="not a saved priming pool"):
        PrimingPool.load(tmp_path)


def test_ivf_method_high_recall_on_clustered_pool():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(5)
    mu = rng.standard_normal((20, 16)).astype(np.float32)
    lab = rng.integers(0, 20, 4000)
    P = mu[lab] + 0.2 * rng.standard_normal((4000, 16)).astype(np.float32)
    Q = mu[rng.integers(0, 20, 50)] + 0.2 * rng.standard_normal((50, 16)).astype(np.float32)
    _, exact = pool_neighbors(P, Q, 5)
    _, approx = pool_neighbors(P, Q, 5, method="ivf", nprobe=64)  # every list: exact
    assert np.array_equal(np.sort(exact, 1), np.sort(approx, 1))
    _, approx = pool_neighbors(P, Q, 5, method="ivf", nprobe=8)
    recall = len(np.intersect1d(np.unique(exact), np.unique(approx))) / len(np.unique(exact))
    assert recall > 0.8
    pool = PrimingPool(P, lab, [f"c{j}" for j in range(20)])
    assert len(narrow_pool(pool, Q, k=5, method="ivf", nprobe=64)) == len(np.unique(exact))
