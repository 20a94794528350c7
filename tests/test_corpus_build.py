import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_helpers import clip_retrieval_layout, write_laion

from priming.corpus import build_corpus, open_corpus
from priming.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]


def _all_rows(c):
    return c.rows(np.arange(c.n_rows)).to_pylist()


def test_build_clip_retrieval_layout_roundtrip(tmp_path):
    shards = [[f"photo number {i} of shard {s}" for i in range(7)] for s in range(3)]
    embs = clip_retrieval_layout(tmp_path / "laion", shards, dim=8)
    out = build_corpus(
        tmp_path / "laion",
        embeddings=tmp_path / "laion",
        out=tmp_path / "c",
        workers=2,
        embedding_model="toy",
    )
    c = open_corpus(out)
    assert c.n_rows == 21 and c.dim == 8 and c.has_embeddings and c.embedding_model == "toy"
    rows = _all_rows(c)
    assert [r["caption"] for r in rows] == [cap for s in shards for cap in s]
    assert rows[8]["key"] == "metadata_1-1" and rows[8]["width"] == 640 and rows[8]["nsfw"] is False
    full = np.concatenate(embs)
    # stored as float16: exactly the float16 rounding of the input
    np.testing.assert_array_equal(
        c.embeddings(np.arange(21)), full.astype(np.float16).astype(np.float32)
    )
    m = json.loads((out / "manifest.json").read_text())
    assert m["schema_version"] == 1 and m["complete"] and len(m["shards"]) == 3
    assert [s["row_offset"] for s in m["shards"]] == [0, 7, 14]
    for s in m["shards"]:
        assert len(s["db_sha256"]) == 64 and len(s["embeddings_sha256"]) == 64
    assert np.load(out / m["shards"][0]["embeddings"]).dtype == np.float16
    # nothing temporary left behind
    assert not [p for p in (out / "shards").iterdir() if ".tmp" in p.name]


def test_one_npy_per_parquet_and_other_spellings(tmp_path):
    caps = ["a red fox", "a blue bird", "unsafe thing"]
    t = pa.table(
        {
            "url": ["u0", "u1", "u2"],
            "caption": caps,
            "punsafe": [0.1, 0.2, 0.9],
            "width": [1.0, 2.0, 3.0],
            "height": [4, 5, 6],
            "key": ["k0", "k1", "k2"],
        }
    )
    pq.write_table(t, tmp_path / "part.parquet")
    np.save(tmp_path / "part.npy", np.eye(3, 4, dtype=np.float32))
    c = open_corpus(
        build_corpus(
            [tmp_path / "part.parquet"], embeddings=tmp_path, out=tmp_path / "c", workers=1
        )
    )
    rows = _all_rows(c)
    assert [r["url"] for r in rows] == ["u0", "u1", "u2"]
    assert [r["nsfw"] for r in rows] == [False, False, True]
    assert [r["key"] for r in rows] == ["k0", "k1", "k2"] and rows[0]["width"] == 1
    assert c.embeddings([2]).tolist() == [[0, 0, 1, 0]]


def test_parallel_and_serial_builds_agree(tmp_path):
    shards = [[f"item {i} {'dog' if i % 3 == 0 else 'cat'}" for i in range(50)] for _ in range(4)]
    for s, caps in enumerate(shards):
        write_laion(tmp_path / "in" / f"m{s}.parquet", caps)
    a = open_corpus(build_corpus(str(tmp_path / "in" / "*.parquet"), out=tmp_path / "a", workers=1))
    b = open_corpus(build_corpus(str(tmp_path / "in" / "*.parquet"), out=tmp_path / "b", workers=3))
    assert _all_rows(a) == _all_rows(b)
    assert a.fingerprint == b.fingerprint
    assert a.search_captions({"d": ["dog"]}).counts == {"d": 4 * 17}


def test_missing_caption_column_lists_columns_and_accepted_names(tmp_path):
    pq.write_table(pa.table({"URL": ["u"], "title": ["x"]}), tmp_path / "m.parquet")
    with pytest.raises(DataError) as exc:
        build_corpus(tmp_path / "m.parquet", out=tmp_path / "c")
    msg = str(exc.value)
    assert "URL, title" in msg and "TEXT" in msg and "caption" in msg
    assert not (tmp_path / "c").exists()


def test_bad_captions_skipped_or_repaired_and_counted(tmp_path):
    caps = [b"good caption", None, b"", b"   ", b"caf\xe9 latte", b"ok \xff\xfe bytes"]
    pq.write_table(
        pa.table({"URL": [f"u{i}" for i in range(6)], "TEXT": pa.array(caps, pa.binary())}),
        tmp_path / "m.parquet",
    )
    c = open_corpus(build_corpus(tmp_path / "m.parquet", out=tmp_path / "c"))
    stats = c.manifest["stats"]
    assert (
        stats["input_rows"] == 6
        and stats["null_or_empty_caption"] == 3
        and stats["repaired_utf8"] == 2
    )
    rows = _all_rows(c)
    assert [r["url"] for r in rows] == ["u0", "u4", "u5"]
    assert rows[1]["caption"] == "caf\ufffd latte"
    assert c.search_captions({"x": ["latte"]}).counts == {"x": 1}


def test_embedding_row_count_mismatch_names_both(tmp_path):
    write_laion(tmp_path / "m.parquet", ["a", "b", "c"])
    np.save(tmp_path / "m.npy", np.zeros((2, 4), np.float32))
    with pytest.raises(DataError, match=r"2 rows.*m\.parquet.*3 rows"):
        build_corpus(tmp_path / "m.parquet", embeddings=tmp_path / "m.npy", out=tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_nonfinite_embedding_rows_excluded_and_counted(tmp_path):
    write_laion(tmp_path / "m.parquet", ["r0", "r1", "r2", "r3", "r4"])
    e = np.arange(20, dtype=np.float32).reshape(5, 4)
    e[1, 2] = np.nan
    e[3, 0] = np.inf
    e[4, 0] = 1e6  # beyond float16: would be stored as inf
    np.save(tmp_path / "m.npy", e)
    c = open_corpus(
        build_corpus(tmp_path / "m.parquet", embeddings=tmp_path / "m.npy", out=tmp_path / "c")
    )
    assert c.manifest["stats"]["nonfinite_embedding"] == 3
    assert [r["caption"] for r in _all_rows(c)] == ["r0", "r2"]
    np.testing.assert_array_equal(c.embeddings([0, 1]), e[[0, 2]])


def test_dimension_differs_between_shards(tmp_path):
    for i, d in enumerate((4, 5)):
        write_laion(tmp_path / "metadata" / f"metadata_{i}.parquet", ["x", "y"])
        (tmp_path / "img_emb").mkdir(exist_ok=True)
        np.save(tmp_path / "img_emb" / f"img_emb_{i}.npy", np.ones((2, d), np.float32))
    with pytest.raises(DataError, match="dimension differs between shards"):
        build_corpus(tmp_path, embeddings=tmp_path, out=tmp_path / "c")


def test_bad_paths_and_out_dir(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        build_corpus(tmp_path / "nope.parquet", out=tmp_path / "c")
    with pytest.raises(DataError, match="matches no parquet"):
        build_corpus(str(tmp_path / "*.parquet"), out=tmp_path / "c")
    write_laion(tmp_path / "m.parquet", ["x"])
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        build_corpus(tmp_path / "m.parquet", out=tmp_path / "busy")
    with pytest.raises(ConfigError, match="workers"):
        build_corpus(tmp_path / "m.parquet", out=tmp_path / "c", workers=0)
    with pytest.raises(DataError, match="no file for metadata"):
        build_corpus(tmp_path / "m.parquet", embeddings=tmp_path / "busy", out=tmp_path / "c")


def test_rebuild_same_inputs_is_noop_other_inputs_refused(tmp_path):
    write_laion(tmp_path / "a.parquet", ["x y"])
    write_laion(tmp_path / "b.parquet", ["z"])
    out = build_corpus(tmp_path / "a.parquet", out=tmp_path / "c")
    before = (out / "manifest.json").read_text()
    build_corpus(tmp_path / "a.parquet", out=tmp_path / "c")
    assert (out / "manifest.json").read_text() == before
    with pytest.raises(ConfigError, match="other inputs"):
        build_corpus(tmp_path / "b.parquet", out=tmp_path / "c")


def test_unfinished_corpus_refused_by_open(tmp_path):
    write_laion(tmp_path / "a.parquet", ["x y"])
    out = build_corpus(tmp_path / "a.parquet", out=tmp_path / "c")
    m = json.loads((out / "manifest.json").read_text())
    m["complete"] = False
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DataError, match="unfinished"):
        open_corpus(out)
    with pytest.raises(DataError, match="not a corpus"):
        open_corpus(tmp_path)


def test_killed_build_resumes_without_duplicates(tmp_path):
    n_shards, per = 24, 3000
    for s in range(n_shards):
        write_laion(
            tmp_path / "in" / f"m{s:02d}.parquet",
            [
                f"shard {s} row {i} {'golden retriever' if i % 10 == 0 else 'tabby cat'}"
                for i in range(per)
            ],
        )
    out = tmp_path / "c"
    code = (
        "import sys; from priming.corpus import build_corpus; "
        f"build_corpus({str(tmp_path / 'in')!r}, out={str(out)!r}, workers=1)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    manifest = out / "manifest.json"
    deadline = time.time() + 60
    n_done = 0
    try:
        while time.time() < deadline and proc.poll() is None:
            if manifest.exists():
                try:
                    n_done = len(json.loads(manifest.read_text())["shards"])
                except ValueError:  # never half-written: would fail the test below
                    raise
                if n_done >= 2:
                    break
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    m = json.loads(manifest.read_text())
    assert not m["complete"] and 2 <= len(m["shards"]) < n_shards, "the build was not killed midway"
    with pytest.raises(DataError, match="unfinished"):
        open_corpus(out)
    build_corpus(tmp_path / "in", out=out, workers=2)
    c = open_corpus(out)
    assert c.n_rows == n_shards * per
    captions = [r["caption"] for r in _all_rows(c)]
    assert len(set(captions)) == len(captions) == n_shards * per
    assert captions[per * 5] == "shard 5 row 0 golden retriever"
    assert c.search_captions({"dog": ["golden retriever"]}).counts["dog"] == n_shards * per // 10
    assert not [p for p in (out / "shards").iterdir() if ".tmp" in p.name]
    assert len(list((out / "shards").glob("*.sqlite"))) == n_shards
