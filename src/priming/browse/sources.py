"""What the browser reads: a run folder, a pool folder or a corpus folder (read-only).

A run folder (``priming prime``) holds ``metrics.json``, ``pool/`` (a saved pool),
``head/`` and, when the run was evaluated, a predictions file. A pool folder holds
``pool.parquet`` + ``pool.json`` and, from the step-recording pools on, ``steps.parquet``
(one row per dropped corpus row per step) and ``heldout.parquet``. Every file except
``pool.parquet``/``pool.json`` (pools) or ``manifest.json`` (corpora) is optional, so
older folders still open.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from priming.browse.tables import ParquetPager
from priming.errors import DataError

__all__ = [
    "Predictions",
    "RunSource",
    "CorpusSource",
    "open_source",
    "POOL_COLUMNS",
    "STEP_COLUMNS",
]

# columns shown for pool items, in display order; aliases cover older/newer pool writers
POOL_COLUMNS = {
    "row_id": ("row_id",),
    "caption": ("caption",),
    "url": ("url",),
    "score": ("score",),
    "probability": ("probability", "zero_shot_probability", "zs_probability", "zs_prob"),
    "matched": ("matched", "matched_name", "name", "synonym"),
}
STEP_COLUMNS = ("row_id", "class", "step", "reason", "caption", "url")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(f"{str(path)!r} does not hold a JSON object")
    return data


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


@dataclass
class Predictions:
    """Eval predictions of a run: true and predicted class per item, item ids and, when
    known, each item's three best classes with their scores."""

    y_true: list[str]
    y_pred: list[str]
    ids: list[str]
    top3: list[list[tuple[str, float | None]]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Predictions:
        if path.suffix == ".npz":
            return cls._from_npz(path)
        return cls._from_csv(path)

    @classmethod
    def _from_npz(cls, path: Path) -> Predictions:
        """The format of :func:`priming.eval.metrics.save_predictions`."""
        with np.load(path, allow_pickle=False) as z:
            if "y_true" not in z or "y_pred" not in z:
                raise DataError(f"{str(path)!r} has no y_true/y_pred arrays")
            y_true = [str(v) for v in z["y_true"].tolist()]
            y_pred = [str(v) for v in z["y_pred"].tolist()]
            n = len(y_true)
            ids = [str(v) for v in z["ids"].tolist()] if "ids" in z else [str(i) for i in range(n)]
            top3: list[list[tuple[str, float | None]]] = []
            if "scores" in z and "labels" in z:
                S = np.asarray(z["scores"], dtype=np.float64)
                labels = [str(v) for v in z["labels"].tolist()]
                if S.shape == (n, len(labels)) and n:
                    best = np.argsort(-S, axis=1, kind="stable")[:, :3]
                    top3 = [[(labels[j], float(S[i, j])) for j in best[i]] for i in range(n)]
        if len(y_pred) != n or len(ids) != n:
            raise DataError(f"{str(path)!r}: y_true, y_pred and ids differ in length")
        return cls(y_true, y_pred, ids, top3)

    @classmethod
    def _from_csv(cls, path: Path) -> Predictions:
        """CSV with ``y_true`` (or ``label``), ``y_pred`` (or ``prediction``), optional
        ``id``, optional ``top1..top3`` class columns and ``score:<class>`` columns."""
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            return cls([], [], [], [])
        keys = rows[0].keys()
        t = next((k for k in ("y_true", "label", "true") if k in keys), None)
        p = next((k for k in ("y_pred", "prediction", "pred") if k in keys), None)
        if t is None or p is None:
            raise DataError(
                f"{str(path)!r} needs a y_true (or label) and a y_pred (or prediction) column"
            )
        ids = [r.get("id") or str(i) for i, r in enumerate(rows)]
        score_cols = [k for k in keys if k.startswith("score:")]
        top3: list[list[tuple[str, float | None]]] = []
        if score_cols:
            try:
                S = np.asarray([[float(r[k]) for k in score_cols] for r in rows])
            except (TypeError, ValueError):
                raise DataError(f"{str(path)!r}: a score: column holds a non-number") from None
            names = [k[len("score:") :] for k in score_cols]
            best = np.argsort(-S, axis=1, kind="stable")[:, :3]
            top3 = [[(names[j], float(S[i, j])) for j in best[i]] for i in range(len(rows))]
        elif "top1" in keys:
            top3 = [[(r[k], None) for k in ("top1", "top2", "top3") if r.get(k)] for r in rows]
        else:  # ``top3`` as "a|b|c" (what ``priming prime`` writes), ``confidence`` of a
            joined = next((k for k in keys if k.startswith("top") and k[3:].isdigit()), None)
            if joined is not None:
                top3 = [_split_top(r[joined], r.get("confidence")) for r in rows]
        return cls([r[t] for r in rows], [r[p] for r in rows], ids, top3)

    def confused_pairs(self, limit: int = 10) -> list[tuple[str, str, int]]:
        """``(true, predicted, count)`` of the most frequent errors, most frequent first
        (items without a true class are left out)."""
        counts: dict[tuple[str, str], int] = {}
        for t, p in zip(self.y_true, self.y_pred):
            if t and t != p:
                counts[(t, p)] = counts.get((t, p), 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return [(t, p, n) for (t, p), n in ranked[:limit]]

    def errors_of(self, name: str) -> list[dict]:
        """The misclassified items whose true class is ``name``."""
        out = []
        for i, (t, p) in enumerate(zip(self.y_true, self.y_pred)):
            if t == name and p != name:
                top = self.top3[i] if self.top3 else []
                out.append({"index": i, "id": self.ids[i], "y_pred": p, "top3": top})
        return out


def _split_top(cell: str | None, confidence: str | None) -> list[tuple[str, float | None]]:
    names = [c for c in (cell or "").split("|") if c][:3]
    try:
        first = float(confidence) if confidence not in (None, "") else None
    except ValueError:
        first = None
    return [(c, first if i == 0 else None) for i, c in enumerate(names)]


class RunSource:
    """A run folder (or a bare pool folder) opened for browsing."""

    kind = "run"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.metrics: dict = {}
        if (root / "metrics.json").is_file():
            self.metrics = _read_json(root / "metrics.json")
            self.pool_dir = root / "pool"
        else:
            self.pool_dir = root
        self.pool_meta: dict = {}
        if (self.pool_dir / "pool.json").is_file():
            self.pool_meta = _read_json(self.pool_dir / "pool.json")
        self.pool = None
        if (self.pool_dir / "pool.parquet").is_file():
            self.pool = ParquetPager(self.pool_dir / "pool.parquet", group_by="class_name")
        self.dropped = None
        if (self.pool_dir / "steps.parquet").is_file():
            self.dropped = ParquetPager(self.pool_dir / "steps.parquet", group_by="class")
        self.heldout = None
        if (self.pool_dir / "heldout.parquet").is_file():
            self.heldout = ParquetPager(self.pool_dir / "heldout.parquet", group_by="class_name")
        self.predictions = None
        for name in ("predictions.npz", "predictions.csv"):
            if (root / name).is_file():
                self.predictions = Predictions.load(root / name)
                break
        self.classes = self._classes()

    def _classes(self) -> list[str]:
        for names in (self.metrics.get("classes"), self.pool_meta.get("class_names")):
            if isinstance(names, list) and names:
                return [str(c) for c in names]
        return sorted(self.pool.groups) if self.pool is not None else []

    def pool_columns(self) -> list[str]:
        """The pool columns to show (first existing alias of each :data:`POOL_COLUMNS`)."""
        if self.pool is None:
            return []
        out = []
        for aliases in POOL_COLUMNS.values():
            hit = next((a for a in aliases if a in self.pool.columns), None)
            if hit:
                out.append(hit)
        return out

    # ---- overview data
    def step_table(self) -> tuple[list[str], list[dict]]:
        """``(steps, rows)``: per class, the items kept (and dropped) after every step.

        Reads ``pool.json["steps"]`` in the step-record format (``{"step", "kept",
        "dropped"}``) or the older ``[name, [count per class]]`` pairs.
        """
        raw = self.pool_meta.get("steps") or []
        steps: list[str] = []
        kept: list[dict] = []
        dropped: list[dict] = []
        for entry in raw:
            if isinstance(entry, dict):
                steps.append(str(entry.get("step", "?")))
                kept.append(dict(entry.get("kept") or {}))
                dropped.append(dict(entry.get("dropped") or {}))
            elif isinstance(entry, (list, tuple)) and len(entry) == 2:
                steps.append(str(entry[0]))
                counts = list(entry[1])
                kept.append(dict(zip(self.classes, counts)))
                dropped.append({})
        rows = []
        for c in self.classes:
            cells = [(k.get(c), d.get(c)) for k, d in zip(kept, dropped)]
            rows.append({"name": c, "cells": cells, "size": self.pool_size(c)})
        return steps, rows

    def pool_size(self, name: str) -> int:
        return self.pool.count(name) if self.pool is not None else 0

    def alpha(self) -> dict | None:
        a = self.metrics.get("alpha")
        return a if isinstance(a, dict) else None

    def heads(self) -> list[dict]:
        """Accuracy per evaluated head: ``{"name", "top1", "top5", "per_class"}``."""
        ev = self.metrics.get("eval") or {}
        out = []
        for name, rep in ev.items():
            if isinstance(rep, dict):
                out.append(
                    {
                        "name": str(name),
                        "top1": _finite(rep.get("top1")),
                        "top5": _finite(rep.get("top5")),
                        "per_class": {
                            k: _finite(v) for k, v in (rep.get("per_class") or {}).items()
                        },
                    }
                )
        return out


class CorpusSource:
    """A corpus folder: caption search over its FTS5 shards."""

    kind = "corpus"

    def __init__(self, root: Path) -> None:
        from priming.corpus import open_corpus

        self.root = root
        self.corpus = open_corpus(root)

    def search(self, text: str, offset: int, limit: int, mode: str = "all_tokens"):
        """Rows whose caption holds every word of ``text`` (``all_tokens``) or the phrase;
        returns ``(rows, has_more)``."""
        hits = self.corpus.search_captions(
            {"q": [text]}, limit_per_label=offset + limit + 1, mode=mode
        )
        rows = hits.table.slice(offset, limit).to_pylist()
        return rows, hits.table.num_rows > offset + limit


def open_source(path: str | Path) -> RunSource | CorpusSource:
    """Open ``path`` as a corpus (``manifest.json``), a run (``metrics.json`` or ``pool/``)
    or a pool folder (``pool.json``)."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{str(path)!r} is not a folder")
    if (root / "manifest.json").is_file():
        return CorpusSource(root)
    if (root / "metrics.json").is_file() or (root / "pool.json").is_file():
        return RunSource(root)
    raise DataError(
        f"{str(path)!r} is neither a run folder (metrics.json), a pool folder (pool.json) "
        "nor a corpus folder (manifest.json)"
    )
