"""Hostile battery (issue 11), ``priming prime``: odd numbers for every numeric option,
outputs over inputs, damaged class/eval/config files, file modes. Every case: exit code 2,
an error naming the input with no traceback, and no input file changed (hashes)."""

import json
import os

import pytest

from priming.cli import main
from tests._fakes import BagOfWordsEncoder, write_text_corpus
from tests._hostile import hashes, refused

FRUITS = ["apple", "banana", "cherry"]


def _register_fake():
    from priming.encoders import ENCODERS, register_encoder

    if "fakehostile" not in ENCODERS:
        register_encoder("fakehostile")(lambda spec, device, precision: BagOfWordsEncoder(dim=32))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    _register_fake()
    root = tmp_path_factory.mktemp("hostile_prime")
    inp = root / "inputs"
    inp.mkdir()
    enc = BagOfWordsEncoder(dim=32)
    write_text_corpus(inp, [f"a ripe {FRUITS[i % 3]} number {i}" for i in range(30)], enc)
    (inp / "classes.txt").write_text("\n".join(FRUITS) + "\n")
    rows = [{"text": f"ripe {f}", "label": f} for f in FRUITS]
    (inp / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (inp / "templates.txt").write_text("a photo of a {}.\n")
    return root, inp


def args(inp, out, *extra, classes=None, eval=None):
    a = ["prime", "--model", "fakehostile:bow", "--classes", str(classes or inp / "classes.txt"),
         "--corpus", str(inp / "corpus"), "--eval", str(eval or inp / "eval.jsonl"),
         "--cache-dir", str(inp.parent / "cache"), "--templates", "identity",
         "--no-progress", "--out", str(out), *extra]  # fmt: skip
    return a


# -- odd numbers: nan, inf, -inf, 0, -1 for every numeric option -------------------------
NUMERIC = {  # option -> values that must be refused
    "--transductive-k": ["nan", "inf", "-inf", "0", "-1", "1.5"],
    "--n-proxies": ["nan", "inf", "0", "-1"],
    "--alpha": ["nan", "inf", "-inf", "-1", "1.5"],
    "--alpha-holdout": ["nan", "inf", "-inf", "0", "-1", "1"],
    "--per-class": ["nan", "inf", "0", "-1"],
    "--search-limit": ["nan", "inf", "0", "-1"],
    "--dedup-threshold": ["nan", "inf", "-inf", "2", "-2"],
    "--leakage-threshold": ["nan", "inf", "-inf", "2"],
    "--min-probability": ["nan", "inf", "-1", "2"],
    "--batch-size": ["nan", "inf", "0", "-1"],
    "--seed": ["nan", "inf", "-1"],
}
CASES = [(o, v) for o, vals in NUMERIC.items() for v in vals]


@pytest.mark.parametrize(("option", "value"), CASES, ids=[f"{o}={v}" for o, v in CASES])
def test_odd_numbers_are_refused(world, tmp_path, capsys, option, value):
    root, inp = world
    extra = [f"{option}={value}"]
    if option == "--transductive-k":
        extra.append("--transductive")
    out = tmp_path / "run"
    err = refused(capsys, args(inp, out, *extra), inputs=inp)
    name = option[2:].replace("-", "_")
    assert name in err or option in err, err
    assert not out.exists()


# -- outputs over inputs --------------------------------------------------------------
@pytest.mark.parametrize("which", ["classes", "eval", "templates", "cache"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_out_is_an_input_file_or_the_cache(world, capsys, which, overwrite):
    root, inp = world
    target = {
        "classes": inp / "classes.txt",
        "eval": inp / "eval.jsonl",
        "templates": inp / "templates.txt",
        "cache": root / "cache",
    }[which]
    (root / "cache").mkdir(exist_ok=True)
    (root / "cache" / "keep.txt").write_text("cached")
    extra = ["--overwrite"] if overwrite else []
    argv = args(inp, target, *extra)
    if which == "templates":
        argv[argv.index("identity")] = str(inp / "templates.txt")
    before = hashes(root)
    refused(capsys, argv, str(target))
    assert hashes(root) == before


def test_out_inside_the_corpus(world, capsys):
    root, inp = world
    out = inp / "corpus" / "run"
    refused(capsys, args(inp, out, "--overwrite"), str(out), inputs=inp)
    assert not out.exists()


def test_out_is_a_non_run_folder_with_overwrite(world, tmp_path, capsys):
    root, inp = world
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    refused(
        capsys, args(inp, tmp_path / "mine", "--overwrite"), "not an earlier run", inputs=tmp_path
    )


# -- damaged inputs ---------------------------------------------------------------------
BAD_CLASSES = {
    "json_ints_null": ("classes.json", "[1, 2, null]"),
    "json_object": ("classes.json", '{"a": 1}'),
    "json_truncated": ("classes.json", '["apple", "ban'),
    "empty_txt": ("classes.txt", ""),
    "only_comments": ("classes.txt", "# nothing\n\n"),
    "duplicates": ("classes.txt", "apple\nApple\n"),
    "binary": ("classes.txt", b"\xff\xfe\x00\x01garbage\x00"),
}


@pytest.mark.parametrize("case", sorted(BAD_CLASSES))
def test_bad_class_file(world, tmp_path, capsys, case):
    root, inp = world
    name, content = BAD_CLASSES[case]
    f = tmp_path / name
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    refused(capsys, args(inp, tmp_path / "run", classes=f), name, inputs=inp)
    assert not (tmp_path / "run").exists()


BAD_EVAL = {
    "csv_unterminated_quote": ("e.csv", 'text,label\n"ripe apple,apple\nripe banana,banana\n'),
    "jsonl_garbled": ("e.jsonl", '{"text": "ripe apple", "label": "apple"}\n{"text": \n'),
    "jsonl_label_null": ("e.jsonl", '{"text": "ripe apple", "label": null}\n'),
    "csv_no_text_column": ("e.csv", "foo,label\nx,apple\n"),
}


def test_eval_with_empty_text_cells(world, tmp_path, capsys):
    root, inp = world
    f = tmp_path / "e.csv"
    f.write_text("text,label\n,apple\nripe banana,banana\n")
    refused(capsys, args(inp, tmp_path / "run", eval=f), "e.csv", inputs=inp)


@pytest.mark.parametrize("case", sorted(BAD_EVAL))
def test_bad_eval_file(world, tmp_path, capsys, case):
    root, inp = world
    name, content = BAD_EVAL[case]
    f = tmp_path / name
    f.write_text(content)
    refused(capsys, args(inp, tmp_path / "run", eval=f), name, inputs=inp)
    assert not (tmp_path / "run").exists()


BAD_TOML = {
    "top_level_and_table": "seed = 1\n[prime]\nper_class = 5\n",
    "garbled": "per_class = = 5\n",
    "typo_key": "per_clas = 5\n",
    "wrong_type": 'per_class = "many"\n',
    "prime_not_table": "prime = 3\n",
    "nan_float": "dedup_threshold = nan\n",
}


@pytest.mark.parametrize("case", sorted(BAD_TOML))
def test_bad_toml_config(world, tmp_path, capsys, case):
    root, inp = world
    f = tmp_path / "run.toml"
    f.write_text(BAD_TOML[case])
    refused(capsys, [*args(inp, tmp_path / "run"), "--config", str(f)], "run.toml", inputs=inp)
    assert f.read_text() == BAD_TOML[case]


def test_missing_config_file(world, tmp_path, capsys):
    root, inp = world
    refused(
        capsys, [*args(inp, tmp_path / "run"), "--config", str(tmp_path / "no.toml")], "no.toml"
    )


def test_corpus_is_not_a_corpus(world, tmp_path, capsys):
    root, inp = world
    argv = args(inp, tmp_path / "run")
    argv[argv.index(str(inp / "corpus"))] = str(tmp_path)
    refused(capsys, argv, str(tmp_path), inputs=inp)


# -- file modes follow the umask --------------------------------------------------------
def test_run_folder_follows_the_umask(world, tmp_path, capsys):
    root, inp = world
    old = os.umask(0o022)
    try:
        assert main(args(inp, tmp_path / "run")) == 0
    finally:
        os.umask(old)
    run = tmp_path / "run"
    entries = [run, run / "metrics.json", run / "report.md", *(run / "head").rglob("*")]
    for p in entries:
        assert p.stat().st_mode & 0o777 == (0o755 if p.is_dir() else 0o644), p
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]


def test_run_pool_folder_follows_the_umask(world, tmp_path):
    root, inp = world
    old = os.umask(0o022)
    try:
        assert main(args(inp, tmp_path / "run")) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "run" / "pool").stat().st_mode & 0o777 == 0o755
