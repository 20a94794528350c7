"""The priming pool: labelled corpus rows (embedding, label, id, caption, url, score)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from priming._fs import make_temp_dir, replace_dir
from priming._optional import require
from priming.errors import DataError

__all__ = ["PrimingPool"]

_FORMAT = 2
_DROP_COLS = ("row_id", "class", "step", "reason", "caption", "url")


def _objects(v, n: int) -> np.ndarray:
    if v is None:
        return np.full(n, None, dtype=object)
    a = np.asarray(v, dtype=object)
    if a.shape != (n,):
        raise DataError(f"dropped-row column has shape {a.shape}, expected ({n},)")
    return a


def _dropped_columns(d: dict | None) -> dict[str, np.ndarray]:
    if d is None:
        return {
            k: np.zeros(0, np.int64) if k == "row_id" else np.zeros(0, object) for k in _DROP_COLS
        }
    missing = [k for k in _DROP_COLS if k not in d]
    if missing:
        raise DataError(f"dropped rows lack the columns {missing}")
    n = len(d["row_id"])
    out = {"row_id": np.asarray(d["row_id"], np.int64)}
    for k in _DROP_COLS[1:]:
        out[k] = _objects(d[k], n)
    return out


def _step_record(s, class_names: list[str]) -> dict:
    """One step record from a ``(name, counts)`` pair (older pools) or a dict whose
    ``kept`` / ``dropped`` are lists in class order or ``{class: n}`` mappings."""
    if isinstance(s, dict):
        name, kept, drop = s["step"], s["kept"], s.get("dropped")
    else:
        (name, kept), drop = s, None

    def counts(c):
        if isinstance(c, dict):
            return [int(c.get(n, 0)) for n in class_names]
        return [int(x) for x in c]

    rec = {"step": str(name), "kept": counts(kept), "dropped": None if not drop else counts(drop)}
    if isinstance(s, dict) and s.get("unassigned"):
        rec["unassigned"] = int(s["unassigned"])
    return rec


class PrimingPool:
    """Pool rows with their class labels and the per-class counts after every build step.

    Attributes
    ----------
    embeddings : float32 (n, D)
    labels : int64 (n,) indices into ``class_names``
    class_names : list of str
    row_ids : int64 (n,) global corpus row ids (-1 when unknown)
    captions, urls : object arrays (n,) of str
    scores : float32 (n,) the ranking score used by the per-class cap (NaN if none)
    meta : dict (corpus fingerprint, embedding model, build settings, unmatched classes)
    """

    def __init__(
        self,
        embeddings,
        labels,
        class_names: Sequence[str],
        row_ids=None,
        captions=None,
        urls=None,
        scores=None,
        meta: dict | None = None,
        steps: list | None = None,
        dropped: dict | None = None,
        heldout: PrimingPool | None = None,
    ) -> None:
        E = np.asarray(embeddings, dtype=np.float32)
        y = np.asarray(labels)
        n = len(y)
        if E.ndim != 2 or E.shape[0] != n:
            raise DataError(f"pool embeddings have shape {E.shape} but there are {n} labels")
        if n and not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"pool labels must be integer class indices, got dtype {y.dtype}")
        self.class_names = [str(c) for c in class_names]
        if n and (y.min() < 0 or y.max() >= len(self.class_names)):
            raise DataError(f"pool labels must lie in [0, {len(self.class_names)})")
        self.embeddings = E
        self.labels = y.astype(np.int64)

        def col(v, fill, dtype):
            if v is None:
                return np.full(n, fill, dtype=dtype)
            a = np.asarray(v, dtype=dtype)
            if a.shape != (n,):
                raise DataError(f"pool column has shape {a.shape}, expected ({n},)")
            return a

        self.row_ids = col(row_ids, -1, np.int64)
        self.captions = col(captions, "", object)
        self.urls = col(urls, "", object)
        self.scores = col(scores, np.nan, np.float32)
        self.meta = dict(meta or {})
        self._steps: list[dict] = [_step_record(s, self.class_names) for s in (steps or [])]
        self._dropped = _dropped_columns(dropped)
        #: rows set aside by ``build_pool(holdout=...)`` for label-free α selection (a
        #: PrimingPool with caption labels, unfiltered by agreement and uncapped) or None
        self.heldout: PrimingPool | None = heldout

    # -- basics ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.labels)

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    def counts(self) -> np.ndarray:
        """Items per class, in ``class_names`` order."""
        return np.bincount(self.labels, minlength=len(self.class_names))

    def record_step(self, name: str, dropped_labels=None, unassigned: int = 0) -> None:
        """Remember the current per-class counts under ``name`` (shown by :meth:`stats`),
        and optionally the labels of the rows the step dropped (``unassigned``: dropped
        rows that had no single class)."""
        C = len(self.class_names)
        drop = None
        if dropped_labels is not None:
            drop = np.bincount(np.asarray(dropped_labels, np.int64), minlength=C).tolist()
        rec = {"step": name, "kept": self.counts().tolist(), "dropped": drop}
        if unassigned:
            rec["unassigned"] = int(unassigned)
        self._steps.append(rec)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per-class counts after every build step: ``{step: {class: count}}`` in order."""
        return {r["step"]: dict(zip(self.class_names, r["kept"])) for r in self._steps}

    @property
    def steps(self) -> list[dict]:
        """Every build step in order: ``{"step", "kept": {class: n}, "dropped": {class: n}}``
        (``dropped`` is empty for steps recorded without it, e.g. by older pools)."""
        out = []
        for r in self._steps:
            d = {
                "step": r["step"],
                "kept": dict(zip(self.class_names, r["kept"])),
                "dropped": dict(zip(self.class_names, r["dropped"] or [])),
            }
            if r.get("unassigned"):
                d["unassigned"] = r["unassigned"]
            out.append(d)
        return out

    @property
    def dropped(self) -> dict[str, np.ndarray]:
        """The rows the steps dropped, one entry per row and step, as columns
        ``row_id, class, step, reason, caption, url`` (``class`` None where the row had
        no single class, e.g. an ambiguous caption)."""
        return {k: v.copy() for k, v in self._dropped.items()}

    def stats_table(self) -> str:
        """:meth:`stats` as a markdown table (one row per class, one column per step)."""
        steps = [r["step"] for r in self._steps]
        kept = [r["kept"] for r in self._steps]
        lines = ["| class | " + " | ".join(steps) + " |", "|---" * (len(steps) + 1) + "|"]
        for j, name in enumerate(self.class_names):
            lines.append(f"| {name} | " + " | ".join(str(c[j]) for c in kept) + " |")
        totals = [str(sum(c)) for c in kept]
        lines.append("| **total** | " + " | ".join(totals) + " |")
        return "\n".join(lines)

    def subset(self, index, step: str | None = None, reason: str | None = None) -> PrimingPool:
        """A new pool of the rows ``index`` (bool mask or int positions); records ``step``
        with the rows left out as dropped (``reason``, default "not kept by <step>")."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        out = PrimingPool(
            self.embeddings[idx],
            self.labels[idx],
            self.class_names,
            self.row_ids[idx],
            self.captions[idx],
            self.urls[idx],
            self.scores[idx],
            meta=self.meta,
            steps=self._steps,
            dropped=self._dropped,
            heldout=self.heldout,
        )
        if step:
            gone = np.ones(len(self), bool)
            gone[idx] = False
            out.add_dropped(
                step,
                self.row_ids[gone],
                self.labels[gone],
                reason or f"not kept by {step}",
                self.captions[gone],
                self.urls[gone],
            )
            out.record_step(step, self.labels[gone])
        return out

    def add_dropped(self, step: str, row_ids, labels, reason, captions=None, urls=None) -> None:
        """Append dropped rows to :attr:`dropped`: ``labels`` are class indices (-1: no
        class), ``reason`` one string or one per row."""
        n = len(row_ids)
        names = np.asarray(self.class_names + [None], dtype=object)
        lab = np.asarray(labels, np.int64)
        new = {
            "row_id": np.asarray(row_ids, np.int64),
            "class": names[np.where(lab < 0, len(self.class_names), lab)],
            "step": np.full(n, step, dtype=object),
            "reason": np.broadcast_to(np.asarray(reason, dtype=object), (n,)).copy(),
            "caption": _objects(captions, n),
            "url": _objects(urls, n),
        }
        self._dropped = {k: np.concatenate([self._dropped[k], new[k]]) for k in _DROP_COLS}

    # -- persistence -------------------------------------------------------------------
    def _table(self):
        pa = require("pyarrow", extra="corpus")
        return pa.table(
            {
                "row_id": pa.array(self.row_ids, pa.int64()),
                "label": pa.array(self.labels, pa.int64()),
                "class_name": pa.array([self.class_names[i] for i in self.labels], pa.string()),
                "caption": pa.array([str(c) for c in self.captions], pa.string()),
                "url": pa.array([str(u) for u in self.urls], pa.string()),
                "score": pa.array(self.scores, pa.float32()),
            }
        )

    def dropped_table(self):
        """:attr:`dropped` as a pyarrow table (the ``steps.parquet`` of a saved pool)."""
        pa = require("pyarrow", extra="corpus")
        d = self._dropped

        def text(v):
            return pa.array([None if x is None else str(x) for x in v], pa.string())

        cols = {"row_id": pa.array(d["row_id"], pa.int64())}
        cols.update({k: text(d[k]) for k in _DROP_COLS[1:]})
        return pa.table(cols)

    def save(self, path: str | Path) -> Path:
        """Write the pool folder ``path``: ``pool.parquet`` (kept rows), ``embeddings.npy``,
        ``pool.json`` (class names, ``steps``: kept/dropped counts per step and class,
        meta), ``steps.parquet`` (every dropped row with its step and reason) and, when
        rows were held out, ``heldout.parquet`` + ``heldout.npy``. Written to a temporary
        folder first, then moved into place."""
        pq = require("pyarrow.parquet", extra="corpus", package="pyarrow")
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(p.parent, prefix=f".{p.name}.")
        try:
            # small row groups: a browser page reads only the groups it shows
            pq.write_table(self._table(), tmp / "pool.parquet", row_group_size=8192)
            np.save(tmp / "embeddings.npy", self.embeddings)
            pq.write_table(self.dropped_table(), tmp / "steps.parquet")
            if self.heldout is not None and len(self.heldout):
                pq.write_table(self.heldout._table(), tmp / "heldout.parquet")
                np.save(tmp / "heldout.npy", self.heldout.embeddings)
            meta = {
                "format_version": _FORMAT,
                "class_names": self.class_names,
                "steps": self.steps,
                "meta": self.meta,
            }
            (tmp / "pool.json").write_text(
                json.dumps(meta, indent=2, default=str), encoding="utf-8"
            )
            replace_dir(tmp, p)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return p

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False) -> PrimingPool:
        """Read a pool written by :meth:`save` (``mmap=True`` maps the embeddings). Pool
        folders from before step records (no ``steps.parquet`` / held-out files) load
        with no dropped rows and no held-out rows."""
        pq = require("pyarrow.parquet", extra="corpus", package="pyarrow")
        p = Path(path)
        if not (p / "pool.json").is_file():
            raise DataError(f"{str(p)!r} is not a saved priming pool (no pool.json)")
        meta = json.loads((p / "pool.json").read_text(encoding="utf-8"))
        names = meta["class_names"]

        def rows(table: str, emb: str, **kw):
            t = pq.read_table(p / table).to_pydict()
            E = np.load(p / emb, mmap_mode="r" if mmap else None, allow_pickle=False)
            return cls(
                E,
                np.asarray(t["label"], dtype=np.int64),
                names,
                row_ids=t["row_id"],
                captions=t["caption"],
                urls=t["url"],
                scores=np.asarray(t["score"], dtype=np.float32),
                meta=meta.get("meta", {}),
                **kw,
            )

        heldout = None
        if (p / "heldout.parquet").is_file() and (p / "heldout.npy").is_file():
            heldout = rows("heldout.parquet", "heldout.npy")
        dropped = None
        if (p / "steps.parquet").is_file():
            dropped = pq.read_table(p / "steps.parquet").to_pydict()
        steps = [s if isinstance(s, dict) else tuple(s) for s in meta.get("steps", [])]
        return rows("pool.parquet", "embeddings.npy", steps=steps, dropped=dropped, heldout=heldout)
