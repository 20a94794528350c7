"""priming.imprint: the IMPRINT weight-imprinting maths as pure functions over arrays.

NORMpre -> presampling -> GEN -> NORMpost build proxies from training rows;
NORMinf -> AGG score test rows. See ``docs/imprinting.md``.
"""

from priming.imprint.aggregate import (
    AGGREGATIONS,
    METRICS,
    WEIGHTINGS,
    mahalanobis_whitener,
    max_scores,
    mnn_scores,
    nearest_proxies,
)
from priming.imprint.generators import GENERATORS, generate, least_squares_weights
from priming.imprint.nc import nc1
from priming.imprint.normalize import (
    NORMALIZATIONS,
    l2_normalize,
    normalize,
    quantile_normalize,
    quantile_normalize_cumulative,
)
from priming.imprint.presample import parse_presample, presample, weibull_mask
from priming.imprint.topk import TOPK_METHODS, TOPK_METRICS, merge_topk, topk, topk_blocks  # noqa: F401

__all__ = [
    "AGGREGATIONS",
    "GENERATORS",
    "METRICS",
    "NORMALIZATIONS",
    "WEIGHTINGS",
    "generate",
    "l2_normalize",
    "least_squares_weights",
    "mahalanobis_whitener",
    "max_scores",
    "mnn_scores",
    "nc1",
    "nearest_proxies",
    "normalize",
    "parse_presample",
    "presample",
    "quantile_normalize",
    "quantile_normalize_cumulative",
    "weibull_mask",
]
