"""Helpers shared by the corpus tests: tiny LAION-style parquet inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_laion(path: Path, captions, urls=None, **extra) -> Path:
    n = len(captions)
    cols = {
        "URL": urls
        if urls is not None
        else [f"http://img.example/{path.stem}/{i}.jpg" for i in range(n)],
        "TEXT": captions,
        "NSFW": extra.pop("NSFW", ["UNLIKELY"] * n),
        "similarity": extra.pop("similarity", np.linspace(0.25, 0.35, n)),
        "WIDTH": [640] * n,
        "HEIGHT": [480] * n,
        "SAMPLE_ID": [f"{path.stem}-{i}" for i in range(n)],
    }
    cols.update(extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)
    return path


def clip_retrieval_layout(root: Path, shards, dim=8, seed=0):
    """``root/metadata/metadata_i.parquet`` + ``root/img_emb/img_emb_i.npy``; returns embeddings."""
    rng = np.random.default_rng(seed)
    embs = []
    for i, caps in enumerate(shards):
        write_laion(root / "metadata" / f"metadata_{i}.parquet", caps)
        e = rng.normal(size=(len(caps), dim)).astype(np.float32)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        (root / "img_emb").mkdir(parents=True, exist_ok=True)
        np.save(root / "img_emb" / f"img_emb_{i}.npy", e)
        embs.append(e)
    return embs
