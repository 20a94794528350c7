"""``priming reproduce neural-priming`` end to end on tiny fabricated data."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from priming.cli import main
from priming.data.benchmarks import get_benchmark
from priming.errors import ConfigError, DataError
from priming.recipes.neural_priming import PAPER, reference_alpha, reproduce_neural_priming
from tests.corpus_helpers import write_laion

FLOWERS = get_benchmark("flowers102")
USED = [0, 1, 2, 3]  # classes present in the fabricated folders (label space stays 102)
COLOURS = [(230, 40, 40), (40, 200, 60), (50, 60, 220), (220, 210, 40)]


def _image(c: int, rng) -> Image.Image:
    a = np.empty((32, 32, 3))
    a[:] = COLOURS[c]
    a *= rng.uniform(0.6, 1.0)
    y, x = rng.integers(0, 24, 2)
    h, w = rng.integers(4, 12, 2)
    a[y : y + h, x : x + w] = rng.uniform(0, 255, 3)
    a += rng.normal(0, 40, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import open_clip

    from priming.corpus import build_corpus
    from priming.encoders import create_encoder
    from tests._tiny_models import TINY_OPEN_CLIP_ARCH, build_tiny_open_clip

    tmp = tmp_path_factory.mktemp("np")
    ckpt = build_tiny_open_clip(tmp / "model")
    open_clip.add_model_config(tmp / "model" / f"{TINY_OPEN_CLIP_ARCH}.json")
    model = f"open_clip:{TINY_OPEN_CLIP_ARCH}@{ckpt}"
    enc = create_encoder(model, device="cpu")
    rng = np.random.default_rng(0)
    # dataset in the image-folder layout: root/<split>/<class name>/<image>
    data = tmp / "flowers"
    for split, n in (("train", 4), ("test", 5)):
        for c in USED:
            d = data / split / FLOWERS.classnames[c]
            d.mkdir(parents=True)
            for j in range(n):
                _image(c, rng).save(d / f"{j}.png")
    # corpus: captions naming the classes, image embeddings from the same model
    caps, labs = [], []
    for c in USED:
        for j in range(8):
            caps.append(f"my {FLOWERS.classnames[c]} in the garden, photo {j}")
            labs.append(c)
    caps += ["a plain wall", "a parked car"]
    labs += [0, 1]
    write_laion(tmp / "meta" / "part0.parquet", caps)
    E = enc.encode_images([_image(c, rng) for c in labs])
    (tmp / "emb").mkdir()
    np.save(tmp / "emb" / "part0.npy", E)
    corpus = build_corpus(
        tmp / "meta" / "part0.parquet", tmp / "emb" / "part0.npy", out=tmp / "corpus",
        workers=1, embedding_model=enc.name,
    )  # fmt: skip
    return tmp, model, data, corpus


def test_cli_end_to_end_flowers(world, capsys):
    tmp, model, data, corpus = world
    out = tmp / "run"
    args = [
        "reproduce", "neural-priming", "--dataset", "flowers102", "--model", model,
        "--corpus", str(corpus), "--data", str(data), "--out", str(out),
        "--shots", "1", "2", "--seeds", "0", "1", "--cache-dir", str(tmp / "cache"),
        "--leakage-threshold", "1.0", "--dedup-threshold", "1.0", "--no-agreement", "--device", "cpu",
    ]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    # the paper's numbers are printed: zero-shot / priming, few-shot priming / CoOp
    for v in (71.65, 79.81, 80.7, 74.9, 88.9, 82.3):
        assert f"{v:.2f}" in text
    m = json.loads((out / "metrics.json").read_text())
    ev = m["eval"]
    # ours: a measured number on every row, the same baseline as in the run
    zs = 100 * ev["zero_shot"]["top1"]
    row = next(line for line in text.splitlines() if line.startswith("| zero-shot → priming"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["71.65", "79.81"]
    assert cells[4] == f"{zs:.2f}"
    assert cells[5] == f"{100 * ev['priming']['top1']:.2f}"
    assert any(line.startswith("| transductive (k=10)") for line in text.splitlines())
    assert any(line.startswith("| 2-shot (median of 2 seeds)") for line in text.splitlines())
    # zero-shot and every primed head are scored over the same 102-class label space
    assert m["label_space"]["n_classes"] == 102
    labels = {ev[k]["n_labels"] for k in ("zero_shot", "priming", "transductive")}
    for s in ("1", "2"):
        for r in ev["few_shot"][s]["runs"]:
            labels |= {r["priming"]["n_labels"], r["shots_only"]["n_labels"]}
    assert labels == {102}
    # the pool is real: built from the corpus, items only for the classes the captions name
    per_class = m["pool"]["stats"]
    assert m["pool"]["size"] == 32
    assert set(n for n, c in per_class[list(per_class)[-1]].items() if c) <= {
        FLOWERS.classnames[c] for c in USED
    }
    # few-shot runs use the protocol's shots (1 per class present, 4 classes)
    assert [r["n_shots"] for r in ev["few_shot"]["1"]["runs"]] == [4, 4]
    assert m["rows"][0]["alpha"] == pytest.approx(0.7)  # the reference's Flowers value
    assert (out / "report.md").read_text().count("79.81") == 1
    # the embeddings it wrote can be fed back (precomputed path) and give the same numbers
    out2 = tmp / "run2"
    res = reproduce_neural_priming(
        "flowers102", corpus, out2, embeddings=out / "embeddings", model=model,
        shots=[1, 2], seeds=[0, 1], leakage_threshold=1.0, dedup_threshold=1.0, agreement=False,
    )  # fmt: skip
    assert res.metrics["eval"]["priming"] == ev["priming"]
    assert res.metrics["eval"]["few_shot"]["2"]["priming"] == ev["few_shot"]["2"]["priming"]


def _fake_world(tmp, bench, dim=12, seed=0):
    """Precomputed embeddings for a benchmark, and a matching corpus."""
    from priming.corpus import build_corpus

    rng = np.random.default_rng(seed)
    C = bench.n_classes
    T = rng.normal(size=(C, dim)).astype(np.float32)
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    emb = tmp / "emb"
    emb.mkdir()
    y = np.repeat(np.arange(0, C, max(1, C // 10)), 3)
    X = T[y] + 0.6 * rng.normal(size=(len(y), dim)).astype(np.float32)
    np.savez(emb / "test.npz", embeddings=X.astype(np.float32), labels=y)
    np.savez(emb / "text.npz", weights=T)
    cls = y[::3]
    caps = [f"a {bench.classnames[c]} seen from above" for c in cls for _ in range(3)]
    write_laion(tmp / "meta" / "m.parquet", caps)
    E = np.repeat(T[cls], 3, axis=0) + 0.3 * rng.normal(size=(len(caps), dim))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    np.save(tmp / "meta" / "m.npy", E.astype(np.float32))
    corpus = build_corpus(tmp / "meta" / "m.parquet", tmp / "meta" / "m.npy", out=tmp / "c")
    return emb, corpus, T, X, y


def test_imagenet_r_uses_its_200_class_space(tmp_path):
    bench = get_benchmark("imagenet-r")
    emb, corpus, T, X, y = _fake_world(tmp_path, bench)
    res = reproduce_neural_priming(
        "imagenet-r", corpus, tmp_path / "out", embeddings=emb, leakage_threshold=1.0
    )
    ev = res.metrics["eval"]
    assert res.metrics["label_space"]["n_classes"] == 200
    assert ev["zero_shot"]["n_labels"] == ev["priming"]["n_labels"] == 200
    # the zero-shot baseline is the text head over the 200 classes, computed independently
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    assert ev["zero_shot"]["top1"] == pytest.approx(np.mean((Xn @ T.T).argmax(1) == y))
    # transductive row carries the paper's IN-R numbers
    assert "64.57" in res.text and "79.37" in res.text
    assert res.rows[0]["alpha"] == pytest.approx(0.9)  # ImageNet reference value
    assert re.search(r"\| zero-shot → priming \| – \| – \|", res.text)  # not in the paper table


def test_bad_inputs(tmp_path):
    bench = get_benchmark("imagenet-r")
    emb, corpus, *_ = _fake_world(tmp_path, bench)
    with pytest.raises(ConfigError, match="exactly one"):
        reproduce_neural_priming("imagenet-r", corpus, tmp_path / "o")
    with pytest.raises(ConfigError, match="training split"):
        reproduce_neural_priming("imagenet-r", corpus, tmp_path / "o", data=tmp_path, shots=[1])
    with pytest.raises(DataError, match="train.npz"):
        reproduce_neural_priming("imagenet-r", corpus, tmp_path / "o", embeddings=emb, shots=[1])
    np.savez(emb / "test.npz", embeddings=np.zeros((2, 12), np.float32), labels=[0, 200])
    with pytest.raises(DataError, match="0..199"):
        reproduce_neural_priming("imagenet-r", corpus, tmp_path / "o", embeddings=emb)
    assert main(["reproduce", "neural-priming", "--dataset", "nope", "--corpus", str(corpus),
                 "--embeddings", str(emb)]) == 2  # fmt: skip


def test_reference_alpha():
    assert reference_alpha("flowers102", 0) == pytest.approx(0.7)
    assert reference_alpha("flowers102", 2) == pytest.approx(0.58)
    assert reference_alpha("imagenet-sketch", 0) == pytest.approx(0.9)
    assert reference_alpha("aircraft", 3) == pytest.approx(0.55)
    assert reference_alpha("pets", 0) == pytest.approx(0.9)
    assert PAPER["few_shot"]["flowers102"][10] == (94.9, 92.2)


def test_imagenet_repeated_names_share_a_text_weight():
    from priming.recipes.neural_priming import _unique_names

    names = list(get_benchmark("imagenet1k").classnames)
    uniq, index, dups = _unique_names(names)
    assert len(uniq) == 998 and len(dups) == 2
    assert [names[i] for i in dups] == ["missile", "sunglasses"]
    for i in dups:  # the repeat maps to the first class of that name
        assert uniq[index[i]] == names[i] and names.index(names[i]) < i
    assert all(uniq[index[i]] == n for i, n in enumerate(names))
