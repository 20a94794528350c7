"""`corpus build --format`: each public release read by its own columns and file layout.

The inputs are fabricated in the layouts of the releases (file names, column names and
types, DataComp's ``.npz`` keys); every build is checked by value.
"""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from priming.cli import main
from priming.corpus import FORMAT_NAMES, build_corpus, detect_format, open_corpus
from priming.errors import ConfigError, DataError

SPARK = "part-00000-5114fd87-297e-42b0-9d11-50f1df323dfa-c000.snappy.parquet"
COYO_PART = "part-00000-17da4908-939c-46e5-91d0-15f256041956-c000.snappy.parquet"


def _rows(c):
    return c.rows(np.arange(c.n_rows)).to_pylist()


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())


def _write(path, cols):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)
    return path


def relaion_file(root):
    return _write(
        root / SPARK,
        {
            "url": [f"https://x.example/{i}.jpg" for i in range(4)],
            "caption": ["a red fox", "a tabby cat", "", "a golden retriever"],
            "similarity": pa.array([0.31, 0.29, 0.33, 0.35], pa.float64()),
            "punsafe": pa.array([0.05, 0.92, 0.1, None], pa.float32()),
            "pwatermark": pa.array([0.1, 0.2, 0.3, 0.4], pa.float32()),
            "width": pa.array([640, 320, 100, 800], pa.int32()),
            "height": pa.array([480, 240, 100, 600], pa.int32()),
        },
    )


def datacomp_files(root, n=5, seed=0):
    """``root/metadata/<hash>.parquet`` + the row-aligned ``<hash>.npz`` of download_upstream."""
    rng = np.random.default_rng(seed)
    stem = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    meta = _write(
        root / "metadata" / f"{stem}.parquet",
        {
            "uid": [f"{i:032x}" for i in range(n)],
            "url": [f"https://dc.example/{i}.png" for i in range(n)],
            "text": ["an oak tree", "", "a sailing boat", "two oak leaves", "a lighthouse"][:n],
            "original_width": pa.array([500, 600, 700, 800, 900][:n], pa.int64()),
            "original_height": pa.array([400, 300, 200, 100, 50][:n], pa.int64()),
            "clip_b32_similarity_score": pa.array([0.30, 0.21, 0.27, 0.33, 0.25][:n], pa.float32()),
            "clip_l14_similarity_score": pa.array([0.28, 0.20, 0.26, 0.31, 0.24][:n], pa.float32()),
            "face_bboxes": pa.array([[[0.1, 0.2, 0.3, 0.4]], [], [], [], []][:n]),
            "sha256": [f"{i:064x}" for i in range(n)],
        },
    )
    arrays = {
        "b32_img": rng.normal(size=(n, 512)).astype(np.float16),
        "b32_txt": rng.normal(size=(n, 512)).astype(np.float16),
        "l14_img": rng.normal(size=(n, 768)).astype(np.float16),
        "l14_txt": rng.normal(size=(n, 768)).astype(np.float16),
    }
    np.savez(root / "metadata" / f"{stem}.npz", **arrays)
    return meta, arrays


def coyo_file(root):
    n = 4
    return _write(
        root / COYO_PART,
        {
            "id": pa.array([4398046511105, 4398046511106, 4398046511107, 4398046511108]),
            "url": [f"https://coyo.example/{i}.jpg" for i in range(n)],
            "text": ["olive oil infused with herbs", "a mountain lake", "a beach", "city at night"],
            "width": pa.array([227, 512, 640, 1024], pa.int32()),
            "height": pa.array([300, 512, 480, 768], pa.int32()),
            "image_phash": ["9f91e133b1924e4e"] * n,
            "text_length": pa.array([28, 15, 7, 13], pa.int32()),
            "word_count": pa.array([5, 3, 2, 3], pa.int32()),
            "num_tokens_bert": pa.array([6, 3, 2, 3], pa.int32()),
            "num_tokens_gpt": pa.array([9, 3, 2, 3], pa.int32()),
            "num_faces": pa.array([0, 0, 1, 0], pa.int32()),
            "clip_similarity_vitb32": pa.array([0.199, 0.31, 0.28, 0.25], pa.float32()),
            "clip_similarity_vitl14": pa.array([0.147, 0.30, 0.27, 0.24], pa.float32()),
            # row 1: gantman alone >= 0.5; row 2: opennsfw2 alone; row 3: one score missing
            "nsfw_score_opennsfw2": pa.array([0.0058, 0.1, 0.8, None], pa.float32()),
            "nsfw_score_gantman": pa.array([0.019, 0.6, 0.2, 0.3], pa.float32()),
            "watermark_score": pa.array([0.11, 0.2, 0.3, 0.4], pa.float32()),
            "aesthetic_score_laion_v2": pa.array([4.87, 5.0, 5.5, 6.0], pa.float32()),
        },
    )


def laion_file(root):
    return _write(
        root / SPARK,
        {
            "SAMPLE_ID": pa.array([101, 102, 103]),
            "URL": ["http://l.example/a.jpg", "http://l.example/b.jpg", "http://l.example/c.jpg"],
            "TEXT": ["a barn owl", "a snowy owl", "an owl"],
            "HEIGHT": pa.array([100, 200, 300], pa.int64()),
            "WIDTH": pa.array([110, 210, 310], pa.int64()),
            "LICENSE": ["?", "?", "?"],
            "NSFW": ["UNLIKELY", "NSFW", "UNSURE"],
            "similarity": pa.array([0.31, 0.32, 0.33], pa.float64()),
        },
    )


def clip_retrieval_files(root, dim=8):
    meta = _write(
        root / "metadata" / "metadata_0.parquet",
        {
            "image_path": ["00000/000000000.jpg", "00000/000000001.jpg"],
            "caption": ["a blue bicycle", "a red tram"],
            "NSFW": ["UNLIKELY", "NSFW"],
            "similarity": pa.array([0.3, 0.4], pa.float64()),
            "LICENSE": ["?", "?"],
            "url": ["http://c.example/0.jpg", "http://c.example/1.jpg"],
            "key": ["000000000", "000000001"],
            "status": ["success", "success"],
            "width": pa.array([256, 256], pa.int64()),
            "height": pa.array([256, 256], pa.int64()),
        },
    )
    emb = np.random.default_rng(1).normal(size=(2, dim)).astype(np.float32)
    (root / "img_emb").mkdir(parents=True)
    np.save(root / "img_emb" / "img_emb_0.npy", emb)
    return meta, emb


# --------------------------------------------------------------------------- per format
def test_relaion_detected_captions_urls_nsfw_from_punsafe(tmp_path):
    relaion_file(tmp_path / "in")
    out = build_corpus(tmp_path / "in", out=tmp_path / "c", workers=1)
    c = open_corpus(out)
    rows = _rows(c)
    assert c.n_rows == 3 and not c.has_embeddings  # the empty caption is dropped
    assert [r["caption"] for r in rows] == ["a red fox", "a tabby cat", "a golden retriever"]
    assert [r["url"] for r in rows] == [f"https://x.example/{i}.jpg" for i in (0, 1, 3)]
    assert [r["nsfw"] for r in rows] == [False, True, None]  # punsafe 0.05, 0.92, missing
    assert [r["width"] for r in rows] == [640, 320, 800]
    np.testing.assert_allclose([r["similarity"] for r in rows], [0.31, 0.29, 0.35], rtol=1e-6)
    src = _manifest(out)["source_format"]
    assert src["name"] == "relaion" and src["detected"] is True
    assert "part-NNNNN" in src["reason"] and src["embedding_key"] is None


def test_datacomp_npz_key_chosen_embeddings_by_value_and_model_recorded(tmp_path):
    _, arrays = datacomp_files(tmp_path / "dc")
    out = build_corpus(
        tmp_path / "dc" / "metadata", out=tmp_path / "c", embedding_key="b32_img", workers=1
    )
    c = open_corpus(out)
    rows = _rows(c)
    keep = [0, 2, 3, 4]  # row 1 has an empty caption
    assert c.n_rows == 4 and c.dim == 512
    assert c.embedding_model == "open_clip:ViT-B-32/openai"
    assert [r["key"] for r in rows] == [f"{i:032x}" for i in keep]
    assert [r["caption"] for r in rows] == [
        "an oak tree",
        "a sailing boat",
        "two oak leaves",
        "a lighthouse",
    ]
    assert [r["url"] for r in rows] == [f"https://dc.example/{i}.png" for i in keep]
    assert [r["width"] for r in rows] == [500, 700, 800, 900]
    assert [r["height"] for r in rows] == [400, 200, 100, 50]
    assert [r["nsfw"] for r in rows] == [None] * 4  # DataComp ships no NSFW score
    np.testing.assert_allclose(
        [r["similarity"] for r in rows], [0.30, 0.27, 0.33, 0.25], rtol=1e-6
    )  # clip_b32_similarity_score, the LAION-comparable B/32 cosine
    np.testing.assert_array_equal(
        c.embeddings(np.arange(4)), arrays["b32_img"][keep].astype(np.float32)
    )
    m = _manifest(out)
    assert (
        m["source_format"]["name"] == "datacomp"
        and m["source_format"]["embedding_key"] == "b32_img"
    )


def test_datacomp_default_key_l14_and_explicit_model_wins(tmp_path):
    meta, arrays = datacomp_files(tmp_path / "dc")
    c = open_corpus(
        build_corpus(meta, embeddings=tmp_path / "dc" / "metadata", out=tmp_path / "a", workers=1)
    )
    assert c.dim == 768 and c.embedding_model == "open_clip:ViT-L-14/openai"
    np.testing.assert_array_equal(c.embeddings([0]), arrays["l14_img"][[0]].astype(np.float32))
    c2 = open_corpus(
        build_corpus(
            meta, out=tmp_path / "b", embedding_key="l14_txt", embedding_model="mine", workers=1
        )
    )
    assert c2.embedding_model == "mine"
    np.testing.assert_array_equal(c2.embeddings([3]), arrays["l14_txt"][[4]].astype(np.float32))
    # without a key or embeddings: caption index only
    assert not open_corpus(build_corpus(meta, out=tmp_path / "d", workers=1)).has_embeddings


def test_datacomp_missing_key_and_missing_npz_are_named(tmp_path):
    meta, _ = datacomp_files(tmp_path / "dc")
    with pytest.raises(
        DataError, match=r"no key 'h14_img'; keys: b32_img, b32_txt, l14_img, l14_txt"
    ):
        build_corpus(meta, out=tmp_path / "c", embedding_key="h14_img")
    meta.with_suffix(".npz").unlink()
    with pytest.raises(DataError, match=r"no \.npz for DataComp metadata '0a1b2c3d"):
        build_corpus(meta, out=tmp_path / "c", embedding_key="l14_img")
    assert not (tmp_path / "c").exists()


def test_coyo_nsfw_is_max_of_scores_similarity_vitb32_id_as_key(tmp_path):
    coyo_file(tmp_path / "coyo")
    out = build_corpus(tmp_path / "coyo", out=tmp_path / "c", workers=1)
    rows = _rows(open_corpus(out))
    assert [r["key"] for r in rows] == [
        "4398046511105",
        "4398046511106",
        "4398046511107",
        "4398046511108",
    ]
    assert [r["caption"] for r in rows][:2] == ["olive oil infused with herbs", "a mountain lake"]
    assert [r["url"] for r in rows][3] == "https://coyo.example/3.jpg"
    assert [r["nsfw"] for r in rows] == [False, True, True, False]
    np.testing.assert_allclose(
        [r["similarity"] for r in rows], [0.199, 0.31, 0.28, 0.25], rtol=1e-6
    )
    assert [(r["width"], r["height"]) for r in rows][0] == (227, 300)
    assert _manifest(out)["source_format"]["name"] == "coyo"


def test_laion_original_metadata_detected(tmp_path):
    laion_file(tmp_path / "l")
    out = build_corpus(tmp_path / "l", out=tmp_path / "c", workers=1)
    rows = _rows(open_corpus(out))
    assert [r["nsfw"] for r in rows] == [False, True, True]  # UNSURE counts as NSFW
    assert [r["key"] for r in rows] == ["101", "102", "103"]
    assert [(r["width"], r["height"]) for r in rows] == [(110, 100), (210, 200), (310, 300)]
    assert _manifest(out)["source_format"]["name"] == "laion"


def test_clip_retrieval_detected_with_embeddings(tmp_path):
    _, emb = clip_retrieval_files(tmp_path / "cr")
    out = build_corpus(tmp_path / "cr", embeddings=tmp_path / "cr", out=tmp_path / "c", workers=1)
    c = open_corpus(out)
    rows = _rows(c)
    assert [r["caption"] for r in rows] == ["a blue bicycle", "a red tram"]
    assert [r["nsfw"] for r in rows] == [False, True]
    np.testing.assert_array_equal(c.embeddings([0, 1]), emb.astype(np.float16).astype(np.float32))
    src = _manifest(out)["source_format"]
    assert src["name"] == "clip-retrieval" and "image_path" in src["reason"]


# --------------------------------------------------------------------------- detection
@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (relaion_file, "relaion"),
        (lambda r: datacomp_files(r)[0], "datacomp"),
        (coyo_file, "coyo"),
        (laion_file, "laion"),
        (lambda r: clip_retrieval_files(r)[0], "clip-retrieval"),
    ],
)
def test_detect_each_layout(tmp_path, make, expected):
    path = make(tmp_path)
    assert detect_format(pq.ParquetFile(path).schema_arrow.names, path)[0] == expected


def test_detect_by_name_and_generic_fallback():
    assert detect_format(["caption", "url"], "metadata_3.parquet")[0] == "clip-retrieval"
    assert detect_format(["caption", "url"], SPARK)[0] == "relaion"
    assert detect_format(["caption", "url", "punsafe"], "x.parquet")[0] == "relaion"
    assert detect_format(["caption", "url"], "x.parquet")[0] == "generic"
    assert set(FORMAT_NAMES) == {"relaion", "datacomp", "coyo", "laion", "clip-retrieval"}


def test_ambiguous_layout_names_the_file_and_candidates(tmp_path):
    p = _write(tmp_path / SPARK, {"caption": ["a"], "url": ["u"], "status": ["success"]})
    with pytest.raises(DataError) as e:
        build_corpus(tmp_path, out=tmp_path / "c")
    msg = str(e.value)
    assert SPARK in msg and "ambiguous" in msg and "relaion" in msg and "clip-retrieval" in msg
    assert "--format" in msg
    # naming the format settles it
    out = build_corpus(p, out=tmp_path / "c", format="clip-retrieval", workers=1)
    src = _manifest(out)["source_format"]
    assert src == {
        "name": "clip-retrieval",
        "title": "clip-retrieval / img2dataset output",
        "detected": False,
        "reason": "named by --format",
        "embedding_key": None,
    }


def test_unknown_layout_and_wrong_format_name_the_file(tmp_path):
    p = _write(tmp_path / "odd.parquet", {"title": ["x"], "link": ["u"]})
    with pytest.raises(DataError, match=r"odd\.parquet.*matches none of relaion, datacomp"):
        build_corpus(p, out=tmp_path / "c")
    q = coyo_file(tmp_path / "coyo")
    with pytest.raises(
        DataError, match=r"no caption column for format 'laion'.*accepted caption columns: TEXT"
    ):
        build_corpus(q, out=tmp_path / "c", format="laion")
    with pytest.raises(ConfigError, match="unknown format 'laion5b'"):
        build_corpus(q, out=tmp_path / "c", format="laion5b")
    with pytest.raises(ConfigError, match="DataComp .npz embeddings only"):
        build_corpus(q, out=tmp_path / "c", embedding_key="l14_img")


def test_mixed_formats_refused_naming_both_files(tmp_path):
    a = laion_file(tmp_path / "a")
    b = coyo_file(tmp_path / "b")
    with pytest.raises(DataError, match=r"mix formats.*'laion'.*'coyo'") as e:
        build_corpus([a, b], out=tmp_path / "c")
    assert str(a) in str(e.value) and str(b) in str(e.value)


def test_resume_with_another_format_refused(tmp_path):
    p = _write(tmp_path / SPARK, {"caption": ["a"], "url": ["u"], "status": ["success"]})
    build_corpus(p, out=tmp_path / "c", format="relaion", workers=1)
    with pytest.raises(ConfigError, match="format 'relaion'"):
        build_corpus(p, out=tmp_path / "c", format="clip-retrieval", workers=1)


# --------------------------------------------------------------------------- CLI
def test_cli_format_and_embedding_key(tmp_path, capsys):
    datacomp_files(tmp_path / "dc")
    rc = main(
        [
            "corpus", "build", "--metadata", str(tmp_path / "dc" / "metadata"),
            "--format", "datacomp", "--embedding-key", "b32_txt",
            "--out", str(tmp_path / "c"), "--workers", "1", "--no-progress",
        ]
    )  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "format datacomp (named by --format)" in out and "4 rows" in out
    c = open_corpus(tmp_path / "c")
    assert c.dim == 512 and c.embedding_model == "open_clip:ViT-B-32/openai"
    with pytest.raises(SystemExit):
        main(["corpus", "build", "--metadata", "x", "--out", "y", "--format", "laion5b"])
