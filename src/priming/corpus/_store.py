"""Reading a corpus: caption search, metadata look-up, embedding gather, k-NN."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from priming._optional import require
from priming.corpus._manifest import INDEX_DIR, TOKENIZER, read_manifest
from priming.corpus._search import (
    HIT_METADATA,
    ShardRef,
    close_connections,
    count_shard,
    fetch_columns,
    fetch_rows,
    search_shard,
    shard_connection,
)
from priming.corpus.choices import KNN_METHODS, SEARCH_MODES
from priming.errors import ConfigError, DataError
from priming.exec import ExecutorSpec, open_executor

log = logging.getLogger(__name__)

__all__ = ["Corpus", "CaptionHits", "open_corpus", "tokenize", "phrase_expression"]

HIT_COLUMNS = ("row_id", "label", "name", "caption", "url", "nsfw", "similarity")
ROW_COLUMNS = ("row_id", "key", "caption", "url", "width", "height", "nsfw", "similarity")


def _pa():
    return require("pyarrow", "corpus")


def _faiss():
    from priming._optional import require

    return require("faiss", extra="corpus", package="faiss-cpu")


# --------------------------------------------------------------------------- tokens
class _Tokenizer:
    """Tokenise text exactly as the shard index does (SQLite's own unicode61 tokenizer)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._con = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._con.execute(
            f"CREATE VIRTUAL TABLE t USING fts5(x, content='', tokenize='{TOKENIZER}')"
        )
        self._con.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")

    def __call__(self, text: str) -> tuple[str, ...]:
        with self._lock:  # insert, read the tokens back, roll back: the table stays empty
            self._con.execute("BEGIN")
            try:
                self._con.execute("INSERT INTO t(rowid, x) VALUES (1, ?)", (text,))
                rows = self._con.execute("SELECT term FROM v ORDER BY offset").fetchall()
            finally:
                self._con.execute("ROLLBACK")
        return tuple(r[0] for r in rows)


_TOKENIZER: _Tokenizer | None = None


@functools.lru_cache(maxsize=65536)
def _tokens(text: str) -> tuple[str, ...]:
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = _Tokenizer()
    return _TOKENIZER(text)


def tokenize(text: str) -> list[str]:
    """The index's tokens of ``text``: case-folded, diacritics removed, punctuation dropped.

    A token is a maximal run of letters, digits (Unicode categories L*, N*) and private-use
    characters; every other character separates tokens.
    """
    return list(_tokens(text))


def _quote(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


def phrase_expression(name: str, mode: str = "phrase") -> str:
    """The FTS5 query for ``name``: built from its tokens, each one quoted, so nothing in
    the name is ever read as query syntax."""
    tokens = tokenize(name)
    if not tokens:
        raise DataError(f"name {name!r} has no searchable words (letters or digits)")
    if mode == "phrase":
        return _quote(" ".join(tokens))
    return " AND ".join(_quote(t) for t in dict.fromkeys(tokens))


# --------------------------------------------------------------------------- results
class CaptionHits:
    """Result of :meth:`Corpus.search_captions`.

    ``table``: unambiguous hits (``row_id``, ``label``, ``name``, ``caption``, ``url``,
    ``nsfw``, ``similarity``), grouped by label in query order, row ids ascending.
    ``ambiguous``: rows that matched several labels (``row_id``, ``labels``).
    ``counts``: label -> number of rows in ``table``.

    The search itself reads row ids only: ``row_ids`` (numpy), ``labels`` and ``names``
    (pyarrow string arrays), aligned with ``table``, cost no metadata read. The metadata
    columns are read from the shards when first asked for: all of them by ``table``
    (then kept), or only some by :meth:`select`.
    """

    def __init__(
        self,
        table: Any = None,
        ambiguous: Any = None,
        counts: dict[str, int] | None = None,
        *,
        row_ids: np.ndarray | None = None,
        labels: Any = None,
        names: Any = None,
        fetch: Any = None,
    ) -> None:
        if table is None and (row_ids is None or labels is None or names is None or not fetch):
            raise ConfigError("CaptionHits needs a table, or row_ids, labels, names and fetch")
        self._table = table
        self._fetch = fetch
        if table is not None:
            row_ids = table.column("row_id").to_numpy()
            labels = table.column("label").combine_chunks()
            names = table.column("name").combine_chunks()
        self.row_ids = np.asarray(row_ids, np.int64)
        self.labels = labels
        self.names = names
        self.ambiguous = _no_ambiguous() if ambiguous is None else ambiguous
        self.counts = dict(counts or {})

    def __len__(self) -> int:
        return int(self.row_ids.size)

    def __repr__(self) -> str:
        return f"CaptionHits({len(self)} rows, {self.ambiguous.num_rows} ambiguous)"

    @property
    def table(self) -> Any:
        if self._table is None:
            self._table = self.select(HIT_METADATA)
        return self._table

    def select(self, columns: Sequence[str] = ()) -> Any:
        """``row_id``, ``label``, ``name`` and the metadata ``columns`` (of ``caption``,
        ``url``, ``nsfw``, ``similarity``), reading only those from the shards."""
        pa = _pa()
        unknown = [c for c in columns if c not in HIT_METADATA]
        if unknown:
            raise DataError(f"unknown hit column(s) {unknown}; valid: {', '.join(HIT_METADATA)}")
        wanted = [c for c in HIT_METADATA if c in columns]
        if self._table is not None:
            return self._table.select(["row_id", "label", "name", *wanted])
        got = self._fetch(self.row_ids, wanted)
        arrays = [pa.array(self.row_ids, pa.int64()), self.labels, self.names]
        arrays += [got[c] for c in wanted]
        schema = _hit_schema()
        fields = [schema.field(n) for n in ("row_id", "label", "name", *wanted)]
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _validate_queries(queries: Any, mode: str) -> list[tuple[str, list[tuple[str, str]]]]:
    if mode not in SEARCH_MODES:
        raise ConfigError(f"mode {mode!r} is not valid; valid choices: {', '.join(SEARCH_MODES)}")
    if not isinstance(queries, Mapping) or not queries:
        raise DataError(
            "queries must be a non-empty mapping {label: [names...]}; got an empty query"
        )
    plan = []
    for label, names in queries.items():
        if not isinstance(label, str) or not label.strip():
            raise DataError(f"query label {label!r} must be a non-empty string")
        if isinstance(names, str):
            names = [names]
        try:
            names = list(names)
        except TypeError:
            raise DataError(
                f"query for label {label!r} must be a list of names, got {names!r}"
            ) from None
        if not names:
            raise DataError(f"query for label {label!r} is empty: give at least one name")
        exprs = []
        for n in names:
            if not isinstance(n, str):
                raise DataError(f"query for label {label!r}: name {n!r} is not a string")
            try:
                exprs.append((n, phrase_expression(n, mode)))
            except DataError as exc:
                raise DataError(f"query for label {label!r}: {exc}") from None
        plan.append((label, list(dict.fromkeys(exprs))))
    return plan


def _as_row_ids(row_ids: Any, n_rows: int) -> np.ndarray:
    arr = np.asarray(row_ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise DataError(f"row_ids must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"row_ids must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= n_rows)
    if bad.any():
        raise DataError(
            f"row_ids out of range: {arr[bad][:5].tolist()} (corpus has rows 0..{n_rows - 1})"
        )
    return arr


# --------------------------------------------------------------------------- corpus
class Corpus:
    """A built corpus directory opened for reading (use :func:`open_corpus`)."""

    def __init__(self, path: str | os.PathLike, executor: ExecutorSpec = None) -> None:
        #: where shard fan-outs run by default (see :mod:`priming.exec`)
        self.executor = executor
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        if not self.manifest.get("complete"):
            raise DataError(
                f"corpus {str(self.path)!r} is unfinished (a build was interrupted); run the "
                "same `priming corpus build` command again to resume it"
            )
        self.shards: list[dict[str, Any]] = self.manifest["shards"]
        for s in self.shards:
            if not (self.path / s["db"]).is_file():
                raise DataError(f"corpus {str(self.path)!r} is missing shard file {s['db']!r}")
        self._offsets = np.array(
            [s["row_offset"] for s in self.shards] + [self.manifest["n_rows"]], dtype=np.int64
        )
        self._refs = [
            ShardRef(
                db=str((self.path / s["db"]).resolve()),
                sha256=str(s["db_sha256"]),
                offset=int(self._offsets[i]),
                name=str(s["name"]),
                corpus=str(self.path),
            )
            for i, s in enumerate(self.shards)
        ]
        # idle connections live per process (shared with the executor's tasks); close
        # this corpus's ones when it is closed or garbage-collected
        self._finalizer = weakref.finalize(self, close_connections, list(self._refs))
        self._mmaps: dict[int, np.ndarray] = {}
        self._masks: dict[int, np.ndarray] = {}
        self._index = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # ---- properties
    @property
    def n_rows(self) -> int:
        return int(self.manifest["n_rows"])

    @property
    def has_embeddings(self) -> bool:
        return bool(self.manifest.get("has_embeddings"))

    @property
    def dim(self) -> int | None:
        return (
            int(self.manifest["dim"]) if self.has_embeddings and self.manifest.get("dim") else None
        )

    @property
    def embedding_model(self) -> str | None:
        return self.manifest.get("embedding_model") if self.has_embeddings else None

    @property
    def fingerprint(self) -> str:
        parts = [
            self.manifest["schema_version"],
            [
                (s["name"], s["n_rows"], s["db_sha256"], s.get("embeddings_sha256"))
                + ((s["embeddings_mask_sha256"],) if s.get("embeddings_mask_sha256") else ())
                for s in self.shards
            ],
        ]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def __repr__(self) -> str:
        return (
            f"Corpus({str(self.path)!r}, n_rows={self.n_rows}, shards={len(self.shards)}, "
            f"dim={self.dim}, embedding_model={self.embedding_model!r})"
        )

    def __enter__(self) -> Corpus:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._finalizer()  # closes the idle connections (once)
        self._mmaps.clear()
        self._masks.clear()
        self._index = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)

    # ---- connections
    def _ref(self, si: int) -> ShardRef:
        return self._refs[si]

    def _map_shards(self, fn, items):
        if len(items) <= 1:
            return [fn(*it) for it in items]
        return list(self._thread_pool().map(lambda it: fn(*it), items))

    def _thread_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:  # one long-lived pool: starting threads per call costs ms
                n = min(len(self.shards), (os.cpu_count() or 1) * 2, 32)
                self._pool = ThreadPoolExecutor(max(n, 1), thread_name_prefix="corpus-shard")
        return self._pool

    def _fan_out(self, fn, arg_lists: list[tuple], executor: ExecutorSpec) -> list:
        """``[fn(*args) for args in arg_lists]`` on the executor (``fn`` a top-level
        function, the args picklable); None / "local": this corpus's own thread pool."""
        if executor is None:
            executor = self.executor
        if len(arg_lists) <= 1 and executor in (None, "local", "inline"):
            return [fn(*args) for args in arg_lists]
        if executor is None or executor == "local":
            ex = self._thread_pool()
            return [f.result() for f in [ex.submit(fn, *args) for args in arg_lists]]
        n = min(len(self.shards), (os.cpu_count() or 1) * 2, 32)
        with open_executor(executor, max_workers=max(n, 1), kind="thread") as ex:
            return [f.result() for f in [ex.submit(fn, *args) for args in arg_lists]]

    def _split(self, ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self._offsets, ids, side="right") - 1

    # ---- caption search
    def search_captions(
        self,
        queries: Mapping[str, Sequence[str]],
        limit_per_label: int | None = None,
        mode: str = "phrase",
        executor: ExecutorSpec = None,
    ) -> CaptionHits:
        """Find the rows whose caption contains a class name.

        Parameters
        ----------
        queries : mapping label -> list of names (synonyms)
            Names are data: punctuation and FTS operators in them are never interpreted.
        limit_per_label : int, optional
            Stop after this many unambiguous rows per label (lowest row ids first within
            each shard; shards are taken in order). None returns every hit.
        mode : "phrase" or "all_tokens"
            ``phrase``: the name's tokens appear consecutively and in order (case and
            punctuation ignored). ``all_tokens``: every token appears, anywhere.
        executor : None, "local", "inline" or a concurrent.futures.Executor
            Where the shards are searched (:mod:`priming.exec`; default: the corpus's
            ``executor``, else its own thread pool). Every shard is one picklable task.
        """
        plan = _validate_queries(queries, mode)
        if limit_per_label is not None and (
            not isinstance(limit_per_label, (int, np.integer))
            or isinstance(limit_per_label, bool)
            or limit_per_label < 1
        ):
            raise ConfigError(
                f"limit_per_label must be a positive integer or None, got {limit_per_label!r}"
            )
        parts = self._fan_out(
            search_shard,
            [(self._ref(si), plan, limit_per_label) for si in range(len(self.shards))],
            executor,
        )
        return _assemble_hits(parts, plan, limit_per_label, self._hit_columns)

    def _hit_columns(self, ids: np.ndarray, columns: Sequence[str]):
        """Metadata ``columns`` of hit rows ``ids`` (any order) as pyarrow arrays aligned
        with ``ids``, read shard by shard in this thread: hits may be read after the
        search's executor is gone or the corpus is closed (then the connections opened
        for it are closed again)."""
        pa = _pa()
        if not columns:
            return {}
        order = np.argsort(ids, kind="stable")
        sid = ids[order]
        cuts = np.searchsorted(sid, self._offsets)
        tasks = [
            (self._ref(si), sid[cuts[si] : cuts[si + 1]], tuple(columns))
            for si in range(len(self.shards))
            if cuts[si + 1] > cuts[si]
        ]
        parts = [fetch_columns(*t) for t in tasks]
        if not self._finalizer.alive:
            close_connections([t[0] for t in tasks])
        recs = [r for p in parts for r in p] if len(parts) != 1 else parts[0]
        inverse = None
        if not (order.size < 2 or (order[1:] > order[:-1]).all()):
            inverse = np.empty_like(order)
            inverse[order] = np.arange(order.size)
        out = {}
        for j, c in enumerate(columns):
            values = [r[j] for r in recs]
            if c == "nsfw":
                arr = pa.array([None if v is None else v != 0 for v in values], pa.bool_())
            elif c == "similarity":
                sim = np.fromiter((np.nan if v is None else v for v in values), np.float32)
                arr = pa.array(sim, pa.float32())
            else:
                arr = pa.array(values, pa.string())
            out[c] = arr if inverse is None else arr.take(pa.array(inverse))
        return out

    def count_captions(
        self,
        queries: Mapping[str, Sequence[str]],
        mode: str = "phrase",
        executor: ExecutorSpec = None,
    ) -> dict[str, int]:
        """label -> how many rows :meth:`search_captions` finds for it without a limit
        (unambiguous rows: a row matching several labels counts for none), without
        reading the rows' metadata. Same ``queries``, ``mode`` and ``executor``."""
        plan = _validate_queries(queries, mode)
        parts = self._fan_out(
            count_shard, [(self._ref(si), plan) for si in range(len(self.shards))], executor
        )
        total = np.sum(parts, axis=0) if parts else np.zeros(len(plan), np.int64)
        return {label: int(n) for (label, _), n in zip(plan, total)}

    # ---- metadata rows
    def rows(self, row_ids: Any) -> Any:
        """Metadata of ``row_ids`` (in the order given) as a ``pyarrow.Table``."""
        pa = _pa()
        ids = _as_row_ids(row_ids, self.n_rows)
        shard = self._split(ids)
        got: dict[int, tuple] = {}

        def one(si: int):
            with shard_connection(self._ref(si)) as con:
                local = ids[shard == si] - self._offsets[si]
                res = fetch_rows(
                    con, local.tolist(), "id, key, caption, url, width, height, nsfw, similarity"
                )
                return {k + int(self._offsets[si]): v for k, v in res.items()}

        for part in self._map_shards(one, [(int(s),) for s in np.unique(shard)]):
            got.update(part)
        recs = [got[int(i)] for i in ids]
        return pa.table(
            {
                "row_id": pa.array(ids, pa.int64()),
                "key": pa.array([r[1] for r in recs], pa.string()),
                "caption": pa.array([r[2] for r in recs], pa.string()),
                "url": pa.array([r[3] for r in recs], pa.string()),
                "width": pa.array([r[4] for r in recs], pa.int64()),
                "height": pa.array([r[5] for r in recs], pa.int64()),
                "nsfw": pa.array([None if r[6] is None else bool(r[6]) for r in recs], pa.bool_()),
                "similarity": pa.array(
                    [np.nan if r[7] is None else r[7] for r in recs], pa.float32()
                ),
            }
        )

    # ---- embeddings
    def _require_embeddings(self) -> None:
        if self.has_embeddings:
            return
        fp = self.manifest.get("embedding_fingerprint")
        done = sum(
            1
            for s in self.shards
            if "embeddings" in s and (fp is None or s.get("embedding_fingerprint") == fp)
        )
        if 0 < done < len(self.shards):
            model = self.manifest.get("embedding_model") or "NAME"
            raise ConfigError(
                f"corpus {str(self.path)!r} has no embeddings yet: {done} of "
                f"{len(self.shards)} shards embedded (an interrupted embed); run `priming corpus embed {self.path} --model "
                f"{model}` to finish"
            )
        if not self.has_embeddings:
            raise ConfigError(
                f"corpus {str(self.path)!r} has no embeddings; add them with "
                "`priming corpus embed CORPUS --model NAME` or build it with --embeddings"
            )

    def _mmap(self, si: int) -> np.ndarray:
        mm = self._mmaps.get(si)
        if mm is None:
            name = self.shards[si]["embeddings"]
            try:
                mm = np.load(self.path / name, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DataError(
                    f"corpus {str(self.path)!r}: embedding file {name!r} of shard "
                    f"{self.shards[si]['name']} is damaged or unreadable ({exc}); run "
                    f"`priming corpus info {self.path} --verify`"
                ) from None
            if mm.shape != (self.shards[si]["n_rows"], self.manifest["dim"]):
                raise DataError(
                    f"embedding shard {self.shards[si]['embeddings']!r} has shape {mm.shape}, "
                    f"expected {(self.shards[si]['n_rows'], self.manifest['dim'])}"
                )
            self._mmaps[si] = mm
        return mm

    def _mask(self, si: int) -> np.ndarray | None:
        """Shard ``si``'s has-embedding mask (bool per row), or None when every row has one."""
        name = self.shards[si].get("embeddings_mask")
        if not name:
            return None
        mask = self._masks.get(si)
        if mask is None:
            try:
                mask = np.load(self.path / name, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DataError(f"embedding mask {name!r} is unreadable: {exc}") from None
            if mask.shape != (self.shards[si]["n_rows"],) or mask.dtype != np.bool_:
                raise DataError(
                    f"embedding mask {name!r} has shape {mask.shape}, dtype {mask.dtype}"
                )
            self._masks[si] = mask
        return mask

    @property
    def n_missing_embeddings(self) -> int:
        """Rows without an embedding (an image that was not downloaded or did not decode)."""
        return int(sum(s.get("n_missing_embeddings", 0) for s in self.shards))

    def has_embedding(self, row_ids: Any) -> np.ndarray:
        """Bool per row id: whether the row has an embedding (always true for a corpus
        whose embeddings came with it or from captions)."""
        self._require_embeddings()
        ids = _as_row_ids(row_ids, self.n_rows)
        out = np.ones(ids.size, dtype=bool)
        if not ids.size:
            return out
        shard = self._split(ids)
        for si in np.unique(shard):
            mask = self._mask(int(si))
            if mask is not None:
                pos = np.flatnonzero(shard == si)
                out[pos] = mask[ids[pos] - self._offsets[si]]
        return out

    def embeddings(self, row_ids: Any) -> np.ndarray:
        """Embeddings of ``row_ids`` as float32 ``(n, dim)``, as stored (not re-normalised).

        Rows without an embedding (see :meth:`has_embedding`) come back as NaN rows."""
        self._require_embeddings()
        ids = _as_row_ids(row_ids, self.n_rows)
        out = np.empty((ids.size, self.dim), dtype=np.float32)
        if not ids.size:
            return out
        shard = self._split(ids)
        for si in np.unique(shard):
            pos = np.flatnonzero(shard == si)
            local = ids[pos] - self._offsets[si]
            order = np.argsort(local, kind="stable")
            out[pos[order]] = self._mmap(int(si))[local[order]]
            mask = self._mask(int(si))
            if mask is not None:
                out[pos[~mask[local]]] = np.nan
        return out

    def iter_valid_embeddings(self, chunk_rows: int = 65536):
        """Yield ``(row_ids, float32 block)`` over the rows that have an embedding, in row
        order (rows without one are left out)."""
        self._require_embeddings()
        for si, s in enumerate(self.shards):
            mm = self._mmap(si)
            mask = self._mask(si)
            off = int(self._offsets[si])
            for start in range(0, s["n_rows"], chunk_rows):
                block = np.asarray(mm[start : start + chunk_rows], dtype=np.float32)
                ids = np.arange(off + start, off + start + block.shape[0], dtype=np.int64)
                if mask is not None:
                    keep = mask[start : start + chunk_rows]
                    if not keep.all():
                        block, ids = block[keep], ids[keep]
                if ids.size:
                    yield ids, block

    def iter_embeddings(self, chunk_rows: int = 65536):
        """Yield ``(first_row_id, float32 block)`` over the whole corpus in row order."""
        self._require_embeddings()
        for si, s in enumerate(self.shards):
            mm = self._mmap(si)
            for start in range(0, s["n_rows"], chunk_rows):
                yield (
                    int(self._offsets[si]) + start,
                    np.asarray(mm[start : start + chunk_rows], dtype=np.float32),
                )

    def _check_queries(self, queries: Any, k: Any) -> tuple[np.ndarray, int]:
        self._require_embeddings()
        q = np.asarray(queries)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise DataError(f"knn queries must have shape (n, {self.dim}), got {np.shape(queries)}")
        if not np.issubdtype(q.dtype, np.number):
            raise DataError(f"knn queries must be numeric, got dtype {q.dtype}")
        q = np.ascontiguousarray(q, dtype=np.float32)
        if not np.isfinite(q).all():
            raise DataError("knn queries contain NaN or infinite values")
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        return q, int(min(k, self.n_rows))

    def knn(
        self,
        queries: Any,
        k: int,
        method: str = "exact",
        nprobe: int = 32,
        refine: int = 4,
        chunk_rows: int = 65536,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows by inner product with each query.

        ``method="exact"`` scans every embedding (:func:`priming.imprint.topk.topk_blocks`
        over chunks of the memory-mapped shards; equal scores: lower row id first).
        ``method="ivfpq"`` uses the index built by :func:`priming.corpus.build_index`, probing ``nprobe`` lists and re-ranking the best
        ``refine * k`` candidates exactly. ``k`` larger than the corpus returns every row.

        Returns ``(scores (n, k) float32, row_ids (n, k) int64)``, best first.
        """
        if method not in KNN_METHODS:
            raise ConfigError(
                f"method {method!r} is not valid; valid choices: {', '.join(KNN_METHODS)}"
            )
        q, k = self._check_queries(queries, k)
        if method == "ivfpq":
            return self._knn_ivfpq(q, k, nprobe, refine)
        from priming.imprint.topk import topk_blocks

        # fewer rows with embeddings than k: padded with -inf / -1
        return topk_blocks(q, self.iter_valid_embeddings(chunk_rows), k, metric="ip")

    def _knn_ivfpq(self, q: np.ndarray, k: int, nprobe: int, refine: int):
        faiss = _faiss()
        info = self.manifest.get("index")
        if not info:
            raise ConfigError(
                f"corpus {str(self.path)!r} has no IVF-PQ index; build it with "
                "`priming corpus index CORPUS` or use method='exact'"
            )
        if info.get("embeddings_fingerprint") != self.fingerprint:
            raise DataError(
                "the corpus index is stale (embeddings changed); rebuild it with `priming corpus index`"
            )
        with self._lock:
            if self._index is None:
                self._index = faiss.read_index(str(self.path / info["file"]))
        index = self._index
        index.nprobe = max(1, int(nprobe))
        kk = min(self.n_rows, max(k, int(refine) * k))
        d, cand = index.search(q, kk)
        valid = cand >= 0  # faiss pads a short list with id -1 (and score -FLT_MAX)
        if refine <= 1:
            scores = np.where(valid, d, -np.inf)
        else:
            uniq = np.unique(cand[valid])
            vecs = self.embeddings(uniq)
            pos = np.searchsorted(uniq, np.where(valid, cand, uniq[0] if uniq.size else 0))
            exact = np.einsum("nkd,nd->nk", vecs[pos], q) if uniq.size else np.zeros_like(d)
            scores = np.where(valid, exact, -np.inf)
        from priming.imprint.topk import merge_topk

        none = np.empty((q.shape[0], 0))
        return merge_topk(none, none, scores, np.where(valid, cand, -1), k)


def _assemble_hits(parts, plan, limit: int | None, fetch) -> CaptionHits:
    """Merge the shards' hits (ids only): grouped by label in query order, row ids
    ascending within a label, the first ``limit`` rows of each label; ``fetch`` reads
    their metadata when asked for."""
    pa = _pa()
    labels = [label for label, _ in plan]
    li = np.concatenate([p[0] for p in parts]).astype(np.intp)
    ni = np.concatenate([p[1] for p in parts]).astype(np.intp)
    rid = np.concatenate([p[2] for p in parts]).astype(np.int64)
    n = rid.size
    # shards come in row order and each shard's rows ascend, so with one label (the
    # common case) the rows are already in final order
    if len(plan) == 1:
        order = None if limit is None or n <= limit else np.arange(limit)
    else:
        order = np.lexsort((rid, li))
        if limit is not None:
            sl = li[order]
            rank = np.arange(sl.size) - np.searchsorted(sl, sl, side="left")
            order = order[rank < limit]
    if order is not None:
        rid, li, ni = rid[order], li[order], ni[order]
    if len(plan) == 1:
        label_col = pa.array([labels[0]] * rid.size, pa.string())
    else:
        label_col = pa.array(labels, pa.string()).take(pa.array(li))
    names = [name for _, ns in plan for name, _ in ns]
    if len(names) == 1:
        name_col = pa.array([names[0]] * rid.size, pa.string())
    else:
        base = np.cumsum([0] + [len(ns) for _, ns in plan])[:-1]
        name_col = pa.array(names, pa.string()).take(pa.array(base[li] + ni))
    counts = dict(zip(labels, np.bincount(li, minlength=len(labels)).tolist()))
    amb = [a for p in parts for a in p[3]]
    if amb:
        ambiguous = pa.Table.from_arrays(
            [
                pa.array([rid for rid, _ in amb], pa.int64()),
                pa.array([[labels[i] for i in lis] for _, lis in amb], pa.list_(pa.string())),
            ],
            schema=_amb_schema(),
        )
    else:
        ambiguous = _no_ambiguous()  # tables are immutable: one shared empty table
    return CaptionHits(
        ambiguous=ambiguous,
        counts=counts,
        row_ids=rid,
        labels=label_col,
        names=name_col,
        fetch=fetch,
    )


@functools.lru_cache(maxsize=1)
def _hit_schema():
    pa = _pa()
    return pa.schema(
        [
            ("row_id", pa.int64()),
            ("label", pa.string()),
            ("name", pa.string()),
            ("caption", pa.string()),
            ("url", pa.string()),
            ("nsfw", pa.bool_()),
            ("similarity", pa.float32()),
        ]
    )


@functools.lru_cache(maxsize=1)
def _no_ambiguous():
    return _amb_schema().empty_table()


@functools.lru_cache(maxsize=1)
def _amb_schema():
    pa = _pa()
    return pa.schema([("row_id", pa.int64()), ("labels", pa.list_(pa.string()))])


def open_corpus(path: str | os.PathLike, executor: ExecutorSpec = None) -> Corpus:
    """Open a corpus directory built by :func:`priming.corpus.build_corpus`; ``executor``
    is where its shard fan-outs (caption search) run by default."""
    return Corpus(path, executor=executor)


def index_path(corpus_dir: Path) -> Path:
    return Path(corpus_dir) / INDEX_DIR / "ivfpq.faiss"
