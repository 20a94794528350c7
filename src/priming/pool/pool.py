"""The priming pool: labelled corpus rows (embedding, label, id, caption, url, score)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from priming._fs import replace_dir
from priming.errors import DataError, missing_dependency

__all__ = ["PrimingPool"]

_FORMAT = 1


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
        steps: list[tuple[str, list[int]]] | None = None,
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
        self._steps: list[tuple[str, list[int]]] = [(s, list(c)) for s, c in (steps or [])]
        #: rows set aside by ``build_pool(holdout=...)`` (a PrimingPool) or None
        self.holdout: PrimingPool | None = None

    # -- basics ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.labels)

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    def counts(self) -> np.ndarray:
        """Items per class, in ``class_names`` order."""
        return np.bincount(self.labels, minlength=len(self.class_names))

    def record_step(self, name: str) -> None:
        """Remember the current per-class counts under ``name`` (shown by :meth:`stats`)."""
        self._steps.append((name, self.counts().tolist()))

    def stats(self) -> dict[str, dict[str, int]]:
        """Per-class counts after every build step: ``{step: {class: count}}`` in order."""
        return {s: dict(zip(self.class_names, c)) for s, c in self._steps}

    def stats_table(self) -> str:
        """:meth:`stats` as a markdown table (one row per class, one column per step)."""
        steps = [s for s, _ in self._steps]
        lines = ["| class | " + " | ".join(steps) + " |", "|---" * (len(steps) + 1) + "|"]
        for j, name in enumerate(self.class_names):
            lines.append(f"| {name} | " + " | ".join(str(c[j]) for _, c in self._steps) + " |")
        totals = [str(sum(c)) for _, c in self._steps]
        lines.append("| **total** | " + " | ".join(totals) + " |")
        return "\n".join(lines)

    def subset(self, index, step: str | None = None) -> PrimingPool:
        """A new pool of the rows ``index`` (bool mask or int positions); records ``step``."""
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
        )
        if step:
            out.record_step(step)
        return out

    # -- persistence -------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``pool.parquet`` (metadata), ``embeddings.npy`` and ``pool.json`` into the
        folder ``path``; written to a temporary folder first, then moved into place."""
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise missing_dependency("pyarrow", "corpus") from None
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", dir=p.parent))
        try:
            table = pa.table(
                {
                    "row_id": pa.array(self.row_ids, pa.int64()),
                    "label": pa.array(self.labels, pa.int64()),
                    "class_name": pa.array([self.class_names[i] for i in self.labels], pa.string()),
                    "caption": pa.array([str(c) for c in self.captions], pa.string()),
                    "url": pa.array([str(u) for u in self.urls], pa.string()),
                    "score": pa.array(self.scores, pa.float32()),
                }
            )
            pq.write_table(table, tmp / "pool.parquet")
            np.save(tmp / "embeddings.npy", self.embeddings)
            meta = {
                "format_version": _FORMAT,
                "class_names": self.class_names,
                "steps": [[s, c] for s, c in self._steps],
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
        """Read a pool written by :meth:`save` (``mmap=True`` maps the embeddings)."""
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise missing_dependency("pyarrow", "corpus") from None
        p = Path(path)
        if not (p / "pool.json").is_file():
            raise DataError(f"{str(p)!r} is not a saved priming pool (no pool.json)")
        meta = json.loads((p / "pool.json").read_text(encoding="utf-8"))
        t = pq.read_table(p / "pool.parquet").to_pydict()
        E = np.load(p / "embeddings.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
        return cls(
            E,
            np.asarray(t["label"], dtype=np.int64),
            meta["class_names"],
            row_ids=t["row_id"],
            captions=t["caption"],
            urls=t["url"],
            scores=np.asarray(t["score"], dtype=np.float32),
            meta=meta.get("meta", {}),
            steps=[(s, c) for s, c in meta.get("steps", [])],
        )
