"""priming.heads: classification heads (scikit-learn estimators) over embeddings."""

from priming.heads.imprinted import PRESETS, ImprintedHead

__all__ = ["ImprintedHead", "PRESETS"]
