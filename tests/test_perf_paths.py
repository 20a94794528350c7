"""Fast paths must give the general paths' answers (issue 12 section 3)."""

from __future__ import annotations

import numpy as np
import pytest

from priming.heads import ImprintedHead
from priming.imprint.aggregate import max_scores


def _general(X, W, labels, C, **kw):
    """The same scores through the multi-proxy path: every proxy duplicated (a
    duplicate cannot change a maximum)."""
    order = np.argsort(np.concatenate([labels, labels]), kind="stable")
    W2 = np.concatenate([W, W])[order]
    l2 = np.concatenate([labels, labels])[order]
    return max_scores(X, W2, l2, C, **kw)


def _int_data(rng, n, C, D):
    # small integers: every product and sum is exact in float32, so ties are real ties
    X = rng.integers(-2, 3, size=(n, D)).astype(np.float32)
    W = rng.integers(-2, 3, size=(C, D)).astype(np.float32)
    W[C // 2] = W[0]  # two classes with the same proxy: tied scores on every row
    return X, W


@pytest.mark.parametrize("chunk_bytes", [64, 4096, 128 * 2**20])
def test_one_proxy_equals_general_path_exactly_with_ties(chunk_bytes):
    rng = np.random.default_rng(0)
    C, D = 37, 8
    X, W = _int_data(rng, 301, C, D)
    labels = np.arange(C)
    got = max_scores(X, W, labels, C, chunk_bytes=chunk_bytes)
    assert got.shape == (301, C) and got.dtype == np.float32
    np.testing.assert_array_equal(got, X.astype(np.float64) @ W.T.astype(np.float64))
    np.testing.assert_array_equal(got, _general(X, W, labels, C, chunk_bytes=chunk_bytes))
    assert (got[:, 0] == got[:, C // 2]).all()
    assert (got.argmax(1) != C // 2).all()  # ties go to the lowest class index


def test_one_proxy_unsorted_labels_follow_class_order():
    rng = np.random.default_rng(1)
    C, D = 20, 6
    X, W = _int_data(rng, 50, C, D)
    perm = rng.permutation(C)  # proxy j belongs to class perm[j]
    got = max_scores(X, W, perm, C)
    want = np.empty((50, C), np.float32)
    want[:, perm] = X @ W.T
    np.testing.assert_array_equal(got, want)


def test_one_proxy_random_data_matches_general_path():
    rng = np.random.default_rng(2)
    C, D = 300, 64
    X = rng.normal(size=(2000, D)).astype(np.float32)
    W = rng.normal(size=(C, D)).astype(np.float32)
    labels = np.arange(C)
    got = max_scores(X, W, labels, C, chunk_bytes=50_000)
    ref = _general(X, W, labels, C)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
    np.testing.assert_allclose(got, X.astype(np.float64) @ W.T, rtol=0, atol=1e-4)
    # float64 input stays float64 and exact to float64 rounding
    g64 = max_scores(X.astype(np.float64), W, labels, C)
    assert g64.dtype == np.float64
    np.testing.assert_allclose(g64, X.astype(np.float64) @ W.T, rtol=1e-12, atol=1e-12)


def test_missing_class_keeps_general_path_and_minus_inf():
    rng = np.random.default_rng(3)
    X, W = _int_data(rng, 10, 5, 4)
    got = max_scores(X, W[:4], np.array([0, 1, 3, 4]), 5)
    assert np.isneginf(got[:, 2]).all()
    np.testing.assert_array_equal(got[:, [0, 1, 3, 4]], X @ W[:4].T)


def test_zero_rows_and_zero_proxies():
    W = np.ones((3, 4), np.float32)
    assert max_scores(np.zeros((0, 4), np.float32), W, np.arange(3), 3).shape == (0, 3)
    empty = max_scores(np.ones((2, 4), np.float32), W[:0], np.arange(0), 3)
    assert empty.shape == (2, 3) and np.isneginf(empty).all()


def test_neural_priming_head_decision_function_is_the_product():
    rng = np.random.default_rng(4)
    C, D = 50, 16
    Xtr = rng.normal(size=(C * 4, D)).astype(np.float32)
    y = np.repeat(np.arange(C), 4)
    head = ImprintedHead.from_preset("neural-priming").fit(Xtr, y)
    X = rng.normal(size=(400, D)).astype(np.float32)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    got = head.decision_function(X)
    np.testing.assert_allclose(got, Xn.astype(np.float64) @ head.weights_.T, atol=1e-5)
    # the same head with each proxy duplicated goes through the segment max
    dup = ImprintedHead.from_preset("neural-priming").fit(Xtr, y)
    dup.weights_ = np.repeat(head.weights_, 2, axis=0)
    dup.proxy_labels_ = np.repeat(head.proxy_labels_, 2)
    np.testing.assert_allclose(got, dup.decision_function(X), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(head.predict(X), np.asarray(head.classes_)[got.argmax(1)])


# --------------------------------------------------------------------------- caption search
CAPS = [
    ["a red fox", "a cat", "dog and cat", "plain", "red fox cub", "a puppy"],
    ["cat nap", "fox", "red fox", "puppy and red fox", "nothing", "dog"],
    ["red  fox!", "the cat", "x", "a dog", "a cat and a red fox", "dog dog"],
]


@pytest.fixture(scope="module")
def shards3(tmp_path_factory):
    from corpus_helpers import write_laion

    from priming.corpus import build_corpus

    root = tmp_path_factory.mktemp("perf")
    for s, caps in enumerate(CAPS):
        nsfw = ["NSFW" if (s + i) % 4 == 0 else "UNLIKELY" for i in range(len(caps))]
        write_laion(root / "in" / f"m{s}.parquet", caps, NSFW=nsfw)
    return build_corpus(root / "in", out=root / "corpus", workers=1)


def _oracle(queries):
    """Brute force over CAPS: (row_id, label, name) of the unambiguous hits in the
    documented order (labels in query order, row ids ascending)."""
    import re

    flat = [c for caps in CAPS for c in caps]

    def has(name, cap):
        n, t = name.split(), re.findall(r"[a-z0-9]+", cap.lower())
        return any(t[i : i + len(n)] == n for i in range(len(t) - len(n) + 1))

    out = []
    for label, names in queries.items():
        for rid, cap in enumerate(flat):
            labs = [lab for lab, ns in queries.items() if any(has(n, cap) for n in ns)]
            if labs == [label]:
                out.append((rid, label, next(n for n in names if has(n, cap))))
    return out


@pytest.mark.parametrize(
    "queries",
    [{"fox": ["red fox"]}, {"dog": ["dog", "puppy"]}, {"cat": ["cat"], "fox": ["fox"]}],
)
def test_hits_are_ids_first_and_metadata_on_demand(shards3, queries):
    from priming.corpus import open_corpus

    with open_corpus(shards3) as c:
        hits = c.search_captions(queries)
        want = _oracle(queries)
        assert hits.row_ids.tolist() == [w[0] for w in want]
        assert hits.labels.to_pylist() == [w[1] for w in want]
        assert hits.names.to_pylist() == [w[2] for w in want]
        assert len(hits) == len(want)
        meta = c.rows(hits.row_ids)
        part = hits.select(["similarity", "nsfw"])
        assert part.column_names == ["row_id", "label", "name", "nsfw", "similarity"]
        assert part.column("nsfw").to_pylist() == meta.column("nsfw").to_pylist()
        np.testing.assert_array_equal(
            part.column("similarity").to_numpy(), meta.column("similarity").to_numpy()
        )
    t = hits.table  # read after the corpus is closed
    assert t.column_names == ["row_id", "label", "name", "caption", "url", "nsfw", "similarity"]
    assert t.column("caption").to_pylist() == meta.column("caption").to_pylist()
    assert t.column("url").to_pylist() == meta.column("url").to_pylist()
    assert hits.select(["url"]).column("url").equals(t.column("url"))  # from the kept table


def test_limited_search_and_bad_column(shards3):
    from priming.corpus import open_corpus
    from priming.errors import DataError

    with open_corpus(shards3) as c:
        hits = c.search_captions({"fox": ["red fox", "fox"]}, limit_per_label=2)
        assert hits.row_ids.tolist() == [0, 4]
        assert hits.names.to_pylist() == ["red fox", "red fox"]
        assert hits.table.column("caption").to_pylist() == ["a red fox", "red fox cub"]
        with pytest.raises(DataError, match="unknown hit column"):
            hits.select(["caption; DROP TABLE rows"])
        empty = c.search_captions({"zebra": ["zebra"]})
        assert len(empty) == 0 and empty.table.num_rows == 0
        assert empty.table.schema.names[3] == "caption"
