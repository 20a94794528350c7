"""One helper for optional dependencies: import a module or say which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from priming.errors import missing_dependency

__all__ = ["require"]


def require(module: str, extra: str, package: str | None = None) -> ModuleType:
    """Import ``module`` (e.g. ``"pyarrow.parquet"``) or raise a ``MissingDependencyError``
    that names the pip ``package`` (default: the top-level module name) and the
    ``priming[extra]`` that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing_dependency(package or module.split(".")[0], extra) from None
