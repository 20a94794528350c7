"""priming.heads: classifier heads over embeddings (text, imprinted, primed)."""

# ruff: noqa: F401
from priming.heads.alpha import REFERENCE_ALPHAS, schedule_alpha
from priming.heads.primed import PrimedHead
from priming.heads.templates import (
    TEMPLATE_SETS,
    get_templates,
    load_class_names,
    load_descriptions,
    load_templates,
    parse_class_names,
)
from priming.heads.text import ZeroShotHead, build_text_weights
