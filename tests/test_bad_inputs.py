"""Bad input through the public entry points: one-line error naming the input, exit 2.

Every case here crashed with a traceback (or silently accepted the input) before the fix
it guards; the CLI runs in-process through ``priming.cli.main``.
"""

from __future__ import annotations

import numpy as np
import pytest

from priming.cli import main
from priming.data import load_embeddings
from priming.errors import DataError


def _cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# ------------------------------------------------------------------ embedding files


@pytest.mark.parametrize("name", ["empty.npy", "empty.npz"])
def test_empty_embedding_file_is_a_data_error(tmp_path, capsys, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(DataError, match=name):
        load_embeddings(tmp_path / name)
    rc, _, err = _cli(
        capsys, "embed", "--model", "precomputed", "--data", str(tmp_path / name),
        "--out", str(tmp_path / "cache"), "--no-progress",
    )  # fmt: skip
    assert rc == 2
    _one_line_error(err, name)


def test_truncated_npz_is_a_data_error(tmp_path):
    X = np.ones((4, 3), np.float32)
    np.savez(tmp_path / "e.npz", embeddings=X)
    data = (tmp_path / "e.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="t.npz"):
        load_embeddings(tmp_path / "t.npz")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_embeddings_are_refused_naming_file_and_row(tmp_path, capsys, bad):
    X = np.ones((5, 3), np.float32)
    X[3, 1] = bad
    np.savez(tmp_path / "nan.npz", embeddings=X, labels=np.arange(5))
    with pytest.raises(DataError, match=r"nan\.npz.*NaN or infinite.*row 3"):
        load_embeddings(tmp_path / "nan.npz")
    np.save(tmp_path / "nan.npy", X.astype(np.float16))  # memory-mapped path
    with pytest.raises(DataError, match="row 3"):
        load_embeddings(tmp_path / "nan.npy")
    rc, out, err = _cli(
        capsys, "embed", "--model", "precomputed", "--data", str(tmp_path / "nan.npz"),
        "--out", str(tmp_path / "cache"), "--no-progress",
    )  # fmt: skip
    assert rc == 2 and "precomputed embeddings" not in out
    _one_line_error(err, "nan.npz", "NaN")


def test_bad_labels_files(tmp_path):
    X = np.ones((2, 3), np.float32)
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(DataError, match="labels file .*missing.txt.* does not exist"):
        load_embeddings(tmp_path / "x.npy", labels=tmp_path / "missing.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match="cannot read labels"):
        load_embeddings(tmp_path / "x.npy", labels=tmp_path / "bin.txt")
    np.save(tmp_path / "l2d.npy", np.zeros((2, 2)))
    with pytest.raises(DataError, match="1-D"):
        load_embeddings(tmp_path / "x.npy", labels=tmp_path / "l2d.npy")


# ------------------------------------------------------------------ output folders


def test_embed_out_that_is_a_file_or_uncreatable(tmp_path, capsys):
    from _fake_encoder import PixelEncoder

    from priming.data import embed
    from priming.errors import ConfigError

    (tmp_path / "t.csv").write_text("text,label\nhello,a\nworld,b\n")
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        rc, _, err = _cli(
            capsys, "embed", "--model", "nosuch:model", "--data", str(tmp_path / "t.csv"),
            "--out", str(out), "--no-progress",
        )  # fmt: skip
        assert rc == 2
        _one_line_error(err, str(out))
    img = tmp_path / "imgs" / "a"
    img.mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (4, 4)).save(img / "x.png")
    with pytest.raises(ConfigError, match="afile.*not a folder"):
        embed(PixelEncoder(), tmp_path / "imgs", cache_dir=tmp_path / "afile")


@pytest.mark.parametrize("flag", ["--batch-size", "--shard-size"])
@pytest.mark.parametrize("value", ["0", "-3", "x"])
def test_embed_sizes_must_be_positive_before_the_model_loads(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exc:
        main(["embed", "--model", "nosuch:m", "--data", "d", "--out", "o", flag, value])
    assert exc.value.code == 2
    assert "positive integer" in capsys.readouterr().err


# ------------------------------------------------------------------ sweep


def _sweep_data(tmp_path):
    from priming.recipes.synthetic import make_subclusters

    Xtr, ytr, Xte, yte = make_subclusters(3, 1, 4, 6, 4, random_state=0)
    np.savez(tmp_path / "tr.npz", embeddings=Xtr, labels=ytr)
    np.savez(tmp_path / "te.npz", embeddings=Xte, labels=yte)
    np.savez(tmp_path / "te5.npz", embeddings=np.ones((4, 5), np.float32), labels=yte[:4])
    np.savez(tmp_path / "text3.npz", weights=np.ones((3, 3), np.float32), labels=np.arange(3))


def _write_sweep(tmp_path, name="s.yaml", output="res.csv", seeds="[0]", shots="[null]",
                 train="tr.npz", test="te.npz", extra=""):  # fmt: skip
    text = (
        f"output: {output}\nseeds: {seeds}\nshots: {shots}\n"
        f"datasets:\n  - {{dataset: syn, train: {train}, test: {test}{extra}}}\n"
        "heads: [qi2018]\n"
    )
    (tmp_path / name).write_text(text)
    return tmp_path / name


@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("s.json", '{"heads":', "not valid JSON"),
        ("s.yaml", b"\xff\xfe\x00bad", "cannot read sweep config"),
    ],
)
def test_sweep_unreadable_config(tmp_path, capsys, name, content, needle):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    rc, _, err = _cli(capsys, "sweep", "--config", str(p), "--no-progress")
    assert rc == 2
    _one_line_error(err, name, needle)


def test_sweep_config_directory(tmp_path, capsys):
    rc, _, err = _cli(capsys, "sweep", "--config", str(tmp_path))
    assert rc == 2
    _one_line_error(err, "is not a file")


@pytest.mark.parametrize(
    "kw, needle",
    [
        (dict(seeds="[]"), "seeds: empty list"),
        (dict(shots="[]"), "shots: empty list"),
        (dict(seeds="[-1]"), "seeds: -1 is not a non-negative integer"),
        (dict(output="res.txt"), "must end in .parquet or .csv"),
    ],
)
def test_sweep_config_values_rejected_up_front(tmp_path, capsys, kw, needle):
    _sweep_data(tmp_path)
    cfg = _write_sweep(tmp_path, **kw)
    rc, out, err = _cli(capsys, "sweep", "--config", str(cfg), "--no-progress")
    assert rc == 2 and needle in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("res")) == []


@pytest.mark.parametrize(
    "kw, needle",
    [
        (dict(test="te5.npz"), "different widths"),
        (dict(output="s.yaml/res.csv"), "s.yaml"),
        (dict(extra=", text_weights: text3.npz"), "width 3"),
        (dict(extra=", text_weights: s.yaml"), "cannot read text weights"),
    ],
)
def test_sweep_bad_data_or_output_fails_before_writing(tmp_path, capsys, kw, needle):
    _sweep_data(tmp_path)
    cfg = _write_sweep(tmp_path, **kw)
    rc, _, err = _cli(capsys, "sweep", "--config", str(cfg), "--no-progress")
    assert rc == 2
    _one_line_error(err, needle)
    assert not any(p.name.startswith("res") for p in tmp_path.iterdir())


def test_sweep_nan_embeddings_name_the_file(tmp_path, capsys):
    _sweep_data(tmp_path)
    with np.load(tmp_path / "tr.npz") as z:
        X, y = z["embeddings"].copy(), z["labels"]
    X[2, 0] = np.nan
    np.savez(tmp_path / "trnan.npz", embeddings=X, labels=y)
    cfg = _write_sweep(tmp_path, train="trnan.npz")
    rc, _, err = _cli(capsys, "sweep", "--config", str(cfg), "--no-progress")
    assert rc == 2
    _one_line_error(err, "trnan.npz", "NaN")
    assert not any(p.name.startswith("res") for p in tmp_path.iterdir())


# ------------------------------------------------------------------ report


def _good_results(tmp_path):
    rows = [
        {"backbone": "b", "dataset": f"d{g}", "task": "all", "config": c, "seed": s,
         "shots": -1, "top1": 0.5 + 0.1 * i + 0.01 * g}
        for i, c in enumerate(["x", "y", "z"]) for g in range(3) for s in range(2)
    ]  # fmt: skip
    import pandas as pd

    pd.DataFrame(rows).to_csv(tmp_path / "res.csv", index=False)
    return tmp_path / "res.csv"


@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("empty.csv", b"", "is empty"),
        ("header.csv", b"config,top1\n", "is empty"),
        ("junk.csv", b"a\nb\nc,d\n", "cannot read results file"),
        ("cols.csv", b"a,b\n1,2\n", "no column 'config'"),
        ("junk.parquet", b"not parquet", "cannot read results file"),
        ("res.txt", b"config,top1\nx,0.5\n", "unsupported format"),
    ],
)
def test_report_on_empty_or_malformed_table(tmp_path, capsys, name, content, needle):
    (tmp_path / name).write_bytes(content)
    out = tmp_path / "rep"
    rc, _, err = _cli(capsys, "report", str(tmp_path / name), "--out", str(out))
    assert rc == 2
    _one_line_error(err, name, needle)
    assert not out.exists()  # nothing half-written


def test_report_non_numeric_metric_and_bad_out(tmp_path, capsys):
    res = _good_results(tmp_path)
    out = tmp_path / "rep"
    rc, _, err = _cli(capsys, "report", str(res), "--out", str(out), "--metric", "backbone")
    assert rc == 2
    _one_line_error(err, "'backbone'", "not numeric")
    assert not out.exists()
    (tmp_path / "afile").write_text("x")
    rc, _, err = _cli(capsys, "report", str(res), "--out", str(tmp_path / "afile"))
    assert rc == 2
    _one_line_error(err, "afile", "not a folder")
    rc, out_text, _ = _cli(capsys, "report", str(res), "--out", str(out))
    assert rc == 0 and (out / "report.md").is_file()


@pytest.mark.parametrize("argv", [["--limit", "-1"], ["--limit", "0"], ["--workers", "0"]])
def test_sweep_cli_counts_must_be_positive(tmp_path, capsys, argv):
    # --limit -1 used to slice todo[:-1] and silently drop the last run
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--config", str(tmp_path / "s.yaml"), *argv])
    assert exc.value.code == 2 and "positive integer" in capsys.readouterr().err


def test_sweep_cli_output_override_suffix(tmp_path, capsys):
    _sweep_data(tmp_path)
    cfg = _write_sweep(tmp_path)
    rc, _, err = _cli(capsys, "sweep", "--config", str(cfg), "--output", str(tmp_path / "r.txt"))
    assert rc == 2
    _one_line_error(err, "r.txt", ".parquet or .csv")
    assert not any(p.name.startswith("r.") for p in tmp_path.iterdir())


# ------------------------------------------------------------------ reproduce / demo


def test_negative_seed_is_a_config_error(capsys):
    from priming.errors import ConfigError
    from priming.recipes.synthetic import run_subcluster_experiment

    with pytest.raises(ConfigError, match="seed must be a non-negative integer, got -1"):
        run_subcluster_experiment([1], {"q": "qi2018"}, seeds=[-1])
    rc, _, err = _cli(capsys, "demo", "--part", "imprint", "--d", "1", "--seed", "-1")
    assert rc == 2
    _one_line_error(err, "-1")


def test_reproduce_synthetic_out_is_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    rc, _, err = _cli(capsys, "reproduce", "synthetic", "--out", str(tmp_path / "afile"),
                      "--seeds", "0", "--d", "1")  # fmt: skip
    assert rc == 2
    _one_line_error(err, "afile", "not a folder")


def test_reproduce_imprint_bad_arguments_leave_no_output(tmp_path, capsys):
    emb = tmp_path / "emb" / "bb"
    emb.mkdir(parents=True)
    _sweep_data(tmp_path)
    (tmp_path / "tr.npz").rename(emb / "mnist_train.npz")
    (tmp_path / "te.npz").rename(emb / "mnist_test.npz")
    out = tmp_path / "out"
    rc, _, err = _cli(capsys, "reproduce", "imprint", "--embeddings", str(tmp_path / "emb"),
                      "--out", str(out), "--shots", "0")  # fmt: skip
    assert rc == 2 and "shots" in err and not out.exists()
    rc, _, err = _cli(capsys, "reproduce", "imprint", "--embeddings", str(emb / "mnist_train.npz"))
    assert rc == 2
    _one_line_error(err, "mnist_train.npz", "is not a folder")


# ------------------------------------------------------------------ heads


@pytest.mark.parametrize(
    "X, needle",
    [
        (np.where(np.eye(4, 3) > 0, np.nan, 1.0), "NaN"),
        (np.where(np.eye(4, 3) > 0, np.inf, 1.0), "infinity"),
        (np.ones(4), "Expected 2D array"),
    ],
)
def test_imprinted_head_data_errors_are_one_line(X, needle):
    from priming.heads import ImprintedHead

    with pytest.raises(DataError) as exc:
        ImprintedHead().fit(X, [0, 1, 0, 1])
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg and "HistGradientBoosting" not in msg, msg


def test_sweep_same_configuration_under_two_names_is_rejected_up_front(tmp_path, capsys):
    # used to print the grid, create <output>.parts and then fail with "two runs of the sweep
    # have the same configuration" without saying which
    _sweep_data(tmp_path)
    (tmp_path / "s.yaml").write_text(
        "output: res.csv\nseeds: [0, 0]\n"
        "datasets:\n  - {dataset: a, train: tr.npz, test: te.npz}\n"
        "  - {dataset: b, train: tr.npz, test: te.npz}\n"
        "heads:\n  - imprint-best\n  - {name: mine, generator: kmeans, n_proxies: 20}\n"
    )
    rc, out, err = _cli(capsys, "sweep", "--config", str(tmp_path / "s.yaml"), "--no-progress")
    assert rc == 2 and "Traceback" not in err
    assert "heads 'imprint-best', 'mine' are the same configuration" in err
    assert "datasets default/a/all, default/b/all are the same files" in err
    assert "seeds: repeated value(s) 0" in err
    assert not any(p.name.startswith("res") for p in tmp_path.iterdir())


def test_documented_sweep_example_is_valid(tmp_path):
    """The YAML example in docs/evaluation.md parses into the grid it describes."""
    import re
    from pathlib import Path

    import yaml

    from priming.eval.sweep import parse_sweep_config

    doc = (Path(__file__).parents[1] / "docs" / "evaluation.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(.*?)```", doc, re.S).group(1)
    data = yaml.safe_load(block)
    for d in data["datasets"]:
        for k in ("train", "test", "text_weights"):
            (tmp_path / d[k]).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / d[k]).write_bytes(b"")
    cfg = parse_sweep_config(data, tmp_path)
    assert not cfg.rejected
    assert len(cfg.heads) == len({(h.params, h.alpha) for h in cfg.heads}) >= 10
