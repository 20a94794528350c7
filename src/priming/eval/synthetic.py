"""Moved to :mod:`priming.recipes.synthetic`; re-exported until tests/test_bad_inputs.py imports it there (MERGE: remove)."""

from priming.recipes.synthetic import make_subclusters, run_subcluster_experiment  # noqa: F401
