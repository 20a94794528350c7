"""Corpus build/search through the executor seam, progress in rows, and damaged inputs."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_helpers import clip_retrieval_layout, write_laion

from priming.corpus import build_corpus, fill_embeddings, open_corpus
from priming.errors import DataError
from priming.progress import ProgressEvent

SHARDS = [[f"a photo of a {w} number {i}" for i in range(9)] for w in ("cat", "dog", "cat dog")]


def _corpus_state(path):
    c = open_corpus(path)
    rows = c.rows(np.arange(c.n_rows)).to_pylist()
    emb = c.embeddings(np.arange(c.n_rows))
    shards = [(s["name"], s["n_rows"], s["db_sha256"]) for s in c.manifest["shards"]]
    c.close()
    return rows, emb, shards


@pytest.mark.parametrize("executor", ["local", "inline", "thread-pool"])
def test_build_gives_the_same_corpus_on_every_executor(tmp_path, executor):
    clip_retrieval_layout(tmp_path / "laion", SHARDS, dim=8)
    ref = build_corpus(tmp_path / "laion", tmp_path / "laion", out=tmp_path / "ref", workers=1)
    if executor == "thread-pool":
        with ThreadPoolExecutor(2) as pool:
            out = build_corpus(
                tmp_path / "laion", tmp_path / "laion", out=tmp_path / "x", executor=pool
            )
    else:
        out = build_corpus(
            tmp_path / "laion", tmp_path / "laion", out=tmp_path / "x", workers=2,
            executor=executor,
        )  # fmt: skip
    rows_a, emb_a, shards_a = _corpus_state(ref)
    rows_b, emb_b, shards_b = _corpus_state(out)
    assert rows_a == rows_b and shards_a == shards_b
    np.testing.assert_array_equal(emb_a, emb_b)


def test_build_reports_progress_in_rows(tmp_path):
    clip_retrieval_layout(tmp_path / "laion", SHARDS, dim=8)
    events: list[ProgressEvent] = []
    build_corpus(tmp_path / "laion", out=tmp_path / "c", workers=1, progress=events.append)
    assert {e.task for e in events} == {"build corpus"}
    assert {e.total for e in events} == {27} and {e.unit for e in events} == {"rows"}
    assert [e.done for e in events if e.state == "advance"] == [0, 9, 18, 27]
    assert events[0].state == "start" and events[-1].state == "end"


def test_build_accepts_the_old_progress_forms(tmp_path):
    clip_retrieval_layout(tmp_path / "laion", SHARDS, dim=8)
    calls = []
    build_corpus(tmp_path / "laion", out=tmp_path / "c", workers=1, progress=True)
    build_corpus(
        tmp_path / "laion",
        out=tmp_path / "d",
        workers=1,
        progress=lambda d, n: calls.append((d, n)),
    )
    assert calls[-1] == (27, 27)


def test_nan_width_is_stored_as_null(tmp_path):
    src = write_laion(tmp_path / "m.parquet", ["a cat", "a dog", "a cow"])
    t = pq.read_table(src)
    t = t.set_column(t.schema.get_field_index("WIDTH"), "WIDTH", pa.array([640.0, np.nan, np.inf]))
    pq.write_table(t, src)
    c = open_corpus(build_corpus(src, out=tmp_path / "c", workers=1))
    assert c.rows([0, 1, 2]).column("width").to_pylist() == [640, None, None]


@pytest.mark.parametrize(
    ("column", "values", "what"),
    [
        ("WIDTH", ["wide", "narrow"], "'WIDTH' has type string"),
        ("TEXT", [["a", "cat"], ["a", "dog"]], "'TEXT' has type list<"),
        ("TEXT", [1, 2], "'TEXT' has type int64"),
    ],
)
def test_wrong_column_types_name_the_file_before_writing(tmp_path, column, values, what):
    src = write_laion(tmp_path / "m.parquet", ["a cat", "a dog"])
    t = pq.read_table(src)
    t = t.set_column(t.schema.get_field_index(column), column, pa.array(values))
    pq.write_table(t, src)
    with pytest.raises(DataError, match="m.parquet") as err:
        build_corpus(src, out=tmp_path / "c", workers=1)
    assert what in str(err.value)
    assert not (tmp_path / "c").exists()  # nothing half-built: fixing the file and rerunning works


def test_zero_row_input_refuses_to_build(tmp_path):
    src = write_laion(tmp_path / "m.parquet", [])
    with pytest.raises(DataError, match="0 rows"):
        build_corpus(src, out=tmp_path / "c", workers=1)
    assert not (tmp_path / "c").exists()


def test_all_inf_embeddings_refuse_to_build(tmp_path):
    src = write_laion(tmp_path / "m.parquet", ["a cat", "a dog"])
    np.save(tmp_path / "m.npy", np.full((2, 4), np.inf, np.float32))
    with pytest.raises(DataError, match="no usable row.*2 with a NaN/inf embedding"):
        build_corpus(src, embeddings=tmp_path / "m.npy", out=tmp_path / "c", workers=1)
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["complete"] is False
    with pytest.raises(DataError, match="unfinished"):
        open_corpus(tmp_path / "c")


# --------------------------------------------------------------------------- images
class _MeanColour:
    """A tiny image 'encoder': the mean RGB colour and the image size, as features."""

    name, fingerprint, dim, modality = "mean-colour", "mean-colour-1", 5, "image"

    def encode_images(self, images, batch_size=32, progress=False):
        out = []
        for img in images:
            a = np.asarray(img, dtype=np.float32)
            out.append([*a.reshape(-1, 3).mean(0) / 255, img.size[0] / 100, img.size[1] / 100])
        return np.asarray(out, np.float32)


def _tar_of_images(tmp_path, sizes):
    import io
    import tarfile

    from PIL import Image

    with tarfile.open(tmp_path / "00000.tar", "w") as tf:
        for rid, (w, h) in enumerate(sizes):
            buf = io.BytesIO()
            Image.new("RGB", (w, h), (10 * rid, 20, 30)).save(buf, "PNG")
            for name, data in (
                (f"{rid:05d}.png", buf.getvalue()),
                (f"{rid:05d}.json", json.dumps({"row_id": rid}).encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return tmp_path / "00000.tar"


@pytest.fixture
def image_corpus(tmp_path):
    pytest.importorskip("PIL")
    src = write_laion(tmp_path / "m.parquet", [f"image {i}" for i in range(5)])
    corpus = build_corpus(src, out=tmp_path / "c", workers=1)
    tar = _tar_of_images(tmp_path, [(8, 6), (10, 10), (40, 40), (7, 9), (12, 4)])
    return corpus, tar


def test_default_image_decoder_refuses_oversize_images(image_corpus, monkeypatch):
    import priming.images

    corpus, tar = image_corpus
    monkeypatch.setattr(priming.images, "DEFAULT_MAX_PIXELS", 1000)  # 40x40 is over it
    fill_embeddings(corpus, _MeanColour(), images=tar, workers=1)
    m = json.loads((corpus / "manifest.json").read_text())
    assert m["image_stats"] == {"embedded": 4, "corrupt": 1, "no_image": 0}
    ((source, reason),) = m["shards"][0]["image_stats"]["corrupt_examples"]
    assert source == "00000.tar/00002"
    assert reason.startswith("00000.tar/00002: image of 40x40 = 1600 pixels exceeds the limit")
    c = open_corpus(corpus)
    assert c.has_embedding([0, 1, 2, 3, 4]).tolist() == [True, True, False, True, True]


@pytest.mark.parametrize("executor", ["inline", "thread-pool", "process-pool"])
def test_image_embedding_is_the_same_on_every_executor(image_corpus, executor):
    from priming.exec import process_pool

    corpus, tar = image_corpus
    events = []
    if executor == "inline":
        fill_embeddings(
            corpus, _MeanColour(), images=tar, executor="inline", progress=events.append
        )
    else:
        pool = ThreadPoolExecutor(3) if executor == "thread-pool" else process_pool(2)
        with pool:
            fill_embeddings(corpus, _MeanColour(), images=tar, executor=pool)
    c = open_corpus(corpus)
    got = c.embeddings(np.arange(5))
    want = np.array([[10 * r / 255, 20 / 255, 30 / 255, w / 100, h / 100]
                     for r, (w, h) in enumerate([(8, 6), (10, 10), (40, 40), (7, 9), (12, 4)])])  # fmt: skip
    np.testing.assert_allclose(got, want, atol=2e-3)  # stored as float16
    if events:
        assert events[-1].task == "embed images" and events[-1].done == events[-1].total == 5


# --------------------------------------------------------------------------- search
QUERIES = {"cat": ["cat"], "dog": ["dog", "puppy"]}


@pytest.fixture
def three_shards(tmp_path):
    clip_retrieval_layout(tmp_path / "laion", SHARDS, dim=8)
    return build_corpus(tmp_path / "laion", out=tmp_path / "c", workers=1)


@pytest.mark.parametrize("limit", [None, 3])
@pytest.mark.parametrize("executor", ["local", "inline", "thread-pool", "process-pool"])
def test_caption_search_is_the_same_on_every_executor(three_shards, executor, limit):
    from priming.exec import process_pool

    with open_corpus(three_shards) as c:
        ref = c.search_captions(QUERIES, limit_per_label=limit)
    if executor in ("local", "inline"):
        c = open_corpus(three_shards, executor=executor)
        got = c.search_captions(QUERIES, limit_per_label=limit)
    else:
        pool = ThreadPoolExecutor(2) if executor == "thread-pool" else process_pool(2)
        with pool, open_corpus(three_shards) as c:
            got = c.search_captions(QUERIES, limit_per_label=limit, executor=pool)
    assert got.table.equals(ref.table) and got.ambiguous.equals(ref.ambiguous)
    assert got.counts == ref.counts
    # a brute-force oracle: 'cat' alone in shard 0, 'dog' alone in shard 1, both in shard 2
    want = 9 if limit is None else 3
    assert ref.counts == {"cat": want, "dog": want} and ref.ambiguous.num_rows == 9


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 3])
    else:  # garbled: the same size, the header and first pages overwritten
        path.write_bytes(b"\x5a" * 4096 + data[4096:])


@pytest.mark.parametrize("how", ["truncated", "garbled"])
def test_a_damaged_shard_is_named_and_info_says_so(three_shards, how, capsys):
    from priming.cli import main

    db = three_shards / "shards" / "shard-00001.sqlite"
    _damage(db, how)
    c = open_corpus(three_shards)
    with pytest.raises(DataError, match=r"shard shard-00001 .* --verify"):
        c.search_captions(QUERIES)
    with pytest.raises(DataError, match=r"shard shard-00001"):
        c.rows([10])
    assert main(["corpus", "search", str(three_shards), "dog"]) != 0
    err = capsys.readouterr().err
    assert "shard-00001" in err and "--verify" in err and "Traceback" not in err
    assert main(["corpus", "info", str(three_shards)]) == 1
    err = capsys.readouterr().err
    assert "shards/shard-00001.sqlite" in err and "damaged" in err


def test_info_verify_finds_a_same_size_change(three_shards, capsys):
    from priming.cli import main

    assert main(["corpus", "info", str(three_shards)]) == 0
    assert "files       ok" in capsys.readouterr().out
    db = three_shards / "shards" / "shard-00002.sqlite"
    data = bytearray(db.read_bytes())
    data[-1] ^= 0xFF  # one byte of the last page: opens fine, checksum differs
    db.write_bytes(bytes(data))
    assert main(["corpus", "info", str(three_shards), "--verify"]) == 1
    assert "shard-00002.sqlite: checksum mismatch" in capsys.readouterr().err


# --------------------------------------------------------------------------- kills
def _children(pid: int) -> list[int]:
    from pathlib import Path

    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self"), reason="needs /proc")
def test_sigkilled_corpus_build_leaves_no_worker_alive(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    for s in range(40):
        write_laion(
            tmp_path / "in" / f"m{s:02d}.parquet", [f"s{s} row {i} a cat" for i in range(4000)]
        )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    cmd = [sys.executable, "-m", "priming", "corpus", "build", "--metadata", str(tmp_path / "in"),
           "--out", str(tmp_path / "c"), "--workers", "2", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest, workers = tmp_path / "c" / "manifest.json", []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            workers = _children(proc.pid)
            if len(workers) >= 2 and manifest.exists() and '"name"' in manifest.read_text():
                break
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert len(workers) >= 2, "the build finished or never started its workers"
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.05)
    left = [p for p in workers if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"workers {left} outlived the SIGKILLed build"
    assert not json.loads(manifest.read_text())["complete"]


class _Chars:
    name, fingerprint, dim = "chars", "chars-1", 4

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = 0, fail_after

    def encode_texts(self, texts, batch_size=32, progress=False):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt  # an interrupted run
        return np.array([[len(t), t.count("a"), t.count("o"), 1.0] for t in texts], np.float32)


def test_interrupted_embed_says_how_many_shards_and_leftovers_are_cleaned(three_shards):
    import os
    import subprocess
    import sys

    with pytest.raises(KeyboardInterrupt):
        fill_embeddings(three_shards, _Chars(fail_after=1))
    with pytest.raises(Exception, match=r"1 of 3 shards embedded .*priming corpus embed"):
        open_corpus(three_shards).embeddings([0])
    # a temporary file of a writer that died (SIGKILL) is removed by the next run
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    stale = three_shards / "shards" / f".shard-00002.x.f16.npy.tmp-{dead}"
    live = three_shards / "shards" / f".shard-00002.y.f16.npy.tmp-{os.getpid()}"
    stale.write_bytes(b"x" * 100)
    live.write_bytes(b"y")
    events = []
    fill_embeddings(three_shards, _Chars(), progress=events.append)
    assert not stale.exists() and live.exists()  # a running writer's file is left alone
    live.unlink()
    assert events[-1].done == events[-1].total == 18  # the two shards still to do
    c = open_corpus(three_shards)
    # row 0 "a photo of a cat number 0": 25 characters, three a, three o; row 26 (shard 2)
    # "a photo of a cat dog number 8": 29, three a, four o
    assert c.rows([0])["caption"][0].as_py() == "a photo of a cat number 0"
    np.testing.assert_array_equal(c.embeddings([0, 26]), [[25, 3, 3, 1], [29, 3, 4, 1]])


# --------------------------------------------------------------------------- export
@pytest.mark.parametrize("name", ["classes.txt", "u.csv", "urls"])
def test_export_refuses_a_name_that_is_not_parquet(three_shards, tmp_path, name, capsys):
    from priming.cli import main

    out = tmp_path / name
    if name == "classes.txt":
        out.write_text("precious\n")
    assert main(["corpus", "export-urls", str(three_shards), "cat", "--out", str(out)]) == 2
    assert "writes parquet" in capsys.readouterr().err
    assert (out.read_text() == "precious\n") if name == "classes.txt" else not out.exists()


def test_export_overwrites_only_when_asked(three_shards, tmp_path, capsys):
    from priming.cli import main

    out = tmp_path / "u.parquet"
    args = ["corpus", "export-urls", str(three_shards), "cat", "--out", str(out)]
    assert main(args) == 0
    first = pq.read_table(out)
    assert first.num_rows == 18  # 'cat' is in the captions of shards 0 and 2, 9 rows each
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*args[:3], "dog", *args[4:], "--overwrite"]) == 0
    assert pq.read_table(out).column("caption").to_pylist()[0] == "a photo of a dog number 0"


def test_a_truncated_embedding_shard_is_named(tmp_path, capsys):
    from priming.cli import main

    clip_retrieval_layout(tmp_path / "laion", SHARDS, dim=8)
    out = build_corpus(tmp_path / "laion", tmp_path / "laion", out=tmp_path / "c", workers=1)
    f = out / "shards" / "shard-00001.f16.npy"
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(DataError, match=r"shard-00001.f16.npy.*shard-00001 .*--verify"):
        open_corpus(out).embeddings([12])
    assert main(["corpus", "info", str(out)]) == 1
    assert "shards/shard-00001.f16.npy: 200 bytes" in capsys.readouterr().err


def test_connections_are_closed_with_the_corpus(three_shards):
    import gc

    from priming.corpus import _search

    def idle():
        return sum(q.qsize() for (db, _), q in _search._IDLE.items() if str(three_shards) in db)

    c = open_corpus(three_shards)
    c.search_captions(QUERIES)
    assert idle() == 3  # one per shard, kept for the next query
    c.close()
    assert idle() == 0
    c = open_corpus(three_shards)
    c.search_captions(QUERIES)
    del c
    gc.collect()
    assert idle() == 0  # a corpus that is never closed releases them when collected
