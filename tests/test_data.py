"""Data readers and the embedding cache."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from _fake_encoder import PixelEncoder
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from priming.data import embed, load_embeddings, open_dataset
from priming.data.datasets import ImageFolderDataset, ManifestDataset, WebDataset
from priming.encoders import create_encoder
from priming.errors import ConfigError, DataError
from priming.images import load_image, to_rgb

SRC = Path(__file__).resolve().parents[1] / "src"


def _rgb(seed, size=(12, 16)):
    return Image.fromarray(
        np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8), "RGB"
    )


@pytest.fixture
def folder(tmp_path):
    """root/<class>/<file> with odd modes and three bad files."""
    root = tmp_path / "imgs"
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            _rgb(hash((c, i)) % 1000).save(root / c / f"{i}.png")
    _rgb(7).convert("L").save(root / "cat" / "grey.png")
    _rgb(8).convert("RGBA").save(root / "dog" / "alpha.png")
    _rgb(9).convert("CMYK").save(root / "dog" / "cmyk.jpg")
    Image.fromarray(np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * 300).save(
        root / "cat" / "deep.png"
    )
    (root / "cat" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    buf = io.BytesIO()
    _rgb(10, (64, 64)).save(buf, "PNG")
    (root / "dog" / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


GOOD = 10  # 6 plain + grey + alpha + cmyk + 16-bit
BAD = {"cat/corrupt.jpg", "dog/truncated.png", "dog/notes.txt"}


def test_image_folder_reader(folder):
    ds = open_dataset(folder)
    assert isinstance(ds, ImageFolderDataset) and ds.kind == "image"
    assert len(ds) == GOOD + len(BAD)
    assert ds.ids == sorted(ds.ids, key=lambda s: (s.split("/")[0], s))
    assert [lab for i, lab in zip(ds.ids, ds.labels) if i.startswith("cat/")] == ["cat"] * 6
    for i in range(len(ds)):
        if ds.ids[i] not in BAD:
            img = ds.load(i)
            assert img.mode == "RGB"


def test_embed_skips_counts_and_lists_bad_files(folder):
    res = embed(PixelEncoder(), folder, cache_dir=None, batch_size=4, workers=2)
    assert res.embeddings.shape == (GOOD, 48) and res.embeddings.dtype == np.float32
    assert {i for i, _ in res.skipped} == BAD
    reasons = dict(res.skipped)
    assert "not an image file" in reasons["dog/notes.txt"]
    assert "truncated" in reasons["dog/truncated.png"] or "decode" in reasons["dog/truncated.png"]
    assert "not an image" in reasons["cat/corrupt.jpg"]
    assert set(res.ids).isdisjoint(BAD) and len(res.ids) == GOOD
    for i, lab in zip(res.ids, res.labels):
        assert i.split("/")[0] == lab
    np.testing.assert_allclose(np.linalg.norm(res.embeddings, axis=1), 1, atol=1e-6)


def test_modes_to_rgb():
    deep = Image.fromarray(np.array([[0, 65535]], dtype=np.uint16))
    assert np.asarray(to_rgb(deep)).tolist() == [[[0, 0, 0], [255, 255, 255]]]
    clear = Image.new("RGBA", (1, 1), (10, 20, 30, 0))
    assert np.asarray(to_rgb(clear)).tolist() == [[[255, 255, 255]]]
    half = Image.new("LA", (1, 1), (0, 128))
    assert abs(int(np.asarray(to_rgb(half))[0, 0, 0]) - 127) <= 1
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))  # pure red
    assert np.asarray(to_rgb(cmyk)).tolist() == [[[255, 0, 0]]]
    pal = Image.new("RGB", (2, 1), (0, 0, 255)).convert("P")
    assert np.asarray(to_rgb(pal))[0, 0].tolist() == [0, 0, 255]
    fl = Image.fromarray(np.array([[0.0, 1.0]], dtype=np.float32), "F")
    assert np.asarray(to_rgb(fl))[0, :, 0].tolist() == [0, 255]


@pytest.mark.parametrize("orientation,expected_left", [(1, "red"), (3, "blue"), (6, None)])
def test_exif_orientation(tmp_path, orientation, expected_left):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = (255, 0, 0)
    arr[:, 10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / "o.jpg"
    Image.fromarray(arr).save(p, exif=exif, quality=95)
    img = load_image(p)
    if orientation == 6:  # rotated 90 degrees: portrait
        assert img.size == (10, 20)
        top = np.asarray(img)[2, 5]
        assert top[0] > 200 and top[2] < 50  # red half is now on top
    else:
        left = np.asarray(img)[5, 2]
        assert (left[0] > 200) == (expected_left == "red")
        assert (left[2] > 200) == (expected_left == "blue")


def test_decompression_bomb_limit(tmp_path):
    p = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(p)
    with pytest.raises(DataError, match="exceeds the limit of 5000 pixels"):
        load_image(p, max_pixels=5000)
    assert load_image(p, max_pixels=None).size == (100, 100)
    (tmp_path / "x").mkdir()
    os.replace(p, tmp_path / "x" / "big.png")
    _rgb(0).save(tmp_path / "x" / "small.png")
    res = embed(PixelEncoder(), tmp_path / "x", max_pixels=5000)
    assert list(res.ids) == ["small.png"] and res.labels is None
    assert res.skipped[0][0] == "big.png" and "decompression-bomb" in res.skipped[0][1]


def test_manifests_csv_and_jsonl(folder, tmp_path):
    rows = [("imgs/cat/0.png", "cat"), ("imgs/dog/1.png", "dog"), ("imgs/dog/missing.png", "dog")]
    csv_p = tmp_path / "m.csv"
    csv_p.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    jsonl_p = tmp_path / "m.jsonl"
    jsonl_p.write_text("".join(json.dumps({"image": p, "class": lab}) + "\n" for p, lab in rows))
    results = []
    for m in (csv_p, jsonl_p):
        ds = open_dataset(m)
        assert isinstance(ds, ManifestDataset) and ds.labels == ["cat", "dog", "dog"]
        res = embed(PixelEncoder(), ds)
        assert list(res.ids) == ["imgs/cat/0.png", "imgs/dog/1.png"]
        assert res.skipped == [("imgs/dog/missing.png", "file not found")]
        results.append(res.embeddings)
    np.testing.assert_array_equal(results[0], results[1])
    folder_res = embed(PixelEncoder(), folder)
    ids = list(folder_res.ids)
    np.testing.assert_allclose(results[0][0], folder_res.embeddings[ids.index("cat/0.png")])
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    with pytest.raises(DataError, match="needs a path column"):
        open_dataset(bad)


def test_text_manifest_with_minilm_like_encoder(tmp_path):
    class Words:
        name, modality, dim, fingerprint = "test:words", "text", 3, "words"

        def encode_texts(self, texts, batch_size=None, progress=False):
            X = np.array([[len(t), t.count("a") + 1, 1.0] for t in texts], np.float32)
            return X / np.linalg.norm(X, axis=1, keepdims=True)

    m = tmp_path / "t.jsonl"
    m.write_text('{"text": "a cat", "label": "x"}\n{"text": "banana", "label": "y"}\n')
    res = embed(Words(), m, cache_dir=tmp_path / "c")
    assert res.embeddings.shape == (2, 3) and list(res.labels) == ["x", "y"]
    with pytest.raises(ConfigError, match="no image tower"):
        embed(Words(), _one_image_folder(tmp_path))


def _one_image_folder(tmp_path):
    d = tmp_path / "one"
    d.mkdir()
    _rgb(1).save(d / "a.png")
    return d


def _add(tf, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def test_webdataset_img2dataset_layout(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    expected = {}
    for s in range(2):
        with tarfile.open(shards / f"{s:05d}.tar", "w") as tf:
            for k in range(3):
                key = f"{s:05d}{k:04d}"
                buf = io.BytesIO()
                img = _rgb(s * 10 + k)
                img.save(buf, "JPEG", quality=95)
                _add(tf, f"{key}.jpg", buf.getvalue())
                _add(tf, f"{key}.txt", f"caption {key}".encode())
                _add(tf, f"{key}.json", json.dumps({"key": key, "label": f"c{k}"}).encode())
                expected[f"{s:05d}.tar/{key}"] = buf.getvalue()
            _add(tf, f"{s:05d}9999.json", b'{"status": "failed_to_download", "label": "c0"}')
    for spec in (shards, str(shards / "{00000..00001}.tar")):
        ds = open_dataset(spec)
        assert isinstance(ds, WebDataset)
        assert len(ds) == 8 and ds.labels.count("c0") == 4
    res = embed(PixelEncoder(), ds, batch_size=2)
    assert sorted(res.ids) == sorted(expected) and len(res.skipped) == 2
    assert all("no image" in r for _, r in res.skipped)
    i = list(res.ids).index("00001.tar/000010002")
    ref = PixelEncoder().encode_images([Image.open(io.BytesIO(expected["00001.tar/000010002"]))])
    np.testing.assert_allclose(res.embeddings[i], ref[0], atol=1e-6)
    assert res.labels[i] == "c2"
    assert ds.captions[0] == "caption 000000000"


def test_embedding_files(tmp_path):
    X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    y = np.array(["a", "b", "a", "c", "b"])
    np.savez(tmp_path / "e.npz", embeddings=X, labels=y)
    d = load_embeddings(tmp_path / "e.npz")
    np.testing.assert_array_equal(d.embeddings, X)
    assert list(d.labels) == list(y)
    np.save(tmp_path / "f.npy", X.astype(np.float64))
    (tmp_path / "f.labels.txt").write_text("\n".join(y) + "\n")
    d2 = open_dataset(tmp_path / "f.npy")
    assert d2.kind == "embeddings" and d2.labels == list(y)
    res = embed(create_encoder("precomputed"), tmp_path / "f.npy")  # returned as stored
    assert res.embeddings.dtype == np.float32
    np.testing.assert_allclose(res.embeddings, X)
    with pytest.raises(DataError, match="dimension 4"):
        embed(PixelEncoder(), tmp_path / "e.npz")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="cannot read"):
        load_embeddings(tmp_path / "obj.npy")
    (tmp_path / "g.labels.txt").write_text("a\nb\n")
    np.save(tmp_path / "g.npy", X)
    with pytest.raises(DataError, match="5 embeddings but 2 labels"):
        load_embeddings(tmp_path / "g.npy")


# -- the cache -------------------------------------------------------------------------


def test_cache_hit_memmap_and_same_as_uncached(folder, tmp_path):
    cache = tmp_path / "cache"
    enc = PixelEncoder()
    first = embed(enc, folder, cache_dir=cache, batch_size=3, shard_size=4)
    assert not first.from_cache and first.n_computed == GOOD + len(BAD)
    assert enc.n_encoded == GOOD
    second = embed(enc, folder, cache_dir=cache)
    assert second.from_cache and second.n_computed == 0 and enc.n_encoded == GOOD
    assert isinstance(second.embeddings, np.memmap)
    assert second.cache_path == first.cache_path
    plain = embed(PixelEncoder(), folder)
    for r in (first, second):
        np.testing.assert_array_equal(r.embeddings, plain.embeddings)
        assert list(r.ids) == list(plain.ids) and list(r.labels) == list(plain.labels)
        assert r.skipped == plain.skipped
    assert not (first.cache_path / "parts").exists()
    half = embed(PixelEncoder(), folder, cache_dir=cache, cache_dtype="float16")
    assert half.cache_path != first.cache_path and half.embeddings.dtype == np.float32
    np.testing.assert_allclose(half.embeddings, plain.embeddings, atol=1e-3)


def test_cache_invalidates_on_file_or_model_change(folder, tmp_path):
    cache = tmp_path / "cache"
    a = embed(PixelEncoder(), folder, cache_dir=cache)
    # another model: another entry, recomputed
    other = PixelEncoder(tag="v2")
    b = embed(other, folder, cache_dir=cache)
    assert b.cache_path != a.cache_path and not b.from_cache and other.n_encoded == GOOD
    # a file rewritten with new content: recomputed, the new pixels show up
    _rgb(999).save(folder / "cat" / "0.png")
    enc = PixelEncoder()
    c = embed(enc, folder, cache_dir=cache)
    assert c.cache_path != a.cache_path and not c.from_cache and enc.n_encoded == GOOD
    i = list(c.ids).index("cat/0.png")
    assert not np.allclose(c.embeddings[i], a.embeddings[i])
    np.testing.assert_allclose(c.embeddings[i], enc.encode_images([folder / "cat" / "0.png"])[0])
    # a file removed: fewer rows
    (folder / "dog" / "notes.txt").unlink()
    d = embed(PixelEncoder(), folder, cache_dir=cache)
    assert not d.from_cache and len(d.skipped) == len(BAD) - 1
    # same bytes, new mtime: the default stat fingerprint recomputes, content does not
    e1 = embed(PixelEncoder(), folder, cache_dir=cache, fingerprint="content")
    os.utime(folder / "cat" / "1.png", ns=(1, 1))
    e2 = embed(PixelEncoder(), folder, cache_dir=cache, fingerprint="content")
    assert e2.from_cache and e2.cache_path == e1.cache_path
    assert not embed(PixelEncoder(), folder, cache_dir=cache).from_cache


_KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from _fake_encoder import PixelEncoder
from priming.data import embed
embed(PixelEncoder(delay=0.15), {data!r}, cache_dir={cache!r}, batch_size=4, shard_size=8,
      workers=1)
print("finished")
"""


def test_cache_resumes_after_kill(tmp_path):
    data = tmp_path / "many"
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        for i in range(24):
            _rgb(i + (100 if c == "b" else 0)).save(data / c / f"{i:02d}.png")
    (data / "a" / "05.png").write_bytes(b"broken")  # a skipped item inside a shard
    cache = tmp_path / "cache"
    script = _KILL_SCRIPT.format(tests=str(Path(__file__).parent), data=str(data), cache=str(cache))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            done = list(cache.glob("*/parts/*.json"))
            if len(done) >= 2:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        else:
            pytest.fail("the embedding subprocess made no progress")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    entry = next(p for p in cache.iterdir() if p.is_dir())
    assert not (entry / "meta.json").exists()
    n_parts = len(list((entry / "parts").glob("*.json")))
    assert 2 <= n_parts < 6
    (entry / "parts" / ".000005.npy.999.tmp").write_bytes(b"half a shard")  # as if killed mid-write

    enc = PixelEncoder()
    res = embed(enc, data, cache_dir=cache, batch_size=4)
    assert res.cache_path == entry and not res.from_cache
    assert res.n_computed == 48 - 8 * n_parts  # only the missing shards were encoded
    plain = embed(PixelEncoder(), data)
    assert list(res.ids) == list(plain.ids) and len(set(res.ids)) == 47
    np.testing.assert_array_equal(res.embeddings, plain.embeddings)
    assert res.skipped == [("a/05.png", "not an image (unrecognised format)")]
    assert list(res.labels) == list(plain.labels)
    assert not list(entry.rglob("*.tmp"))


@settings(max_examples=8)
@given(
    batch_size=st.integers(1, 7),
    shard_size=st.integers(1, 9),
    workers=st.sampled_from([1, 3]),
    bad=st.sets(st.integers(0, 9), max_size=4),
)
def test_cache_equals_plain_for_any_sharding(
    tmp_path_factory, batch_size, shard_size, workers, bad
):
    root = tmp_path_factory.mktemp("prop")
    (root / "imgs").mkdir()
    for i in range(10):
        p = root / "imgs" / f"{i}.png"
        if i in bad:
            p.write_bytes(b"bad")
        else:
            _rgb(i, (6, 6)).save(p)
    res = embed(
        PixelEncoder(),
        root / "imgs",
        cache_dir=root / "cache",
        batch_size=batch_size,
        shard_size=shard_size,
        workers=workers,
    )
    assert list(res.ids) == [f"{i}.png" for i in range(10) if i not in bad]
    assert [i for i, _ in res.skipped] == [f"{i}.png" for i in sorted(bad)]
    for k, i in enumerate(i for i in range(10) if i not in bad):
        ref = PixelEncoder().encode_images([_rgb(i, (6, 6))])[0]
        np.testing.assert_allclose(res.embeddings[k], ref, atol=1e-6)


# ----------------------------------------------------------------- executor seam, progress
@pytest.mark.parametrize("executor", [None, "inline", "thread-pool"])
def test_embed_is_the_same_on_every_executor(folder, executor):
    from concurrent.futures import ThreadPoolExecutor

    ref = embed(PixelEncoder(), folder, workers=1)
    if executor == "thread-pool":
        with ThreadPoolExecutor(3) as pool:
            got = embed(PixelEncoder(), folder, workers=3, executor=pool)
    else:
        got = embed(PixelEncoder(), folder, workers=3, executor=executor)
    np.testing.assert_array_equal(got.embeddings, ref.embeddings)
    assert list(got.ids) == list(ref.ids) and got.skipped == ref.skipped


def test_embed_reports_progress_through_a_callback(folder, tmp_path):
    events = []
    n = len(open_dataset(folder))
    embed(PixelEncoder(), folder, cache_dir=tmp_path / "c", batch_size=4, progress=events.append)
    adv = [e.done for e in events if e.state == "advance"]
    assert {e.task for e in events} == {"embed"} and {e.total for e in events} == {n}
    assert adv[0] == 0 and adv[-1] == n and adv == sorted(adv) and len(adv) > 2
    # the old bool still works (and draws nothing)
    assert len(embed(PixelEncoder(), folder, progress=True)) == GOOD
    with pytest.raises(ConfigError, match="progress"):
        embed(PixelEncoder(), folder, progress="yes")


def test_the_package_exports_benchmarks_and_loaders():
    import priming.data as data
    from priming.data import benchmarks, datasets, loaders

    for name in ("Benchmark", "get_benchmark", "list_benchmarks"):
        assert getattr(data, name) is getattr(benchmarks, name) and name in data.__all__
    for name in ("LoadedSplit", "load_split", "open_image"):
        assert getattr(data, name) is getattr(loaders, name) and name in data.__all__
    assert data.file_identity is datasets.file_identity
    assert "cifar10" in data.list_benchmarks()
    bench = data.get_benchmark("cifar10")
    assert isinstance(bench, data.Benchmark) and len(bench.classnames) == 10
