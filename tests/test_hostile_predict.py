"""Hostile battery (issue 11), ``priming predict`` and saved heads: outputs over inputs,
odd numbers, damaged data and head folders. Every case: exit code 2, an error naming the
input with no traceback, no input file changed."""

import json
import shutil

import numpy as np
import pytest

from priming.errors import PrimingError
from priming.heads import PrimedHead, ZeroShotHead, load_head
from tests._fakes import BagOfWordsEncoder
from tests._hostile import cli, refused

FRUITS = ["apple", "banana", "cherry"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_predict")
    enc = BagOfWordsEncoder(dim=32)
    T = enc.encode_texts(FRUITS)
    caps = [f"a ripe {FRUITS[i % 3]} number {i}" for i in range(30)]
    X = enc.encode_texts(caps)
    y = [FRUITS[i % 3] for i in range(30)]
    PrimedHead(T, classes=FRUITS, alpha=0.5).fit(X, y).save(root / "head")
    ZeroShotHead(T, FRUITS).fit().save(root / "zs")
    np.save(root / "x.npy", enc.encode_texts(["ripe cherry", "an apple"]))
    return root


def predict_args(root, *extra, head=None, data=None):
    return ["predict", "--head", str(head or root / "head"), "--data", str(data or root / "x.npy"),
            "--no-progress", *extra]  # fmt: skip


# -- outputs over inputs ------------------------------------------------------------------
@pytest.mark.parametrize(
    "target", ["data", "head.json", "arrays.npz", "head_folder", "inside_head"]
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_out_never_replaces_an_input(world, capsys, target, overwrite):
    root = world
    out = {
        "data": root / "x.npy",
        "head.json": root / "head" / "head.json",
        "arrays.npz": root / "head" / "arrays.npz",
        "head_folder": root / "head",
        "inside_head": root / "head" / "p.csv",
    }[target]
    extra = ["--out", str(out), *(["--overwrite"] if overwrite else [])]
    refused(capsys, predict_args(root, *extra), "--out", inputs=root)
    assert not (root / "head" / "p.csv").exists()


def test_out_existing_file_needs_overwrite(world, tmp_path, capsys):
    f = tmp_path / "p.csv"
    f.write_text("precious")
    refused(capsys, predict_args(world, "--out", str(f)), "--overwrite", inputs=tmp_path)
    assert cli(predict_args(world, "--out", str(f), "--overwrite")) == 0
    assert f.read_text().startswith("id,prediction,confidence")
    capsys.readouterr()


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1", "1.5"])
def test_odd_batch_size(world, capsys, value):
    refused(capsys, predict_args(world, f"--batch-size={value}"), "--batch-size", inputs=world)


# -- damaged data -------------------------------------------------------------------------
def _data(tmp_path, case):
    f = tmp_path / ("d.npz" if case.startswith("npz") else "d.npy")
    if case == "npy_truncated":
        np.save(f, np.ones((4, 32), np.float32))
        f.write_bytes(f.read_bytes()[:100])
    elif case == "npy_garbage":
        f.write_bytes(b"not numpy at all")
    elif case == "npy_wrong_width":
        np.save(f, np.ones((2, 7), np.float32))
    elif case == "npy_nan":
        a = np.ones((2, 32), np.float32)
        a[0, 3] = np.nan
        np.save(f, a)
    elif case == "npy_1d":
        np.save(f, np.ones(32, np.float32))
    elif case == "npy_strings":
        np.save(f, np.array(["a", "b"]))
    elif case == "npz_no_embeddings":
        np.savez(f, other=np.ones((2, 32)))
    elif case == "npz_truncated":
        np.savez(f, embeddings=np.ones((2, 32)))
        f.write_bytes(f.read_bytes()[:60])
    return f


DATA_CASES = ["npy_truncated", "npy_garbage", "npy_wrong_width", "npy_nan", "npy_1d",
              "npy_strings", "npz_no_embeddings", "npz_truncated"]  # fmt: skip


@pytest.mark.parametrize("case", DATA_CASES)
def test_damaged_data(world, tmp_path, capsys, case):
    f = _data(tmp_path, case)
    refused(capsys, predict_args(world, data=f), f.name, inputs=world)


@pytest.mark.parametrize("what", ["missing", "a_file", "empty_folder"])
def test_head_is_not_a_head(world, tmp_path, capsys, what):
    h = tmp_path / "h"
    if what == "a_file":
        h.write_text("x")
    elif what == "empty_folder":
        h.mkdir()
    refused(capsys, predict_args(world, head=h), str(h), inputs=world)


# -- damaged head folders -----------------------------------------------------------------
def _damage(h, case):
    meta_path = h / "head.json"
    meta = json.loads(meta_path.read_text())
    if case == "json_garbled":
        meta_path.write_text('{"kind": "primed", ')
    elif case == "json_empty":
        meta_path.write_text("")
    elif case == "json_not_utf8":
        meta_path.write_bytes(b"\xff\xfe{}")
    elif case == "format_version_99":
        meta["format_version"] = 99
        meta_path.write_text(json.dumps(meta))
    elif case == "unknown_kind":
        meta["kind"] = "no-such-head"
        meta_path.write_text(json.dumps(meta))
    elif case == "npz_truncated":
        data = (h / "arrays.npz").read_bytes()
        (h / "arrays.npz").write_bytes(data[: len(data) // 2])
    elif case == "npz_empty":
        (h / "arrays.npz").write_bytes(b"")
    elif case == "alpha_out_of_range":
        params = meta.get("params", meta)
        key = "alpha" if "alpha" in params else None
        assert key, meta
        params[key] = 5.0
        meta_path.write_text(json.dumps(meta))


HEAD_CASES = ["json_garbled", "json_empty", "json_not_utf8", "format_version_99",
              "unknown_kind", "npz_truncated", "npz_empty"]  # fmt: skip


@pytest.mark.parametrize("kind", ["head", "zs"])
@pytest.mark.parametrize("case", HEAD_CASES)
def test_damaged_head_folder(world, tmp_path, capsys, kind, case):
    h = tmp_path / "h"
    shutil.copytree(world / kind, h)
    _damage(h, case)
    with pytest.raises(PrimingError, match="h"):
        load_head(h)
    refused(capsys, predict_args(world, head=h), str(h), inputs=tmp_path)


def test_head_with_alpha_out_of_range(world, tmp_path, capsys):
    h = tmp_path / "h"
    shutil.copytree(world / "head", h)
    _damage(h, "alpha_out_of_range")
    refused(capsys, predict_args(world, head=h), str(h), "alpha", inputs=tmp_path)
