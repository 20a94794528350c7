"""Caption search in one shard, as a picklable task for the executor seam.

:func:`search_shard` takes a :class:`ShardRef` (where the shard's database is, its
checksum and its first global row id), the validated query plan and the per-label
limit, and returns plain arrays and tuples, so it runs the same in a thread, in a worker
process or on a distributed backend. Each process keeps its own idle read-only
connections per shard (keyed by the shard's checksum, so a rebuilt shard never reuses a
connection to the old file). A damaged shard file is reported as a
:class:`~priming.errors.DataError` that names the shard and suggests
``priming corpus info --verify``.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sqlite3
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from priming.corpus._manifest import TOKENIZER
from priming.errors import DataError

__all__ = [
    "HIT_METADATA",
    "ShardRef",
    "count_shard",
    "fetch_columns",
    "search_shard",
    "shard_connection",
    "close_connections",
    "fetch_rows",
]


@dataclass(frozen=True)
class ShardRef:
    """Where one shard's database is: ``db`` (absolute path), ``sha256`` (its manifest
    checksum), ``offset`` (global id of its row 0), ``name`` and ``corpus`` (for messages)."""

    db: str
    sha256: str
    offset: int
    name: str
    corpus: str


_IDLE: dict[tuple[str, str], queue.SimpleQueue] = {}
_IDLE_LOCK = threading.Lock()


def _idle(ref: ShardRef) -> queue.SimpleQueue:
    with _IDLE_LOCK:
        return _IDLE.setdefault((ref.db, ref.sha256), queue.SimpleQueue())


def _damaged(ref: ShardRef, exc: Exception) -> DataError:
    return DataError(
        f"corpus {ref.corpus!r}: shard {ref.name} ({ref.db}) is damaged or unreadable "
        f"({exc}); run `priming corpus info {ref.corpus} --verify` to check every file, "
        "and rebuild the corpus if a checksum differs"
    )


def _connect(ref: ShardRef) -> sqlite3.Connection:
    uri = f"file:{urllib.parse.quote(ref.db)}?mode=ro&immutable=1"
    con = sqlite3.connect(uri, uri=True, check_same_thread=False)
    try:
        con.execute("PRAGMA cache_size=-65536")
        con.execute("PRAGMA mmap_size=1099511627776")  # read pages in place, no copies
        con.execute("SELECT 1 FROM rows LIMIT 1").fetchall()  # a garbled header fails here
    except BaseException:
        con.close()
        raise
    return con


@contextlib.contextmanager
def shard_connection(ref: ShardRef) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the shard, returned to this process's idle set after use;
    any ``sqlite3.DatabaseError`` becomes a DataError naming the shard."""
    idle = _idle(ref)
    try:
        con = idle.get_nowait()
    except queue.Empty:
        try:
            con = _connect(ref)
        except sqlite3.DatabaseError as exc:
            raise _damaged(ref, exc) from None
    try:
        yield con
    except sqlite3.DatabaseError as exc:
        con.close()
        raise _damaged(ref, exc) from None
    except BaseException:
        con.close()
        raise
    idle.put(con)


def close_connections(refs: Sequence[ShardRef]) -> None:
    """Close this process's idle connections to ``refs``."""
    for ref in refs:
        with _IDLE_LOCK:
            idle = _IDLE.pop((ref.db, ref.sha256), None)
        while idle is not None:
            try:
                idle.get_nowait().close()
            except queue.Empty:
                break


# Every shard answers with row ids only (FTS5, no row fetch): labels and ambiguity are
# decided with numpy set operations on those ids. The metadata of the kept rows is read
# later, and only the columns asked for (:func:`fetch_columns`). The SQL texts are
# constants, so each connection's statement cache prepares every statement once.
# ``group_concat`` hands a shard's ids over as one string that numpy parses in C, rather
# than one Python tuple per hit.
_IDS_SQL = "SELECT group_concat(rowid) FROM captions WHERE captions MATCH ?"
_IDS_LIMIT_SQL = (
    "SELECT group_concat(rowid) FROM "
    "(SELECT rowid FROM captions WHERE captions MATCH ? ORDER BY rowid LIMIT ?)"
)
HIT_METADATA = ("caption", "url", "nsfw", "similarity")
"""Columns of a caption hit read from the shard's rows table (after ``row_id``)."""


def search_shard(ref: ShardRef, plan, limit: int | None):
    """One shard's hits: ``(label_idx, name_idx, global_ids, ambiguous)``, three arrays
    aligned row by row (ids ascending), and ``ambiguous`` a list of
    ``(global_id, [label_idx, ...])``. Reads row ids only."""
    with shard_connection(ref) as con:
        if len(plan) == 1:
            ids, ni = _one_label(con, plan[0][1], limit)
            return np.zeros(ids.size, np.int32), ni, ids + ref.offset, []
        if limit is None:
            ids, li, ni, amb = _match_sets(con, plan)
        else:
            ids, li, ni, amb = _member_arrays(_match_limited(con, plan, limit), limit)
        return li, ni, ids + ref.offset, [(rid + ref.offset, labs) for rid, labs in amb]


def count_shard(ref: ShardRef, plan) -> np.ndarray:
    """One shard's number of unambiguous hits per label, as ``search_shard`` without a
    limit would return them (it reads row ids only)."""
    with shard_connection(ref) as con:
        _, li, _, _ = _match_sets(con, plan)
    return np.bincount(li, minlength=len(plan)).astype(np.int64)


def fetch_columns(ref: ShardRef, global_ids: np.ndarray, columns: Sequence[str]) -> list[tuple]:
    """``columns`` (names from :data:`HIT_METADATA`) of the shard's rows ``global_ids``
    (ascending), one tuple per row in that order."""
    bad = [c for c in columns if c not in HIT_METADATA]
    if bad:  # column names go into SQL: only known ones
        raise DataError(f"unknown hit column(s) {bad}; valid: {', '.join(HIT_METADATA)}")
    if not len(global_ids) or not columns:
        return [()] * len(global_ids)
    local = np.asarray(global_ids, np.int64) - ref.offset
    with shard_connection(ref) as con:
        got = fetch_rows(con, local.tolist(), "id, " + ", ".join(columns))
    return [got[i][1:] for i in local.tolist()]


def _one_label(con, names, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Local ids (ascending) of one label's rows and the index of each row's first
    matching name, at most ``limit`` rows."""
    found = [_rowids(con, expr, limit) for _, expr in names]
    if len(found) == 1:
        return found[0], np.zeros(found[0].size, np.int32)
    # a row matched by several names counts once, under the first name
    cat = np.concatenate(found)
    which = np.repeat(np.arange(len(found), dtype=np.int32), [a.size for a in found])
    ids, first = np.unique(cat, return_index=True)
    if limit is not None:
        ids, first = ids[:limit], first[:limit]
    return ids, which[first]


def _rowids(con, expr: str, limit: int | None = None) -> np.ndarray:
    if limit is None:
        ((text,),) = con.execute(_IDS_SQL, (expr,)).fetchall()
    else:
        ((text,),) = con.execute(_IDS_LIMIT_SQL, (expr, limit)).fetchall()
    if not text:
        return np.zeros(0, np.int64)
    ids = np.fromstring(text, dtype=np.int64, sep=",")
    if ids.size > 1 and (ids[1:] < ids[:-1]).any():  # FTS5 yields rowids ascending
        ids.sort()
    return ids


def _match_sets(con, plan):
    """Every hit of every label, as arrays: unambiguous ``ids`` (ascending) with their
    label and first matching name, plus the ambiguous ``(id, [labels])``."""
    per_ids, per_names = [], []
    for _, names in plan:
        found = [_rowids(con, expr) for _, expr in names]
        if len(found) == 1:
            ids, ni = found[0], np.zeros(found[0].size, np.int32)
        else:
            cat = np.concatenate(found)
            which = np.repeat(np.arange(len(found), dtype=np.int32), [a.size for a in found])
            ids, first = np.unique(cat, return_index=True)  # first occurrence = first name
            ni = which[first]
        per_ids.append(ids)
        per_names.append(ni)
    all_ids = np.concatenate(per_ids)
    all_li = np.repeat(np.arange(len(plan), dtype=np.int32), [a.size for a in per_ids])
    all_ni = np.concatenate(per_names)
    uniq, counts = np.unique(all_ids, return_counts=True)
    multi = uniq[counts > 1]
    amb: list[tuple[int, list[int]]] = []
    if multi.size:
        is_amb = np.isin(all_ids, multi)
        a_ids, a_li = all_ids[is_amb], all_li[is_amb]
        o = np.lexsort((a_li, a_ids))
        a_ids, a_li = a_ids[o], a_li[o]
        cuts = np.flatnonzero(np.diff(a_ids)) + 1
        for rid, labs in zip(a_ids[np.r_[0, cuts]], np.split(a_li, cuts)):
            amb.append((int(rid), labs.tolist()))
        keep = ~is_amb
        all_ids, all_li, all_ni = all_ids[keep], all_li[keep], all_ni[keep]
    o = np.argsort(all_ids, kind="stable")
    return all_ids[o], all_li[o], all_ni[o], amb


def _match_limited(con, plan, limit: int) -> dict[int, dict[int, int]]:
    """Fetch about ``limit`` rows per label, then decide every fetched row's labels
    exactly by matching all names against those rows' captions in memory.

    Returns local row id -> {label index: index of its first matching name}."""
    sql = "SELECT rowid FROM captions WHERE captions MATCH ? AND rowid > ? ORDER BY rowid LIMIT ?"
    cursors = [[[expr, -1, False] for _, expr in names] for _, names in plan]
    member: dict[int, dict[int, int]] = {}
    mem = sqlite3.connect(":memory:")
    mem.execute(f"CREATE VIRTUAL TABLE m USING fts5(caption, detail=full, tokenize='{TOKENIZER}')")
    while True:
        new: set[int] = set()
        have = Counter(next(iter(labs)) for labs in member.values() if len(labs) == 1)
        for li, curs in enumerate(cursors):
            want = limit - have[li]
            if want <= 0:
                continue
            for cur in curs:
                if cur[2]:
                    continue
                got = [r for (r,) in con.execute(sql, (cur[0], cur[1], want))]
                if len(got) < want:
                    cur[2] = True
                if got:
                    cur[1] = got[-1]
                new.update(r for r in got if r not in member)
        if not new:
            break
        caps = fetch_rows(con, sorted(new), "id, caption")
        mem.executemany("INSERT INTO m(rowid, caption) VALUES (?, ?)", caps.values())
        ids_json = json.dumps(sorted(new))
        for li, (_, names) in enumerate(plan):
            for ni, (_, expr) in enumerate(names):
                q = "SELECT rowid FROM m WHERE m MATCH ? AND rowid IN (SELECT value FROM json_each(?))"
                for (rid,) in mem.execute(q, (expr, ids_json)):
                    member.setdefault(rid, {}).setdefault(li, ni)
        if not any(not c[2] for curs in cursors for c in curs):
            break
    mem.close()
    return member


def fetch_rows(con, local_ids: Sequence[int], columns: str) -> dict[int, tuple]:
    """``columns`` (SQL, first the id) of the shard rows ``local_ids``, by local id."""
    if not len(local_ids):
        return {}
    sql = f"SELECT {columns} FROM rows WHERE id IN (SELECT value FROM json_each(?))"
    return {r[0]: r for r in con.execute(sql, (json.dumps(list(map(int, local_ids))),))}


def _member_arrays(member: dict[int, dict[int, int]], limit: int):
    """``_match_limited``'s result as ``_match_sets`` returns it, at most ``limit`` rows
    per label (lowest ids first)."""
    ids, lis, nis = [], [], []
    have: Counter = Counter()
    amb = []
    for rid in sorted(member):
        labs = member[rid]
        if len(labs) == 1:
            ((li, ni),) = labs.items()
            if have[li] < limit:
                have[li] += 1
                ids.append(rid)
                lis.append(li)
                nis.append(ni)
        else:
            amb.append((rid, sorted(labs)))
    return (
        np.array(ids, np.int64),
        np.array(lis, np.int32),
        np.array(nis, np.int32),
        amb,
    )
