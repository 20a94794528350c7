"""``run_prime``: one whole priming run, composed of the steps in :mod:`priming.job.steps`."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

from priming.job.config import PrimeConfig
from priming.job.results import PrimeResult
from priming.progress import ProgressCallback, track

log = logging.getLogger(__name__)

__all__ = ["run_prime"]


class _Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.laps: dict[str, float] = {}

    @contextlib.contextmanager
    def lap(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.laps[name] = round(time.perf_counter() - t0, 3)

    def total(self) -> float:
        return round(time.perf_counter() - self.start, 3)


def run_prime(
    cfg: PrimeConfig, encoder=None, progress: ProgressCallback | None = None
) -> PrimeResult:
    """Run the job described by ``cfg``: text head → encode the target data → pool
    (+ narrowing) → fit the heads → evaluate → write the run folder ``cfg.out``.

    ``encoder`` overrides ``cfg.model`` (any object with the encoder interface);
    ``progress`` receives :class:`~priming.progress.ProgressEvent` s (steps and the
    encoders' items).
    """
    from priming.classnames import load_class_names
    from priming.corpus import open_corpus
    from priming.job import steps
    from priming.pool import check_corpus_model

    timer = _Timer()
    out = steps.check_out_dir(cfg.out, cfg.input_paths(), cfg.overwrite)
    with (
        contextlib.ExitStack() as stack,
        steps.run_lock(out),
        track(progress, "priming", total=6, unit="steps") as job,
    ):
        with timer.lap("text_head"):
            classes = load_class_names(cfg.classes)  # before the (slow) model loads
            encoder = steps.open_encoder(cfg.model, encoder, cfg.device)
            corpus = open_corpus(cfg.corpus, executor=stack.enter_context(steps.executor(cfg)))
            check_corpus_model(corpus, int(encoder.dim), encoder)
            text = steps.make_text_head(
                encoder,
                classes,
                templates=cfg.templates,
                descriptions=cfg.descriptions,
                progress=progress,
            )
        job.advance()
        with timer.lap("encode_data"):
            inputs = steps.encode_inputs(
                encoder,
                text.classes,
                shots=cfg.shots,
                eval=cfg.eval,
                unlabelled=cfg.unlabelled,
                cache_dir=cfg.cache_dir,
                batch_size=cfg.batch_size,
                progress=progress,
            )
        job.advance()
        with timer.lap("pool"):
            built = steps.make_pool(
                corpus, text, inputs, encoder=encoder, **steps.pool_options(cfg, inputs.n_shots)
            )
        job.advance()
        with timer.lap("fit"):
            heads = steps.fit_heads(
                text, built.pool, inputs, holdout=built.holdout, **steps.head_options(cfg)
            )
        head = heads[cfg.head]
        log.info("head fitted (alpha=%.2f, %s)", head.alpha_, head.alpha_source_)
        job.advance()
        with timer.lap("evaluate"):
            evaluation = steps.evaluate(heads, inputs, text.names)
            predictions = steps.predictions_table(head, inputs, text.names)
        job.advance()
        metrics = steps.run_metrics(
            cfg, encoder, text, inputs, built.pool, head, evaluation, timer.laps, heads
        )
        with timer.lap("write"):
            steps.write_run(out, heads, built.pool, metrics, predictions=predictions)
        metrics.timings_s["total"] = timer.total()
        steps.write_metrics(out, metrics)
        job.advance()
    return PrimeResult(out, head, built.pool, metrics, heads)
