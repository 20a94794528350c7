"""Small file-system helpers shared by the layers (no heavy imports)."""

from __future__ import annotations

import os
from pathlib import Path

from priming.errors import ConfigError

__all__ = ["make_dir"]


def make_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Create folder ``path`` (and its parents) or raise a ``ConfigError`` naming it.

    A path that exists but is not a folder, or that cannot be created (permissions, a
    parent that is a file, a read-only file system), is reported as bad input rather
    than as a traceback.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{what} {str(p)!r} exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {what} {str(p)!r}: {exc.strerror or exc}") from None
    return p
