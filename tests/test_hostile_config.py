"""Hostile battery (issue 11), the Python API: ``PrimeConfig``/``load_config`` with odd
values, class names that are not strings, ``build_pool`` with NaN settings. Every case is
a ``PrimingError`` naming the setting or the input (never a raw ValueError/TypeError)."""

import math

import numpy as np
import pytest

from priming.classnames import load_class_names, parse_class_names
from priming.errors import ConfigError, DataError, PrimingError
from priming.job import PrimeConfig, load_config

BASE = {"model": "m:x", "classes": None, "corpus": None, "out": None}


@pytest.fixture
def base(tmp_path):
    (tmp_path / "classes.txt").write_text("apple\nbanana\n")
    (tmp_path / "corpus").mkdir()
    return {**BASE, "classes": str(tmp_path / "classes.txt"), "corpus": str(tmp_path / "corpus"),
            "out": str(tmp_path / "run")}  # fmt: skip


BAD = [
    ("per_class", math.nan), ("per_class", math.inf), ("per_class", 0), ("per_class", -1),
    ("per_class", 2.5), ("per_class", True), ("per_class", "10"),
    ("batch_size", math.nan), ("batch_size", 0), ("seed", -1), ("seed", math.nan),
    ("dedup_threshold", math.nan), ("dedup_threshold", math.inf), ("dedup_threshold", "high"),
    ("leakage_threshold", math.nan), ("leakage_threshold", None),
    ("min_probability", math.nan), ("min_probability", -0.1),
    ("alpha", math.nan), ("alpha", math.inf), ("alpha", -0.5), ("alpha", "sometimes"),
    ("alpha_holdout", math.nan), ("alpha_holdout", 0.0),
    ("transductive_k", 0), ("n_proxies", 0), ("search_limit", -3),
    ("nsfw", "yes"), ("agreement", 1), ("compare", "no-such-head"), ("head", "nope"),
    ("classes", 3), ("out", ["a"]), ("templates", 5), ("recall", "telepathy"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "value"), BAD, ids=[f"{k}={v!r}" for k, v in BAD])
def test_prime_config_refuses(base, key, value):
    with pytest.raises(ConfigError, match=key):
        PrimeConfig.from_mapping({**base, key: value}, "test")


def test_prime_config_unknown_key_is_named(base):
    with pytest.raises(ConfigError, match="per_clas"):
        PrimeConfig.from_mapping({**base, "per_clas": 5})


def test_prime_config_not_a_mapping():
    with pytest.raises(ConfigError, match="list"):
        PrimeConfig.from_mapping([1, 2])


def test_toml_top_level_and_prime_table(base, tmp_path):
    f = tmp_path / "run.toml"
    f.write_text("seed = 1\n[prime]\nper_class = 5\n")
    with pytest.raises(ConfigError, match="top level"):
        load_config(f, base)


def test_toml_relative_paths_resolve_against_its_folder(base, tmp_path):
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "run.toml"
    f.write_text(
        'classes = "../classes.txt"\ncorpus = "../corpus"\nout = "../run"\nmodel = "m:x"\n'
    )
    cfg = load_config(f)
    assert cfg.classes == str((tmp_path / "classes.txt").resolve())


BAD_NAMES = [[1, 2, None], [None], ["apple", ""], ["apple", "  "], [["apple", 3]], ["a", "A"], []]


@pytest.mark.parametrize("names", BAD_NAMES, ids=[repr(n) for n in BAD_NAMES])
def test_parse_class_names_refuses(names):
    with pytest.raises(PrimingError, match="src"):
        parse_class_names(names, "src")


@pytest.mark.parametrize("content", ["[1, 2, null]", '{"a": 3}', "[", '"apple"', "null"])
def test_json_class_file_refuses(tmp_path, content):
    f = tmp_path / "classes.json"
    f.write_text(content)
    with pytest.raises(PrimingError, match="classes.json"):
        load_class_names(f)


def test_class_names_from_json_file(tmp_path):
    f = tmp_path / "classes.json"
    f.write_text('["apple", ["banana", "plantain"]]')
    assert load_class_names(f) == [["apple"], ["banana", "plantain"]]
    f.write_text('{"apple": "pomme", "banana": ["plantain"]}')  # class -> synonyms
    assert load_class_names(f) == [["apple", "pomme"], ["banana", "plantain"]]


# -- build_pool with NaN settings (the pool layer) -------------------------------------------
@pytest.fixture(scope="module")
def corpus_and_encoder(tmp_path_factory):
    from tests._fakes import BagOfWordsEncoder, write_text_corpus

    tmp = tmp_path_factory.mktemp("hostile_pool")
    enc = BagOfWordsEncoder(dim=32)
    fruits = ["apple", "banana", "cherry"]
    return write_text_corpus(tmp, [f"a ripe {fruits[i % 3]} {i}" for i in range(30)], enc), enc


@pytest.mark.parametrize(
    "kwargs",
    [{"per_class": math.nan}, {"dedup_threshold": math.nan}, {"text_weights": "nan"}],
    ids=["per_class=nan", "dedup_threshold=nan", "text_weights=nan"],
)
def test_build_pool_refuses_nan_settings(corpus_and_encoder, kwargs):
    from priming.corpus import open_corpus
    from priming.pool import build_pool

    path, enc = corpus_and_encoder
    names = ["apple", "banana", "cherry"]
    if kwargs.get("text_weights") == "nan":
        T = enc.encode_texts(names)
        T[1, 0] = np.nan
        kwargs = {"text_weights": T}
    with pytest.raises((ConfigError, DataError)):
        build_pool(open_corpus(path), names, **kwargs)
