"""Server-side paging over parquet files: read only the row groups and columns a page needs.

A pool of a million rows is never loaded whole per request. At start-up only the
grouping column (the class of every row) is read, once, into an integer index; a page
then reads the few row groups that hold its rows, for the columns it shows, and keeps
the last few decoded groups in a small LRU cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from priming._optional import require

__all__ = ["ParquetPager", "Page"]


class Page:
    """One page of rows: ``rows`` (list of dicts), ``offset``, ``total`` (None: unknown),
    ``has_more`` (another page follows)."""

    def __init__(self, rows: list[dict], offset: int, total: int | None, has_more: bool):
        self.rows = rows
        self.offset = offset
        self.total = total
        self.has_more = has_more


class ParquetPager:
    """Random access by row position into one parquet file.

    Parameters
    ----------
    path : parquet file
    group_by : column whose values split the rows into groups (e.g. the class name);
        read once at construction. None: no grouping.
    cache_groups : how many decoded row groups to keep in memory.
    """

    def __init__(self, path: str | Path, group_by: str | None = None, cache_groups: int = 8):
        self.pq = require("pyarrow.parquet", "browse", package="pyarrow")
        self.pc = require("pyarrow.compute", "browse", package="pyarrow")
        self.path = Path(path)
        self.file = self.pq.ParquetFile(self.path)
        md = self.file.metadata
        self.n_rows = int(md.num_rows)
        self.columns: list[str] = list(self.file.schema_arrow.names)
        sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        self._ends = np.cumsum(np.asarray(sizes, dtype=np.int64))
        self._starts = self._ends - np.asarray(sizes, dtype=np.int64)
        self._cache: OrderedDict[tuple, Any] = OrderedDict()
        self._cache_groups = max(1, int(cache_groups))
        self._lock = threading.Lock()
        self.groups: dict[str, np.ndarray] = {}
        if group_by is not None and group_by in self.columns:
            self.groups = self._group_index(group_by)

    # ---- index of the grouping column
    def _group_index(self, column: str) -> dict[str, np.ndarray]:
        """``{value: ascending row positions}``; a null value is grouped under ``""``."""
        col = self.file.read(columns=[column]).column(0)
        enc = self.pc.dictionary_encode(col).combine_chunks()
        codes = enc.indices.to_numpy(zero_copy_only=False)
        codes = np.where(enc.indices.is_null().to_numpy(zero_copy_only=False), -1, codes)
        codes = codes.astype(np.int64)
        values = [str(v) for v in enc.dictionary.to_pylist()]
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(-1, len(values) + 1))
        out: dict[str, np.ndarray] = {}
        for k in range(-1, len(values)):
            pos = order[bounds[k + 1] : bounds[k + 2]]
            if len(pos):
                out["" if k < 0 else values[k]] = pos
        return out

    def count(self, group: str | None = None) -> int:
        if group is None:
            return self.n_rows
        return int(len(self.groups.get(group, ())))

    # ---- row groups
    def _row_group(self, g: int, columns: tuple[str, ...]):
        key = (g, columns)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        table = self.file.read_row_group(g, columns=list(columns))
        with self._lock:
            self._cache[key] = table
            while len(self._cache) > self._cache_groups:
                self._cache.popitem(last=False)
        return table

    def take(self, positions: Sequence[int] | np.ndarray, columns: Sequence[str]) -> list[dict]:
        """The rows at ``positions`` (any order; returned in that order) as dicts of the
        ``columns`` that exist in the file, plus ``_pos`` (the row position)."""
        pos = np.asarray(positions, dtype=np.int64)
        cols = tuple(c for c in columns if c in self.columns)
        if pos.size and (pos.min() < 0 or pos.max() >= self.n_rows):
            raise IndexError(f"row positions out of range [0, {self.n_rows})")
        out: list[dict | None] = [None] * len(pos)
        groups = np.searchsorted(self._ends, pos, side="right")
        for g in np.unique(groups):
            sel = np.flatnonzero(groups == g)
            table = self._row_group(int(g), cols)
            local = pos[sel] - self._starts[g]
            part = table.take(local).to_pylist() if cols else [{} for _ in sel]
            for i, row in zip(sel.tolist(), part):
                row["_pos"] = int(pos[i])
                out[i] = row
        return [r for r in out if r is not None]

    def page(self, offset: int, limit: int, columns: Sequence[str], group: str | None = None):
        """Rows ``offset .. offset+limit`` of the file, or of one group."""
        if group is None:
            n = self.n_rows
            pos = np.arange(offset, min(n, offset + limit), dtype=np.int64)
        else:
            allpos = self.groups.get(group, np.zeros(0, np.int64))
            n = len(allpos)
            pos = allpos[offset : offset + limit]
        rows = self.take(pos, columns) if len(pos) else []
        return Page(rows, offset, n, offset + limit < n)

    def search(
        self,
        column: str,
        text: str,
        offset: int,
        limit: int,
        columns: Sequence[str],
        group: str | None = None,
    ) -> Page:
        """Rows whose ``column`` contains ``text`` (case-insensitive, literal), paged.

        Row groups are scanned in order and the scan stops once the page (and one more
        row, to know whether another page follows) is found; ``total`` is None unless
        the scan reached the end of the file.
        """
        if column not in self.columns:
            return Page([], offset, 0, False)
        allowed = None
        if group is not None:
            allowed = self.groups.get(group, np.zeros(0, np.int64))
        need = offset + limit + 1
        found: list[np.ndarray] = []
        n_found = 0
        finished = True
        n_groups = len(self._ends)
        for g in range(n_groups):
            start, end = int(self._starts[g]), int(self._ends[g])
            if allowed is not None:
                lo, hi = np.searchsorted(allowed, [start, end])
                if lo == hi:
                    continue
            col = self._row_group(g, (column,)).column(0)
            mask = self.pc.match_substring(col, text, ignore_case=True)
            hits = np.flatnonzero(mask.fill_null(False).to_numpy(zero_copy_only=False)) + start
            if allowed is not None:
                hits = hits[np.isin(hits, allowed[lo:hi], assume_unique=True)]
            found.append(hits)
            n_found += len(hits)
            if n_found >= need:
                finished = g == n_groups - 1
                break
        allhits = np.concatenate(found) if found else np.zeros(0, np.int64)
        pos = allhits[offset : offset + limit]
        rows = self.take(pos, columns) if len(pos) else []
        total = len(allhits) if finished else None
        return Page(rows, offset, total, len(allhits) > offset + limit)
