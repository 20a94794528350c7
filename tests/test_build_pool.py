import logging

import numpy as np
import pytest

from priming.errors import ConfigError, DataError
from priming.pool import PrimingPool, build_pool
from tests._fakes import FakeCorpus, FakeEncoder


def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


D = 6
T = np.eye(3, D, dtype=np.float32)  # class c's text weight is axis c


def emb(c, jitter=0.0, seed=0):
    v = np.zeros(D, np.float32)
    v[c] = 1.0
    v[3 + c % 3] = jitter
    return unit(v + 0.01 * np.random.default_rng(seed).standard_normal(D).astype(np.float32))


def corpus():
    caps = [
        "a tabby cat on a sofa",  # 0 cat
        "cat toy for sale",  # 1 cat, but embedding looks like a dog -> agreement drops
        "my dog and my cat",  # 2 ambiguous (cat, dog)
        "hot dog with mustard",  # 3 dog (phrase match on 'dog' token)
        "the sea lion swims",  # 4 sea lion
        "a lion and a sea view",  # 5 all-tokens match for 'sea lion' only
        "cat photo nsfw",  # 6 cat, flagged
        "a tabby cat on a sofa",  # 7 same url as 0
        "tabby cat again",  # 8 near-identical embedding to 0
        "a dog in the park",  # 9 dog, leaks: same as an eval embedding
        "a big dog",  # 10 dog
    ]
    E = np.stack(
        [
            emb(0, 0.2, 0),
            emb(1, 0.1, 1),
            emb(0, 0.1, 2),
            emb(1, 0.3, 3),
            emb(2, 0.1, 4),
            emb(2, 0.2, 5),
            emb(0, 0.3, 6),
            emb(0, 0.5, 7),
            emb(0, 0.2, 0),  # identical to row 0
            emb(1, -0.6, 9),
            emb(1, 0.0, 10),
        ]
    )
    urls = [f"u{i}" for i in range(11)]
    urls[7] = "u0"
    nsfw = [False] * 11
    nsfw[6] = True
    sim = [0.1 * i for i in range(11)]
    return FakeCorpus(caps, E, urls=urls, nsfw=nsfw, similarity=sim)


CLASSES = ["cat|tabby", "dog", "sea lion"]


def test_every_step_and_stats():
    c = corpus()
    ev = c.E[[9]] + 0.001
    pool = build_pool(c, CLASSES, T, per_class=10, eval_embeddings=ev)
    assert sorted(pool.row_ids.tolist()) == [0, 3, 4, 10]
    assert pool.labels[np.argsort(pool.row_ids)].tolist() == [0, 1, 2, 1]
    st = pool.stats()
    assert list(st) == [
        "search",
        "nsfw",
        "dedup-url",
        "dedup-embedding",
        "leakage",
        "agreement",
        "cap",
    ]
    assert st["search"] == {"cat": 5, "dog": 3, "sea lion": 1}  # row 2 ambiguous, dropped
    assert st["nsfw"]["cat"] == 4
    assert st["dedup-url"]["cat"] == 3
    assert st["dedup-embedding"]["cat"] == 2
    assert st["leakage"]["dog"] == 2
    assert st["agreement"] == {"cat": 1, "dog": 2, "sea lion": 1}
    assert pool.meta["ambiguous_rows"] == 1 and pool.meta["leakage_dropped"] == 1
    # queries carried every synonym
    assert c.queries[0][0]["cat"] == ["cat", "tabby"]


def test_switches_off_and_all_tokens():
    c = corpus()
    pool = build_pool(
        c,
        CLASSES,
        T,
        per_class=None,
        nsfw=False,
        dedup_url=False,
        dedup_threshold=None,
        agreement=False,
        mode="all-tokens",
    )
    assert 5 in pool.row_ids.tolist()  # "a lion and a sea view"
    assert list(pool.stats()) == ["search"]
    assert len(pool) == 10


def test_ambiguous_longest():
    c = FakeCorpus(["a sea lion and a lion", "lion"], np.stack([emb(1), emb(0)]))
    pool = build_pool(
        c, ["lion", "sea lion"], T[:2], per_class=None, agreement=False, ambiguous="longest"
    )
    lab = dict(zip(pool.row_ids.tolist(), pool.labels.tolist()))
    assert lab == {0: 1, 1: 0}


def test_cap_keeps_top_scores_and_balance():
    rng = np.random.default_rng(0)
    n = 30
    labels = rng.integers(0, 3, n)
    E = unit(np.eye(3, D)[labels] + 0.3 * rng.standard_normal((n, D)))
    caps = [["cat", "dog", "sea lion"][lab] + f" number {i}" for i, lab in enumerate(labels)]
    c = FakeCorpus(caps, E, similarity=rng.uniform(size=n))
    full = build_pool(c, CLASSES, T, per_class=None, dedup_threshold=None)
    capped = build_pool(c, CLASSES, T, per_class=3, dedup_threshold=None)
    for k in range(3):
        s_full = np.sort(full.scores[full.labels == k])[::-1][:3]
        np.testing.assert_allclose(np.sort(capped.scores[capped.labels == k])[::-1], s_full)
    by_sim = build_pool(
        c, CLASSES, T, per_class=2, dedup_threshold=None, score="similarity", agreement=False
    )
    for k in range(3):
        want = np.sort(np.asarray(c.sim)[labels == k])[::-1][:2]
        np.testing.assert_allclose(
            np.sort(by_sim.scores[by_sim.labels == k])[::-1], want, rtol=1e-6
        )
    bal = build_pool(c, CLASSES, T, per_class=None, dedup_threshold=None, balance=True)
    smallest = int(full.counts().min())
    assert full.counts().tolist() != [smallest] * 3  # balancing has something to do
    assert bal.counts().tolist() == [smallest] * 3
    assert set(bal.row_ids.tolist()) <= set(full.row_ids.tolist())


def test_min_probability_keeps_exactly_the_confident_rows():
    # every caption says "cat"; embeddings sweep from the cat axis towards the dog axis, so
    # the zero-shot probability softmax(100·f·Tᵀ)[cat] falls from ~1 to below 0.5
    angles = np.linspace(0.72, 0.84, 15)
    E = np.zeros((15, D), np.float32)
    E[:, 0], E[:, 1] = np.cos(angles), np.sin(angles)
    c = FakeCorpus([f"cat number {i}" for i in range(15)], E)
    logits = 100.0 * (E @ T.T)
    p_cat = np.exp(logits[:, 0] - logits.max(1)) / np.exp(
        logits - logits.max(1, keepdims=True)
    ).sum(1)
    want = np.flatnonzero((p_cat >= 0.9) & (logits.argmax(1) == 0))
    assert 0 < len(want) < 15 and (logits.argmax(1) == 0).sum() > len(want)
    kw = dict(per_class=None, dedup_threshold=None, dedup_url=False, nsfw=False)
    pool = build_pool(c, CLASSES, T, min_probability=0.9, **kw)
    assert sorted(pool.row_ids.tolist()) == want.tolist()
    np.testing.assert_allclose(np.sort(pool.scores), np.sort(p_cat[want]), rtol=1e-4)
    assert len(build_pool(c, CLASSES, T, **kw)) == (logits.argmax(1) == 0).sum()


def test_knn_and_both_recall():
    c = corpus()
    knn = build_pool(
        c,
        CLASSES,
        T,
        per_class=2,
        recall="knn",
        agreement=False,
        dedup_threshold=None,
        nsfw=False,
        dedup_url=False,
    )
    # oracle: each class's 2 nearest rows; a row reached by several classes goes to the
    # class it is most similar to
    S = c.E @ T.T
    reached = {}
    for lab in range(3):
        for r in np.argsort(-S[:, lab], kind="stable")[:2].tolist():
            if r not in reached or S[r, lab] > S[r, reached[r]]:
                reached[r] = lab
    assert dict(zip(knn.row_ids.tolist(), knn.labels.tolist())) == reached
    both = build_pool(c, CLASSES, T, per_class=None, recall="both", agreement=False)
    assert "search+knn" in both.stats()
    assert set(build_pool(c, CLASSES, T, per_class=None, agreement=False).row_ids) <= set(
        both.row_ids
    )


def test_unmatched_class_reported(caplog):
    c = corpus()
    with caplog.at_level(logging.WARNING):
        pool = build_pool(c, CLASSES + ["zebra"], np.eye(4, D, dtype=np.float32), per_class=5)
    assert pool.meta["empty_classes"] == ["zebra"]
    assert "zebra" in caplog.text and "text weight" in caplog.text


def test_empty_pool(caplog):
    c = corpus()
    with caplog.at_level(logging.WARNING):
        pool = build_pool(c, ["giraffe", "okapi"], T[:2], per_class=5)
    assert len(pool) == 0 and pool.embeddings.shape == (0, D)
    assert "pool is empty" in caplog.text


def test_mismatches_are_clear_errors():
    c = corpus()
    with pytest.raises(ConfigError, match=r"corpus stores 6-d.*produces 8-d"):
        build_pool(c, CLASSES, np.eye(3, 8, dtype=np.float32))
    with pytest.raises(ConfigError, match=r"model mismatch.*'fake:enc'.*'other:model'"):
        build_pool(c, CLASSES, T, encoder=FakeEncoder(dim=6, name="other:model"))
    build_pool(c, CLASSES, T, encoder=FakeEncoder(dim=6, name="fake:enc"))  # same model: fine
    with pytest.raises(DataError, match="one row per class"):
        build_pool(c, CLASSES, T[:2])
    with pytest.raises(ConfigError, match="recall must be one of"):
        build_pool(c, CLASSES, T, recall="magic")
    with pytest.raises(ConfigError, match="text_weights are required for agreement"):
        build_pool(c, CLASSES, None)
    with pytest.raises(DataError, match="duplicate class name"):
        build_pool(c, ["cat", "Cat"], T[:2])
    c.has_embeddings = False
    with pytest.raises(DataError, match="no embeddings"):
        build_pool(c, CLASSES, T)


def test_pool_roundtrip(tmp_path):
    pool = build_pool(corpus(), CLASSES, T, per_class=10)
    pool.save(tmp_path / "p")
    back = PrimingPool.load(tmp_path / "p")
    assert back.stats() == pool.stats() and back.row_ids.tolist() == pool.row_ids.tolist()


def test_holdout_before_agreement():
    rng = np.random.default_rng(0)
    n = 40
    labels = np.repeat([0, 1], 20)
    E = unit(np.eye(3, D)[labels] + 0.3 * rng.standard_normal((n, D)))
    c = FakeCorpus([["cat", "dog"][lab] + f" {i}" for i, lab in enumerate(labels)], E)
    pool = build_pool(
        c, CLASSES[:2], T[:2], per_class=None, dedup_threshold=None, holdout=0.25, random_state=0
    )
    assert pool.heldout.counts().tolist() == [5, 5]
    assert not set(pool.heldout.row_ids.tolist()) & set(pool.row_ids.tolist())
    assert pool.stats()["holdout"] == {"cat": 15, "dog": 15}
    assert list(pool.stats()).index("holdout") < list(pool.stats()).index("agreement")
    with pytest.raises(ConfigError, match="holdout"):
        build_pool(c, CLASSES[:2], T[:2], holdout=1.5)
