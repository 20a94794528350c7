"""priming.heads: classifier heads over embeddings, all registered head kinds.

Every head derives from :class:`priming.heads.base.BaseHead` (a scikit-learn
classifier) and is registered in :data:`HEADS`; :func:`load_head` reads any of them
back from the one folder format. See ``docs/imprinting.md`` ("Heads") for the contract
and how to add a head.
"""

from priming.heads.alpha import REFERENCE_ALPHAS, schedule_alpha
from priming.heads.base import HEADS, BaseHead, load_head, read_head_metadata, register_head
from priming.heads.gda import GDAHead
from priming.heads.imprinted import PRESETS, ImprintedHead
from priming.heads.primed import PrimedHead, primed_scores
from priming.heads.proker import ProKeRHead
from priming.heads.tda import TDAHead
from priming.heads.templates import (
    TEMPLATE_SETS,
    get_templates,
    load_class_names,
    load_descriptions,
    load_templates,
    parse_class_names,
)
from priming.heads.text import ZeroShotHead, build_text_weights
from priming.heads.tip_adapter import TipAdapterHead
from priming.heads.transclip import TransCLIPHead
from priming.heads.zlap import ZLaPHead

__all__ = [
    "BaseHead",
    "HEADS",
    "register_head",
    "load_head",
    "read_head_metadata",
    "ImprintedHead",
    "PRESETS",
    "PrimedHead",
    "primed_scores",
    "ZeroShotHead",
    "TipAdapterHead",
    "GDAHead",
    "ProKeRHead",
    "TransCLIPHead",
    "ZLaPHead",
    "TDAHead",
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
