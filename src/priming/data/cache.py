"""The content-addressed embedding cache: ``embed(encoder, dataset, cache_dir)``.

Layout of one entry, ``<cache_dir>/<key>/`` where ``key`` hashes the encoder
fingerprint, the dataset fingerprint and the storage options:

- ``plan.json`` — written first: item count and shard size (fixes the shard ranges);
- ``parts/NNNNNN.npy`` + ``parts/NNNNNN.json`` — one shard of consecutive items: the
  rows of the items that decoded, then (its commit marker) which items those are and
  which were skipped and why. Both are written to a temporary name and renamed, so a
  killed run leaves only whole shards; a new run skips them and does the rest;
- ``embeddings.npy``, ``ids.npy``, ``labels.npy`` — assembled at the end;
- ``meta.json`` — written last; its presence means the entry is complete.

A changed model (weights, preprocessing, precision) or changed files (paths, sizes,
modification times; or contents with ``fingerprint="content"``) give a different key,
so a stale entry is never served.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from priming._fs import atomic_output, make_dir
from priming.data.datasets import Dataset, open_dataset
from priming.data.embeddings import EmbeddedData
from priming.encoders.base import Encoder, l2_normalize
from priming.errors import ConfigError, DataError
from priming.exec import ExecutorSpec
from priming.images import DEFAULT_MAX_PIXELS
from priming.progress import ProgressCallback, Tracker, as_callback, track

log = logging.getLogger(__name__)

__all__ = ["embed", "cache_key", "CACHE_FORMAT"]

CACHE_FORMAT = 1
CACHE_DTYPES = ("float32", "float16")


class _Skip:
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def cache_key(encoder: Any, dataset: Dataset, cache_dtype: str = "float32") -> str:
    """The cache key of ``dataset`` embedded by ``encoder`` (hex, 32 characters)."""
    blob = json.dumps(
        {
            "format": CACHE_FORMAT,
            "encoder": str(encoder.fingerprint),
            "dataset": dataset.fingerprint(),
            "max_pixels": dataset.max_pixels,
            "dtype": cache_dtype,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _atomic_write_bytes(path: Path, write) -> None:
    with atomic_output(path, fsync=True, make_parents=False) as f:
        write(f)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    _atomic_write_bytes(path, lambda f: np.save(f, arr, allow_pickle=False))


def _save_json(path: Path, obj: Any) -> None:
    _atomic_write_bytes(path, lambda f: f.write(json.dumps(obj).encode("utf-8")))


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Exclusive inter-process lock (POSIX ``flock``; a no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(lock_path, "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process writing %s", lock_path.with_suffix(""))
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class _Runner:
    """Encodes ranges of a dataset's items, skipping (and recording) bad ones."""

    def __init__(
        self,
        encoder: Any,
        ds: Dataset,
        batch_size: int,
        workers: int | None,
        bar: Tracker,
        executor: ExecutorSpec = None,
    ):
        self.encoder, self.ds, self.batch_size, self.bar = encoder, ds, batch_size, bar
        self.workers, self.executor = workers, executor
        self.prepare = getattr(encoder, "_prepare_image", None)
        self.encode_prepared = getattr(encoder, "_encode_image_batch", None)
        if self.prepare is None or self.encode_prepared is None:
            self.prepare = self.encode_prepared = None

    def _prep(self, i: int):
        ds = self.ds
        reason = ds.precheck(i)
        if reason is not None:
            return _Skip(reason)
        if ds.kind == "text":
            return ds.text(i)
        try:
            img = ds.load(i)
        except DataError as exc:
            msg = str(exc)
            prefix = f"{ds.ids[i]}: "
            return _Skip(msg[len(prefix) :] if msg.startswith(prefix) else msg)
        if self.prepare is None:
            return img
        try:
            return self.prepare(img)
        except Exception as exc:  # a model's preprocessing rejecting one image
            return _Skip(f"preprocessing failed: {type(exc).__name__}: {exc}")

    def _encode(self, values: list) -> np.ndarray:
        if self.ds.kind == "text":
            return np.asarray(self.encoder.encode_texts(values, batch_size=len(values)), np.float32)
        if self.encode_prepared is not None:
            return l2_normalize(self.encode_prepared(values))
        return np.asarray(self.encoder.encode_images(values, batch_size=len(values)), np.float32)

    def run(self, start: int, stop: int) -> tuple[list[int], np.ndarray | None, list[list]]:
        ok: list[int] = []
        rows: list[np.ndarray] = []
        skipped: list[list] = []
        idx = list(range(start, stop))
        text = self.ds.kind == "text"
        workers = 1 if text else self.workers
        executor = None if text else self.executor
        for a, b, prepared in Encoder.iter_prepared(
            idx, self._prep, self.batch_size, workers, executor
        ):
            good = [(i, v) for i, v in zip(idx[a:b], prepared) if not isinstance(v, _Skip)]
            for i, v in zip(idx[a:b], prepared):
                if isinstance(v, _Skip):
                    skipped.append([i, v.reason])
                    log.info("skipping %s: %s", self.ds.ids[i], v.reason)
            if good:
                emb = self._encode([v for _, v in good])
                if emb.ndim != 2 or emb.shape[0] != len(good):
                    raise DataError(
                        f"encoder returned shape {emb.shape} for a batch of {len(good)} items"
                    )
                rows.append(emb)
                ok.extend(i for i, _ in good)
            self.bar.advance(b - a)
        return ok, (np.concatenate(rows) if rows else None), skipped


def _check_compatible(encoder: Any, ds: Dataset) -> None:
    modality = str(getattr(encoder, "modality", ""))
    if ds.kind == "image" and "image" not in modality:
        raise ConfigError(
            f"dataset {ds.source!r} holds images but encoder {getattr(encoder, 'name', encoder)!r} "
            f"has no image tower (modality {modality!r})"
        )
    if ds.kind == "text" and "text" not in modality:
        raise ConfigError(
            f"dataset {ds.source!r} holds texts but encoder {getattr(encoder, 'name', encoder)!r} "
            f"has no text tower (modality {modality!r})"
        )


def embed(
    encoder: Any,
    dataset: Any,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    progress: ProgressCallback | bool | None = None,
    *,
    shard_size: int | None = None,
    cache_dtype: str = "float32",
    fingerprint: str = "stat",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    executor: ExecutorSpec = None,
) -> EmbeddedData:
    """Embed every item of ``dataset`` with ``encoder``, through a resumable cache.

    Parameters
    ----------
    encoder : Encoder
        From :func:`priming.encoders.create_encoder`, or any object with ``name``,
        ``fingerprint``, ``modality`` and ``encode_images`` / ``encode_texts``.
    dataset : Dataset or path
        A :class:`Dataset` or anything :func:`open_dataset` accepts. Embedding files are
        returned as they are (the encoder is not used).
    cache_dir : path, optional
        Where cache entries live; None computes in memory without caching.
    batch_size, workers : int
        Items per forward pass; decoding threads (None: up to 8, one per core).
    progress : priming.progress.ProgressCallback, optional
        Receives the task ``"embed"`` in items (total: every item of the dataset; items
        already in the cache count as done at the start). A bool is accepted and reports
        nothing (the CLI draws bars).
    shard_size : int, optional
        Items per cache shard, the unit of resumption (default: 16 batches, at least 1024).
    cache_dtype : {"float32", "float16"}
        Storage dtype; float16 halves the disk and is returned converted to float32.
    fingerprint : {"stat", "content"}
        How files are identified for the cache key (see :func:`open_dataset`).
    max_pixels : int or None
        Decompression-bomb limit per image.
    executor : None, "local", "inline" or a concurrent.futures.Executor
        Where images are decoded and prepared ahead of the model (:mod:`priming.exec`;
        default: ``workers`` local threads).

    Returns
    -------
    EmbeddedData
        ``embeddings`` (memory-mapped float32 when cached as float32), ``labels``,
        ``ids`` and ``skipped`` (``(id, reason)`` for every item that could not be read).
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if shard_size is not None and (not isinstance(shard_size, (int, np.integer)) or shard_size < 1):
        raise ConfigError(f"shard_size must be a positive integer, got {shard_size!r}")
    if cache_dtype not in CACHE_DTYPES:
        raise ConfigError(
            f"cache_dtype must be one of {', '.join(CACHE_DTYPES)}, got {cache_dtype!r}"
        )
    ds = (
        dataset
        if isinstance(dataset, Dataset)
        else open_dataset(dataset, max_pixels=max_pixels, fingerprint=fingerprint)
    )
    if ds.kind == "embeddings":
        data = ds.data  # type: ignore[attr-defined]
        dim = int(getattr(encoder, "dim", 0) or 0)
        if dim and data.dim != dim:
            raise DataError(
                f"embeddings in {ds.source!r} have dimension {data.dim} but encoder "
                f"{getattr(encoder, 'name', encoder)!r} produces {dim}"
            )
        return data
    _check_compatible(encoder, ds)
    n = len(ds)
    t0 = time.perf_counter()
    if cache_dir is None:
        with track(as_callback(progress), "embed", n, "items") as bar:
            runner = _Runner(encoder, ds, int(batch_size), workers, bar, executor)
            ok, X, skipped = runner.run(0, n)
        dim = int(X.shape[1]) if X is not None else int(getattr(encoder, "dim", 0))
        X = X if X is not None else np.zeros((0, dim), np.float32)
        if cache_dtype == "float16":
            X = X.astype(np.float16).astype(np.float32)
        return _result(ds, ok, X, skipped, None, False, n, encoder)
    root = make_dir(cache_dir, "cache folder")
    key = cache_key(encoder, ds, cache_dtype)
    entry = root / key
    with _locked(root / f"{key}.lock"):
        if (entry / "meta.json").is_file():
            log.info("cache hit: %s", entry)
            return _read_entry(entry, encoder)
        with track(as_callback(progress), "embed", n, "items") as bar:
            runner = _Runner(encoder, ds, int(batch_size), workers, bar, executor)
            result = _fill_entry(entry, key, runner, shard_size, cache_dtype)
    log.info("embedded %d items in %.1fs into %s", n, time.perf_counter() - t0, entry)
    return result


def _result(ds, ok, X, skipped, entry, from_cache, n_computed, encoder) -> EmbeddedData:
    ids = np.asarray([ds.ids[i] for i in ok], dtype=str)
    labels = None if ds.labels is None else np.asarray([ds.labels[i] for i in ok], dtype=str)
    return EmbeddedData(
        embeddings=X,
        labels=labels,
        ids=ids,
        skipped=[(ds.ids[i], reason) for i, reason in skipped],
        cache_path=entry,
        from_cache=from_cache,
        n_computed=n_computed,
        encoder_name=getattr(encoder, "name", None),
    )


def _load_part(parts: Path, s: int, dim: int | None) -> tuple[dict, np.ndarray] | None:
    meta_p, arr_p = parts / f"{s:06d}.json", parts / f"{s:06d}.npy"
    if not (meta_p.is_file() and arr_p.is_file()):
        return None
    try:
        meta = json.loads(meta_p.read_text())
        arr = np.load(arr_p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError):
        return None
    if arr.ndim != 2 or arr.shape[0] != len(meta.get("ok", [])) or (dim and arr.shape[1] != dim):
        return None
    return meta, arr


def _fill_entry(entry, key, runner: _Runner, shard_size, cache_dtype):
    encoder, ds, batch_size = runner.encoder, runner.ds, runner.batch_size
    n = len(ds)
    parts = entry / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    for stale in list(entry.glob(".*.tmp")) + list(parts.glob(".*.tmp")):
        stale.unlink(missing_ok=True)  # left by a killed run
    plan_p = entry / "plan.json"
    plan = None
    if plan_p.is_file():
        with contextlib.suppress(ValueError, OSError):
            plan = json.loads(plan_p.read_text())
    if not plan or plan.get("n") != n or plan.get("format") != CACHE_FORMAT:
        size = shard_size or max(1024, 16 * batch_size)
        plan = {"format": CACHE_FORMAT, "n": n, "shard_size": int(size), "key": key}
        shutil.rmtree(parts)
        parts.mkdir()
        _save_json(plan_p, plan)
    size = int(plan["shard_size"])
    n_shards = (n + size - 1) // size
    dim = int(getattr(encoder, "dim", 0) or 0) or None
    done = {s: p for s in range(n_shards) if (p := _load_part(parts, s, dim)) is not None}
    n_done = sum(min(n, (s + 1) * size) - s * size for s in done)
    if done:
        log.info("resuming %s: %d of %d shards already done", entry, len(done), n_shards)
    runner.bar.advance(n_done)
    n_computed = 0
    dtype = np.dtype(cache_dtype)
    for s in range(n_shards):
        if s in done:
            continue
        a, b = s * size, min(n, (s + 1) * size)
        ok, X, skipped = runner.run(a, b)
        if X is None:
            X = np.zeros((0, dim or int(getattr(encoder, "dim", 0))), np.float32)
        dim = dim or int(X.shape[1])
        _save_npy(parts / f"{s:06d}.npy", X.astype(dtype))
        _save_json(parts / f"{s:06d}.json", {"start": a, "stop": b, "ok": ok, "skipped": skipped})
        n_computed += b - a
    return _assemble(entry, encoder, ds, n_shards, parts, dim, dtype, n_computed)


def _assemble(entry, encoder, ds, n_shards, parts, dim, dtype, n_computed) -> EmbeddedData:
    loaded = [_load_part(parts, s, dim) for s in range(n_shards)]
    if any(p is None for p in loaded):  # pragma: no cover - written just above
        raise DataError(f"cache entry {entry} lost a shard while assembling; run again")
    ok = [i for meta, _ in loaded for i in meta["ok"]]
    skipped = [tuple(x) for meta, _ in loaded for x in meta["skipped"]]
    if len(set(ok)) != len(ok) or sorted(ok) != ok:  # pragma: no cover - invariant
        raise DataError(f"cache entry {entry} is inconsistent (duplicated rows); delete it")
    dim = dim or (int(getattr(encoder, "dim", 0)) or 0)
    n_rows = len(ok)

    def write_embeddings(f):
        np.lib.format.write_array_header_1_0(
            f,
            {
                "descr": np.lib.format.dtype_to_descr(dtype),
                "fortran_order": False,
                "shape": (n_rows, dim),
            },
        )
        for _, arr in loaded:
            f.write(np.ascontiguousarray(arr, dtype=dtype).tobytes())

    _atomic_write_bytes(entry / "embeddings.npy", write_embeddings)
    _save_npy(entry / "ids.npy", np.asarray([ds.ids[i] for i in ok], dtype=str))
    if ds.labels is not None:
        _save_npy(entry / "labels.npy", np.asarray([ds.labels[i] for i in ok], dtype=str))
    meta = {
        "format": CACHE_FORMAT,
        "encoder": getattr(encoder, "name", None),
        "encoder_fingerprint": str(encoder.fingerprint),
        "dataset": ds.source,
        "dataset_kind": ds.kind,
        "n_items": len(ds),
        "n_rows": n_rows,
        "dim": dim,
        "dtype": dtype.name,
        "has_labels": ds.labels is not None,
        "skipped": [[ds.ids[i], reason] for i, reason in skipped],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _save_json(entry / "meta.json", meta)
    shutil.rmtree(parts, ignore_errors=True)
    (entry / "plan.json").unlink(missing_ok=True)
    out = _read_entry(entry, encoder)
    out.from_cache = False
    out.n_computed = n_computed
    return out


def _read_entry(entry: Path, encoder: Any) -> EmbeddedData:
    meta = json.loads((entry / "meta.json").read_text())
    if meta.get("encoder_fingerprint") != str(encoder.fingerprint):  # pragma: no cover
        raise DataError(f"cache entry {entry} belongs to another encoder; delete it")
    X = np.load(entry / "embeddings.npy", mmap_mode="r", allow_pickle=False)
    if X.dtype != np.float32:
        X = np.asarray(X, dtype=np.float32)
    ids = np.load(entry / "ids.npy", allow_pickle=False)
    labels = np.load(entry / "labels.npy", allow_pickle=False) if meta.get("has_labels") else None
    return EmbeddedData(
        embeddings=X,
        labels=labels,
        ids=ids,
        skipped=[(str(a), str(b)) for a, b in meta.get("skipped", [])],
        cache_path=entry,
        from_cache=True,
        n_computed=0,
        encoder_name=meta.get("encoder"),
    )
