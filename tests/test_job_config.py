"""PrimeConfig / load_config (priming.job.config) and the prime options generated from it."""

import dataclasses
import sys

import pytest

from priming.cli import build_parser
from priming.errors import ConfigError, MissingDependencyError
from priming.job.config import PrimeConfig, cli_options, load_config


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "classes.txt").write_text("apple\nbanana\n")
    (tmp_path / "corpus").mkdir()
    return tmp_path


def _toml(tmp, body):
    f = tmp / "run.toml"
    f.write_text(body)
    return f


BASE = 'model = "fake:bow"\nclasses = "classes.txt"\ncorpus = "corpus"\nout = "run"\n'


def test_top_level_keys_and_prime_table_is_an_error_naming_the_keys(inputs):
    f = _toml(inputs, "per_class = 5\nseed = 3\n[prime]\n" + BASE)
    with pytest.raises(ConfigError, match=r"top level \('per_class', 'seed'\).*\[prime\]"):
        load_config(f)


def test_prime_table_alone_and_top_level_alone_are_equal(inputs):
    a = load_config(_toml(inputs, BASE + "per_class = 7\n"))
    b = load_config(_toml(inputs, "[prime]\n" + BASE + "per_class = 7\n"))
    assert a == b and a.per_class == 7
    assert a.classes == str(inputs / "classes.txt") and a.out == str(inputs / "run")


def test_prime_not_a_table_and_typo_are_named(inputs):
    with pytest.raises(ConfigError, match="'prime' must be a table"):
        load_config(_toml(inputs, 'prime = "x"\n'))
    with pytest.raises(ConfigError, match="unknown setting 'per_clas'"):
        load_config(_toml(inputs, "[prime]\n" + BASE + "per_clas = 7\n"))


def test_every_problem_is_reported_at_once(inputs):
    with pytest.raises(ConfigError) as exc:
        PrimeConfig.from_mapping(
            {
                "seed": -1,
                "nsfw": "yes",
                "compare": ["magic"],
                "dedup_threshold": float("nan"),
                "recall": "grep",
                "batch_size": 0,
            }  # fmt: skip
        )
    msg = str(exc.value)
    for bit in ("seed must be a non-negative integer, got -1", "nsfw must be true or false",
                "head preset 'magic'", "dedup_threshold must be a number", "recall must be one of",
                "batch_size must be a positive integer", "model is required"):  # fmt: skip
        assert bit in msg, bit
    # 4 required settings + the 6 bad values, one line each
    assert msg.startswith("config: 10 problem(s):") and msg.count("\n  - ") == 10


def test_toml_on_python_310_falls_back_to_tomli(inputs, monkeypatch):
    import tomllib

    f = _toml(inputs, BASE)
    monkeypatch.setitem(sys.modules, "tomllib", None)  # as on 3.10: import fails
    monkeypatch.setitem(sys.modules, "tomli", None)
    with pytest.raises(MissingDependencyError, match=r"tomli.*priming\[cli\]"):
        load_config(f)
    monkeypatch.setitem(sys.modules, "tomli", tomllib)  # tomli has tomllib's API
    assert load_config(f).model == "fake:bow"


def test_prime_options_are_generated_from_the_fields():
    fields = [f for f in dataclasses.fields(PrimeConfig)]
    specs = {o.name: o for o in cli_options()}
    assert set(specs) == {f.name for f in fields}
    for f in fields:
        assert f.metadata["help"], f.name
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    prime = sub.choices["prime"]
    flags = {s for a in prime._actions for s in a.option_strings}
    for o in specs.values():
        assert o.flag in flags
        action = next(a for a in prime._actions if o.flag in a.option_strings)
        assert action.dest == o.name and action.help == o.help
    assert "--no-progress" in flags and "--transductive-k" in flags


def test_cli_options_parse_to_config_values(inputs):
    from priming.cli.prime import options

    p = build_parser()
    args = p.parse_args(["prime", "--model", "m", "--nsfw", "false", "--compare", "imprint-best",
                         "--compare", "neural-priming", "--alpha", "0.3", "--per-class", "9",
                         "--no-progress", "--balance", "--dedup-threshold", "0.9"])  # fmt: skip
    o = options(args)
    assert o == {"model": "m", "nsfw": False, "compare": ["imprint-best", "neural-priming"],
                 "alpha": 0.3, "per_class": 9, "progress": False, "balance": True,
                 "dedup_threshold": 0.9}  # fmt: skip
    with pytest.raises(SystemExit):
        p.parse_args(["prime", "--nsfw", "maybe"])


def test_choices_and_defaults_come_from_one_place(inputs, capsys):
    from priming.cli import main

    specs = {o.name: o for o in cli_options()}
    assert specs["recall"].help.endswith("(search|knn|both); default: search")
    assert specs["recall"].metavar == "search|knn|both" and specs["per_class"].metavar == "N"
    assert specs["per_class"].help.endswith("default: 1000")
    assert "default" not in specs["model"].help  # no default: none shown
    rc = main(["prime", "--model", "m", "--classes", str(inputs / "classes.txt"), "--corpus",
               str(inputs / "corpus"), "--out", str(inputs / "r"), "--recall", "grep",
               "--score", "best"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "recall must be one of search, knn, both; got 'grep'" in err
    assert "score must be one of zero-shot, similarity; got 'best'" in err
    assert not (inputs / "r").exists()


def test_config_choices_are_the_pools_and_the_heads():
    import priming.job.config as config
    from priming import pool
    from priming.heads.primed import EMPTY_CLASS_CHOICES
    from priming.pool.recall import RECALLS

    fields = {f.name: f.metadata["choices"] for f in dataclasses.fields(PrimeConfig)}
    assert fields["recall"] is pool.RECALL_METHODS and set(pool.RECALL_METHODS) <= set(RECALLS)
    assert fields["search_mode"] is pool.SEARCH_MODES
    assert fields["ambiguous"] is pool.AMBIGUOUS_POLICIES
    assert fields["score"] is pool.POOL_SCORES
    # the one copy (importing priming.heads here would load scikit-learn for --help)
    assert fields["empty_class"] is config.EMPTY_CLASS and config.EMPTY_CLASS == EMPTY_CLASS_CHOICES
