"""build_pool as steps: every dropped row is recorded with its step and reason, counts
per step add up, the records and held-out rows survive save/load, recall methods and
filter steps can be added, and hostile options are clear errors."""

import json

import numpy as np
import pytest

from priming.errors import ConfigError, DataError
from priming.pool import (
    AMBIGUOUS_POLICIES,
    EMPTY_CLASS_CHOICES,
    FILTERS,
    POOL_SCORES,
    RECALL_METHODS,
    RECALLS,
    SEARCH_MODES,
    PrimingPool,
    Recalled,
    StepResult,
    build_pool,
    pool_step,
    register_recall,
)
from tests._fakes import FakeCorpus
from tests.test_build_pool import CLASSES, D, T, corpus, unit


def dropped_by_step(pool):
    d = pool.dropped
    out = {}
    for rid, step, cls, reason in zip(d["row_id"], d["step"], d["class"], d["reason"]):
        out.setdefault(step, []).append((int(rid), cls, reason))
    return out


def test_every_dropped_row_has_its_step_and_reason():
    c = corpus()
    pool = build_pool(c, CLASSES, T, per_class=10, eval_embeddings=c.E[[9]] + 0.001)
    got = dropped_by_step(pool)
    # the fixture's story (see tests/test_build_pool.py): row 2 ambiguous, 6 NSFW, 7 the
    # url of row 0, 8 a copy of row 0, 9 a test image, 1 looks like a dog
    assert got["search"] == [(2, None, "caption matches several classes: cat, dog")]
    assert got["nsfw"] == [(6, "cat", "flagged NSFW")]
    assert got["dedup-url"] == [(7, "cat", "repeats the url of an earlier row")]
    assert got["dedup-embedding"] == [(8, "cat", "near-duplicate of corpus row 0")]
    assert [(r, cl) for r, cl, _ in got["leakage"]] == [(9, "dog")]
    assert "test leakage" in got["leakage"][0][2]
    assert got["agreement"] == [(1, "cat", "zero-shot top-1 is 'dog', not 'cat'")]
    assert "cap" not in got  # nothing beyond 10 per class
    # kept + dropped of a step = kept of the step before; the pool is what is left
    steps = pool.steps
    for prev, cur in zip(steps, steps[1:]):
        for name in pool.class_names:
            assert cur["kept"][name] + cur["dropped"][name] == prev["kept"][name], cur["step"]
    assert steps[0]["unassigned"] == 1
    assert steps[-1]["kept"] == dict(zip(pool.class_names, pool.counts().tolist()))
    # captions and urls come with the dropped rows
    d = pool.dropped
    assert d["caption"][d["row_id"] == 6].tolist() == ["cat photo nsfw"]
    assert d["url"][d["row_id"] == 7].tolist() == ["u0"]
    # no row is both kept and dropped
    assert not set(d["row_id"].tolist()) & set(pool.row_ids.tolist())


def test_cap_balance_min_probability_and_longest_reasons():
    rng = np.random.default_rng(0)
    n = 30
    labels = rng.integers(0, 3, n)
    E = unit(np.eye(3, D)[labels] + 0.3 * rng.standard_normal((n, D)))
    caps = [["cat", "dog", "sea lion"][lab] + f" number {i}" for i, lab in enumerate(labels)]
    c = FakeCorpus(caps, E, similarity=rng.uniform(size=n))
    capped = build_pool(c, CLASSES, T, per_class=3, dedup_threshold=None)
    got = dropped_by_step(capped)["cap"]
    assert len(got) == sum(capped.steps[-2]["kept"].values()) - 9
    assert all("per-class cap of 3 (by zero-shot score)" in r for _, _, r in got)
    pool = build_pool(c, CLASSES, T, per_class=None, dedup_threshold=None, balance=True)
    got = dropped_by_step(pool)
    smallest = min(pool.steps[-2]["kept"].values())
    assert len(got["balance"]) == sum(pool.steps[-2]["kept"].values()) - 3 * smallest > 0
    assert all(f"smallest class ({smallest} rows)" in r for _, _, r in got["balance"])
    low = build_pool(
        c, CLASSES, T, per_class=None, dedup_threshold=None, min_probability=0.5, temperature=1.0
    )
    reasons = [r for _, _, r in dropped_by_step(low)["agreement"]]
    assert any("< min_probability 0.5" in r for r in reasons)

    c2 = FakeCorpus(["a sea lion and a lion", "lion", "lion sea"], np.stack([E[0], E[1], E[2]]))
    p2 = build_pool(
        c2,
        ["lion", "sea lion"],
        T[:2],
        per_class=None,
        agreement=False,
        ambiguous="longest",
        mode="all_tokens",
        dedup_threshold=None,
    )
    # row 2 matches both by tokens but "sea lion" is no whole phrase in "lion sea":
    # "lion" is; so it is kept as lion and nothing is dropped at search
    assert dict(zip(p2.row_ids.tolist(), p2.labels.tolist())) == {0: 1, 1: 0, 2: 0}
    assert "search" not in dropped_by_step(p2)


def test_records_and_heldout_survive_save_and_load(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 20)
    E = unit(np.eye(3, D)[labels] + 0.3 * rng.standard_normal((40, D)))
    c = FakeCorpus([["cat", "dog"][lab] + f" {i}" for i, lab in enumerate(labels)], E)
    pool = build_pool(
        c, CLASSES[:2], T[:2], per_class=12, dedup_threshold=None, holdout=0.25, random_state=0
    )
    held = pool.heldout
    assert held.counts().tolist() == [5, 5]
    assert set(dropped_by_step(pool)["holdout"]) == {
        (int(r), ["cat", "dog"][lab], "held out for label-free alpha selection")
        for r, lab in zip(held.row_ids, held.labels)
    }
    assert np.isfinite(held.scores).all()  # zero-shot probabilities, for alpha selection
    pool.save(tmp_path / "p")
    for f in ("steps.parquet", "heldout.parquet", "heldout.npy", "pool.json"):
        assert (tmp_path / "p" / f).is_file()
    import pyarrow.parquet as pq

    t = pq.read_table(tmp_path / "p" / "steps.parquet")
    assert t.column_names == ["row_id", "class", "step", "reason", "caption", "url"]
    assert str(t.schema.field("row_id").type) == "int64"
    assert t.num_rows == len(pool.dropped["row_id"])
    meta = json.loads((tmp_path / "p" / "pool.json").read_text())
    assert [s["step"] for s in meta["steps"]] == list(pool.stats())
    assert meta["steps"][0]["kept"] == {"cat": 20, "dog": 20}
    back = PrimingPool.load(tmp_path / "p")
    assert back.stats() == pool.stats() and back.steps == pool.steps
    for k, v in pool.dropped.items():
        assert back.dropped[k].tolist() == v.tolist(), k
    assert np.array_equal(back.heldout.embeddings, held.embeddings)
    assert back.heldout.row_ids.tolist() == held.row_ids.tolist()
    assert back.heldout.labels.tolist() == held.labels.tolist()
    # narrowing carries the held-out rows and records what it dropped
    narrowed = back.subset(np.arange(3), step="transductive", reason="not a neighbour")
    assert narrowed.heldout is back.heldout
    assert (narrowed.dropped["reason"] == "not a neighbour").sum() == len(back) - 3


def test_an_older_pool_folder_loads(tmp_path):
    pool = build_pool(corpus(), CLASSES, T, per_class=10)
    pool.save(tmp_path / "p")
    p = tmp_path / "p"
    (p / "steps.parquet").unlink()
    meta = json.loads((p / "pool.json").read_text())
    meta["format_version"] = 1
    meta["steps"] = [[s["step"], list(s["kept"].values())] for s in meta["steps"]]
    (p / "pool.json").write_text(json.dumps(meta))
    back = PrimingPool.load(p)
    assert back.stats() == pool.stats()
    assert len(back.dropped["row_id"]) == 0 and back.heldout is None
    assert back.steps[0]["dropped"] == {}


def test_register_recall_and_a_custom_filter():
    name = "every-row-test"
    if name not in RECALLS:

        @register_recall(name)
        def every_row(ctx):
            n = ctx.corpus.n_rows
            ctx.record(name, np.zeros(n, np.int64), [])
            return Recalled(list(range(n)), [0] * n)

    @pool_step("short-caption")
    def short_captions(rows, ctx):
        keep = np.array([len(c) <= 12 for c in rows.captions])
        return StepResult(keep, "caption longer than 12 characters")

    c = corpus()
    pool = build_pool(
        c,
        CLASSES,
        T,
        per_class=None,
        recall=name,
        agreement=False,
        nsfw=False,
        dedup_url=False,
        dedup_threshold=None,
        steps=[*FILTERS[:2], short_captions],
    )
    assert list(pool.stats()) == [name, "short-caption"]
    assert sorted(pool.row_ids.tolist()) == [i for i, s in enumerate(c.captions) if len(s) <= 12]
    got = dropped_by_step(pool)["short-caption"]
    assert {r for r, _, _ in got} == {i for i, s in enumerate(c.captions) if len(s) > 12}

    @pool_step("broken")
    def broken(rows, ctx):
        return StepResult(np.ones(len(rows) + 1, bool))

    with pytest.raises(DataError, match="pool step 'broken'"):
        build_pool(c, CLASSES, T, per_class=None, steps=[broken])
    with pytest.raises(ConfigError, match="recall must be one of"):
        build_pool(c, CLASSES, T, recall="no-such-recall")


def test_choice_tuples_are_exported_once():
    assert RECALL_METHODS == ("search", "knn", "both")
    assert set(RECALL_METHODS) <= set(RECALLS)
    assert SEARCH_MODES == ("phrase", "all_tokens")
    assert AMBIGUOUS_POLICIES == ("drop", "longest")
    assert POOL_SCORES == ("zero-shot", "similarity")
    assert EMPTY_CLASS_CHOICES == ("text", "zero")


@pytest.mark.parametrize(
    "kw, err, match",
    [
        ({"text_weights": np.full((3, D), np.nan, np.float32)}, DataError, "text_weights"),
        ({"text_weights": np.where(np.eye(3, D) > 0, np.inf, 0)}, DataError, "text_weights"),
        ({"dedup_threshold": float("nan")}, ConfigError, "dedup_threshold"),
        ({"dedup_threshold": 2.0}, ConfigError, "dedup_threshold"),
        ({"per_class": float("nan")}, ConfigError, "per_class"),
        ({"per_class": 0}, ConfigError, "per_class"),
        ({"per_class": 2.5}, ConfigError, "per_class"),
        ({"per_class": True}, ConfigError, "per_class"),
        ({"search_limit": -3}, ConfigError, "search_limit"),
        ({"knn_k": float("inf")}, ConfigError, "knn_k"),
        ({"leakage_threshold": float("nan")}, ConfigError, "leakage_threshold"),
        ({"min_probability": float("nan")}, ConfigError, "min_probability"),
        ({"temperature": 0.0}, ConfigError, "temperature"),
        ({"temperature": float("nan")}, ConfigError, "temperature"),
        ({"holdout": float("nan")}, ConfigError, "holdout"),
        ({"holdout": -0.1}, ConfigError, "holdout"),
        ({"nsfw": "yes"}, ConfigError, "nsfw must be True or False"),
        ({"mode": "fuzzy"}, ConfigError, "mode must be one of"),
        ({"ambiguous": "keep"}, ConfigError, "ambiguous must be one of"),
        ({"eval_embeddings": np.full((2, D), np.nan)}, DataError, "eval_embeddings"),
        ({"leakage_guard": True}, ConfigError, "needs eval_embeddings"),
    ],
)
def test_hostile_options_are_clear_errors(kw, err, match):
    args = {"text_weights": T, **kw}
    with pytest.raises(err, match=match):
        build_pool(corpus(), CLASSES, args.pop("text_weights"), **args)


def test_integral_float_per_class_is_accepted():
    a = build_pool(corpus(), CLASSES, T, per_class=1.0)
    b = build_pool(corpus(), CLASSES, T, per_class=1)
    assert a.row_ids.tolist() == b.row_ids.tolist()


def test_doc_examples_for_a_recall_method_and_a_filter_step():
    from tests.test_doc_examples import ROOT, python_block

    doc = ROOT / "docs" / "priming.md"
    E = unit(np.eye(D)[[0, 0, 0, 0]] + 0.4 * np.eye(D)[[3, 4, 5, 1]])
    c = FakeCorpus(["a cat"] * 3 + ["a cat " + "x" * 250], E)
    c.urls = [f"u{i}" for i in range(4)]
    ns = {"corpus": c, "classes": CLASSES, "T": T, "np": np}
    try:
        exec(compile(python_block(doc, "### Adding a recall method"), "doc", "exec"), ns)
        assert ns["pool"].stats()["first-rows"]["cat"] == 4
    finally:
        RECALLS._items.pop("first-rows", None)
    exec(compile(python_block(doc, "### Adding a filter step"), "doc", "exec"), ns)
    pool = ns["pool"]
    assert "short-caption" in pool.stats()
    assert 3 not in pool.row_ids.tolist()
    assert dropped_by_step(pool)["short-caption"][0][0] == 3
