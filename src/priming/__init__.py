"""priming: adapt frozen foundation models to new classification tasks without training.

Implements Neural Priming (Wallingford et al., NeurIPS 2023) and the IMPRINT weight
imprinting framework (Westerhoff et al., TMLR 2025), and joins them. Heavy parts
(torch, model libraries, corpus storage) are imported lazily by the modules that use them.
"""

from priming.errors import (
    ConfigError,
    DataError,
    MissingDependencyError,
    PrimingError,
    UnknownNameError,
)

__version__ = "0.1.0"


# The job API (priming.job), imported on first use so that `import priming` stays cheap.
_JOB_API = ("PrimeConfig", "load_config", "run_prime", "predict", "PrimeResult", "PredictResult")


def __getattr__(name: str):
    if name == "NotFittedError":  # built lazily: it needs scikit-learn
        from priming import errors

        return errors.NotFittedError
    if name in _JOB_API:
        import priming.job

        return getattr(priming.job, name)
    raise AttributeError(f"module 'priming' has no attribute {name!r}")


__all__ = [
    "__version__",
    "PrimingError",
    "ConfigError",
    "DataError",
    "NotFittedError",  # noqa: F822 (provided by __getattr__)
    "MissingDependencyError",
    "UnknownNameError",
    *_JOB_API,  # noqa: F822 (provided by __getattr__)
]
