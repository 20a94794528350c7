"""Corpus build/search through the executor seam, progress in rows, and damaged inputs."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_helpers import clip_retrieval_layout, write_laion

from priming.corpus import build_corpus, open_corpus
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
