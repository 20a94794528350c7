"""Build a corpus directory from LAION-style parquet metadata (+ optional embeddings).

One input parquet file becomes one shard: a SQLite database holding the rows and an
FTS5 index over the captions, plus (when embeddings are given) a float16 ``.npy`` file
whose row ``i`` belongs to the database row ``i``. Shards are built in parallel worker
processes, each under a temporary name that is renamed into place when complete; the
parent records each finished shard in the manifest, so a killed build resumes where it
stopped without duplicating anything. Shards go to the executor seam
(:func:`priming.exec.open_executor`): local worker processes by default, which exit when
the building process dies.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import sqlite3
import struct
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path
from typing import Any

import numpy as np

from priming._optional import require
from priming.corpus import formats as fmts
from priming.corpus._manifest import (
    FORMAT,
    MANIFEST,
    SCHEMA_VERSION,
    SHARD_DIR,
    TOKENIZER,
    atomic_write_json,
    read_manifest,
    sha256_file,
)
from priming.errors import ConfigError, DataError
from priming.exec import ExecutorSpec, open_executor
from priming.progress import as_callback, track

log = logging.getLogger(__name__)

__all__ = ["build_corpus", "COLUMN_ALIASES"]

#: canonical column -> accepted spellings in the input parquet, first match wins
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "caption": ("caption", "TEXT", "text", "CAPTION"),
    "url": ("url", "URL"),
    "nsfw": ("NSFW", "nsfw"),
    "punsafe": ("punsafe", "PUNSAFE"),
    "similarity": ("similarity", "SIMILARITY"),
    "width": ("width", "WIDTH"),
    "height": ("height", "HEIGHT"),
    "key": ("key", "SAMPLE_ID", "sample_id", "KEY"),
}

BATCH_ROWS = 65536
PUNSAFE_THRESHOLD = 0.5
SHARD_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE rows(
    id INTEGER PRIMARY KEY,
    source_row INTEGER NOT NULL,
    key TEXT,
    caption TEXT NOT NULL,
    url TEXT,
    width INTEGER,
    height INTEGER,
    nsfw INTEGER,
    similarity REAL
);
CREATE VIRTUAL TABLE captions USING fts5(
    caption, content='rows', content_rowid='id', detail=full, columnsize=0,
    tokenize='{tokenizer}'
);
"""


def _pa():
    return (
        require("pyarrow", "corpus"),
        require("pyarrow.compute", "corpus", package="pyarrow"),
        require("pyarrow.parquet", "corpus", package="pyarrow"),
    )


# --------------------------------------------------------------------------- inputs
def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def resolve_metadata(metadata: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Expand a file, a folder, a glob pattern or a list of those into parquet files."""
    items = [metadata] if isinstance(metadata, (str, os.PathLike)) else list(metadata)
    if not items:
        raise DataError("metadata: no input given (expected parquet files, a folder or a glob)")
    found: list[Path] = []
    for item in items:
        text = os.fspath(item)
        p = Path(text)
        if p.is_dir():
            sub = p / "metadata" if (p / "metadata").is_dir() else p
            files = sorted(sub.glob("*.parquet"), key=_natural_key)
        elif any(ch in text for ch in "*?["):
            files = sorted((Path(f) for f in glob.glob(text, recursive=True)), key=_natural_key)
        elif p.is_file():
            files = [p]
        else:
            raise DataError(f"metadata: {text!r} does not exist")
        if not files:
            raise DataError(f"metadata: {text!r} matches no parquet file")
        found.extend(files)
    seen: set[Path] = set()
    out = []
    for f in found:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def resolve_embeddings(
    embeddings: str | os.PathLike | Sequence[str | os.PathLike] | None, meta_files: list[Path]
) -> list[Path] | None:
    """Pair each metadata file with its row-aligned ``.npy`` file.

    Accepts a list of ``.npy`` paths (one per metadata file, same order), a single ``.npy``
    for a single metadata file, or a folder in which ``metadata_{i}.parquet`` pairs with
    ``img_emb_{i}.npy`` (also under ``img_emb/``) and ``NAME.parquet`` with ``NAME.npy``.
    """
    if embeddings is None:
        return None
    if not isinstance(embeddings, (str, os.PathLike)):
        paths = [Path(e).resolve() for e in embeddings]
        if len(paths) != len(meta_files):
            raise DataError(
                f"embeddings: {len(paths)} .npy files given for {len(meta_files)} metadata files"
            )
        for p in paths:
            if not p.is_file():
                raise DataError(f"embeddings: {str(p)!r} does not exist")
        return paths
    root = Path(embeddings)
    if root.is_file():
        if len(meta_files) != 1:
            raise DataError(
                f"embeddings: one file {str(root)!r} given for {len(meta_files)} metadata "
                "files; give a folder or one .npy per parquet file"
            )
        return [root.resolve()]
    if not root.is_dir():
        raise DataError(f"embeddings: {str(root)!r} does not exist")
    dirs = [d for d in (root, root / "img_emb") if d.is_dir()]
    out = []
    for meta in meta_files:
        names = [f"{meta.stem}.npy"]
        m = re.fullmatch(r"metadata_(\d+)", meta.stem)
        if m:
            names.insert(0, f"img_emb_{m.group(1)}.npy")
        cands = [d / n for d in dirs for n in names if (d / n).is_file()]
        if not cands:
            raise DataError(
                f"embeddings: no file for metadata {meta.name!r} in {str(root)!r} "
                f"(looked for {', '.join(names)} in {', '.join(str(d) for d in dirs)})"
            )
        out.append(cands[0].resolve())
    return out


def column_map(names: Sequence[str], source: str) -> dict[str, str]:
    """Map canonical column names to the columns present in ``names``."""
    present = set(names)
    mapping = {}
    for canon, aliases in COLUMN_ALIASES.items():
        for a in aliases:
            if a in present:
                mapping[canon] = a
                break
    if "caption" not in mapping:
        raise DataError(
            f"{source}: no caption column; columns found: {', '.join(names) or '(none)'}; "
            f"accepted caption columns: {', '.join(COLUMN_ALIASES['caption'])}"
        )
    return mapping


def _npy_shape(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"embeddings: cannot read {str(path)!r} as .npy: {exc}") from None
    return arr.shape, arr.dtype


# --------------------------------------------------------------------------- npy writer
_HEADER_LEN = 128


def _npy_header(n: int, dim: int) -> bytes:
    d = f"{{'descr': '<f2', 'fortran_order': False, 'shape': ({n}, {dim}), }}"
    body_len = _HEADER_LEN - 10
    d = d.ljust(body_len - 1) + "\n"
    if len(d) != body_len:  # pragma: no cover - only with absurd shapes
        raise DataError(f"array shape ({n}, {dim}) too large for the npy header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", body_len) + d.encode("latin1")


class _F16Writer:
    """Stream float16 rows into a ``.npy`` whose shape is fixed when closed."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path, self.dim, self.n = path, dim, 0
        self.fh = open(path, "wb")
        self.fh.write(_npy_header(0, dim))

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype="<f2")
        self.fh.write(memoryview(block))  # no intermediate bytes copy
        self.n += block.shape[0]

    def close(self) -> None:
        self.fh.seek(0)
        self.fh.write(_npy_header(self.n, self.dim))
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()


# --------------------------------------------------------------------------- column types
def _type_problem(canon: str, typ) -> str | None:
    """Why a column of type ``typ`` cannot serve as column ``canon`` (None: it can)."""
    pa, _, _ = _pa()
    t = pa.types
    if t.is_dictionary(typ):
        typ = typ.value_type
    text = t.is_string(typ) or t.is_large_string(typ) or t.is_binary(typ) or t.is_large_binary(typ)
    number = t.is_integer(typ) or t.is_floating(typ)
    if t.is_null(typ):
        return None
    if canon == "caption" and not text:
        return "expected strings"
    if canon == "url" and not text:
        return "expected strings"
    if canon == "key" and not (text or t.is_integer(typ)):
        return "expected strings or integers"
    if canon in ("width", "height", "similarity", "punsafe") and not number:
        return "expected numbers"
    if canon == "nsfw" and not (text or number or t.is_boolean(typ)):
        return "expected strings, booleans or numbers"
    return None


def check_column_types(
    schema, mapping: dict[str, str], source: str, nsfw_scores: Sequence[str] = ()
) -> None:
    """Refuse, before anything is written, a column whose type cannot be read (a
    ``list<string>`` caption, ``WIDTH`` as strings); the message names the file."""
    pairs = [*mapping.items(), *(("punsafe", c) for c in nsfw_scores)]
    for canon, col in pairs:
        typ = schema.field(col).type
        why = _type_problem(canon, typ)
        if why is not None:
            raise DataError(f"{source}: column {col!r} has type {typ}, {why}")


def file_layout(fmt: str | None, names: Sequence[str], path: str | os.PathLike) -> fmts.Layout:
    """How to read one parquet file: format ``fmt`` (None: detected from its columns and
    name, see :func:`priming.corpus.formats.detect_format`)."""
    source = f"metadata {os.fspath(path)!r}"
    if fmt is None:
        fmt, reason = fmts.detect_format(names, path)
    else:
        reason = "named by --format"
    return fmts.layout_for(fmt, names, source, COLUMN_ALIASES, reason)


# --------------------------------------------------------------------------- one shard
def _decode_captions(arr, stats: dict[str, int], source: str):
    """Return a valid UTF-8 string array; invalid bytes are replaced and counted."""
    pa, pc, _ = _pa()
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        try:
            arr.validate(full=True)
            return arr
        except pa.ArrowInvalid:
            arr = arr.view(pa.binary() if pa.types.is_string(arr.type) else pa.large_binary())
    if pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
        try:
            return arr.cast(pa.string())
        except pa.ArrowInvalid:
            out = []
            for v in arr.to_pylist():
                if v is None:
                    out.append(None)
                    continue
                try:
                    out.append(v.decode("utf-8"))
                except UnicodeDecodeError:
                    out.append(v.decode("utf-8", errors="replace"))
                    stats["repaired_utf8"] += 1
            return pa.array(out, type=pa.string())
    try:
        return arr.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(f"{source}: caption column has type {arr.type}, expected strings") from None


def _nsfw_flags(batch, mapping, nsfw_scores: Sequence[str] = ()):
    """0/1/None per row: LAION's NSFW tag ('NSFW'/'UNSURE' -> 1), punsafe >= 0.5, or (COYO)
    the largest of the NSFW score columns >= 0.5 (None where every score is missing)."""
    pa, pc, _ = _pa()
    if "nsfw" not in mapping and nsfw_scores:
        cols = [pc.cast(batch.column(c), pa.float64()) for c in nsfw_scores]
        top = pc.max_element_wise(*cols, skip_nulls=True) if len(cols) > 1 else cols[0]
        return pc.cast(pc.greater_equal(top, PUNSAFE_THRESHOLD), pa.int8()).to_pylist()
    if "nsfw" in mapping:
        col = batch.column(mapping["nsfw"])
        if pa.types.is_boolean(col.type):
            return pc.cast(col, pa.int8()).to_pylist()
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            return pc.cast(pc.greater_equal(col, PUNSAFE_THRESHOLD), pa.int8()).to_pylist()
        low = pc.utf8_lower(pc.cast(col, pa.string()))
        pos = pc.is_in(low, value_set=pa.array(["nsfw", "unsure"]))
        neg = pc.is_in(low, value_set=pa.array(["unlikely"]))
        known = pc.or_(pos, neg)
        return pc.if_else(known, pc.cast(pos, pa.int8()), None).to_pylist()
    if "punsafe" in mapping:
        col = pc.cast(batch.column(mapping["punsafe"]), pa.float64())
        return pc.cast(pc.greater_equal(col, PUNSAFE_THRESHOLD), pa.int8()).to_pylist()
    return None


def _col_list(batch, mapping, name, typ, source: str = "metadata"):
    pa, pc, _ = _pa()
    if name not in mapping:
        return None
    col = batch.column(mapping[name])
    if pa.types.is_floating(col.type) and pa.types.is_integer(typ):
        # NaN / inf have no integer value: store null (an unsafe cast gives -2**63)
        col = pc.if_else(pc.is_finite(col), col, pa.scalar(None, col.type))
    try:
        return pc.cast(col, typ, safe=False).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(
            f"{source}: column {mapping[name]!r} has type {col.type}, cannot read it as {typ}"
        ) from None


def _open_shard_db(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None)
    for pragma in (
        "journal_mode=OFF",
        "synchronous=OFF",
        "locking_mode=EXCLUSIVE",
        "temp_store=MEMORY",
        "cache_size=-262144",
    ):
        con.execute(f"PRAGMA {pragma}")
    con.executescript(SHARD_SCHEMA.format(tokenizer=TOKENIZER))
    con.execute("BEGIN")
    return con


def _keep_rows(batch, mapping, emb, src_start: int, stats: dict[str, int], source: str):
    """One batch's decoded captions, the indices of the rows to keep (a non-empty caption
    and, with embeddings, a finite vector within float16 range) and its embedding block."""
    _, pc, _ = _pa()
    n = batch.num_rows
    cap = _decode_captions(batch.column(mapping["caption"]), stats, source)
    ok = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(cap)), 0), False)
    keep = np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)
    stats["null_or_empty_caption"] += int(n - keep.sum())
    block = None
    if emb is not None:
        block = np.asarray(emb[src_start : src_start + n])
        finite = np.isfinite(block).all(axis=1)
        if block.dtype != np.float16:  # beyond the float16 range it would be stored as inf
            finite &= (np.abs(block) <= 65504).all(axis=1)
        stats["nonfinite_embedding"] += int((keep & ~finite).sum())
        keep &= finite
    return cap, np.flatnonzero(keep), block


def _row_tuples(batch, cap, idx: np.ndarray, layout, next_id: int, src_start: int, source: str):
    pa, _, _ = _pa()
    mapping = layout.mapping
    sel = pa.array(idx)
    sub = batch.take(sel)
    cols = [
        range(next_id, next_id + idx.size),
        (idx + src_start).tolist(),
        _col_list(sub, mapping, "key", pa.string(), source),
        cap.take(sel).to_pylist(),
        _col_list(sub, mapping, "url", pa.string(), source),
        _col_list(sub, mapping, "width", pa.int64(), source),
        _col_list(sub, mapping, "height", pa.int64(), source),
        _nsfw_flags(sub, mapping, layout.nsfw_scores),
        _col_list(sub, mapping, "similarity", pa.float64(), source),
    ]
    none = [None] * idx.size
    return zip(*(c if c is not None else none for c in cols))


def _fill_shard(con, writer, spec: dict[str, Any], emb, stats: dict[str, int]) -> int:
    """Insert the parquet file's usable rows (and write their embeddings); returns how many."""
    _, _, pq = _pa()
    source = f"metadata {spec['source']!r}"
    pf = pq.ParquetFile(spec["source"])
    layout = file_layout(spec.get("format") or fmts.GENERIC, pf.schema_arrow.names, spec["source"])
    mapping = layout.mapping
    check_column_types(pf.schema_arrow, mapping, source, layout.nsfw_scores)
    next_id = src_start = 0
    for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=layout.read_columns()):
        stats["input_rows"] += batch.num_rows
        cap, idx, block = _keep_rows(batch, mapping, emb, src_start, stats, source)
        if idx.size:
            rows = _row_tuples(batch, cap, idx, layout, next_id, src_start, source)
            con.executemany("INSERT INTO rows VALUES (?,?,?,?,?,?,?,?,?)", rows)
            if writer is not None:
                writer.write(block[idx])
            next_id += idx.size
        src_start += batch.num_rows
    if emb is not None and src_start != emb.shape[0]:
        raise DataError(
            f"embeddings {spec['embeddings']!r} have {emb.shape[0]} rows but metadata "
            f"{spec['source']!r} has {src_start}"
        )
    return next_id


def _finish_index(con, name: str, source: str) -> None:
    # one bulk insert, no incremental merging (the final 'optimize' merges everything
    # into one segment anyway): about 20 % less CPU for the index
    con.execute("INSERT INTO captions(captions, rank) VALUES('automerge', 0)")
    con.execute("INSERT INTO captions(captions, rank) VALUES('crisismerge', 64)")
    con.execute("INSERT INTO captions(rowid, caption) SELECT id, caption FROM rows")
    con.execute("INSERT INTO captions(captions) VALUES('optimize')")
    con.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("schema_version", str(SCHEMA_VERSION)), ("shard", name), ("source", source)],
    )
    con.execute("COMMIT")


def build_shard(spec: dict[str, Any]) -> dict[str, Any]:
    """Build one shard (a picklable top-level task, run by an executor); returns its
    manifest entry. ``spec``: ``name``, ``source`` (parquet), ``embeddings`` (.npy or
    None), ``shard_dir``."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    shard_dir, name, pid = Path(spec["shard_dir"]), spec["name"], os.getpid()
    db_final, emb_final = shard_dir / f"{name}.sqlite", shard_dir / f"{name}.f16.npy"
    db_tmp = shard_dir / f".{name}.sqlite.tmp-{pid}"
    emb_tmp = shard_dir / f".{name}.f16.npy.tmp-{pid}"
    stats = dict.fromkeys(
        ("input_rows", "null_or_empty_caption", "repaired_utf8", "nonfinite_embedding"), 0
    )
    emb = None
    if spec.get("embeddings") and spec.get("embedding_key"):
        emb = fmts.load_npz_member(spec["embeddings"], spec["embedding_key"])
    elif spec.get("embeddings"):
        emb = np.load(spec["embeddings"], mmap_mode="r")
    writer = con = None
    try:
        for p in (db_tmp, emb_tmp):
            p.unlink(missing_ok=True)
        con = _open_shard_db(db_tmp)
        if emb is not None:
            writer = _F16Writer(emb_tmp, int(emb.shape[1]))
        n_rows = _fill_shard(con, writer, spec, emb, stats)
        _finish_index(con, name, spec["source"])
        con.close()
        con = None
        entry: dict[str, Any] = {
            "name": name,
            "source": spec["source"],
            "n_rows": n_rows,
            "stats": stats,
            "db": f"{SHARD_DIR}/{db_final.name}",
            "db_sha256": sha256_file(db_tmp),
            "db_bytes": db_tmp.stat().st_size,
        }
        if writer is not None:
            writer.close()
            writer = None
            entry["embeddings"] = f"{SHARD_DIR}/{emb_final.name}"
            entry["embeddings_sha256"] = sha256_file(emb_tmp)
            entry["embeddings_bytes"] = emb_tmp.stat().st_size
            entry["embeddings_source"] = spec["embeddings"]
            os.replace(emb_tmp, emb_final)
        os.replace(db_tmp, db_final)
        entry["build_seconds"] = round(time.perf_counter() - t0, 3)
        entry["build_cpu_seconds"] = round(time.process_time() - cpu0, 3)
        return entry
    except BaseException:
        if con is not None:
            con.close()
        if writer is not None:
            writer.fh.close()
        for p in (db_tmp, emb_tmp):
            p.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- whole build
def _input_record(meta: Path, emb: Path | None, n_rows: int) -> dict[str, Any]:
    rec: dict[str, Any] = {"metadata": str(meta), "bytes": meta.stat().st_size, "rows": n_rows}
    if emb is not None:
        rec["embeddings"] = str(emb)
        rec["embeddings_bytes"] = emb.stat().st_size
    return rec


def _check_embedding_file(emb: Path, meta: Path, n_rows: int, key: str | None = None) -> int:
    shape, dtype = fmts.npz_member_shape(emb, key) if key else _npy_shape(emb)
    if len(shape) != 2 or not np.issubdtype(dtype, np.floating):
        what = f"{str(emb)!r}" + (f" key {key!r}" if key else "")
        raise DataError(
            f"embeddings {what} must be a 2-d float array, got shape {shape} dtype {dtype}"
        )
    if shape[0] != n_rows:
        raise DataError(
            f"embeddings {str(emb)!r} have {shape[0]} rows but metadata {str(meta)!r} "
            f"has {n_rows} rows; they must be row-aligned"
        )
    return int(shape[1])


def _file_layouts(meta_files: list[Path], fmt: str | None) -> list[fmts.Layout]:
    """Each input's layout (named or detected); every file must have the same format."""
    _, _, pq = _pa()
    layouts = []
    for meta in meta_files:
        try:
            schema = pq.ParquetFile(meta).schema_arrow
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise DataError(
                f"metadata {str(meta)!r} is not a readable parquet file: {exc}"
            ) from None
        layout = file_layout(fmt, schema.names, meta)
        check_column_types(schema, layout.mapping, f"metadata {str(meta)!r}", layout.nsfw_scores)
        if layouts and layout.format != layouts[0].format:
            raise DataError(
                f"metadata: the inputs mix formats: {str(meta_files[0])!r} is "
                f"{layouts[0].format!r} ({layouts[0].reason}) but {str(meta)!r} is "
                f"{layout.format!r} ({layout.reason}); build them separately or name --format"
            )
        layouts.append(layout)
    return layouts


def _check_inputs(
    meta_files: list[Path], emb_files: list[Path] | None, key: str | None = None
) -> tuple[list[dict], int | None]:
    """Read every input's schema and shape before anything is written: unreadable files,
    misaligned embeddings and an input of 0 rows are refused here."""
    _, _, pq = _pa()
    inputs = []
    dim = dim_src = None
    for i, meta in enumerate(meta_files):
        n_rows = pq.ParquetFile(meta).metadata.num_rows
        emb = emb_files[i] if emb_files else None
        if emb is not None:
            d = _check_embedding_file(emb, meta, n_rows, key)
            if dim is None:
                dim, dim_src = d, emb
            elif d != dim:
                raise DataError(
                    f"embedding dimension differs between shards: {str(dim_src)!r} has {dim}, "
                    f"{str(emb)!r} has {d}"
                )
        inputs.append(_input_record(meta, emb, n_rows))
    if not sum(rec["rows"] for rec in inputs):
        raise DataError(
            f"metadata: the {len(inputs)} input file(s) hold 0 rows; nothing to build "
            f"(first: {str(meta_files[0])!r})"
        )
    return inputs, dim


def _clean_temp(shard_dir: Path) -> None:
    for p in shard_dir.glob(".*.tmp*"):
        p.unlink(missing_ok=True)


def finalise_manifest(manifest: dict[str, Any]) -> None:
    """Assign global row offsets in shard order and totals (all shards finished)."""
    offset = 0
    for s in manifest["shards"]:
        s["row_offset"] = offset
        offset += s["n_rows"]
    manifest["n_rows"] = offset
    has = bool(manifest["shards"]) and all("embeddings" in s for s in manifest["shards"])
    manifest["has_embeddings"] = has


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: {str(out)!r} exists and is not a folder")
    blocker = next((a for a in out.parents if a.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ConfigError(f"out: {str(out)!r} cannot be created: {str(blocker)!r} is a file")


def _start_manifest(
    out: Path,
    inputs: list[dict],
    dim: int | None,
    embedding_model: str | None,
    source_format: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The manifest to build into: a resumed one, or a new one; None when ``out``
    already holds the finished corpus of these inputs."""
    if (out / MANIFEST).exists():
        manifest = read_manifest(out)
        if manifest.get("build", {}).get("inputs") != inputs:
            raise ConfigError(
                f"out: {str(out)!r} already holds a corpus built from other inputs; "
                "choose another --out or delete it"
            )
        old = manifest.get("source_format")
        new = source_format or {}
        if old and (old.get("name"), old.get("embedding_key")) != (
            new.get("name"),
            new.get("embedding_key"),
        ):
            raise ConfigError(
                f"out: {str(out)!r} holds a build read as format {old.get('name')!r} "
                f"(embedding key {old.get('embedding_key')!r}); this build reads "
                f"{new.get('name')!r} (key {new.get('embedding_key')!r}); choose another --out"
            )
        if manifest.get("complete"):
            log.info("corpus %s is already complete", out)
            return None
        log.info("resuming the build in %s", out)
        return manifest
    if out.exists() and any(out.iterdir()):
        raise ConfigError(
            f"out: {str(out)!r} exists, is not empty and is not a corpus; choose an empty folder"
        )
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "complete": False,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tokenizer": TOKENIZER,
        "fts_detail": "full",
        "dim": dim,
        "embedding_dtype": "float16" if dim is not None else None,
        "embedding_model": embedding_model if dim is not None else None,
        "embedding_fingerprint": None,
        "source_format": source_format,
        "build": {"inputs": inputs},
        "shards": [],
    }


def _finished_shards(out: Path, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    done = {s["name"]: s for s in manifest["shards"]}
    for s in list(done.values()):  # a finished shard whose files went missing is rebuilt
        if not (out / s["db"]).is_file() or (
            "embeddings" in s and not (out / s["embeddings"]).is_file()
        ):
            log.warning("shard %s is listed but its files are missing; rebuilding it", s["name"])
            del done[s["name"]]
    return done


def _run_shards(specs: list[dict], record, executor: ExecutorSpec, n_workers: int) -> None:
    """Build ``specs`` on the executor, at most ``n_workers`` in flight (one at a time
    inline), recording each finished shard as soon as it completes."""
    with open_executor(executor, max_workers=n_workers, kind="process") as ex:
        todo = iter(specs)
        pending: set = set()

        def top_up() -> None:
            while len(pending) < max(1, n_workers):
                spec = next(todo, None)
                if spec is None:
                    return
                fut = ex.submit(build_shard, spec)
                if fut.done():  # an inline executor: record it before starting the next
                    record(fut.result())
                else:
                    pending.add(fut)

        try:
            top_up()
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    record(fut.result())
                top_up()
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise


def _complete(out: Path, manifest: dict[str, Any], names: list[str], done: dict) -> None:
    manifest["shards"] = [done[n] for n in names]
    finalise_manifest(manifest)
    stats: dict[str, int] = {}
    for s in manifest["shards"]:
        for k, v in s["stats"].items():
            stats[k] = stats.get(k, 0) + v
    manifest["stats"] = stats
    if not manifest["n_rows"]:
        atomic_write_json(out / MANIFEST, manifest)
        raise DataError(
            f"corpus {str(out)!r}: no usable row in {stats.get('input_rows', 0)} input rows "
            f"({stats.get('null_or_empty_caption', 0)} with no caption, "
            f"{stats.get('nonfinite_embedding', 0)} with a NaN/inf embedding); nothing to search"
        )
    manifest["complete"] = True
    atomic_write_json(out / MANIFEST, manifest)
    for k in ("null_or_empty_caption", "repaired_utf8", "nonfinite_embedding"):
        if stats.get(k):
            log.warning("corpus %s: %d rows with %s", out, stats[k], k.replace("_", " "))


def _resolve_sources(metadata, embeddings, fmt, embedding_key, embedding_model):
    """Input files, their layouts, the embedding files (``.npy``, or DataComp ``.npz``
    with a key), the embedding model and the manifest's ``source_format`` record."""
    if fmt is not None and fmt not in fmts.FORMAT_NAMES:
        raise ConfigError(
            f"format: unknown format {fmt!r}; choose one of {', '.join(fmts.FORMAT_NAMES)}"
        )
    meta_files = resolve_metadata(metadata)
    layouts = _file_layouts(meta_files, fmt)
    first = layouts[0]
    key = None
    if first.embeddings == "npz" and (embedding_key is not None or embeddings is not None):
        key = embedding_key or "l14_img"
        emb_files = fmts.resolve_npz(embeddings, meta_files)
        embedding_model = embedding_model or fmts.datacomp_embedding_model(key)
    elif embedding_key is not None:
        raise ConfigError(
            f"embedding_key {embedding_key!r} applies to DataComp .npz embeddings only; "
            f"{str(meta_files[0])!r} is format {first.format!r}"
        )
    else:
        emb_files = resolve_embeddings(embeddings, meta_files)
    title = fmts.FORMATS[first.format].title if first.format in fmts.FORMATS else "LAION-style"
    record = {
        "name": first.format,
        "title": title,
        "detected": fmt is None,
        "reason": first.reason,
        "embedding_key": key,
    }
    return meta_files, emb_files, layouts, key, embedding_model, record


def build_corpus(
    metadata: str | os.PathLike | Sequence[str | os.PathLike],
    embeddings: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    out: str | os.PathLike = "corpus",
    workers: int | None = None,
    embedding_model: str | None = None,
    progress: Any = None,
    executor: ExecutorSpec = None,
    format: str | None = None,
    embedding_key: str | None = None,
) -> Path:
    """Build (or resume building) a corpus directory.

    Parameters
    ----------
    metadata : path, folder, glob pattern, or a list of those
        LAION-style parquet files, one shard each (a clip-retrieval root with a
        ``metadata/`` folder also works).
    embeddings : folder, ``.npy`` / ``.npz`` path(s), or None
        Row-aligned embeddings (clip-retrieval ``img_emb/img_emb_{i}.npy`` or one
        ``NAME.npy`` per ``NAME.parquet``; DataComp: ``NAME.npz`` beside or in this
        folder); stored as float16.
    out : path
        The corpus directory; an unfinished build there is resumed.
    workers : int, optional
        Parallel worker processes (default: number of CPUs, at most one per shard).
    embedding_model : str, optional
        Name of the model that produced ``embeddings``, recorded in the manifest.
    progress : priming.progress.ProgressCallback, optional
        Receives the task ``"build corpus"`` in input rows (total: every input row),
        advanced as each shard finishes.
    executor : None, "local", "inline" or a concurrent.futures.Executor
        Where shards are built (see :mod:`priming.exec`): by default local worker
        processes (in-process with ``workers=1``).
    format : one of :data:`priming.corpus.formats.FORMAT_NAMES`, or None
        The source layout (``relaion``, ``datacomp``, ``coyo``, ``laion``,
        ``clip-retrieval``); None detects it from the columns and file names. The
        result is recorded as ``source_format`` in the manifest.
    embedding_key : str, optional
        DataComp only: the ``.npz`` key to store (``l14_img``, ``b32_img``, ...); giving
        it (or ``embeddings``) reads the ``.npz`` files, default key ``l14_img``. The
        embedding model is recorded from the key unless ``embedding_model`` is given.

    Returns
    -------
    Path of the finished corpus directory.
    """
    meta_files, emb_files, layouts, key, embedding_model, source_format = _resolve_sources(
        metadata, embeddings, format, embedding_key, embedding_model
    )
    if workers is not None and (
        not isinstance(workers, int) or isinstance(workers, bool) or workers < 1
    ):
        raise ConfigError(f"workers must be a positive integer or None, got {workers!r}")
    out = Path(out)
    _check_out(out)
    inputs, dim = _check_inputs(meta_files, emb_files, key)
    manifest = _start_manifest(out, inputs, dim, embedding_model, source_format)
    if manifest is None:
        return out
    shard_dir = out / SHARD_DIR
    shard_dir.mkdir(parents=True, exist_ok=True)
    _clean_temp(shard_dir)
    names = [f"shard-{i:05d}" for i in range(len(meta_files))]
    done = _finished_shards(out, manifest)
    specs = [
        {
            "name": names[i],
            "source": str(meta_files[i]),
            "embeddings": str(emb_files[i]) if emb_files else None,
            "embedding_key": key,
            "format": layouts[i].format,
            "shard_dir": str(shard_dir),
        }
        for i in range(len(meta_files))
        if names[i] not in done
    ]
    rows_of = dict(zip(names, (rec["rows"] for rec in inputs)))
    atomic_write_json(out / MANIFEST, manifest)
    callback = as_callback(progress)
    with track(callback, "build corpus", sum(rows_of.values()), "rows") as bar:
        bar.advance(sum(rows_of[n] for n in done))

        def record(entry: dict[str, Any]) -> None:
            done[entry["name"]] = entry
            manifest["shards"] = [done[n] for n in names if n in done]
            atomic_write_json(out / MANIFEST, manifest)
            bar.advance(rows_of[entry["name"]])

        n_workers = min(workers or os.cpu_count() or 1, max(len(specs), 1))
        _run_shards(specs, record, executor, n_workers)
    _complete(out, manifest, names, done)
    return out
