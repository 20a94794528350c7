"""priming.pool: priming pools (recall → filter steps → cap) and transductive narrowing."""

# ruff: noqa: F401
from priming.heads.primed import EMPTY_CLASS_CHOICES
from priming.pool.build import (
    AMBIGUOUS_POLICIES,
    POOL_SCORES,
    SEARCH_MODES,
    build_pool,
    check_corpus_model,
)
from priming.pool.narrow import narrow_pool, pool_neighbors
from priming.pool.pool import PrimingPool
from priming.pool.recall import RECALL_METHODS, RECALLS, Recalled, register_recall
from priming.pool.steps import FILTERS, BuildContext, PoolRows, StepResult, pool_step
