"""The valid choices of the pool settings, in a module that imports nothing heavy.

:func:`priming.pool.build_pool` validates against them and :mod:`priming.job.config`
lists them in ``priming prime --help`` (building the command line must stay cheap, so
they live apart from the heavy pool modules).
"""

from priming.corpus.choices import SEARCH_MODES  # the corpus owns its search modes

__all__ = ["RECALL_METHODS", "SEARCH_MODES", "AMBIGUOUS_POLICIES", "POOL_SCORES"]

#: the built-in recall methods (``RECALLS`` may hold more, see :func:`priming.pool.register_recall`)
RECALL_METHODS = ("search", "knn", "both")
#: what happens to a caption that matches several classes
AMBIGUOUS_POLICIES = ("drop", "longest")
#: the ranking of the per-class cap
POOL_SCORES = ("zero-shot", "similarity")
