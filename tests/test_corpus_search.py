import re

import numpy as np
import pytest
from corpus_helpers import write_laion
from hypothesis import example, given
from hypothesis import strategies as st

from priming.corpus import build_corpus, open_corpus, tokenize
from priming.errors import ConfigError, DataError

WORDS = [
    "dog",
    "cat",
    "golden",
    "retriever",
    "t",
    "shirt",
    "and",
    "or",
    "not",
    "near",
    "red",
    "fox",
]
SEPS = [" ", " ", " ", "-", "/", ", ", " (", ") ", '"', "'", ":", "*", "!", " AND ", " OR "]


def _tokens(text):  # independent oracle for ASCII text: runs of letters/digits, lower-cased
    return re.findall(r"[a-z0-9]+", text.lower())


def _phrase_in(name, caption):
    n, c = _tokens(name), _tokens(caption)
    return any(c[i : i + len(n)] == n for i in range(len(c) - len(n) + 1))


def _all_in(name, caption):
    return set(_tokens(name)) <= set(_tokens(caption))


CAPTIONS = [
    "A Golden Retriever playing",
    "golden-retriever puppy",
    "retriever, golden",
    "T-Shirt with a cat",
    "t shirt",
    "tshirt sale",
    "red/fox and cat",
    'the "dog" said: NOT (cat) OR *fox*',
    "Dog AND cat NEAR(red fox)",
    "Café Crème in Zürich",
    "ÉCOLE DE CHIENS",
    "dog",
    "a b c d",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("c")
    # two shards, each holding every caption, to exercise the parallel shard search
    write_laion(root / "in" / "m0.parquet", CAPTIONS)
    write_laion(root / "in" / "m1.parquet", CAPTIONS[::-1])
    return open_corpus(build_corpus(root / "in", out=root / "corpus", workers=1))


def _ids(c, caption):
    return sorted(
        i for i, r in enumerate(c.rows(np.arange(c.n_rows)).to_pylist()) if r["caption"] == caption
    )


def test_phrase_semantics_documented_examples(corpus):
    h = corpus.search_captions({"dog": ["golden retriever"]})
    got = set(h.table.column("caption").to_pylist())
    assert got == {
        "A Golden Retriever playing",
        "golden-retriever puppy",
    }  # order matters, case not
    shirt = set(corpus.search_captions({"s": ["t-shirt"]}).table.column("caption").to_pylist())
    assert shirt == {
        "T-Shirt with a cat",
        "t shirt",
    }  # punctuation = separator; 'tshirt' is one token
    assert set(corpus.search_captions({"s": ["tshirt"]}).table.column("caption").to_pylist()) == {
        "tshirt sale"
    }
    cafe = set(corpus.search_captions({"c": ["cafe creme"]}).table.column("caption").to_pylist())
    assert cafe == {"Café Crème in Zürich"}  # diacritics folded
    assert corpus.search_captions({"e": ["école"]}).counts["e"] == 2
    assert tokenize("T-Shirt (Zürich)") == ["t", "shirt", "zurich"]


@pytest.mark.parametrize(
    "name",
    [
        '"dog"',
        'dog" OR "cat',
        "NOT",
        "AND",
        "OR",
        "NEAR(red fox)",
        "*fox*",
        "fox*",
        "said:",
        "cat)",
        "(cat",
        "red/fox",
        "dog'; DROP TABLE rows; --",
        "caption:dog",
        "^dog",
        "dog + cat",
        "{caption}: dog",
    ],
)
def test_names_are_data_never_syntax(corpus, name):
    h = corpus.search_captions({"x": [name]})
    want = sorted(
        i
        for i, r in enumerate(corpus.rows(np.arange(corpus.n_rows)).to_pylist())
        if _phrase_in(name, r["caption"])
    )
    assert sorted(h.table.column("row_id").to_pylist()) == want
    # these match nothing when read as data (read as syntax, most would match many rows)
    no_phrase = (
        'dog" OR "cat',
        "dog'; DROP TABLE rows; --",
        "caption:dog",
        "dog + cat",
        "{caption}: dog",
    )
    assert bool(want) == (name not in no_phrase)
    assert corpus.n_rows == 2 * len(CAPTIONS)  # nothing was dropped


def test_empty_queries_are_errors(corpus):
    for bad in (
        {},
        {"x": []},
        {"x": [""]},
        {"x": ["  -- !! "]},
        {"": ["dog"]},
        {"x": [3]},
        [("x", ["dog"])],
    ):
        with pytest.raises(DataError):
            corpus.search_captions(bad)
    with pytest.raises(ConfigError, match="phrase, all_tokens"):
        corpus.search_captions({"x": ["dog"]}, mode="fuzzy")
    with pytest.raises(ConfigError):
        corpus.search_captions({"x": ["dog"]}, limit_per_label=0)


def test_ambiguous_rows_reported_not_labelled(corpus):
    h = corpus.search_captions({"dog": ["dog", "golden retriever"], "cat": ["cat"]})
    t = h.table.to_pylist()
    amb = {r["row_id"]: r["labels"] for r in h.ambiguous.to_pylist()}
    for cap in ('the "dog" said: NOT (cat) OR *fox*', "Dog AND cat NEAR(red fox)"):
        for rid in _ids(corpus, cap):
            assert amb[rid] == ["dog", "cat"]
    assert not set(amb) & {r["row_id"] for r in t}
    dog_rows = {r["row_id"]: r["name"] for r in t if r["label"] == "dog"}
    assert set(dog_rows) == set(
        _ids(corpus, "dog")
        + _ids(corpus, "A Golden Retriever playing")
        + _ids(corpus, "golden-retriever puppy")
    )
    assert {dog_rows[i] for i in _ids(corpus, "dog")} == {"dog"}
    assert h.counts == {"dog": 6, "cat": 4}
    assert h.table.schema.names == [
        "row_id",
        "label",
        "name",
        "caption",
        "url",
        "nsfw",
        "similarity",
    ]
    assert str(h.table.schema.field("similarity").type) == "float"


def test_limit_per_label_stops_early_and_keeps_ambiguity_exact(corpus):
    full = corpus.search_captions({"dog": ["dog"], "cat": ["cat"]})
    for limit in (1, 2, 3, 100):
        h = corpus.search_captions({"dog": ["dog"], "cat": ["cat"]}, limit_per_label=limit)
        for label in ("dog", "cat"):
            rows = [r["row_id"] for r in h.table.to_pylist() if r["label"] == label]
            all_rows = [r["row_id"] for r in full.table.to_pylist() if r["label"] == label]
            assert len(rows) == min(limit, len(all_rows)) == h.counts[label]
            assert set(rows) <= set(all_rows)  # never an ambiguous row, even when cut short
        assert set(h.ambiguous.column("row_id").to_pylist()) <= set(
            full.ambiguous.column("row_id").to_pylist()
        )


def test_all_tokens_mode(corpus):
    h = corpus.search_captions({"g": ["golden retriever"]}, mode="all_tokens")
    assert set(h.table.column("caption").to_pylist()) == {
        "A Golden Retriever playing",
        "golden-retriever puppy",
        "retriever, golden",
    }


def test_rows_in_given_order_and_bad_ids(corpus):
    t = corpus.rows([5, 0, 5])
    assert t.column("row_id").to_pylist() == [5, 0, 5]
    assert t.column("caption").to_pylist() == [CAPTIONS[5], CAPTIONS[0], CAPTIONS[5]]
    assert corpus.rows([]).num_rows == 0
    with pytest.raises(DataError, match="out of range"):
        corpus.rows([corpus.n_rows])
    with pytest.raises(DataError, match="integers"):
        corpus.rows([0.5])


word = st.sampled_from(WORDS)
sep = st.sampled_from(SEPS)


@st.composite
def text(draw, max_words=6):
    ws = draw(st.lists(word, min_size=1, max_size=max_words))
    out = ""
    for w in ws:
        out += draw(sep) + (w.upper() if draw(st.booleans()) else w)
    return out + draw(sep)


_PROP = {}


def _prop_corpus(tmp_path_factory, captions):
    key = tuple(captions)
    if key not in _PROP:
        root = tmp_path_factory.mktemp("p")
        write_laion(root / "m.parquet", list(captions))
        _PROP.clear()
        _PROP[key] = open_corpus(build_corpus(root / "m.parquet", out=root / "c", workers=1))
    return _PROP[key]


@given(
    captions=st.lists(text(), min_size=1, max_size=25),
    names=st.lists(text(3), min_size=1, max_size=4),
    mode=st.sampled_from(["phrase", "all_tokens"]),
)
def test_search_matches_brute_force_oracle(tmp_path_factory, captions, names, mode):
    c = _prop_corpus(tmp_path_factory, captions)
    queries = {f"L{i}": [n] for i, n in enumerate(names)}
    h = c.search_captions(queries, mode=mode)
    match = _phrase_in if mode == "phrase" else _all_in
    want: dict[int, set] = {}
    for rid, cap in enumerate(captions):
        for label, (n,) in queries.items():
            if match(n, cap):
                want.setdefault(rid, set()).add(label)
    unamb = {(rid, next(iter(ls))) for rid, ls in want.items() if len(ls) == 1}
    assert {(r["row_id"], r["label"]) for r in h.table.to_pylist()} == unamb
    assert {r["row_id"]: set(r["labels"]) for r in h.ambiguous.to_pylist()} == {
        rid: ls for rid, ls in want.items() if len(ls) > 1
    }


_SHARDED = {}
# rows matched by both names of a label: the first name given must be reported
_NAMED = ["dog and cat", "cat", "a dog", "red fox", "cat, dog", "dog", "red fox cat"]


def _sharded_corpus(tmp_path_factory, captions):
    """The captions split over three shards (some possibly empty of hits), NSFW and
    similarity partly null, to check every column of every hit against ``rows``."""
    key = tuple(captions)
    if key not in _SHARDED:
        root = tmp_path_factory.mktemp("s")
        n = len(captions)
        parts = np.array_split(np.arange(n), 3)
        for s, part in enumerate(parts):
            if not part.size:
                continue
            write_laion(
                root / "in" / f"m{s}.parquet",
                [captions[i] for i in part],
                NSFW=[[None, "NSFW", "UNLIKELY"][i % 3] for i in part],
                similarity=[None if i % 4 == 0 else 0.25 + i / 100 for i in part],
            )
        _SHARDED.clear()
        _SHARDED[key] = open_corpus(build_corpus(root / "in", out=root / "c", workers=1))
    return _SHARDED[key]


@given(
    captions=st.lists(text(), min_size=1, max_size=30),
    synonyms=st.lists(st.lists(text(2), min_size=1, max_size=3), min_size=1, max_size=3),
    limit=st.sampled_from([None, 1, 2, 5]),
)
@example(captions=_NAMED, synonyms=[["cat", "dog"], ["red fox"]], limit=None)
@example(captions=_NAMED, synonyms=[["cat", "dog"], ["red fox"]], limit=2)
@example(captions=_NAMED, synonyms=[["cat", "dog"]], limit=None)
@example(captions=_NAMED, synonyms=[["cat", "dog"]], limit=2)
def test_search_full_table_matches_oracle(tmp_path_factory, captions, synonyms, limit):
    """Exact table, in order: labels in query order, row ids ascending, the first name
    (in the order given) that matches, the first ``limit`` unambiguous rows per label;
    every column equal to the stored row."""
    c = _sharded_corpus(tmp_path_factory, captions)
    queries = {f"L{i}": names for i, names in enumerate(synonyms)}
    h = c.search_captions(queries, limit_per_label=limit)
    first: dict[int, dict[str, str]] = {}  # row -> label -> first matching name
    for rid, cap in enumerate(captions):
        for label, names in queries.items():
            hit = next((n for n in names if _phrase_in(n, cap)), None)
            if hit is not None:
                first.setdefault(rid, {})[label] = hit
    want = []
    for label in queries:
        rows = [(rid, label, ls[label]) for rid, ls in sorted(first.items()) if list(ls) == [label]]
        want += rows[:limit] if limit is not None else rows
    got = h.table.to_pylist()
    assert [(r["row_id"], r["label"], r["name"]) for r in got] == want
    assert h.counts == {label: sum(w[1] == label for w in want) for label in queries}
    amb = {r["row_id"]: r["labels"] for r in h.ambiguous.to_pylist()}
    all_amb = {rid: list(ls) for rid, ls in first.items() if len(ls) > 1}
    if limit is None:
        assert amb == all_amb
    else:
        assert all(all_amb[rid] == labs for rid, labs in amb.items())
    stored = c.rows([r["row_id"] for r in got]).to_pylist()
    for r, s in zip(got, stored):
        assert r["caption"] == s["caption"] == captions[r["row_id"]]
        assert r["url"] == s["url"] and r["nsfw"] == s["nsfw"]
        assert (np.isnan(r["similarity"]) and np.isnan(s["similarity"])) or np.isclose(
            r["similarity"], s["similarity"]
        )


def test_the_corpus_owns_the_search_modes_and_imports_them_cheaply():
    import subprocess
    import sys

    import priming.corpus
    from priming.corpus import choices

    assert priming.corpus.SEARCH_MODES is choices.SEARCH_MODES == ("phrase", "all_tokens")
    assert priming.corpus.KNN_METHODS == ("exact", "ivfpq")
    code = (
        "import sys, priming.corpus as c; assert c.SEARCH_MODES; "
        "print(sorted(m for m in ('numpy', 'pyarrow', 'priming.corpus._store') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # nothing heavy until a storage name is used
    assert priming.corpus.open_corpus.__module__ == "priming.corpus._store"
