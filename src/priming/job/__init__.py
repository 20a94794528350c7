"""The application layer: whole jobs built from the lower layers.

A priming run is a short chain of steps (:mod:`priming.job.steps`), each a function
with typed inputs and outputs: build the text head from class names
(:func:`~priming.job.steps.make_text_head`); embed the target data — shots, evaluation
and unlabelled data (:func:`~priming.job.steps.encode_inputs`); build the priming pool
from a corpus, with transductive and few-shot-guided narrowing
(:func:`~priming.job.steps.make_pool`); fit the primed heads
(:func:`~priming.job.steps.fit_heads`); evaluate them
(:func:`~priming.job.steps.evaluate`); write the run folder
(:func:`~priming.job.steps.write_run`).

- :class:`PrimeConfig` / :func:`load_config` (:mod:`priming.job.config`): a run's settings,
  validated in one place; the ``prime`` command's options are generated from its fields.
- :func:`run_prime` (:mod:`priming.job.run`): the steps composed, ``PrimeConfig`` in,
  :class:`PrimeResult` out (``priming prime``).
- :func:`predict` (:mod:`priming.job.predict`): a saved head applied to data
  (``priming predict``), :class:`PredictResult` out.
- Results are dataclasses with ``to_json()`` (:mod:`priming.job.results`).

The library reports progress through a ``progress=`` callback; only the CLI draws bars.
Names are imported lazily, so ``import priming.job`` is cheap.
"""

from __future__ import annotations

from priming._lazy import lazy_exports

# imported eagerly (it is light) so that ``priming.job.predict`` is the function, not the
# submodule of the same name
from priming.job.predict import predict

_EXPORTS = {
    "PrimeConfig": "priming.job.config",
    "load_config": "priming.job.config",
    "run_prime": "priming.job.run",
    "PrimeResult": "priming.job.results",
    "PredictResult": "priming.job.results",
    "RunMetrics": "priming.job.results",
    "HeadMetrics": "priming.job.results",
}

__all__ = [
    "HeadMetrics",
    "PredictResult",
    "PrimeConfig",
    "PrimeResult",
    "RunMetrics",
    "load_config",
    "predict",
    "run_prime",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
