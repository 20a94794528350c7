"""Hostile battery (issue 11), ``priming corpus …``, ``embed``, ``sweep``, ``reproduce``,
``browse``: odd numbers, outputs over inputs, damaged shards and parquet files. Every case:
exit code 2, an error naming the input with no traceback, no input file changed.

Failures that live in code other helpers own (corpus/, eval/, cli/corpus.py, …) are
``xfail(strict=True)`` with the reason, so they flip when fixed."""

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests._fakes import BagOfWordsEncoder, write_text_corpus
from tests._hostile import cli
from tests._hostile import refused as _refused
from tests.corpus_helpers import write_laion

FRUITS = ["apple", "banana", "cherry"]


class _Encoder(BagOfWordsEncoder):
    device = "cpu"
    precision = "fp32"


def xfail(reason):
    return pytest.mark.xfail(strict=True, reason=f"issue 11: {reason}")


def refused(capsys, argv, *needles, inputs=None):
    """As :func:`tests._hostile.refused`; an option may be named as --x-y or x_y."""
    return _refused(capsys, argv, *needles, inputs=inputs, option_names=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from priming.encoders import ENCODERS, register_encoder

    if "fakehostile" not in ENCODERS:
        register_encoder("fakehostile")(lambda spec, device, precision: _Encoder(dim=32))
    root = tmp_path_factory.mktemp("hostile_corpus")
    enc = BagOfWordsEncoder(dim=32)
    write_text_corpus(root, [f"a ripe {FRUITS[i % 3]} number {i}" for i in range(30)], enc)
    (root / "classes.txt").write_text("\n".join(FRUITS) + "\n")
    return root


# -- odd numbers --------------------------------------------------------------------------


def _numeric_cases():
    c = "{corpus}"
    cases = []
    for v in ["0", "-1", "nan", "inf"]:
        cases += [
            (["corpus", "search", c, "apple", "--limit", v], "--limit", None),
            (
                [
                    "corpus",
                    "export-urls",
                    c,
                    "apple",
                    "--limit-per-label",
                    v,
                    "--out",
                    "{tmp}/u.parquet",
                ],
                "--limit-per-label",
                None,
            ),  # fmt: skip
            (
                ["corpus", "build", "--metadata", "{src}", "--out", "{tmp}/c", "--workers", v],
                "--workers",
                None,
            ),  # fmt: skip
            (["corpus", "index", c, "--m", v], "--m", None),
            (["corpus", "index", c, "--nbits", v], "--nbits", None),
            (["corpus", "index", c, "--train-size", v], "--train-size", None),
            (
                [
                    "embed",
                    "--model",
                    "fakehostile:bow",
                    "--data",
                    "{src}",
                    "--out",
                    "{tmp}/e",
                    "--batch-size",
                    v,
                ],
                "--batch-size",
                None,
            ),  # fmt: skip
            (
                [
                    "embed",
                    "--model",
                    "fakehostile:bow",
                    "--data",
                    "{src}",
                    "--out",
                    "{tmp}/e",
                    "--workers",
                    v,
                ],
                "--workers",
                None,
            ),  # fmt: skip
            (
                [
                    "embed",
                    "--model",
                    "fakehostile:bow",
                    "--data",
                    "{src}",
                    "--out",
                    "{tmp}/e",
                    "--shard-size",
                    v,
                ],
                "--shard-size",
                None,
            ),  # fmt: skip
            (
                ["corpus", "embed", c, "--model", "fakehostile:bow", "--batch-size", v],
                "--batch-size",
                None,
            ),
            (["browse", c, "--port", v], "--port", None),
        ]
        cases.append((["corpus", "index", c, "--nlist", v], "--nlist", None))
    return cases


NUMERIC = _numeric_cases()


@pytest.mark.parametrize(
    ("argv", "needle", "bug"),
    [pytest.param(*c, marks=xfail(c[2]) if c[2] else ()) for c in NUMERIC],
    ids=[f"{' '.join(a[:2])}{n}={a[a.index(n) + 1]}" for a, n, _ in NUMERIC],
)
def test_odd_numbers_are_refused(world, tmp_path, capsys, argv, needle, bug):
    subst = {"{corpus}": str(world / "corpus"), "{src}": str(world / "corpus-src")}
    argv = [subst.get(a, a).replace("{tmp}", str(tmp_path)) for a in argv]
    refused(capsys, argv, needle, inputs=world)


# -- outputs over inputs ------------------------------------------------------------------
def test_export_urls_never_overwrites_without_overwrite(world, capsys):
    before = (world / "classes.txt").read_bytes()
    argv = ["corpus", "export-urls", str(world / "corpus"), "--classes", str(world / "classes.txt"),
            "--out", str(world / "classes.txt")]  # fmt: skip
    refused(capsys, argv, "classes.txt", inputs=world)
    assert (world / "classes.txt").read_bytes() == before


@pytest.mark.parametrize("suffix", [".csv", ".txt", ".json"])
def test_export_urls_format_follows_the_extension_or_is_refused(world, tmp_path, capsys, suffix):
    out = tmp_path / f"u{suffix}"
    rc = cli(["corpus", "export-urls", str(world / "corpus"), "apple", "--out", str(out)])
    err = capsys.readouterr().err
    if rc == 0:  # written: then in the format its name says, not parquet bytes
        assert not out.read_bytes().startswith(b"PAR1"), f"parquet bytes in {out.name}"
    else:
        assert rc == 2 and "Traceback" not in err and out.name in err, err


def test_corpus_build_out_is_its_metadata_folder(world, capsys):
    src = world / "corpus-src"
    refused(capsys, ["corpus", "build", "--metadata", str(src), "--out", str(src),
                     "--no-progress"], str(src), inputs=world)  # fmt: skip


def test_corpus_build_out_is_a_foreign_folder(world, tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    argv = ["corpus", "build", "--metadata", str(world / "corpus-src"), "--out",
            str(tmp_path / "mine"), "--no-progress"]  # fmt: skip
    refused(capsys, argv, str(tmp_path / "mine"), inputs=tmp_path)


def test_embed_out_is_its_data(world, tmp_path, capsys):
    d = tmp_path / "d.npy"
    np.save(d, np.ones((2, 4), np.float32))
    refused(
        capsys,
        ["embed", "--model", "fakehostile:bow", "--data", str(d), "--out", str(d)],
        inputs=tmp_path,
    )


# -- damaged corpora ------------------------------------------------------------------------
@pytest.fixture
def damaged(world, tmp_path):
    c = tmp_path / "corpus"
    shutil.copytree(world / "corpus", c)
    return c


def _truncate_shard(c):
    shard = sorted((c / "shards").glob("*.sqlite"))[0]
    shard.write_bytes(shard.read_bytes()[:1000])
    return shard


def test_search_on_a_truncated_shard_names_it(damaged, capsys):
    shard = _truncate_shard(damaged)
    refused(capsys, ["corpus", "search", str(damaged), "apple"], shard.name)


def test_info_verify_on_a_truncated_shard(damaged, capsys):
    shard = _truncate_shard(damaged)
    rc = cli(["corpus", "info", str(damaged), "--verify"])
    out = capsys.readouterr()
    assert rc != 0 and "Traceback" not in out.err
    assert shard.name in out.err + out.out


@pytest.mark.parametrize("damage", ["manifest_garbled", "manifest_missing", "manifest_list"])
def test_damaged_manifest_is_named(damaged, capsys, damage):
    m = damaged / "manifest.json"
    if damage == "manifest_garbled":
        m.write_text('{"shards": [')
    elif damage == "manifest_missing":
        m.unlink()
    else:
        m.write_text(json.dumps([1, 2]))
    refused(capsys, ["corpus", "info", str(damaged)], str(damaged))


# -- damaged parquet metadata -----------------------------------------------------------------
def _parquet(path, case):
    n = 4
    if case == "width_strings":
        write_laion(path, [f"cap {i}" for i in range(n)], WIDTH=["wide"] * n)
    elif case == "caption_list":
        write_laion(path, [[f"cap {i}"] for i in range(n)])
    elif case == "caption_int":
        write_laion(path, list(range(n)))
    elif case == "zero_rows":
        write_laion(path, [])
    elif case == "no_caption_column":
        pq.write_table(pa.table({"URL": ["u"] * n}), path)
    elif case == "truncated":
        write_laion(path, [f"cap {i}" for i in range(n)])
        path.write_bytes(path.read_bytes()[:50])
    elif case == "not_parquet":
        path.write_text("url,caption\nu,c\n")
    return path


PARQUET = {  # case -> the reason of an xfail, None when it behaves
    "width_strings": None,
    "caption_list": None,
    "caption_int": None,
    "zero_rows": None,
    "no_caption_column": None,
    "truncated": None,
    "not_parquet": None,
}


@pytest.mark.parametrize(
    "case", [pytest.param(k, marks=xfail(v) if v else ()) for k, v in PARQUET.items()]
)
def test_bad_parquet_metadata(tmp_path, capsys, case):
    src = tmp_path / "src"
    src.mkdir()
    f = _parquet(src / "part-0.parquet", case)
    out = tmp_path / "c"
    refused(capsys, ["corpus", "build", "--metadata", str(f), "--out", str(out),
                     "--no-progress"], f.name, inputs=src)  # fmt: skip


# -- sweep, reproduce, browse ---------------------------------------------------------------
SWEEP = {  # case -> (change to a valid config, what the error must name)
    "alpha_nan": ({"heads": [{"name": "p", "alpha": [2, float("nan")]}]}, "alpha"),
    "workers_zero": ({"workers": 0}, "workers"),
    "seeds_strings": ({"seeds": ["a"]}, "seeds"),
    "heads_empty": ({"heads": []}, "heads"),
    "missing_train": (
        {"datasets": [{"backbone": "b", "dataset": "d", "train": "no.npz", "test": "no.npz"}]},
        "no.npz",
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", sorted(SWEEP))
def test_bad_sweep_config(tmp_path, capsys, case):
    import yaml

    rng = np.random.default_rng(0)
    (tmp_path / "emb").mkdir()
    for part in ("train", "test"):
        np.savez(tmp_path / "emb" / f"toy_{part}.npz", embeddings=rng.normal(size=(8, 3)),
                 labels=np.arange(8) % 2)  # fmt: skip
    cfg = {"name": "s", "output": "out/r.csv", "seeds": [0], "heads": ["qi2018"],
           "datasets": [{"backbone": "bb", "dataset": "toy", "train": "emb/toy_train.npz",
                         "test": "emb/toy_test.npz"}]}  # fmt: skip
    cfg.update(SWEEP[case][0])
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(cfg))
    argv = ["sweep", "--config", str(p), "--no-progress"]
    refused(capsys, argv, SWEEP[case][1], inputs=tmp_path / "emb")
    assert not (tmp_path / "out").exists()


def test_sweep_missing_config(tmp_path, capsys):
    refused(capsys, ["sweep", "--config", str(tmp_path / "none.yaml")], "none.yaml")


@pytest.mark.parametrize("argv", [["reproduce", "nope"], ["reproduce", "synthetic", "--d", "-1"],
                                  ["reproduce", "synthetic", "--d", "nan"]])  # fmt: skip
def test_bad_reproduce_args(tmp_path, capsys, argv):
    refused(capsys, [*argv, "--out", str(tmp_path / "r")] if len(argv) > 2 else argv)


def test_browse_missing_path(tmp_path, capsys):
    refused(capsys, ["browse", str(tmp_path / "nothing")], "nothing")
