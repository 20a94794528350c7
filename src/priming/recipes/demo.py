"""The offline demonstration that ``priming demo`` (``make demo``) runs.

Part 1 (:func:`run_priming_demo`): the main job on a real model and real data nobody here
wrote — ``sentence-transformers:all-MiniLM-L6-v2`` and the Debian package catalogue
(``apt-cache dumpavail``, :mod:`priming.data.debian`): package sections are the classes,
descriptions of one part of the packages are the "pretraining corpus", packages never in
the corpus are the labelled evaluation set. The run is the job's own
(:func:`priming.job.run_prime`): zero-shot vs primed vs multi-proxy primed accuracy.

Part 2 (:func:`run_imprint_demo`): the synthetic IMPRINT sub-cluster experiment
(:mod:`priming.recipes.synthetic`): classes made of ``d`` Gaussian sub-clusters, named
IMPRINT configurations as rows, accuracy for each ``d`` as columns.

The functions return results; the CLI prints them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from priming._fs import write_text_atomic
from priming.errors import PrimingError
from priming.progress import ProgressCallback

__all__ = [
    "MODEL",
    "PrimingDemoResult",
    "ImprintDemoResult",
    "run_priming_demo",
    "run_imprint_demo",
]

log = logging.getLogger(__name__)

#: the demo's model: small, CPU-friendly, and a real pretrained encoder
MODEL = "sentence-transformers:all-MiniLM-L6-v2"


@dataclass
class PrimingDemoResult:
    """Outcome of :func:`run_priming_demo`.

    ``skipped``: why the demo did not run (no catalogue, no model), else None.
    ``rate``: texts per second measured to size the corpus (None when given).
    ``rows``: ``(head name, top-1, balanced accuracy)`` for the zero-shot, primed and
    multi-proxy primed heads."""

    skipped: str | None = None
    rate: float | None = None
    n_corpus: int = 0
    n_classes: int = 0
    n_eval: int = 0
    pool_size: int = 0
    pool_classes: int = 0
    alpha: float | None = None
    rows: list[tuple[str, float, float]] = field(default_factory=list)
    report: Path | None = None
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImprintDemoResult:
    """Outcome of :func:`run_imprint_demo`: the sub-cluster table and its run time."""

    table: Any
    seconds: float


def _corpus_size(encoder: Any, catalogue: list, budget: float) -> tuple[int, float]:
    """Packages MiniLM encodes in about ``budget`` seconds here (3000..10000)."""
    probe = [
        f"{syn}. {long}"[:200] for _, _, syn, long in catalogue[:: max(1, len(catalogue) // 256)]
    ]
    t = time.perf_counter()
    encoder.encode_texts(probe, batch_size=256)
    rate = len(probe) / (time.perf_counter() - t)
    return int(min(10000, max(3000, rate * budget))), rate


def _ensure_corpus(work: Path, data: Any, encoder: Any, seed: int, catalogue, progress) -> Path:
    """Build and embed the demo corpus, reusing it when its stamp matches."""
    from priming.corpus import build_corpus, fill_embeddings

    corpus_dir = work / "corpus"
    stamp = work / "corpus.stamp.json"
    want = {
        "n_corpus": data.n_corpus,
        "seed": seed,
        "model": encoder.fingerprint,
        "catalogue": catalogue,
    }
    if not (stamp.is_file() and json.loads(stamp.read_text()) == want):
        shutil.rmtree(corpus_dir, ignore_errors=True)
        build_corpus(data.corpus_parquet, out=corpus_dir, workers=1)
        fill_embeddings(corpus_dir, encoder, batch_size=256, progress=progress)
        write_text_atomic(stamp, json.dumps(want))
    return corpus_dir


def _prime_config(data: Any, corpus_dir: Path, work: Path, seed: int) -> Any:
    from priming.job import PrimeConfig

    return PrimeConfig.from_mapping(
        {
            "model": MODEL,
            "classes": str(data.classes_file),
            "corpus": str(corpus_dir),
            "eval": str(data.eval_file),
            "out": str(work / "run"),
            "cache_dir": str(work / "cache"),
            "templates": "identity",
            "per_class": 300,
            "alpha": "auto",
            "head": "neural-priming",
            "compare": ["imprint-best"],
            "seed": seed,
            "overwrite": True,
        },
        "demo",
    )


def run_priming_demo(
    workdir: str | os.PathLike[str] = "demo-out",
    *,
    seed: int = 0,
    catalogue: str | None = None,
    corpus_size: int | None = None,
    budget: float = 60.0,
    eval_size: int = 1200,
    encoder: Any = None,
    progress: ProgressCallback | None = None,
) -> PrimingDemoResult:
    """Neural Priming on the Debian catalogue with MiniLM (part 1 of the demo).

    A machine without a package catalogue (no ``apt-cache``, no ``catalogue`` given) or
    without the model is not an error: the result says why it was skipped. A ``catalogue``
    file that cannot be read is a DataError.
    """
    from priming.data.debian import read_catalogue, write_demo_data
    from priming.job import run_prime

    t0 = time.perf_counter()
    work = Path(workdir).resolve()
    try:
        rows = read_catalogue(catalogue)
    except PrimingError as exc:
        if catalogue is not None:
            raise
        return PrimingDemoResult(skipped=str(exc))
    if encoder is None:
        try:
            from priming.encoders import create_encoder

            encoder = create_encoder(MODEL, device="cpu")
        except PrimingError as exc:
            return PrimingDemoResult(
                skipped=f"the demo model {MODEL} is not available here ({exc})"
            )
    rate = None
    if corpus_size is None:
        corpus_size, rate = _corpus_size(encoder, rows, budget)
    data = write_demo_data(
        work / "data",
        n_corpus=corpus_size,
        n_eval=eval_size,
        catalogue=catalogue,
        random_state=seed,
    )
    corpus_dir = _ensure_corpus(work, data, encoder, seed, catalogue, progress)
    res = run_prime(_prime_config(data, corpus_dir, work, seed), encoder=encoder, progress=progress)
    m = res.metrics
    ev = m["eval"]
    heads = [
        ("zero-shot (class names only)", ev["zero_shot"]),
        ("primed, Neural Priming (centroid)", ev["primed (neural-priming)"]),
        ("primed, multi-proxy (k-means, imprint-best)", ev["primed (imprint-best)"]),
    ]
    return PrimingDemoResult(
        rate=rate,
        n_corpus=data.n_corpus,
        n_classes=len(data.classes),
        n_eval=data.n_eval,
        pool_size=int(m["pool"]["size"]),
        pool_classes=int(m["n_classes"]),
        alpha=float(m["alpha"]["value"]),
        rows=[(name, float(r["top1"]), float(r["balanced_accuracy"])) for name, r in heads],
        report=Path(res.run_dir) / "report.md",
        seconds=time.perf_counter() - t0,
        metrics=m,
    )


def run_imprint_demo(
    d_values: Sequence[int] = (1, 2, 3, 5),
    *,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> ImprintDemoResult:
    """The synthetic IMPRINT sub-cluster table (part 2 of the demo), one seed."""
    from priming.recipes.synthetic import run_subcluster_experiment

    t0 = time.perf_counter()
    table = run_subcluster_experiment(d_values=d_values, seeds=[seed], progress=progress)
    return ImprintDemoResult(table, time.perf_counter() - t0)
