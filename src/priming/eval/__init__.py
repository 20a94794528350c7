"""priming.eval: few-shot protocol, metrics, sweeps, statistics, reports and plots.

The benchmark registry and dataset loaders are in :mod:`priming.data`; the reproduction
recipes and the demo are in :mod:`priming.recipes`.
"""
