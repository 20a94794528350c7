import hashlib
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from corpus_helpers import clip_retrieval_layout, write_laion

from priming.corpus import (
    build_corpus,
    build_index,
    export_urls,
    fill_embeddings,
    open_corpus,
    set_embeddings,
)
from priming.errors import ConfigError, DataError


class FakeEncoder:
    """A deterministic text encoder: hashed bag of words, L2-normalised."""

    modality = "text"

    def __init__(self, dim=16, tag="v1", fail_after=None):
        self.dim, self.name = dim, f"fake:{tag}"
        self.fingerprint = hashlib.sha256(self.name.encode()).hexdigest()
        self.calls, self.fail_after = 0, fail_after

    def encode_texts(self, texts, batch_size=32, progress=False):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated crash")
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _clustered(n, dim, n_centers, seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_centers, dim))
    x = centers[rng.integers(n_centers, size=n)] + 0.35 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16).astype(np.float32)


@pytest.fixture(scope="module")
def vec_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("v")
    x = _clustered(12000, 32, 40, 0)
    for i, part in enumerate(np.array_split(np.arange(len(x)), 3)):
        write_laion(root / "metadata" / f"metadata_{i}.parquet", [f"row {j}" for j in part])
        (root / "img_emb").mkdir(exist_ok=True)
        np.save(root / "img_emb" / f"img_emb_{i}.npy", x[part])
    c = open_corpus(build_corpus(root, embeddings=root, out=root / "c", workers=1))
    return c, x


def test_embeddings_gather_any_order(vec_corpus):
    c, x = vec_corpus
    ids = np.array([11999, 0, 4000, 3999, 7, 7])
    np.testing.assert_array_equal(c.embeddings(ids), x[ids])
    assert c.embeddings([]).shape == (0, 32)
    with pytest.raises(DataError, match="out of range"):
        c.embeddings([-1])


def test_knn_exact_equals_brute_force(vec_corpus):
    c, x = vec_corpus
    q = _clustered(20, 32, 40, 1)
    scores, ids = c.knn(q, 7, chunk_rows=1000)  # chunks smaller than shards
    sims = q @ x.T
    want = np.argsort(-sims, axis=1, kind="stable")[:, :7]
    np.testing.assert_allclose(scores, np.take_along_axis(sims, want, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(sims, ids, 1), scores, rtol=1e-5, atol=1e-5)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    s1, i1 = c.knn(q[0], 3)
    assert s1.shape == (1, 3)
    assert c.knn(q[:2], 10**6)[1].shape == (2, c.n_rows)
    for bad in (np.zeros((2, 5)), np.full((1, 32), np.nan)):
        with pytest.raises(DataError):
            c.knn(bad, 3)
    with pytest.raises(ConfigError):
        c.knn(q, 0)
    with pytest.raises(ConfigError, match="exact, ivfpq"):
        c.knn(q, 3, method="hnsw")


def test_ivfpq_recall_against_exact(vec_corpus, tmp_path):
    c, x = vec_corpus
    with pytest.raises(ConfigError, match="no IVF-PQ index"):
        c.knn(x[:2], 5, method="ivfpq")
    build_index(c.path, nlist=64, m=8, nbits=8, random_state=0)
    c2 = open_corpus(c.path)
    q = _clustered(200, 32, 40, 2)
    _, exact = c.knn(q, 10)

    def recall(ids):
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)])

    r_pq = recall(c2.knn(q, 10, method="ivfpq", nprobe=8, refine=1)[1])
    r_refined = recall(c2.knn(q, 10, method="ivfpq", nprobe=16, refine=8)[1])
    assert r_refined >= 0.95, r_refined
    assert r_pq >= 0.4, r_pq
    assert r_refined > r_pq
    s, i = c2.knn(q, 10, method="ivfpq", nprobe=16, refine=8)
    np.testing.assert_allclose(s, np.einsum("nkd,nd->nk", x[i], q), rtol=1e-4, atol=1e-4)
    m = json.loads((c.path / "manifest.json").read_text())
    assert m["index"]["nlist"] == 64 and m["index"]["type"] == "IVFPQ"
    with pytest.raises(ConfigError, match="must divide"):
        build_index(c.path, m=5)


@pytest.fixture()
def text_corpus(tmp_path):
    for s in range(3):
        write_laion(
            tmp_path / "in" / f"m{s}.parquet", [f"shard {s} caption {i} dog" for i in range(40)]
        )
    return build_corpus(tmp_path / "in", out=tmp_path / "c", workers=1)


def test_fill_embeddings_with_text_encoder(text_corpus):
    c0 = open_corpus(text_corpus)
    assert not c0.has_embeddings and c0.dim is None
    with pytest.raises(ConfigError, match="corpus embed"):
        c0.embeddings([0])
    enc = FakeEncoder()
    fill_embeddings(text_corpus, enc, batch_size=8)
    c = open_corpus(text_corpus)
    assert c.has_embeddings and c.dim == 16 and c.embedding_model == "fake:v1"
    caps = c.rows(np.arange(c.n_rows)).column("caption").to_pylist()
    want = enc.encode_texts(caps).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(c.embeddings(np.arange(c.n_rows)), want)
    assert c.manifest["embedding_source"] == "captions"
    q = enc.encode_texts(["shard 2 caption 7 dog"])
    scores, ids = c.knn(q, 1)
    assert np.isclose(scores[0, 0], (want @ q[0]).max()) and np.isclose(scores[0, 0], 1, atol=1e-2)
    with pytest.raises(ConfigError, match="overwrite"):
        fill_embeddings(text_corpus, FakeEncoder(dim=8, tag="other"))
    fill_embeddings(text_corpus, FakeEncoder(dim=8, tag="other"), overwrite=True)
    c = open_corpus(text_corpus)
    assert c.dim == 8 and c.embedding_model == "fake:other"
    assert len(list((text_corpus / "shards").glob("*.npy"))) == 3  # old files removed


def test_fill_embeddings_resumes_after_crash(text_corpus):
    crashing = FakeEncoder(fail_after=2)  # one encode call per shard: dies in the third shard
    with pytest.raises(KeyboardInterrupt):
        fill_embeddings(text_corpus, crashing)
    m = json.loads((text_corpus / "manifest.json").read_text())
    assert not m["has_embeddings"] and sum("embeddings" in s for s in m["shards"]) == 2
    assert not [p for p in (text_corpus / "shards").iterdir() if ".tmp" in p.name]
    with pytest.raises(ConfigError, match="no embeddings"):
        open_corpus(text_corpus).embeddings([0])
    enc = FakeEncoder()
    fill_embeddings(text_corpus, enc)
    assert enc.calls == 1  # only the unfinished shard was embedded
    assert open_corpus(text_corpus).has_embeddings


def test_fill_embeddings_rejects_bad_encoder_output(text_corpus):
    class Bad(FakeEncoder):
        def encode_texts(self, texts, batch_size=32, progress=False):
            return np.full((len(texts), self.dim), np.nan, np.float32)

    with pytest.raises(DataError, match="NaN"):
        fill_embeddings(text_corpus, Bad())
    with pytest.raises(ConfigError, match="encode_texts"):
        fill_embeddings(text_corpus, object())


def test_set_embeddings(text_corpus):
    x = np.random.default_rng(0).normal(size=(120, 6)).astype(np.float32)
    with pytest.raises(DataError, match="120"):
        set_embeddings(text_corpus, x[:5])
    set_embeddings(text_corpus, x, model="mine")
    c = open_corpus(text_corpus)
    np.testing.assert_allclose(c.embeddings(np.arange(120)), x, rtol=1e-3, atol=1e-3)
    assert c.embedding_model == "mine"


def test_export_urls_img2dataset_layout(tmp_path):
    clip_retrieval_layout(tmp_path / "l", [["a red fox", "blue bird", "a red fox again"]])
    c = open_corpus(build_corpus(tmp_path / "l", out=tmp_path / "c"))
    hits = c.search_captions({"fox": ["red fox"], "bird": ["bird"]})
    res = export_urls(c, hits, tmp_path / "out" / "urls.parquet")
    t = pq.read_table(tmp_path / "out" / "urls.parquet")
    assert res == {"written": 3, "missing_url": 0, "skipped_nsfw": 0}
    assert t.column_names[:4] == ["url", "caption", "row_id", "label"]
    assert t.column("label").to_pylist() == ["fox", "fox", "bird"]
    assert t.column("url").to_pylist() == [hits.table.column("url")[i].as_py() for i in range(3)]
    export_urls(c, [1], tmp_path / "ids.parquet")
    assert pq.read_table(tmp_path / "ids.parquet").column("caption").to_pylist() == ["blue bird"]


@pytest.fixture(scope="module")
def twin_corpus(tmp_path_factory):
    """400 rows: rows j and j + 200 (in another shard) have the same embedding."""
    root = tmp_path_factory.mktemp("twins")
    half = _clustered(200, 16, 8, 3)
    x = np.concatenate([half, half])
    for i, part in enumerate(np.array_split(np.arange(len(x)), 2)):
        write_laion(root / "metadata" / f"metadata_{i}.parquet", [f"row {j}" for j in part])
        (root / "img_emb").mkdir(exist_ok=True)
        np.save(root / "img_emb" / f"img_emb_{i}.npy", x[part])
    c = open_corpus(build_corpus(root, embeddings=root, out=root / "c", workers=1))
    build_index(c.path, nlist=4, m=4, nbits=4, random_state=0)
    return open_corpus(c.path), half


@pytest.mark.parametrize("refine", [1, 200])  # 200 * k: every row re-ranked exactly
def test_ivfpq_ties_go_to_the_lower_row_id(twin_corpus, refine):
    c, half = twin_corpus
    q = half[[5, 150, 42]]
    s, i = c.knn(q, 2, method="ivfpq", nprobe=4, refine=refine)
    # twins have the same code and the same exact score: the lower row id comes first
    assert np.array_equal(s[:, 0], s[:, 1])
    assert np.array_equal(i[:, 1], i[:, 0] + 200) and (i[:, 0] < 200).all()
    if refine > 1:  # re-ranked exactly: the query's own row (and its twin) is the best
        assert i[:, 0].tolist() == [5, 150, 42]


def test_ivfpq_pads_short_candidate_lists_with_minus_inf(twin_corpus):
    c, half = twin_corpus
    s, i = c.knn(half[:3], 400, method="ivfpq", nprobe=1, refine=1)  # one list of four
    missing = i < 0
    assert missing.any() and not missing.all(axis=1).any()
    assert np.isneginf(s[missing]).all() and np.isfinite(s[~missing]).all()
    # the real hits come first, best first, each row at most once
    for row_s, row_i in zip(s, i):
        n = int((row_i >= 0).sum())
        assert (row_i[n:] == -1).all() and (np.diff(row_s[:n]) <= 0).all()
        assert len(set(row_i[:n].tolist())) == n


def test_build_index_rejects_zero_like_any_value_below_one(twin_corpus):
    c, _ = twin_corpus
    for kw, msg in [
        ({"nlist": 0}, "nlist must be between 1"),
        ({"nlist": -1}, "nlist must be between 1"),
        ({"nlist": 401}, "nlist must be between 1"),
        ({"m": 0}, "m=0 must divide"),
        ({"nbits": 0}, "nbits must be between 1 and 16"),
        ({"train_size": 0}, "train_size must be a positive"),
        ({"nlist": 2.5}, "nlist must be an integer"),
        ({"nbits": None}, "nbits must be an integer"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            build_index(c.path, **kw)


def test_export_urls_leaves_nsfw_rows_out_unless_asked(tmp_path):
    caps = ["a red fox", "a red fox at night", "a red fox in snow", "a red fox again"]
    write_laion(
        tmp_path / "m.parquet",
        caps,
        urls=["http://a/0.jpg", "http://a/1.jpg", "", "http://a/3.jpg"],
        NSFW=["UNLIKELY", "NSFW", "NSFW", "UNSURE"],  # row 2: flagged and without url
    )
    c = open_corpus(build_corpus(tmp_path / "m.parquet", out=tmp_path / "c"))
    hits = c.search_captions({"fox": ["red fox"]})
    assert len(hits) == 4
    res = export_urls(c, hits, tmp_path / "safe.parquet")
    assert res == {"written": 1, "missing_url": 1, "skipped_nsfw": 2}
    assert pq.read_table(tmp_path / "safe.parquet").column("row_id").to_pylist() == [0]
    res = export_urls(c, hits, tmp_path / "all.parquet", include_nsfw=True)
    assert res == {"written": 3, "missing_url": 1, "skipped_nsfw": 0}
    assert pq.read_table(tmp_path / "all.parquet").column("row_id").to_pylist() == [0, 1, 3]
    with pytest.raises(ConfigError, match="include_nsfw"):
        export_urls(c, hits, tmp_path / "x.parquet", include_nsfw="no")


def test_count_captions_is_the_unlimited_search_count(tmp_path):
    caps = [f"dog {i}" for i in range(30)] + ["a cat", "a dog and a cat", "hot dog"]
    write_laion(tmp_path / "a.parquet", caps[:20])
    write_laion(tmp_path / "b.parquet", caps[20:])
    c = open_corpus(
        build_corpus([tmp_path / "a.parquet", tmp_path / "b.parquet"], out=tmp_path / "c")
    )
    queries = {"dog": ["dog", "hot dog"], "cat": ["cat"]}
    full = c.search_captions(queries)
    counts = c.count_captions(queries)
    assert counts == full.counts == {"dog": 31, "cat": 1}  # "a dog and a cat" is ambiguous
    assert c.count_captions({"dog": ["dog"]}, mode="all_tokens") == {"dog": 32}
    assert c.count_captions({"bird": ["bird"]}) == {"bird": 0}
    with pytest.raises(ConfigError, match="mode"):
        c.count_captions(queries, mode="regex")
