"""priming.pool: priming pools (caption search → filters → cap) and transductive narrowing."""

# ruff: noqa: F401
from priming.pool.build import build_pool, check_corpus_model
from priming.pool.knn import cosine_topk
from priming.pool.narrow import narrow_pool, pool_neighbors
from priming.pool.pool import PrimingPool
