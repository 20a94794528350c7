"""The Python examples in README.md, docs/priming.md and docs/corpus.md run against the real
API, on a tiny corpus with a bag-of-words stand-in for the model."""

import re
from pathlib import Path

import numpy as np
import pytest

from tests._fakes import BagOfWordsEncoder, write_text_corpus

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["golden retriever", "tabby cat", "tabby", "red fox", "sea lion", "sealion"]
WORDS = ["photo", "of", "a", "cute", "in", "the", "park", "snow", "sunny", "garden"]


def python_block(path: Path, after: str) -> str:
    text = path.read_text(encoding="utf-8")
    i = text.index(after)
    m = re.compile(r"```python\n(.*?)```", re.S).search(text, i)
    assert m, f"no python block after {after!r} in {path.name}"
    return m.group(1)


def captions(n=120, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        words = list(rng.choice(WORDS, 3)) + [NAMES[i % len(NAMES)]]
        rng.shuffle(words)
        out.append(" ".join(words) + f" {i}")
    return out


@pytest.fixture
def fake_model(monkeypatch):
    import priming.encoders

    enc = BagOfWordsEncoder(dim=32, name="fake:bow")
    monkeypatch.setattr(priming.encoders, "create_encoder", lambda *a, **k: enc)
    return enc


def test_readme_neural_priming_example_runs(tmp_path, monkeypatch, fake_model):
    write_text_corpus(tmp_path, captions(), fake_model)
    monkeypatch.chdir(tmp_path)
    code = python_block(ROOT / "README.md", "Neural Priming from class names and a corpus:")
    X_test = fake_model.encode_texts(["a golden retriever", "tabby in the snow", "red fox"])
    ns = {"X_test": X_test}
    exec(compile(code, "README.md", "exec"), ns)
    assert ns["pred"].shape == (3,)
    assert len(ns["pool"]) > 0 and len(ns["small"]) <= len(ns["pool"])
    assert ns["head"].alpha_source_ in ("cv-pool", "validation", "cv-shots")


def test_priming_doc_python_api_example_runs(tmp_path, monkeypatch, fake_model):
    write_text_corpus(tmp_path, captions(), fake_model)
    monkeypatch.chdir(tmp_path)
    Path("classes.txt").write_text("golden retriever\ntabby cat|tabby\nsea lion|sealion\n")
    code = python_block(ROOT / "docs" / "priming.md", "## Python API")
    X_test = fake_model.encode_texts(["golden retriever park", "a sunny sea lion"])
    ns = {"X_test": X_test, "encoder": fake_model}
    exec(compile(code, "docs/priming.md", "exec"), ns)
    assert ns["classes"][2] == ["sea lion", "sealion"]
    assert (tmp_path / "head" / "head.json").is_file()
    from priming.heads import load_head

    back = load_head(tmp_path / "head")
    assert back.predict(X_test).tolist() == ns["head"].predict(X_test).tolist()


def test_corpus_doc_python_example_runs(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.chdir(tmp_path)
    caps = [
        "a golden retriever in the park",
        "tabby cat sleeping",
        "my tabby",
        "golden retriever and a tabby cat",  # ambiguous
        "a red fox",
    ]
    (tmp_path / "laion" / "metadata").mkdir(parents=True)
    (tmp_path / "laion" / "img_emb").mkdir()
    pq.write_table(
        pa.table({"url": [f"u{i}" for i in range(5)], "caption": caps}),
        tmp_path / "laion" / "metadata" / "metadata_0.parquet",
    )
    rng = np.random.default_rng(0)
    E = rng.standard_normal((5, 8)).astype(np.float32)
    np.save(tmp_path / "laion" / "img_emb" / "img_emb_0.npy", E)
    code = python_block(ROOT / "docs" / "corpus.md", "## Python")
    ns = {"text_vectors": E[[0, 4]]}
    exec(compile(code, "docs/corpus.md", "exec"), ns)
    assert ns["hits"].counts == {"golden retriever": 1, "tabby": 2}
    assert ns["hits"].ambiguous.num_rows == 1
    assert ns["X"].shape == (3, 8)
    assert ns["row_ids"][:, 0].tolist() == [0, 4]  # each vector finds its own row first
