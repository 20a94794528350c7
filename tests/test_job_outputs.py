"""Outputs of prime and predict never destroy inputs or foreign files (issue 11), and
predict() works as a library function."""

import json
import os

import numpy as np
import pytest

from priming.cli import main
from priming.errors import ConfigError
from priming.heads import PrimedHead
from priming.job import predict
from tests._fakes import BagOfWordsEncoder, write_text_corpus

FRUITS = ["apple", "banana", "cherry"]


def _register_fake():
    from priming.encoders import ENCODERS, register_encoder

    if "fakejob" not in ENCODERS:
        register_encoder("fakejob")(lambda spec, device, precision: BagOfWordsEncoder(dim=32))


@pytest.fixture
def world(tmp_path):
    """Every input inside one folder (tmp_path/inputs), as a user keeps them."""
    _register_fake()
    inp = tmp_path / "inputs"
    inp.mkdir()
    enc = BagOfWordsEncoder(dim=32)
    write_text_corpus(inp, [f"a ripe {FRUITS[i % 3]} number {i}" for i in range(30)], enc)
    (inp / "classes.txt").write_text("\n".join(FRUITS) + "\n")
    rows = [{"text": f"ripe {f}", "label": f} for f in FRUITS]
    (inp / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return tmp_path, inp, enc


def _prime(inp, out, *extra):
    return ["prime", "--model", "fakejob:bow", "--classes", str(inp / "classes.txt"),
            "--corpus", str(inp / "corpus"), "--eval", str(inp / "eval.jsonl"),
            "--cache-dir", str(inp.parent / "cache"), "--templates", "identity",
            "--no-progress", "--out", str(out), *extra]  # fmt: skip


def _snapshot(folder):
    return sorted(
        (str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file()
    )


@pytest.mark.parametrize("which", ["corpus", "inputs", "parent"])
def test_overwrite_never_deletes_an_input(world, capsys, which):
    tmp, inp, _ = world
    before = _snapshot(inp)
    out = {"corpus": inp / "corpus", "inputs": inp, "parent": tmp}[which]
    assert main(_prime(inp, out, "--overwrite")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "would delete it" in err, err
    assert _snapshot(inp) == before


def test_out_current_folder_is_refused(world, capsys, monkeypatch):
    tmp, inp, _ = world
    work = tmp / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(_prime(inp, ".", "--overwrite")) == 2
    assert "current folder" in capsys.readouterr().err
    assert list(work.iterdir()) == [] and not list(tmp.glob(".*old*"))


def test_overwrite_replaces_only_an_earlier_run(world, capsys):
    tmp, inp, _ = world
    other = tmp / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"precious")
    assert main(_prime(inp, other, "--overwrite")) == 2
    assert "not an earlier run" in capsys.readouterr().err
    assert (other / "holiday.jpg").read_bytes() == b"precious"
    run = tmp / "run"
    assert main(_prime(inp, run)) == 0
    assert (run / "predictions.csv").is_file()
    assert main(_prime(inp, run)) == 2  # no --overwrite
    assert "already exists" in capsys.readouterr().err
    (run / "mine.txt").write_text("x")
    assert main(_prime(inp, run, "--overwrite", "--per-class", "3")) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert m["config"]["per_class"] == 3 and not (run / "mine.txt").exists()


def test_run_writes_eval_predictions(world):
    tmp, inp, enc = world
    run = tmp / "run"
    assert main(_prime(inp, run)) == 0
    lines = (run / "predictions.csv").read_text().splitlines()
    assert lines[0] == "id,label,prediction,confidence,top3"
    rows = [ln.split(",") for ln in lines[1:]]
    assert [r[1] for r in rows] == FRUITS
    from priming.heads import load_head

    head = load_head(run / "head")
    P = head.predict_proba(enc.encode_texts([f"ripe {f}" for f in FRUITS]))
    for r, p in zip(rows, P):
        order = np.argsort(-p, kind="stable")
        assert r[2] == FRUITS[order[0]] and float(r[3]) == pytest.approx(p.max(), abs=1e-4)
        assert r[4].split("|") == [FRUITS[i] for i in order[:3]]


def test_predict_refuses_to_overwrite_its_input_or_any_file(world, capsys):
    tmp, inp, enc = world
    run = tmp / "run"
    assert main(_prime(inp, run)) == 0
    data = inp / "eval.jsonl"
    before = data.read_bytes()
    args = ["predict", "--head", str(run / "head"), "--data", str(data), "--no-progress", "--model", "fakejob:bow",
            "--cache-dir", str(tmp / "cache")]  # fmt: skip
    assert main([*args, "--out", str(data)]) == 2
    assert "is the input --data" in capsys.readouterr().err
    assert main([*args, "--out", str(data), "--overwrite"]) == 2
    assert data.read_bytes() == before
    out = tmp / "p.csv"
    out.write_text("old")
    assert main([*args, "--out", str(out)]) == 2
    assert "already exists (use --overwrite" in capsys.readouterr().err
    assert out.read_text() == "old"
    assert main([*args, "--out", str(out), "--overwrite"]) == 0
    assert out.read_text().splitlines()[0] == "id,prediction,confidence"


def test_predict_library_with_a_head_saved_from_python(world, tmp_path):
    _, inp, enc = world
    T = enc.encode_texts(FRUITS)
    caps = [f"a ripe {FRUITS[i % 3]} {i}" for i in range(12)]
    head = PrimedHead(T, classes=FRUITS, alpha=0.5).fit(
        enc.encode_texts(caps), [FRUITS[i % 3] for i in range(12)]
    )
    head.save(tmp_path / "h")  # no model metadata
    data = inp / "eval.jsonl"
    with pytest.raises(ConfigError, match="records no model.*--model"):
        predict(tmp_path / "h", data, cache_dir=tmp_path / "c")
    res = predict(tmp_path / "h", data, model="fakejob:bow", cache_dir=tmp_path / "c")
    X = enc.encode_texts([f"ripe {f}" for f in FRUITS])
    assert res.predictions.tolist() == head.predict(X).tolist()
    assert np.allclose(res.confidence, head.predict_proba(X).max(axis=1), atol=1e-6)
    assert res.accuracy == pytest.approx(np.mean(head.predict(X) == np.array(FRUITS)))
    j = res.to_json()
    assert j["n"] == 3 and [p["prediction"] for p in j["predictions"]] == res.predictions.tolist()
    # embeddings in: no model needed; the CSV of to_csv() is what --out gets
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "p.csv"
    res2 = predict(tmp_path / "h", tmp_path / "x.npy", out=out)
    assert out.read_bytes().decode() == res2.to_csv() and res2.accuracy is None
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".p.csv")]


def test_concurrent_run_to_the_same_out_is_refused_and_leftovers_cleaned(world, capsys):
    import fcntl

    tmp, inp, _ = world
    run = tmp / "run"
    lock = tmp / ".run.lock"
    with open(lock, "a+") as fh:  # another run holds the lock
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(_prime(inp, run)) == 2
        assert "another priming prime run is writing" in capsys.readouterr().err
        assert not run.exists()
    # what a SIGKILLed run leaves: a half-written temporary folder and a replaced old run
    (tmp / ".run.tmp-dead").mkdir()
    (tmp / ".run.tmp-dead" / "big.npy").write_bytes(b"0" * 1000)
    (tmp / ".run.old.dead").mkdir()
    (tmp / ".runs.tmp-other").mkdir()  # another run's folder: not ours to remove
    assert main(_prime(inp, run)) == 0
    left = sorted(p.name for p in tmp.iterdir() if p.name.startswith("."))
    assert left == [".runs.tmp-other"]


def test_eval_without_labels_says_so_and_still_predicts(world, capsys, caplog):
    tmp, inp, _ = world
    unl = inp / "unlabelled.jsonl"
    unl.write_text("\n".join(json.dumps({"text": f"ripe {f}"}) for f in FRUITS))
    args = _prime(inp, tmp / "run")
    args[args.index("--eval") + 1] = str(unl)
    with caplog.at_level("WARNING", logger="priming"):
        assert main(args) == 0
    assert "has no labels: no accuracy" in caplog.text
    assert "no accuracy: the eval data" in capsys.readouterr().out
    m = json.loads((tmp / "run" / "metrics.json").read_text())
    assert m["eval"] is None
    rows = (tmp / "run" / "predictions.csv").read_text().splitlines()[1:]
    assert len(rows) == 3 and all(r.split(",")[1] == "" for r in rows)
