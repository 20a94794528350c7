"""Typed results of the job layer; ``to_json()`` gives what is written to disk.

:class:`RunMetrics` is the content of a run's ``metrics.json`` (the same keys as
before the job layer existed, so readers of old runs keep working).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from priming._json import to_jsonable

__all__ = [
    "HeadMetrics",
    "ModelInfo",
    "PoolSummary",
    "AlphaChoice",
    "RunMetrics",
    "PrimeResult",
    "PredictResult",
]


@dataclass
class HeadMetrics:
    """Accuracy of one head on the labelled evaluation data (fractions in [0, 1])."""

    n: int
    labels: list[str]
    top1: float
    top5: float | None
    balanced_accuracy: float
    macro_f1: float
    weighted_f1: float
    per_class: dict[str, float]

    @classmethod
    def from_report(cls, rep: dict[str, Any]) -> HeadMetrics:
        """From :func:`priming.job.metrics.classification_report` (the confusion is dropped)."""
        return cls(**{k: rep[k] for k in cls.__dataclass_fields__})

    def to_json(self) -> dict[str, Any]:
        return to_jsonable({k: getattr(self, k) for k in self.__dataclass_fields__})


@dataclass
class ModelInfo:
    """The encoder of a run: its name, embedding width and weights fingerprint."""

    name: str | None
    dim: int
    fingerprint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dim": int(self.dim), "fingerprint": self.fingerprint}


@dataclass
class PoolSummary:
    """Size of the priming pool, per class and after every filter step."""

    size: int
    per_class: dict[str, int]
    stats: dict[str, Any]
    empty_classes: list[str]
    meta: dict[str, Any]

    @classmethod
    def of(cls, pool, names: list[str]) -> PoolSummary:
        counts = pool.counts().tolist()
        return cls(
            size=int(len(pool)),
            per_class=dict(zip(names, counts)),
            stats=pool.stats(),
            empty_classes=[n for n, c in zip(names, counts) if c == 0],
            meta=pool.meta,
        )

    def to_json(self) -> dict[str, Any]:
        return to_jsonable({k: getattr(self, k) for k in self.__dataclass_fields__})


@dataclass
class AlphaChoice:
    """The text-head weight α of the main head and how it was chosen."""

    value: float
    source: str
    cv_accuracy: Any = None

    def to_json(self) -> dict[str, Any]:
        return to_jsonable(
            {"value": self.value, "source": self.source, "cv_accuracy": self.cv_accuracy}
        )


@dataclass
class RunMetrics:
    """Everything measured in one run (written as ``metrics.json``)."""

    config: dict[str, Any]
    model: ModelInfo
    templates: str | list[str]
    classes: list[str]
    pool: PoolSummary
    shots: int | None
    alpha: AlphaChoice
    eval: dict[str, HeadMetrics] | None
    timings_s: dict[str, float] = field(default_factory=dict)
    #: head (its ``eval`` key) -> how each hyperparameter was chosen: the rule and the value
    selection: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def to_json(self) -> dict[str, Any]:
        return to_jsonable(
            {
                "config": self.config,
                "model": self.model,
                "templates": self.templates,
                "n_classes": self.n_classes,
                "classes": self.classes,
                "pool": self.pool,
                "shots": self.shots,
                "alpha": self.alpha,
                "eval": self.eval,
                "timings_s": self.timings_s,
                "selection": self.selection,
            }
        )


@dataclass
class PrimeResult:
    """Outcome of :func:`priming.job.run_prime`: the run folder, the fitted main head,
    the other (``compare``) heads by preset, the pool and the typed metrics."""

    run_dir: Path
    head: Any
    pool: Any
    report: RunMetrics
    heads: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, Any]:
        """The run's metrics as written to ``metrics.json`` (a plain dict)."""
        return self.report.to_json()

    def to_json(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "metrics": self.metrics}


@dataclass
class PredictResult:
    """Outcome of :func:`priming.job.predict`: one prediction per embedded item.

    ``confidence`` is the head's ``predict_proba`` of the predicted class. ``accuracy`` is
    set when the data carried labels of the head's classes; otherwise ``accuracy_note``
    says why there is none."""

    ids: np.ndarray
    predictions: np.ndarray
    confidence: np.ndarray
    accuracy: float | None = None
    accuracy_note: str | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    out: Path | None = None

    def __len__(self) -> int:
        return int(len(self.predictions))

    def to_csv(self) -> str:
        """``id,prediction,confidence`` rows (the file ``priming predict`` writes)."""
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["id", "prediction", "confidence"])
        for i, p, c in zip(self.ids, self.predictions, self.confidence):
            w.writerow([i, p, f"{c:.4f}"])
        return buf.getvalue()

    def summary(self) -> str:
        """One line: how many predictions, the accuracy or why none, skipped items."""
        msg = f"{len(self)} predictions"
        if self.accuracy is not None:
            msg += f"; accuracy {100 * self.accuracy:.2f} %"
        elif self.accuracy_note:
            msg += f"; no accuracy ({self.accuracy_note})"
        if self.skipped:
            msg += f"; {len(self.skipped)} item(s) skipped"
        return msg

    def to_json(self) -> dict[str, Any]:
        return to_jsonable(
            {
                "n": len(self),
                "accuracy": self.accuracy,
                "accuracy_note": self.accuracy_note,
                "skipped": [list(s) for s in self.skipped],
                "out": self.out,
                "predictions": [
                    {"id": i, "prediction": p, "confidence": float(c)}
                    for i, p, c in zip(self.ids, self.predictions, self.confidence)
                ],
            }
        )
