"""priming.pool: priming pools (recall → filter steps → cap) and transductive narrowing.

Names are imported lazily (as in :mod:`priming.job`): ``import priming.pool`` and the
choice tuples of :mod:`priming.pool.choices` are cheap, the first use of
:func:`build_pool` (or any other name) imports the pool modules.
"""

from __future__ import annotations

from priming._lazy import lazy_exports
from priming.pool.choices import AMBIGUOUS_POLICIES, POOL_SCORES, RECALL_METHODS, SEARCH_MODES

_EXPORTS = {
    "EMPTY_CLASS_CHOICES": "priming.heads.primed",
    "build_pool": "priming.pool.build",
    "check_corpus_model": "priming.pool.build",
    "narrow_pool": "priming.pool.narrow",
    "pool_neighbors": "priming.pool.narrow",
    "PrimingPool": "priming.pool.pool",
    "RECALLS": "priming.pool.recall",
    "Recalled": "priming.pool.recall",
    "register_recall": "priming.pool.recall",
    "FILTERS": "priming.pool.steps",
    "BuildContext": "priming.pool.steps",
    "PoolRows": "priming.pool.steps",
    "StepResult": "priming.pool.steps",
    "pool_step": "priming.pool.steps",
}

__all__ = [
    "AMBIGUOUS_POLICIES",
    "BuildContext",
    "EMPTY_CLASS_CHOICES",
    "FILTERS",
    "POOL_SCORES",
    "PoolRows",
    "PrimingPool",
    "RECALLS",
    "RECALL_METHODS",
    "Recalled",
    "SEARCH_MODES",
    "StepResult",
    "build_pool",
    "check_corpus_model",
    "narrow_pool",
    "pool_neighbors",
    "pool_step",
    "register_recall",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
