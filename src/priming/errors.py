"""One exception hierarchy for the whole package.

Every error a user can provoke with bad input is a :class:`PrimingError`; the
subclasses also derive from the matching built-in so ``except ValueError`` keeps
working for scikit-learn style callers.
"""

from __future__ import annotations

__all__ = [
    "PrimingError",
    "ConfigError",
    "DataError",
    "NotFittedError",  # noqa: F822 (provided by __getattr__)
    "MissingDependencyError",
    "UnknownNameError",
]


class PrimingError(Exception):
    """Base class of every error raised on purpose by ``priming``."""


class ConfigError(PrimingError, ValueError):
    """An invalid parameter value or an invalid combination of parameters."""


class DataError(PrimingError, ValueError):
    """Input data with the wrong shape, dtype, values or labels."""


class UnknownNameError(ConfigError, KeyError):
    """A name looked up in a registry that has no such entry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _make_not_fitted_error() -> type:
    # Subclasses scikit-learn's NotFittedError so scikit-learn's own checks accept it;
    # built on first use so that `import priming` (and the CLI) need not import sklearn.
    from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

    class NotFittedError(PrimingError, _SklearnNotFittedError):
        """An estimator used before ``fit``."""

    NotFittedError.__module__ = __name__
    return NotFittedError


def __getattr__(name: str):
    if name == "NotFittedError":
        cls = _make_not_fitted_error()
        globals()["NotFittedError"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class MissingDependencyError(PrimingError, ImportError):
    """An optional dependency is not installed; the message names the extra."""


def missing_dependency(package: str, extra: str) -> MissingDependencyError:
    """Build the error raised when an optional ``package`` is absent."""
    return MissingDependencyError(
        f"this feature needs the optional package {package!r}; "
        f"install it with: pip install 'priming[{extra}]'"
    )
