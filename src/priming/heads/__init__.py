"""priming.heads: classifier heads over embeddings (imprinted, text, primed)."""

from priming.heads.alpha import REFERENCE_ALPHAS, schedule_alpha
from priming.heads.imprinted import PRESETS, ImprintedHead
from priming.heads.primed import PrimedHead, load_head
from priming.heads.templates import (
    TEMPLATE_SETS,
    get_templates,
    load_class_names,
    load_descriptions,
    load_templates,
    parse_class_names,
)
from priming.heads.text import ZeroShotHead, build_text_weights

__all__ = [
    "ImprintedHead",
    "PRESETS",
    "PrimedHead",
    "load_head",
    "ZeroShotHead",
    "build_text_weights",
    "REFERENCE_ALPHAS",
    "schedule_alpha",
    "TEMPLATE_SETS",
    "get_templates",
    "load_class_names",
    "load_descriptions",
    "load_templates",
    "parse_class_names",
]
