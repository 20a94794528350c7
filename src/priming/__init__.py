"""priming: adapt frozen foundation models to new classification tasks without training.

Implements Neural Priming (Wallingford et al., NeurIPS 2023) and the IMPRINT weight
imprinting framework (Westerhoff et al., TMLR 2025), and joins them. Heavy parts
(torch, model libraries, corpus storage) are imported lazily by the modules that use them.
"""

from priming.errors import (
    ConfigError,
    DataError,
    MissingDependencyError,
    NotFittedError,
    PrimingError,
    UnknownNameError,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "PrimingError",
    "ConfigError",
    "DataError",
    "NotFittedError",
    "MissingDependencyError",
    "UnknownNameError",
]
