"""Known answers for Neural Priming (METHODS §1.3–§1.5), with the real ImprintedHead preset.

Numbers are worked out by hand in 2-D, or by a brute-force oracle written here."""

import numpy as np
import pytest

from priming.heads import ImprintedHead, PrimedHead, ZeroShotHead, build_text_weights
from priming.pool import PrimingPool, narrow_pool, pool_neighbors

S2 = np.sqrt(0.5)


def l2(X):
    X = np.asarray(X, dtype=np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


# Two classes in 2-D. Class 0 has items (3, 0) and (0, 1): unnormalised mean (1.5, 0.5)
# would point elsewhere, but C_0 = normalise((1,0) + (0,1)) = (√½, √½). Class 1 has one
# item (0, 5): C_1 = (0, 1). T = identity.
T2 = np.eye(2, dtype=np.float32)
X2 = np.array([[3.0, 0.0], [0.0, 1.0], [0.0, 5.0]], dtype=np.float32)
Y2 = np.array([0, 0, 1])


def test_hand_computed_primed_weights():
    head = PrimedHead(T2, alpha=0.5).fit(X2, Y2)  # default imprint: neural-priming
    W, b = head.to_linear()
    assert b is None
    # W_0 = ½(1, 0) + ½(√½, √½); W_1 = ½(0, 1) + ½(0, 1)
    np.testing.assert_allclose(W, [[0.5 + 0.5 * S2, 0.5 * S2], [0.0, 1.0]], atol=1e-6)
    x = np.array([[2.0, 2.0]], dtype=np.float32)  # normalised: (√½, √½)
    np.testing.assert_allclose(
        head.decision_function(x), [[S2 * (0.5 + S2), S2]], atol=1e-6
    )  # 0.8536 vs 0.7071
    assert head.predict(x).tolist() == [0]
    # the same, unnormalised mean would give C_0 ∝ (3, 1): W_0 = (0.974, 0.158)
    assert not np.allclose(W[0], 0.5 * np.array([1, 0]) + 0.5 * l2([[3, 1]])[0], atol=1e-3)


def test_alpha_one_is_zero_shot_and_alpha_zero_is_nearest_class_mean():
    rng = np.random.default_rng(0)
    T = l2(rng.standard_normal((5, 8))).astype(np.float32)
    X = (rng.standard_normal((60, 8)) * rng.uniform(0.1, 4, (60, 1))).astype(np.float32)
    y = rng.integers(0, 4, 60)  # class 4 has no items
    Q = rng.standard_normal((40, 8)).astype(np.float32)
    zs = ZeroShotHead(T).fit()
    h1 = PrimedHead(T, alpha=1.0).fit(X, y)
    np.testing.assert_allclose(h1.decision_function(Q), zs.decision_function(Q), atol=1e-6)
    assert h1.predict(Q).tolist() == zs.predict(Q).tolist()
    h0 = PrimedHead(T, alpha=0.0, empty_class="zero").fit(X, y)
    C = np.stack([l2(l2(X[y == c]).sum(0, keepdims=True))[0] for c in range(4)])
    ncm = l2(Q) @ C.T  # nearest class mean (cosine) over the classes that have items
    np.testing.assert_allclose(h0.decision_function(Q)[:, :4], ncm, atol=1e-5)
    np.testing.assert_allclose(h0.decision_function(Q)[:, 4], 0.0, atol=1e-7)
    # empty_class="text": the empty class scores its text similarity instead of 0
    ht = PrimedHead(T, alpha=0.0).fit(X, y)
    np.testing.assert_allclose(ht.decision_function(Q)[:, 4], (l2(Q) @ T.T)[:, 4], atol=1e-6)
    np.testing.assert_allclose(ht.decision_function(Q)[:, :4], ncm, atol=1e-5)


def test_shots_and_pool_each_counted_once():
    """Marking rows as shots changes α (schedule), never the centroids."""
    rng = np.random.default_rng(1)
    T = l2(rng.standard_normal((3, 6))).astype(np.float32)
    X = rng.standard_normal((30, 6)).astype(np.float32)
    y = np.arange(30) % 3
    shots = np.zeros(30, bool)
    shots[:6] = True  # 2 shots per class
    a = PrimedHead(T, alpha=0.3).fit(X, y, shots=shots)
    b = PrimedHead(T, alpha=0.3).fit(X, y)
    np.testing.assert_allclose(a.to_linear()[0], b.to_linear()[0], atol=1e-7)
    C = np.stack([l2(l2(X[y == c]).sum(0, keepdims=True))[0] for c in range(3)])
    np.testing.assert_allclose(a.to_linear()[0], 0.3 * T + 0.7 * C, atol=1e-5)
    s = PrimedHead(T, alpha="schedule").fit(X, y, shots=shots)
    assert s.alpha_ == pytest.approx(0.58)  # 2 shots per class: the reference's value


def test_multi_proxy_score_mix_with_real_kmeans():
    rng = np.random.default_rng(2)
    T = l2(rng.standard_normal((3, 6))).astype(np.float32)
    X = rng.standard_normal((45, 6)).astype(np.float32)
    y = np.arange(45) % 3
    Q = rng.standard_normal((10, 6)).astype(np.float32)
    im = ImprintedHead.from_preset("imprint-best", n_proxies=3, random_state=0)
    head = PrimedHead(T, alpha=0.4, imprint=im).fit(X, y)
    ref = ImprintedHead.from_preset("imprint-best", n_proxies=3, random_state=0).fit(X, y)
    # AGG = max over each class's proxies of normalise(x)·p
    Pn, lab = ref.weights_.astype(np.float64), ref.proxy_labels_
    agg = np.stack([(l2(Q) @ Pn[lab == c].T).max(1) for c in range(3)], 1)
    np.testing.assert_allclose(
        head.decision_function(Q), 0.4 * (l2(Q) @ T.T) + 0.6 * agg, atol=1e-5
    )


class ScaledEncoder:
    """Returns deliberately non-unit vectors: the text head must normalise each g(s)."""

    name, modality, dim, fingerprint = "scaled", "text", 2, "scaled"
    table = {
        "a cat": [3.0, 0.0],
        "the cat": [0.0, 0.5],
        "a dog": [0.0, 2.0],
        "the dog": [-1.0, 1.0],
        "purrs": [4.0, 4.0],
    }

    def encode_texts(self, texts, batch_size=64, progress=False):
        return np.array([self.table[t] for t in texts], dtype=np.float32)


def test_text_head_normalises_each_prompt_then_mean_then_normalise():
    T = build_text_weights(ScaledEncoder(), ["cat", "dog"], templates=["a {}", "the {}"])
    # cat: mean((1,0), (0,1)) = (½, ½) -> (√½, √½); dog: mean((0,1), (-√½, √½)) -> normalise
    dog = l2([[-S2 / 2, (1 + S2) / 2]])[0]
    np.testing.assert_allclose(T, [[S2, S2], dog], atol=1e-6)
    # descriptions: (T_templates + T_descriptions) / 2, not re-normalised
    Td = build_text_weights(
        ScaledEncoder(),
        ["cat", "dog"],
        templates=["a {}", "the {}"],
        descriptions={"cat": ["purrs"]},
    )
    np.testing.assert_allclose(Td[0], ([S2, S2] + np.array([S2, S2])) / 2, atol=1e-6)
    np.testing.assert_allclose(Td[1], dog, atol=1e-6)
    T3 = build_text_weights(
        ScaledEncoder(), ["cat"], templates=["a {}"], descriptions={"cat": ["the cat"]}
    )
    np.testing.assert_allclose(T3[0], [0.5, 0.5], atol=1e-6)  # norm √½, not 1


def _oracle_union(Q, P, k, allowed=None):
    S = l2(Q) @ l2(P).T
    if allowed is not None:
        S = np.where(allowed, S, -np.inf)
    out = set()
    for row in S:
        order = np.argsort(-row, kind="stable")[:k]
        out |= {int(j) for j in order if np.isfinite(row[j])}
    return out


@pytest.mark.parametrize("method", ["exact", "faiss"])
def test_narrow_pool_is_union_of_per_query_knn_and_ignores_labels(method):
    if method == "faiss":
        pytest.importorskip("faiss")
    rng = np.random.default_rng(3)
    # pool embeddings of very different norms: neighbours are by cosine, not inner product
    P = (rng.standard_normal((150, 8)) * rng.uniform(0.05, 5, (150, 1))).astype(np.float32)
    lab = rng.integers(0, 3, 150)
    Q = rng.standard_normal((25, 8)).astype(np.float32)
    pool = PrimingPool(P, lab, ["a", "b", "c"], row_ids=np.arange(150) * 7)
    out = narrow_pool(pool, Q, k=4, method=method)
    assert set((out.row_ids // 7).tolist()) == _oracle_union(Q, P, 4)
    # test labels are never an input; permuting the pool's labels changes nothing but labels
    pool2 = PrimingPool(P, rng.permutation(lab), ["a", "b", "c"], row_ids=np.arange(150) * 7)
    assert narrow_pool(pool2, Q, k=4, method=method).row_ids.tolist() == out.row_ids.tolist()
    # guided: neighbours of each shot within its own class only
    qc = rng.integers(0, 3, 25)
    g = narrow_pool(pool, Q, k=4, same_class=qc, method=method)
    assert set((g.row_ids // 7).tolist()) == _oracle_union(Q, P, 4, lab[None] == qc[:, None])
    _, rows = pool_neighbors(P, Q, 4, method=method)
    assert set(rows.ravel().tolist()) == _oracle_union(Q, P, 4)
