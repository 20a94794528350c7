"""`priming corpus embed --images`: image embeddings from img2dataset output, row-aligned."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from _tiny_models import build_tiny_hf_clip
from corpus_helpers import write_laion

from priming.cli import main
from priming.corpus import build_corpus, build_index, fill_embeddings, open_corpus
from priming.errors import ConfigError

PIL = pytest.importorskip("PIL.Image")

CAPTIONS = [
    ["a photo of a red dog", "a photo of a blue cat", "a diagram", "a photo of a green car"],
    ["a photo of a yellow bird", "a photo of a dark boat", "a photo of a white tree", "text"],
]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from priming.encoders import create_encoder

    d = build_tiny_hf_clip(tmp_path_factory.mktemp("tiny_clip"))
    return d, create_encoder(f"hf:{d}", device="cpu")


def _image_bytes(i: int, fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(i)
    arr = (rng.random((30 + i, 40, 3)) * 255).astype(np.uint8)  # distinct images
    buf = io.BytesIO()
    PIL.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _corpus(tmp_path: Path) -> Path:
    for s, caps in enumerate(CAPTIONS):
        write_laion(tmp_path / "in" / f"m{s}.parquet", caps)
    return build_corpus(tmp_path / "in", out=tmp_path / "c", workers=1)


def _img2dataset_webdataset(urls: Path, out: Path, missing: int, corrupt: int, by_url: int):
    """Fabricate img2dataset webdataset output for the url list: ``missing`` failed to
    download, ``corrupt`` holds bytes that are no image, ``by_url`` has no row_id column."""
    rows = pq.read_table(urls).to_pylist()
    out.mkdir(parents=True)
    images = {}
    half = (len(rows) + 1) // 2
    for t, part in enumerate((rows[:half], rows[half:])):
        with tarfile.open(out / f"{t:05d}.tar", "w") as tf:
            for j, r in enumerate(part):
                if r["row_id"] == missing:
                    continue
                key = f"{t:05d}{j:04d}"
                data = (
                    b"this is not a jpeg" if r["row_id"] == corrupt else _image_bytes(r["row_id"])
                )
                meta = {
                    "url": r["url"],
                    "caption": r["caption"],
                    "key": key,
                    "status": "success",
                    "row_id": r["row_id"],
                    "label": r["label"],
                }
                if r["row_id"] == by_url:
                    del meta["row_id"]
                _add(tf, f"{key}.jpg", data)
                _add(tf, f"{key}.txt", r["caption"].encode())
                _add(tf, f"{key}.json", json.dumps(meta).encode())
                if r["row_id"] != corrupt:
                    images[r["row_id"]] = data
        (out / f"{t:05d}.parquet").write_bytes(b"")  # img2dataset's per-shard files: ignored
        (out / f"{t:05d}_stats.json").write_text("{}")
    return images


def _files(corpus_dir: Path):
    return {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (corpus_dir / "shards").glob("*")
    }


def test_embed_images_cli_end_to_end(tmp_path, tiny_clip, capsys):
    model_dir, enc = tiny_clip
    c = _corpus(tmp_path)
    assert (
        main(["corpus", "export-urls", str(c), "a photo of", "--out", str(tmp_path / "u.pq")]) == 0
    )
    exported = pq.read_table(tmp_path / "u.pq")
    assert "row_id" in exported.column_names
    ids = exported.column("row_id").to_pylist()
    assert ids == [0, 1, 3, 4, 5, 6]  # rows 2 and 7 have no "a photo of" caption
    images = _img2dataset_webdataset(
        tmp_path / "u.pq", tmp_path / "imgs", missing=3, corrupt=5, by_url=4
    )
    assert sorted(images) == [0, 1, 4, 6]
    capsys.readouterr()

    args = [
        "corpus",
        "embed",
        str(c),
        "--model",
        f"hf:{model_dir}",
        "--images",
        str(tmp_path / "imgs"),
    ]
    args += ["--batch-size", "3"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "embedded the images of 4 of 8 rows" in out
    assert "4 rows have no embedding" in out and "1 corrupt" in out
    assert "skipped 00001.tar/" in out and ("cannot decode" in out or "not an image" in out)

    corpus = open_corpus(c)
    assert corpus.has_embeddings and corpus.dim == enc.dim
    assert corpus.embedding_model == enc.name
    assert corpus.n_missing_embeddings == 4
    has = corpus.has_embedding(np.arange(8))
    np.testing.assert_array_equal(has, [r in images for r in range(8)])
    m = corpus.manifest
    assert m["image_stats"] == {"embedded": 4, "corrupt": 1, "no_image": 3}
    assert m["image_match"]["samples"] == 5 and m["image_match"]["matched"] == 5

    # row alignment: every row's embedding is the model's embedding of its own image
    valid = sorted(images)
    expected = enc.encode_images([PIL.open(io.BytesIO(images[r])) for r in valid])
    got = corpus.embeddings(valid)
    np.testing.assert_allclose(got, expected, atol=2e-3)
    assert (np.argmax(got @ expected.T, axis=1) == np.arange(len(valid))).all()
    assert np.isnan(corpus.embeddings([2, 3, 5, 7])).all()

    # text-to-image k-NN with the same model's text tower: only rows with an embedding
    q = enc.encode_texts(["a photo of a red dog", "a diagram"])
    scores, rows = corpus.knn(q, k=8)
    assert rows.shape == (2, 8)
    assert (rows[:, 4:] == -1).all() and np.isneginf(scores[:, 4:]).all()
    brute = q @ got.T
    for i in range(2):
        order = np.argsort(-brute[i], kind="stable")
        np.testing.assert_array_equal(rows[i, :4], np.asarray(valid)[order])
        np.testing.assert_allclose(scores[i, :4], brute[i][order], atol=1e-5)
    top = corpus.knn(q, k=2)[1]
    np.testing.assert_array_equal(top, rows[:, :2])

    # a priming pool from caption search keeps only rows with an image embedding
    from priming.pool import build_pool

    T = enc.encode_texts(["a photo"])
    pool = build_pool(
        corpus, [["a photo of"]], text_weights=T, per_class=None, agreement=False,
        dedup_threshold=None, model=enc.name,
    )  # fmt: skip
    np.testing.assert_array_equal(np.sort(pool.row_ids), valid)
    assert pool.meta["no_embedding"] == 2  # rows 3 (not downloaded) and 5 (corrupt)
    assert np.isfinite(pool.embeddings).all()
    knn_pool = build_pool(
        corpus, [["a photo of"]], text_weights=T, per_class=None, recall="knn", knn_k=8,
        agreement=False, dedup_threshold=None, model=enc.name,
    )  # fmt: skip
    np.testing.assert_array_equal(np.sort(knn_pool.row_ids), valid)

    # a second run resumes: nothing is rewritten
    before = _files(c)
    assert main(args) == 0
    assert _files(c) == before
    corpus.close()


def test_embed_images_files_layout_url_fallback(tmp_path, tiny_clip):
    _, enc = tiny_clip
    c = _corpus(tmp_path)
    corpus = open_corpus(c)
    meta = corpus.rows(np.arange(8)).to_pylist()
    corpus.close()
    root = tmp_path / "imgs"
    (root / "00000").mkdir(parents=True)
    images = {}
    for r in (1, 2, 6):  # by url only (no row id column exported)
        key = f"0000000{r}"
        images[r] = _image_bytes(10 + r, "PNG")
        (root / "00000" / f"{key}.png").write_bytes(images[r])
        (root / "00000" / f"{key}.json").write_text(json.dumps({"url": meta[r]["url"], "key": key}))
    (root / "00000" / "00000009.jpg").write_bytes(_image_bytes(3))
    (root / "00000" / "00000009.json").write_text(json.dumps({"row_id": 99, "url": "x"}))
    (root / "00000" / "00000010.jpg").write_bytes(_image_bytes(4))
    (root / "00000" / "00000010.json").write_text(json.dumps({"url": "http://nowhere/1.jpg"}))

    fill_embeddings(c, enc, images=root, batch_size=2)  # default (Pillow) decoding
    corpus = open_corpus(c)
    assert corpus.manifest["image_match"]["unmatched"] == 2
    np.testing.assert_array_equal(np.flatnonzero(corpus.has_embedding(np.arange(8))), [1, 2, 6])
    expected = enc.encode_images([PIL.open(io.BytesIO(images[r])) for r in (1, 2, 6)])
    np.testing.assert_allclose(corpus.embeddings([1, 2, 6]), expected, atol=2e-3)
    # an IVF-PQ index holds only the rows with embeddings
    build_index(c, nlist=1, m=3, nbits=1)
    corpus = open_corpus(c)
    _, rows = corpus.knn(expected, k=8, method="ivfpq", nprobe=1, refine=8)
    assert set(rows[rows >= 0].ravel().tolist()) <= {1, 2, 6}
    np.testing.assert_array_equal(rows[:, 0], [1, 2, 6])

    # replacing them with caption embeddings drops the masks
    class TextOnly:
        name, dim, fingerprint, modality = "fake-text", 4, "f" * 64, "text"

        def encode_texts(self, texts, batch_size=32, progress=False):
            return np.tile(np.eye(4, dtype=np.float32)[0], (len(texts), 1))

    with pytest.raises(ConfigError, match="no image tower"):
        fill_embeddings(c, TextOnly(), images=root)
    fill_embeddings(c, TextOnly(), overwrite=True)
    corpus = open_corpus(c)
    assert corpus.n_missing_embeddings == 0 and corpus.has_embedding(np.arange(8)).all()
    assert not list((c / "shards").glob("*.mask.npy"))
    assert "image_stats" not in corpus.manifest


def test_embed_images_bad_folder(tmp_path, tiny_clip):
    _, enc = tiny_clip
    c = _corpus(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no img2dataset output"):
        fill_embeddings(c, enc, images=tmp_path / "empty")
    assert (
        main(
            [
                "corpus",
                "embed",
                str(c),
                "--model",
                "precomputed",
                "--images",
                str(tmp_path / "nope"),
            ]
        )
        == 2
    )


class _CrashAfter:
    """The real encoder, dying on its ``n+1``-th ``encode_images`` call (a killed run)."""

    def __init__(self, enc, n):
        self._enc, self._left = enc, n
        self.name, self.dim, self.fingerprint, self.modality = (
            enc.name, enc.dim, enc.fingerprint, enc.modality,
        )  # fmt: skip

    def encode_images(self, images, batch_size=32, progress=False):
        if self._left == 0:
            raise KeyboardInterrupt("simulated kill")
        self._left -= 1
        return self._enc.encode_images(images, batch_size=batch_size)


def test_embed_images_interrupted_resumes(tmp_path, tiny_clip, capsys):
    _, enc = tiny_clip
    c = _corpus(tmp_path)
    export = ["corpus", "export-urls", str(c), "a photo of", "--out", str(tmp_path / "u.pq")]
    assert main(export) == 0
    _img2dataset_webdataset(tmp_path / "u.pq", tmp_path / "imgs", missing=-1, corrupt=-1, by_url=-1)
    with pytest.raises(KeyboardInterrupt):
        fill_embeddings(c, _CrashAfter(enc, 1), images=tmp_path / "imgs")
    m = json.loads((c / "manifest.json").read_text())
    assert [("embeddings" in s) for s in m["shards"]] == [True, False]
    assert not m["has_embeddings"]
    assert not [p for p in (c / "shards").iterdir() if ".tmp-" in p.name]
    first = _files(c)
    fill_embeddings(c, _CrashAfter(enc, 1), images=tmp_path / "imgs")  # one call left: shard 1
    after = _files(c)
    assert all(after[k] == v for k, v in first.items() if k in after)
    corpus = open_corpus(c)
    assert corpus.n_missing_embeddings == 2  # rows 2 and 7 were never exported
    assert main(["corpus", "info", str(c), "--verify"]) == 0
    assert "checksums   ok" in capsys.readouterr().out
