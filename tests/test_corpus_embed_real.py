"""End to end: `priming corpus embed` with a real text encoder (all-MiniLM-L6-v2, offline)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from corpus_helpers import write_laion

from priming.cli import main
from priming.corpus import build_corpus, fill_embeddings, open_corpus
from priming.encoders import create_encoder

MODEL = "sentence-transformers:all-MiniLM-L6-v2"

SUBJECTS = [
    "a golden retriever", "a tabby cat", "a red sports car", "an old steam locomotive",
    "a bowl of ramen", "a snowy mountain peak", "a wooden sailing boat", "a hot air balloon",
    "a bunch of sunflowers", "a vintage typewriter", "a pair of running shoes", "a lighthouse",
]  # fmt: skip
PLACES = ["on a beach at sunset", "in a city street at night", "inside a bright kitchen"]


def _captions():
    return [f"{s} {p}" for p in PLACES for s in SUBJECTS]  # 36 distinct captions


class _CrashAfter:
    """The real encoder, dying on its ``n+1``-th encode call (a killed `corpus embed`)."""

    def __init__(self, enc, n):
        self._enc, self._left = enc, n
        self.name, self.dim, self.fingerprint = enc.name, enc.dim, enc.fingerprint

    def encode_texts(self, texts, batch_size=32, progress=False):
        if self._left == 0:
            raise KeyboardInterrupt("simulated kill")
        self._left -= 1
        return self._enc.encode_texts(texts, batch_size=batch_size)


def _files(corpus_dir):
    return {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (corpus_dir / "shards").glob("*.npy")
    }


@pytest.mark.slow
def test_corpus_embed_cli_real_model(tmp_path, capsys):
    caps = _captions()
    for s, part in enumerate(np.array_split(np.arange(len(caps)), 3)):
        write_laion(tmp_path / "in" / f"m{s}.parquet", [caps[i] for i in part])
    out = build_corpus(tmp_path / "in", out=tmp_path / "c", workers=1)
    enc = create_encoder(MODEL, device="cpu")
    assert enc.dim == 384

    # a first `embed` is killed while embedding the second shard: shard 0 is published
    with pytest.raises(KeyboardInterrupt):
        fill_embeddings(out, _CrashAfter(enc, 1))
    m = json.loads((out / "manifest.json").read_text())
    assert not m["has_embeddings"] and [("embeddings" in s) for s in m["shards"]] == [
        True,
        False,
        False,
    ]
    first = _files(out)
    assert len(first) == 1

    # the CLI resumes: shard 0 is kept as is, shards 1 and 2 are embedded
    assert main(["corpus", "embed", str(out), "--model", MODEL, "--device", "cpu"]) == 0
    assert "(384-d)" in capsys.readouterr().out
    done = _files(out)
    assert len(done) == 3 and all(done[k] == v for k, v in first.items())

    c = open_corpus(out)
    assert c.n_rows == len(caps) and c.dim == 384 and c.has_embeddings
    assert c.embedding_model == enc.name
    ids = np.arange(c.n_rows)
    stored_caps = c.rows(ids).column("caption").to_pylist()
    assert stored_caps == caps  # row i of the corpus is caption i of the inputs
    x = c.embeddings(ids)
    assert x.shape == (len(caps), 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=2e-3)  # float16 storage
    # row-aligned: each row holds its own caption's embedding (float16-rounded)
    want = enc.encode_texts(caps)
    np.testing.assert_allclose(x, want, atol=2e-3)
    # text-to-row retrieval: a caption's own embedding finds its row first
    scores, found = c.knn(want, 3)
    np.testing.assert_array_equal(found[:, 0], ids)
    assert (scores[:, 0] > 0.99).all() and (scores[:, 0] > scores[:, 1]).all()

    # running it again (same model, so same fingerprint) is a no-op: nothing re-embedded,
    # nothing rewritten
    manifest = (out / "manifest.json").read_text()
    fill_embeddings(out, _CrashAfter(enc, 0))  # would die on any encode call
    assert _files(out) == done
    assert json.loads((out / "manifest.json").read_text()) == json.loads(manifest)
