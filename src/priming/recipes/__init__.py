"""priming.recipes: the demo and the paper reproductions.

Each recipe is built from the library's pieces — the head classes (``priming.heads``:
the text head, ``PrimedHead``, ``ImprintedHead``), pools (``priming.pool.build_pool`` /
``narrow_pool``), the job (``priming.job.run_prime``) and the sweep
(``priming.eval.sweep.run_sweep``) — never a second copy of a score, a text head or a pool.
Recipes report progress through ``priming.progress`` callbacks; only the CLI draws bars.

- :mod:`priming.recipes.synthetic`: the IMPRINT sub-cluster experiment and its findings
  (``reproduce_synthetic``), offline in seconds.
- :mod:`priming.recipes.imprint`: IMPRINT Table 1 over user-provided embeddings
  (``reproduce_imprint``).
- :mod:`priming.recipes.neural_priming`: the Neural Priming paper's runs on one benchmark
  (``reproduce_neural_priming``).
- :mod:`priming.recipes.demo`: what ``priming demo`` (``make demo``) runs.
"""
