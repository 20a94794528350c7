"""Adding embeddings to a built corpus, and the IVF-PQ vector index."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from priming.corpus._ingest import _F16Writer
from priming.corpus._manifest import (
    INDEX_DIR,
    SHARD_DIR,
    atomic_write_json,
    read_manifest,
    sha256_file,
)
from priming.corpus._store import Corpus, _faiss
from priming.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["fill_embeddings", "set_embeddings", "build_index"]

ENCODE_CHUNK = 8192


def _open_complete(corpus_dir: Path) -> dict[str, Any]:
    manifest = read_manifest(corpus_dir)
    if not manifest.get("complete"):
        raise DataError(f"corpus {str(corpus_dir)!r} is unfinished; resume its build first")
    return manifest


def _publish_shard_embeddings(corpus_dir: Path, manifest: dict, si: int, tag: str, fill) -> None:
    """Write shard ``si``'s embeddings via ``fill(writer)`` under a new name, then switch
    the manifest to it; the previous file is removed only after the switch."""
    shard = manifest["shards"][si]
    final = corpus_dir / SHARD_DIR / f"{shard['name']}.{tag}.f16.npy"
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    writer = _F16Writer(tmp, manifest["dim"])
    try:
        fill(writer)
        writer.close()
        if writer.n != shard["n_rows"]:
            raise DataError(
                f"shard {shard['name']}: wrote {writer.n} embeddings for {shard['n_rows']} rows"
            )
        digest, size = sha256_file(tmp), tmp.stat().st_size
        os.replace(tmp, final)
    except BaseException:
        if not writer.fh.closed:
            writer.fh.close()
        tmp.unlink(missing_ok=True)
        raise
    old = shard.get("embeddings")
    shard.update(
        embeddings=f"{SHARD_DIR}/{final.name}",
        embeddings_sha256=digest,
        embeddings_bytes=size,
        embedding_fingerprint=manifest["embedding_fingerprint"],
    )
    atomic_write_json(corpus_dir / "manifest.json", manifest)
    if old and old != shard["embeddings"]:
        (corpus_dir / old).unlink(missing_ok=True)


def _start_embedding(
    manifest: dict, model: str, fingerprint: str, dim: int, source: str, overwrite: bool
) -> bool:
    """Prepare the manifest for new embeddings; True when resuming the same model."""
    same = manifest.get("embedding_fingerprint") == fingerprint and manifest.get("dim") == dim
    has_any = any("embeddings" in s for s in manifest["shards"])
    if has_any and not same and not overwrite:
        raise ConfigError(
            f"corpus already has embeddings from {manifest.get('embedding_model')!r}; "
            "pass overwrite=True (CLI: --overwrite) to replace them"
        )
    if not same:
        for s in manifest["shards"]:
            s.pop("embedding_fingerprint", None)
    manifest.update(
        has_embeddings=False,
        dim=dim,
        embedding_model=model,
        embedding_fingerprint=fingerprint,
        embedding_dtype="float16",
        embedding_source=source,
    )
    manifest.pop("index", None)
    return same


def fill_embeddings(
    corpus_dir: str | os.PathLike,
    encoder: Any,
    batch_size: int = 256,
    overwrite: bool = False,
    progress: Any = None,
) -> Path:
    """Embed every caption with ``encoder.encode_texts`` and store the vectors row-aligned.

    The result is a single-tower corpus (caption embeddings stand in for image
    embeddings). Each shard is written under a temporary name and published atomically;
    an interrupted fill resumes at the first shard not yet embedded by the same encoder
    (same ``fingerprint``). ``progress(done, total)`` is called after each shard.
    """
    corpus_dir = Path(corpus_dir)
    for attr in ("encode_texts", "name", "fingerprint", "dim"):
        if not hasattr(encoder, attr):
            raise ConfigError(f"encoder {encoder!r} lacks {attr!r}; expected a priming encoder")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    manifest = _open_complete(corpus_dir)
    dim, fp = int(encoder.dim), str(encoder.fingerprint)
    _start_embedding(manifest, str(encoder.name), fp, dim, "captions", overwrite)
    atomic_write_json(corpus_dir / "manifest.json", manifest)
    tag = fp[:12]
    for si, shard in enumerate(manifest["shards"]):
        if (
            shard.get("embedding_fingerprint") == fp
            and (corpus_dir / shard.get("embeddings", "")).is_file()
        ):
            continue
        db = corpus_dir / shard["db"]

        def fill(writer, db=db, shard=shard):
            import sqlite3
            import urllib.parse

            con = sqlite3.connect(f"file:{urllib.parse.quote(str(db.resolve()))}?mode=ro", uri=True)
            try:
                cur = con.execute("SELECT caption FROM rows ORDER BY id")
                while batch := cur.fetchmany(ENCODE_CHUNK):
                    texts = [r[0] for r in batch]
                    vecs = np.asarray(encoder.encode_texts(texts, batch_size=batch_size))
                    if vecs.shape != (len(texts), dim):
                        raise DataError(
                            f"encoder {encoder.name!r} returned shape {vecs.shape} for "
                            f"{len(texts)} captions, expected ({len(texts)}, {dim})"
                        )
                    if not np.isfinite(vecs).all():
                        raise DataError(
                            f"encoder {encoder.name!r} returned NaN/inf for shard {shard['name']}"
                        )
                    writer.write(vecs)
            finally:
                con.close()

        _publish_shard_embeddings(corpus_dir, manifest, si, tag, fill)
        log.info("embedded shard %s (%d rows)", shard["name"], shard["n_rows"])
        if progress is not None:
            progress(si + 1, len(manifest["shards"]))
    manifest["has_embeddings"] = True
    atomic_write_json(corpus_dir / "manifest.json", manifest)
    return corpus_dir


def set_embeddings(
    corpus_dir: str | os.PathLike,
    embeddings: Any,
    model: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Store ``embeddings`` (array or ``.npy`` path, ``(n_rows, dim)``, row-aligned with
    the corpus) as the corpus embeddings."""
    import hashlib

    corpus_dir = Path(corpus_dir)
    manifest = _open_complete(corpus_dir)
    if isinstance(embeddings, (str, os.PathLike)):
        src = str(embeddings)
        try:
            arr = np.load(embeddings, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"embeddings: cannot read {src!r}: {exc}") from None
    else:
        src = "array"
        arr = np.asarray(embeddings)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(
            f"embeddings must be a 2-d numeric array, got shape {arr.shape} dtype {arr.dtype}"
        )
    if arr.shape[0] != manifest["n_rows"]:
        raise DataError(
            f"embeddings have {arr.shape[0]} rows but the corpus has {manifest['n_rows']} rows"
        )
    h = hashlib.sha256()
    for start in range(0, arr.shape[0], 65536):
        block = np.asarray(arr[start : start + 65536], dtype=np.float32)
        if not (np.isfinite(block).all() and (np.abs(block) <= 65504).all()):
            raise DataError("embeddings contain NaN/inf (or values beyond float16 range)")
        h.update(block.astype("<f2").tobytes())
    fp = h.hexdigest()
    same = _start_embedding(manifest, model or src, fp, int(arr.shape[1]), src, overwrite)
    atomic_write_json(corpus_dir / "manifest.json", manifest)
    for si, shard in enumerate(manifest["shards"]):
        if same and shard.get("embedding_fingerprint") == fp:
            continue
        a, b = shard["row_offset"], shard["row_offset"] + shard["n_rows"]

        def fill(writer, a=a, b=b):
            for start in range(a, b, 65536):
                writer.write(np.asarray(arr[start : min(b, start + 65536)], dtype=np.float32))

        _publish_shard_embeddings(corpus_dir, manifest, si, fp[:12], fill)
    manifest["has_embeddings"] = True
    atomic_write_json(corpus_dir / "manifest.json", manifest)
    return corpus_dir


def _default_m(dim: int) -> int:
    target = max(1, dim // 8)
    return max(d for d in range(1, target + 1) if dim % d == 0)


def build_index(
    corpus_dir: str | os.PathLike,
    nlist: int | None = None,
    m: int | None = None,
    nbits: int = 8,
    train_size: int | None = None,
    random_state: int | None = 0,
) -> Path:
    """Train an IVF-PQ (inner product) index over the corpus embeddings and publish it.

    ``nlist`` defaults to about ``4 * sqrt(n_rows)`` (at most ``n_rows / 39``), ``m`` (PQ
    sub-quantizers) to the largest divisor of ``dim`` not above ``dim / 8``. Use it with
    ``corpus.knn(q, k, method="ivfpq")``.
    """
    faiss = _faiss()
    corpus_dir = Path(corpus_dir)
    corpus = Corpus(corpus_dir)
    corpus._require_embeddings()
    n, dim = corpus.n_rows, corpus.dim
    nlist = nlist or max(1, min(int(4 * np.sqrt(n)), n // 39))
    m = m or _default_m(dim)
    if dim % m:
        raise ConfigError(f"m={m} must divide the embedding dimension {dim}")
    if nlist < 1 or nlist > n:
        raise ConfigError(f"nlist must be between 1 and the number of rows ({n}), got {nlist}")
    if not 1 <= nbits <= 16:
        raise ConfigError(f"nbits must be between 1 and 16, got {nbits}")
    train_size = min(n, train_size or max(64 * nlist, 2**nbits * 64, 100_000))
    rng = np.random.default_rng(random_state)
    sample = np.sort(rng.choice(n, size=train_size, replace=False))
    xt = corpus.embeddings(sample)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = int(rng.integers(2**31 - 1))
    index.pq.cp.seed = int(rng.integers(2**31 - 1))
    index.train(xt)
    for _, block in corpus.iter_embeddings():
        index.add(block)
    out = corpus_dir / INDEX_DIR / "ivfpq.faiss"
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        faiss.write_index(index, str(tmp))
        digest = sha256_file(tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    manifest = corpus.manifest
    manifest["index"] = {
        "file": f"{INDEX_DIR}/{out.name}",
        "type": "IVFPQ",
        "metric": "inner_product",
        "nlist": nlist,
        "m": m,
        "nbits": nbits,
        "train_size": int(train_size),
        "sha256": digest,
        "embeddings_fingerprint": corpus.fingerprint,
    }
    corpus.close()
    atomic_write_json(corpus_dir / "manifest.json", manifest)
    return out
