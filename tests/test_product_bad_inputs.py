"""Bad input to the product commands (prime, predict) as a user would give it: each is a
one-line error naming the input, exit code 2, no traceback, nothing half-written."""

import json
import shutil

import numpy as np
import pytest

from priming.cli import main
from priming.errors import DataError
from priming.heads import PrimedHead, ZeroShotHead, load_head
from tests._fakes import BagOfWordsEncoder, write_text_corpus

FRUITS = ["apple", "banana", "cherry"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("product")
    enc = BagOfWordsEncoder(dim=32)
    caps = [f"a ripe {FRUITS[i % 3]} number {i}" for i in range(30)]
    write_text_corpus(tmp, caps, enc)
    (tmp / "classes.txt").write_text("apple\nbanana\ncherry\n")
    T = enc.encode_texts(FRUITS)
    X = enc.encode_texts(caps)
    y = [FRUITS[i % 3] for i in range(30)]
    PrimedHead(T, classes=FRUITS, alpha=0.5).fit(X, y).save(tmp / "head")
    ZeroShotHead(T, FRUITS).fit().save(tmp / "zs")
    np.save(tmp / "x.npy", enc.encode_texts(["ripe cherry", "an apple"]))
    return tmp, enc


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


@pytest.mark.parametrize("kind", ["head", "zs"])
@pytest.mark.parametrize(
    "damage",
    ["json_list", "json_no_kind_keys", "no_arrays", "garbage_arrays", "arrays_wrong_keys"],
)
def test_predict_damaged_head_folder_is_one_line_error(world, tmp_path, capsys, kind, damage):
    tmp, _ = world
    h = tmp_path / "h"
    shutil.copytree(tmp / kind, h)
    meta = json.loads((h / "head.json").read_text())
    if damage == "json_list":
        (h / "head.json").write_text("[1, 2]")
    elif damage == "json_no_kind_keys":
        (h / "head.json").write_text(json.dumps({"kind": meta["kind"]}))
    elif damage == "no_arrays":
        (h / "arrays.npz").unlink()
    elif damage == "garbage_arrays":
        (h / "arrays.npz").write_text("garbage")
    else:
        np.savez(h / "arrays.npz", other=np.zeros(3))
    with pytest.raises(DataError, match="h"):
        load_head(h)
    assert main(["predict", "--head", str(h), "--data", str(tmp / "x.npy")]) == 2
    _one_line_error(capsys, str(h))


def test_head_json_cannot_name_arbitrary_callables(world, tmp_path):
    tmp, _ = world
    h = tmp_path / "h"
    shutil.copytree(tmp / "head", h)
    meta = json.loads((h / "head.json").read_text())
    meta["imprint_class"] = "priming.job.run:run_prime"
    (h / "head.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="imprint class"):
        load_head(h)


def test_predict_out_is_a_folder(world, tmp_path, capsys):
    tmp, _ = world
    (tmp_path / "d").mkdir()
    rc = main(["predict", "--head", str(tmp / "head"), "--data", str(tmp / "x.npy"),
               "--out", str(tmp_path / "d")])  # fmt: skip
    assert rc == 2
    _one_line_error(capsys, "--out", str(tmp_path / "d"))
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temporary file left behind
    assert list((tmp_path / "d").iterdir()) == []


def test_predict_labels_of_another_task_still_predicts(world, tmp_path, capsys):
    tmp, _ = world
    _register_fake()
    data = tmp_path / "d.jsonl"
    rows = [{"text": "ripe cherry", "label": "kiwi"}, {"text": "an apple", "label": "apple"}]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "p.csv"
    args = ["predict", "--head", str(tmp / "head"), "--data", str(data), "--model", "fake32:bow",
            "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert [r.split(",")[1] for r in out.read_text().splitlines()[1:]] == ["cherry", "apple"]
    err = capsys.readouterr().err
    assert "no accuracy" in err and "'kiwi'" in err


def _register_fake():
    from priming.encoders import ENCODERS, register_encoder

    def make(spec, device, precision):
        enc = BagOfWordsEncoder(dim=32, name="fake:bow")  # the corpus's model (fingerprint)
        enc.name = f"fake32:{spec}"  # under another name
        return enc

    if "fake32" not in ENCODERS:
        register_encoder("fake32")(make)


def _error(capsys, *needles):
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("priming prime: error:"), err
    for n in needles:
        assert n in err, err


def _prime_args(tmp, out, *extra):
    return [
        "prime",
        "--model",
        "fake32:bow",
        "--classes",
        str(tmp / "classes.txt"),
        "--corpus",
        str(tmp / "corpus"),
        "--cache-dir",
        str(tmp / "cache"),
        "--templates",
        "identity",
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


@pytest.mark.parametrize("overwrite", [False, True])
def test_prime_out_is_a_file(world, tmp_path, capsys, overwrite):
    tmp, _ = world
    _register_fake()
    f = tmp_path / "afile"
    f.write_text("precious")
    rc = main(_prime_args(tmp, f, *(["--overwrite"] if overwrite else [])))
    assert rc == 2
    _error(capsys, "out", str(f))
    assert f.read_text() == "precious"  # never replaced, even with --overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_prime_out_below_a_file(world, tmp_path, capsys):
    tmp, _ = world
    _register_fake()
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(_prime_args(tmp, f / "run")) == 2
    _error(capsys, "out", str(f))


def test_export_urls_reads_class_files_like_prime(world, tmp_path, capsys):
    """The same classes.txt means the same classes for `corpus export-urls` and `prime`:
    comments, BOM and zero-width characters ignored, duplicates an error."""
    import pyarrow.parquet as pq

    tmp, _ = world
    f = tmp_path / "classes.txt"
    f.write_text("\ufeff# fruit I like\napple\u200b\n\nbanana\n", encoding="utf-8")
    out = tmp_path / "urls.parquet"
    args = ["corpus", "export-urls", str(tmp / "corpus"), "--classes", str(f), "--out", str(out)]
    assert main(args) == 0
    labels = set(pq.read_table(out).column("label").to_pylist())
    assert labels == {"apple", "banana"}
    f.write_text("apple\nbanana\nApple\n")
    out.unlink()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "duplicate class name 'Apple'" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("where", ["folder", "below_file"])
def test_export_urls_out_is_a_folder_or_below_a_file(world, tmp_path, capsys, where):
    from priming.corpus import export_urls, open_corpus
    from priming.errors import ConfigError

    tmp, _ = world
    if where == "folder":
        out = tmp_path / "d"
        out.mkdir()
    else:
        (tmp_path / "f").write_text("x")
        out = tmp_path / "f" / "urls.parquet"
    args = ["corpus", "export-urls", str(tmp / "corpus"), "apple", "--out", str(out)]
    assert main(args) == 2
    _one_line_error(capsys, str(out) if where == "folder" else str(tmp_path / "f"))
    with pytest.raises(ConfigError):
        export_urls(open_corpus(tmp / "corpus"), [0, 1], out)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["d"] if where == "folder" else ["f"])


@pytest.mark.parametrize("below", [False, True])
def test_corpus_build_out_is_a_file(tmp_path, capsys, below):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"caption": ["a ripe apple"]}), tmp_path / "m.parquet")
    f = tmp_path / "afile"
    f.write_text("precious")
    out = f / "corpus" if below else f
    assert (
        main(["corpus", "build", "--metadata", str(tmp_path / "m.parquet"), "--out", str(out)]) == 2
    )
    _one_line_error(capsys, str(out))
    assert f.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "m.parquet"]


def test_model_check_by_fingerprint_not_spelling(world):
    """Caption embeddings made by an encoder are matched by its fingerprint: the same
    model under another spelling of its name is accepted, another model is refused."""
    from priming.corpus import open_corpus
    from priming.errors import ConfigError
    from priming.pool import check_corpus_model

    tmp, enc = world
    corpus = open_corpus(tmp / "corpus")
    assert corpus.embedding_model == "fake:bow"
    same = BagOfWordsEncoder(dim=32, name="fake:bow")
    same.name = "fake:./models/bow"  # same weights, another way to name them
    check_corpus_model(corpus, 32, same)
    other = BagOfWordsEncoder(dim=32, name="fake:other")
    other.name = "fake:bow"  # same name, other weights
    with pytest.raises(ConfigError, match="model mismatch.*'fake:bow'.*fingerprint"):
        check_corpus_model(corpus, 32, other)


def test_names_without_letters_match_nothing_and_keep_text_weight(world, tmp_path, capsys):
    """'***' as a class (or synonym) can match no caption: reported like any class that
    matches nothing, never a failed run."""
    tmp, _ = world
    _register_fake()
    classes = tmp_path / "c.txt"
    classes.write_text("apple|***\n+++\nbanana\n")
    out = tmp_path / "run"
    args = _prime_args(tmp, out)
    args[args.index("--classes") + 1] = str(classes)
    assert main(args) == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["pool"]["empty_classes"] == ["+++"]
    assert m["pool"]["per_class"]["apple"] == 10 and m["pool"]["per_class"]["banana"] == 10
    assert m["pool"]["meta"]["unsearchable_names"] == ["***", "+++"]
