"""Moved to :mod:`priming.job` (config, steps, ``run_prime``, ``predict``).

Compatibility re-exports for code that still imports ``priming.eval.prime``; to be
removed once every caller imports :mod:`priming.job`.
"""

from priming._json import to_jsonable as _jsonable  # noqa: F401  (MERGE: reproduce_np uses it)
from priming.data.classnames import match_labels
from priming.job.config import PrimeConfig, load_config
from priming.job.results import PrimeResult
from priming.job.run import run_prime

__all__ = ["PrimeConfig", "load_config", "run_prime", "match_labels", "PrimeResult"]
