"""Fixture folders for the browser tests: a hand-written run (with the pool step records of
the step-recording pools) and a real run made by ``run_prime`` on a tiny corpus.

The builders are plain functions (imported by the other test_browse* modules); the tests
here check that the fixtures say what the other tests rely on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

CLASSES = ["cat", "dog", "bird"]
N_DOG, N_CAT = 130, 7
STEPS = [
    {"step": "recall", "kept": {"cat": 12, "dog": 150, "bird": 0}, "dropped": {}},
    {"step": "nsfw", "kept": {"cat": 11, "dog": 150, "bird": 0}, "dropped": {"cat": 1}},
    {"step": "dedup-url", "kept": {"cat": 8, "dog": 150, "bird": 0}, "dropped": {"cat": 3}},
    {
        "step": "agreement",
        "kept": {"cat": 7, "dog": 135, "bird": 0},
        "dropped": {"cat": 1, "dog": 15},
    },
    {"step": "holdout", "kept": {"cat": 7, "dog": 130, "bird": 0}, "dropped": {"dog": 5}},
]


def png_bytes(color=(200, 30, 30)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buf, format="PNG")
    return buf.getvalue()


def pool_rows(n_dog=N_DOG, n_cat=N_CAT):
    """Pool items: cats first (row ids 1000+), then dogs (row ids 2000+)."""
    rows = []
    for i in range(n_cat):
        rows.append(
            ("cat", 1000 + i, f"a fluffy cat number {i}", f"http://img.example/cat/{i}.jpg")
        )
    for i in range(n_dog):
        cap = f"dog photo {i}" + (" on the beach" if i % 10 == 3 else "")
        rows.append(("dog", 2000 + i, cap, f"http://img.example/dog/{i}.jpg"))
    rows[0] = ("cat", 1000, rows[0][2], "images/cat0.png")  # a local image under the run
    rows[1] = ("cat", 1001, rows[1][2], "../outside.png")  # escapes the run: no thumbnail
    return rows


def pool_table(rows):
    return pa.table(
        {
            "row_id": pa.array([r[1] for r in rows], pa.int64()),
            "label": pa.array([CLASSES.index(r[0]) for r in rows], pa.int64()),
            "class_name": pa.array([r[0] for r in rows], pa.string()),
            "caption": pa.array([r[2] for r in rows], pa.string()),
            "url": pa.array([r[3] for r in rows], pa.string()),
            "score": pa.array(np.linspace(0.9, 0.1, len(rows)), pa.float32()),
            "probability": pa.array(np.linspace(0.99, 0.5, len(rows)), pa.float32()),
            "matched": pa.array(["kitty" if r[0] == "cat" else "dog" for r in rows], pa.string()),
        }
    )


def dropped_rows():
    rows = [(900, "cat", "nsfw", "flagged NSFW by the corpus", "bad cat", None)]
    rows += [(901, None, "ambiguous", "caption names 'cat' and 'dog'", "cat vs dog", None)]
    rows += [
        (910 + i, "cat", "dedup-url", "same url as row 1002", f"dup cat {i}", "http://x/c")
        for i in range(3)
    ]
    rows += [(950, "cat", "agreement", "zero-shot top-1 is 'dog', not 'cat'", "cat and dog", None)]
    rows += [
        (
            3000 + i,
            "dog",
            "agreement",
            "zero-shot top-1 is 'cat', not 'dog'",
            f"odd dog {i}",
            f"http://img.example/odd/{i}.jpg",
        )
        for i in range(15)
    ]
    return rows


def write_handmade_run(root: Path) -> Path:
    """A run folder as the step-recording pools and an evaluated run write it."""
    pool = root / "pool"
    pool.mkdir(parents=True)
    rows = pool_rows()
    pq.write_table(pool_table(rows), pool / "pool.parquet", row_group_size=40)
    np.save(pool / "embeddings.npy", np.zeros((len(rows), 4), np.float32))
    d = dropped_rows()
    pq.write_table(
        pa.table(
            {
                "row_id": pa.array([r[0] for r in d], pa.int64()),
                "class": pa.array([r[1] for r in d], pa.string()),
                "step": pa.array([r[2] for r in d], pa.string()),
                "reason": pa.array([r[3] for r in d], pa.string()),
                "caption": pa.array([r[4] for r in d], pa.string()),
                "url": pa.array([r[5] for r in d], pa.string()),
            }
        ),
        pool / "steps.parquet",
    )
    held = [
        ("dog", 5000 + i, f"held-out dog {i}", f"http://img.example/h/{i}.jpg") for i in range(5)
    ]
    pq.write_table(pool_table(held), pool / "heldout.parquet")
    np.save(pool / "heldout.npy", np.zeros((5, 4), np.float32))
    meta = {"format_version": 2, "class_names": CLASSES, "steps": STEPS, "meta": {}}
    (pool / "pool.json").write_text(json.dumps(meta))
    (root / "images").mkdir()
    (root / "images" / "cat0.png").write_bytes(png_bytes())
    (root.parent / "outside.png").write_bytes(png_bytes((0, 0, 255)))
    (root / "secret.txt").write_text("not an image")
    metrics = {
        "classes": CLASSES,
        "model": {"name": "fake:hand", "dim": 4},
        "pool": {"size": len(rows)},
        "alpha": {"value": 0.7, "source": "validation", "cv_accuracy": {"0.5": 0.8, "0.7": 0.9}},
        "eval": {
            "zero_shot": {"top1": 0.5, "per_class": {"cat": 0.5, "dog": 0.75, "bird": None}},
            "primed (neural-priming)": {
                "top1": 0.625,
                "per_class": {"cat": 0.75, "dog": 1.0, "bird": 0.0},
            },
        },
    }
    (root / "metrics.json").write_text(json.dumps(metrics))
    # 8 eval items: cat x4 (1 wrong -> dog), dog x2 (right), bird x2 (both wrong: dog, cat)
    preds = [
        ("e0", "cat", "cat"),
        ("e1", "cat", "dog"),
        ("e2", "cat", "cat"),
        ("e3", "cat", "cat"),
        ("e4", "dog", "dog"),
        ("e5", "dog", "dog"),
        ("e6", "bird", "dog"),
        ("e7", "bird", "cat"),
    ]
    lines = ["id,y_true,y_pred,score:cat,score:dog,score:bird"]
    for pid, t, p in preds:
        s = {c: 0.1 for c in CLASSES}
        s[p] = 0.8
        s[t] = max(s[t], 0.3)
        lines.append(f"{pid},{t},{p},{s['cat']},{s['dog']},{s['bird']}")
    (root / "predictions.csv").write_text("\n".join(lines) + "\n")
    return root


# ----------------------------------------------------------------------- a real run
FRUITS = ["apple", "banana", "cherry", "durian"]
EXTRA = ["sweet", "fresh", "ripe", "green", "red", "sliced", "market", "tree", "juice", "pie"]


def make_real_run(tmp: Path):
    """``run_prime`` on a tiny text corpus, evaluated, with a predictions file.

    Returns ``(run_dir, corpus_dir, result)``.
    """
    from priming.eval.metrics import save_predictions
    from priming.job import PrimeConfig, run_prime
    from tests._fakes import BagOfWordsEncoder, write_text_corpus

    rng = np.random.default_rng(0)
    enc = BagOfWordsEncoder(dim=48)
    caps = []
    for i in range(150):
        words = list(rng.choice(EXTRA, 3)) + [FRUITS[i % 3]]
        rng.shuffle(words)
        caps.append(" ".join(words) + f" {i}")
    corpus = write_text_corpus(tmp, caps, enc)
    (tmp / "classes.txt").write_text("apple\nbanana|plantain\ncherry\ndurian\n")
    ev = [
        {"text": " ".join(rng.choice(EXTRA, 2)) + " " + FRUITS[i % 4], "label": FRUITS[i % 4]}
        for i in range(24)
    ]
    (tmp / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in ev))
    cfg = PrimeConfig.from_mapping(
        dict(
            model="fake:bow",
            classes=str(tmp / "classes.txt"),
            corpus=str(corpus),
            out=str(tmp / "run"),
            eval=str(tmp / "eval.jsonl"),
            cache_dir=str(tmp / "cache"),
            per_class=30,
            progress=False,
            overwrite=True,
            templates="identity",
        )
    )
    res = run_prime(cfg, encoder=enc)
    run = tmp / "run"
    if not any((run / f).is_file() for f in ("predictions.csv", "predictions.npz")):
        X = enc.encode_texts([r["text"] for r in ev])
        S = res.head.decision_function(X)
        pred = np.asarray(res.head.classes_)[S.argmax(axis=1)]
        save_predictions(
            run / "predictions.npz",
            [r["label"] for r in ev],
            pred,
            scores=S,
            labels=res.head.classes_,
            ids=[r["text"] for r in ev],
        )
    return run, corpus, res


def test_handmade_fixture_is_consistent(tmp_path):
    run = write_handmade_run(tmp_path / "run")
    t = pq.read_table(run / "pool" / "pool.parquet")
    assert (
        t.num_rows == N_CAT + N_DOG
        and pq.ParquetFile(run / "pool" / "pool.parquet").num_row_groups == 4
    )
    s = pq.read_table(run / "pool" / "steps.parquet").to_pylist()
    # the per-step dropped counts in pool.json match the dropped rows recorded
    for entry in STEPS:
        for c, n in entry["dropped"].items():
            got = sum(1 for r in s if r["step"] == entry["step"] and r["class"] == c)
            if entry["step"] != "holdout":
                assert got == n, (entry["step"], c)
    assert STEPS[-1]["kept"] == {"cat": N_CAT, "dog": N_DOG, "bird": 0}
