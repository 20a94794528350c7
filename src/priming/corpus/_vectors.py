"""Adding embeddings to a built corpus, and the IVF-PQ vector index."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from priming._fs import atomic_output, atomic_path
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
from priming.exec import ExecutorSpec, open_executor
from priming.progress import Tracker, as_callback, track

log = logging.getLogger(__name__)

__all__ = ["fill_embeddings", "set_embeddings", "build_index", "decode_image"]

#: captions per ``encode_texts`` call (and per progress report)
ENCODE_CHUNK = 2048


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temp(shard_dir: Path) -> int:
    """Remove the ``.NAME.tmp-PID`` files that a killed fill left (their writer process is
    gone); files of a writer that is still running are left alone. Returns the count."""
    n = 0
    for p in shard_dir.glob(".*.tmp-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            p.unlink(missing_ok=True)
            n += 1
    return n


def _open_complete(corpus_dir: Path) -> dict[str, Any]:
    manifest = read_manifest(corpus_dir)
    if not manifest.get("complete"):
        raise DataError(f"corpus {str(corpus_dir)!r} is unfinished; resume its build first")
    if clean_stale_temp(corpus_dir / SHARD_DIR):
        log.info("removed temporary files an interrupted run left in %s", corpus_dir)
    return manifest


def _publish_shard_embeddings(corpus_dir: Path, manifest: dict, si: int, tag: str, fill) -> None:
    """Write shard ``si``'s embeddings via ``fill(writer)`` under a new name, then switch
    the manifest to it; the previous file is removed only after the switch."""
    shard = manifest["shards"][si]
    final = corpus_dir / SHARD_DIR / f"{shard['name']}.{tag}.f16.npy"
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    mask_final = final.with_name(f"{shard['name']}.{tag}.mask.npy")
    writer = _F16Writer(tmp, manifest["dim"])
    try:
        extra = fill(writer) or {}
        writer.close()
        if writer.n != shard["n_rows"]:
            raise DataError(
                f"shard {shard['name']}: wrote {writer.n} embeddings for {shard['n_rows']} rows"
            )
        digest, size = sha256_file(tmp), tmp.stat().st_size
        mask = extra.get("mask")
        if mask is not None:
            with atomic_output(mask_final, fsync=True) as fh:
                np.save(fh, np.asarray(mask, dtype=bool), allow_pickle=False)
            mask_digest = sha256_file(mask_final)
        os.replace(tmp, final)
    except BaseException:
        if not writer.fh.closed:
            writer.fh.close()
        tmp.unlink(missing_ok=True)
        raise
    old = shard.get("embeddings")
    old_mask = shard.pop("embeddings_mask", None)
    for k in ("embeddings_mask_sha256", "n_missing_embeddings", "image_stats"):
        shard.pop(k, None)
    shard.update(
        embeddings=f"{SHARD_DIR}/{final.name}",
        embeddings_sha256=digest,
        embeddings_bytes=size,
        embedding_fingerprint=manifest["embedding_fingerprint"],
    )
    if mask is not None:
        shard.update(
            embeddings_mask=f"{SHARD_DIR}/{mask_final.name}",
            embeddings_mask_sha256=mask_digest,
            n_missing_embeddings=int(mask.size - np.count_nonzero(mask)),
        )
    if extra.get("stats") is not None:
        shard["image_stats"] = extra["stats"]
    atomic_write_json(corpus_dir / "manifest.json", manifest)
    if old and old != shard["embeddings"]:
        (corpus_dir / old).unlink(missing_ok=True)
    if old_mask and old_mask != shard.get("embeddings_mask"):
        (corpus_dir / old_mask).unlink(missing_ok=True)


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
    for k in ("image_stats", "image_match", "n_missing_embeddings", "encoder_fingerprint"):
        manifest.pop(k, None)
    return same


def _check_encoder(encoder: Any, batch_size: Any, needs: str) -> None:
    for attr in (needs, "name", "fingerprint", "dim"):
        if not hasattr(encoder, attr):
            raise ConfigError(f"encoder {encoder!r} lacks {attr!r}; expected a priming encoder")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")


def _shard_done(corpus_dir: Path, shard: dict, fp: str) -> bool:
    return (
        shard.get("embedding_fingerprint") == fp
        and (corpus_dir / shard.get("embeddings", "")).is_file()
    )


def _checked_vectors(vecs: Any, encoder: Any, n: int, dim: int, what: str, shard: str):
    vecs = np.asarray(vecs, dtype=np.float32)
    if vecs.shape != (n, dim):
        raise DataError(
            f"encoder {encoder.name!r} returned shape {vecs.shape} for {n} {what}, "
            f"expected ({n}, {dim})"
        )
    if not np.isfinite(vecs).all():
        raise DataError(f"encoder {encoder.name!r} returned NaN/inf for shard {shard}")
    return vecs


def _caption_filler(db: Path, shard: dict, encoder: Any, dim: int, batch_size: int, bar: Tracker):
    def fill(writer) -> None:
        import sqlite3
        import urllib.parse

        con = sqlite3.connect(f"file:{urllib.parse.quote(str(db.resolve()))}?mode=ro", uri=True)
        try:
            cur = con.execute("SELECT caption FROM rows ORDER BY id")
            while batch := cur.fetchmany(ENCODE_CHUNK):
                texts = [r[0] for r in batch]
                vecs = encoder.encode_texts(texts, batch_size=batch_size)
                writer.write(
                    _checked_vectors(vecs, encoder, len(texts), dim, "captions", shard["name"])
                )
                bar.advance(len(texts))
        except sqlite3.DatabaseError as exc:
            raise DataError(
                f"shard {shard['name']} ({db}) is damaged or unreadable ({exc}); run "
                f"`priming corpus info {db.parent.parent} --verify`"
            ) from None
        finally:
            con.close()

    return fill


def fill_embeddings(
    corpus_dir: str | os.PathLike,
    encoder: Any,
    batch_size: int = 256,
    overwrite: bool = False,
    progress: Any = None,
    images: str | os.PathLike | None = None,
    decode: Any = None,
    workers: int | None = None,
    executor: ExecutorSpec = None,
) -> Path:
    """Embed every caption with ``encoder.encode_texts`` and store the vectors row-aligned.

    The result is a single-tower corpus (caption embeddings stand in for image
    embeddings). Each shard is written under a temporary name and published atomically;
    an interrupted fill resumes at the first shard not yet embedded by the same encoder
    (same ``fingerprint``). ``progress`` (a :data:`priming.progress.ProgressCallback`)
    receives the task ``"embed captions"`` (or ``"embed images"``) in rows, with the
    number of rows still to embed as its total, advanced every few thousand rows.

    With ``images`` (a folder of img2dataset output, or one ``.tar``), the rows' images
    are embedded instead, with ``encoder.encode_images``: each sample is mapped to its row
    by the ``row_id`` field of its json (written by :func:`export_urls`), else by its
    ``url``. ``decode(data: bytes, name: str) -> PIL.Image`` decodes an image and raises
    :class:`~priming.errors.DataError` when it cannot (default: :func:`decode_image`,
    the one decoder, :func:`priming.images.load_image`, with its pixel-limit guard).
    Images are decoded on ``executor`` (:mod:`priming.exec`; default: ``workers``
    local threads), one picklable task per image.
    Rows without a usable image get no embedding: they are marked in a per-shard mask,
    never returned by ``knn`` and read back as NaN by ``embeddings``; the counts (and
    examples of corrupt images) are in the manifest's ``image_stats``.
    """
    if images is not None:
        return _fill_from_images(
            Path(corpus_dir),
            encoder,
            images,
            batch_size,
            overwrite,
            as_callback(progress),
            decode,
            workers,
            executor,
        )
    corpus_dir = Path(corpus_dir)
    _check_encoder(encoder, batch_size, "encode_texts")
    manifest = _open_complete(corpus_dir)
    dim, fp = int(encoder.dim), str(encoder.fingerprint)
    _start_embedding(manifest, str(encoder.name), fp, dim, "captions", overwrite)
    atomic_write_json(corpus_dir / "manifest.json", manifest)
    todo = [si for si, s in enumerate(manifest["shards"]) if not _shard_done(corpus_dir, s, fp)]
    total = sum(int(manifest["shards"][si]["n_rows"]) for si in todo)
    with track(as_callback(progress), "embed captions", total, "rows") as bar:
        for si in todo:
            shard = manifest["shards"][si]
            fill = _caption_filler(corpus_dir / shard["db"], shard, encoder, dim, batch_size, bar)
            _publish_shard_embeddings(corpus_dir, manifest, si, fp[:12], fill)
            log.info("embedded shard %s (%d rows)", shard["name"], shard["n_rows"])
    manifest["has_embeddings"] = True
    atomic_write_json(corpus_dir / "manifest.json", manifest)
    return corpus_dir


IMAGE_CHUNK = 512
MAX_EXAMPLES = 50


def decode_image(data: bytes, name: str):
    """Decode one image's bytes to RGB with :func:`priming.images.load_image` (EXIF
    orientation, mode conversion, the pixel-limit guard); a DataError names ``name``."""
    from priming import images

    return images.load_image(data, max_pixels=images.DEFAULT_MAX_PIXELS, name=name)


def _decode_sample(read: Any, source: str, decode: Any):
    """``(image, None)`` or ``(None, reason)`` for one sample (a picklable task)."""
    try:
        return decode(read(), source), None
    except DataError as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"{source}: cannot read: {exc}"


def _url_lookup(manifest: dict, corpus_dir: Path):
    def lookup(urls: set[str]) -> dict[str, int]:
        import json
        import sqlite3
        import urllib.parse

        found: dict[str, int] = {}
        payload = json.dumps(sorted(urls))
        for shard in manifest["shards"]:
            db = (corpus_dir / shard["db"]).resolve()
            con = sqlite3.connect(f"file:{urllib.parse.quote(str(db))}?mode=ro", uri=True)
            try:
                cur = con.execute(
                    "SELECT id, url FROM rows WHERE url IN (SELECT value FROM json_each(?)) "
                    "ORDER BY id",
                    (payload,),
                )
                for rid, url in cur:
                    found.setdefault(url, int(rid) + int(shard["row_offset"]))
            finally:
                con.close()
        return found

    return lookup


class _ImageShardFill:
    """Fills one shard's embedding file from its matched images: decoded on the executor
    in chunks, embedded, written in row order with zero rows (masked) where no image is."""

    def __init__(self, ctx: dict[str, Any], shard: dict, mine: np.ndarray) -> None:
        self.ctx, self.shard, self.mine = ctx, shard, mine
        self.a, self.n = int(shard["row_offset"]), int(shard["n_rows"])

    def _decode(self, chunk: np.ndarray) -> list:
        ex, by_row, decode = self.ctx["executor"], self.ctx["by_row"], self.ctx["decode"]
        smps = [by_row[int(r)] for r in chunk]
        futs = [ex.submit(_decode_sample, s.read, s.source, decode) for s in smps]
        return [f.result() for f in futs]

    def __call__(self, writer) -> dict[str, Any]:
        encoder, dim, by_row = self.ctx["encoder"], self.ctx["dim"], self.ctx["by_row"]
        mask = np.zeros(self.n, dtype=bool)
        corrupt: list[tuple[str, str]] = []
        cursor = 0
        zeros = np.zeros((min(self.n, 65536), dim), np.float32)

        def pad_to(stop: int) -> None:
            nonlocal cursor
            while cursor < stop:
                step = min(stop - cursor, zeros.shape[0])
                writer.write(zeros[:step])
                cursor += step

        for start in range(0, self.mine.size, IMAGE_CHUNK):
            chunk = self.mine[start : start + IMAGE_CHUNK]
            decoded = self._decode(chunk)
            ok = [i for i, (img, _) in enumerate(decoded) if img is not None]
            corrupt += [(by_row[int(chunk[i])].source, r)
                        for i, (_, r) in enumerate(decoded) if r is not None]  # fmt: skip
            if ok:
                vecs = encoder.encode_images(
                    [decoded[i][0] for i in ok], batch_size=self.ctx["batch_size"]
                )
                vecs = _checked_vectors(vecs, encoder, len(ok), dim, "images", self.shard["name"])
                for j, i in enumerate(ok):
                    local = int(chunk[i]) - self.a
                    pad_to(local)
                    writer.write(vecs[j : j + 1])
                    cursor += 1
                    mask[local] = True
            self.ctx["bar"].advance(chunk.size)
        pad_to(self.n)
        for source, reason in corrupt[:MAX_EXAMPLES]:
            log.warning("image %s skipped: %s", source, reason)
        stats = {
            "embedded": int(mask.sum()),
            "corrupt": len(corrupt),
            "no_image": int(self.n - mask.sum() - len(corrupt)),
            "corrupt_examples": [list(x) for x in corrupt[:MAX_EXAMPLES]],
        }
        return {"mask": mask, "stats": stats}


def _match_images(corpus_dir: Path, manifest: dict, encoder: Any, images, overwrite: bool):
    """Scan and match the img2dataset output, prepare the manifest; returns the match and
    the fingerprint of these embeddings (encoder + image files)."""
    import hashlib

    from priming.corpus._images import images_signature, match_samples, scan_img2dataset

    fp = hashlib.sha256(
        f"images\0{encoder.fingerprint}\0{images_signature(images)}".encode()
    ).hexdigest()
    samples = scan_img2dataset(images)
    match = match_samples(samples, int(manifest["n_rows"]), _url_lookup(manifest, corpus_dir))
    _start_embedding(
        manifest, str(encoder.name), fp, int(encoder.dim), f"images:{os.fspath(images)}", overwrite
    )
    manifest["encoder_fingerprint"] = str(encoder.fingerprint)
    manifest["image_match"] = {
        "samples": len(samples),
        "matched": len(match.by_row),
        "unmatched": len(match.unmatched),
        "duplicates": match.duplicates,
        "no_image_file": len(match.no_image),
        "unmatched_examples": [list(x) for x in match.unmatched[:MAX_EXAMPLES]],
    }
    atomic_write_json(corpus_dir / "manifest.json", manifest)
    for source, reason in match.unmatched[:MAX_EXAMPLES]:
        log.warning("image sample %s not used: %s", source, reason)
    return match, fp


def _fill_from_images(
    corpus_dir: Path,
    encoder: Any,
    images: str | os.PathLike,
    batch_size: int,
    overwrite: bool,
    progress: Any,
    decode: Any,
    workers: int | None,
    executor: ExecutorSpec = None,
) -> Path:
    modality = getattr(encoder, "modality", "image")
    if modality not in ("image", "image-text") or not hasattr(encoder, "encode_images"):
        raise ConfigError(
            f"encoder {getattr(encoder, 'name', encoder)!r} has no image tower (modality "
            f"{modality!r}); embedding images needs an image or image-text model "
            "(e.g. hf: CLIP, open_clip:)"
        )
    _check_encoder(encoder, batch_size, "encode_images")
    manifest = _open_complete(corpus_dir)
    match, fp = _match_images(corpus_dir, manifest, encoder, images, overwrite)
    rows_sorted = np.array(sorted(match.by_row), dtype=np.int64)
    todo = []
    for si, shard in enumerate(manifest["shards"]):
        if not _shard_done(corpus_dir, shard, fp):
            a, n = int(shard["row_offset"]), int(shard["n_rows"])
            todo.append((si, rows_sorted[(rows_sorted >= a) & (rows_sorted < a + n)]))
    n_workers = max(1, workers or min(8, os.cpu_count() or 1))
    total = sum(int(m.size) for _, m in todo)
    with (
        open_executor(executor, max_workers=n_workers, kind="thread") as ex,
        track(progress, "embed images", total, "rows") as bar,
    ):
        ctx = {
            "executor": ex,
            "by_row": match.by_row,
            "decode": decode or decode_image,
            "encoder": encoder,
            "dim": int(encoder.dim),
            "batch_size": batch_size,
            "bar": bar,
        }
        for si, mine in todo:
            shard = manifest["shards"][si]
            fill = _ImageShardFill(ctx, shard, mine)
            _publish_shard_embeddings(corpus_dir, manifest, si, fp[:12], fill)
            log.info("embedded images of shard %s", shard["name"])
    totals = {"embedded": 0, "corrupt": 0, "no_image": 0}
    for shard in manifest["shards"]:
        for k in totals:
            totals[k] += int(shard.get("image_stats", {}).get(k, 0))
    manifest["image_stats"] = totals
    manifest["n_missing_embeddings"] = int(
        sum(s.get("n_missing_embeddings", 0) for s in manifest["shards"])
    )
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


def _index_params(n: int, dim: int, nlist, m, nbits, train_size) -> tuple[int, int, int, int]:
    """:func:`build_index`'s parameters checked, defaults filled in (None means the
    default; 0 is an error like any other value below 1)."""
    for name, value, optional in (
        ("nlist", nlist, True),
        ("m", m, True),
        ("nbits", nbits, False),
        ("train_size", train_size, True),
    ):
        if value is None and optional:
            continue
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
    nlist = max(1, min(int(4 * np.sqrt(n)), n // 39)) if nlist is None else int(nlist)
    if nlist < 1 or nlist > n:
        raise ConfigError(f"nlist must be between 1 and the number of rows ({n}), got {nlist}")
    m = _default_m(dim) if m is None else int(m)
    if m < 1 or dim % m:
        raise ConfigError(f"m={m} must divide the embedding dimension {dim}")
    if not 1 <= nbits <= 16:
        raise ConfigError(f"nbits must be between 1 and 16, got {nbits}")
    if train_size is None:
        train_size = max(64 * nlist, 2**nbits * 64, 100_000)
    elif train_size < 1:
        raise ConfigError(f"train_size must be a positive integer, got {train_size}")
    return nlist, m, int(nbits), min(n, int(train_size))


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
    nlist, m, nbits, train_size = _index_params(n, dim, nlist, m, nbits, train_size)
    rng = np.random.default_rng(random_state)
    if corpus.n_missing_embeddings:
        valid = np.flatnonzero(corpus.has_embedding(np.arange(n)))
        if valid.size < nlist:
            raise ConfigError(
                f"only {valid.size} rows have embeddings; nlist={nlist} needs at least as many"
            )
        train_size = min(train_size, valid.size)
        sample = np.sort(rng.choice(valid, size=train_size, replace=False))
    else:
        sample = np.sort(rng.choice(n, size=train_size, replace=False))
    if sample.size < 2**nbits:
        raise ConfigError(
            f"{sample.size} training vectors are too few for nbits={nbits} "
            f"(needs at least {2**nbits}); lower nbits"
        )
    xt = corpus.embeddings(sample)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = int(rng.integers(2**31 - 1))
    index.pq.cp.seed = int(rng.integers(2**31 - 1))
    index.train(xt)
    for ids, block in corpus.iter_valid_embeddings():
        index.add_with_ids(block, ids)
    out = corpus_dir / INDEX_DIR / "ivfpq.faiss"
    out.parent.mkdir(exist_ok=True)
    with atomic_path(out, make_parents=False) as tmp:
        faiss.write_index(index, str(tmp))
        digest = sha256_file(tmp)
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
