"""Small file-system helpers shared by the layers (no heavy imports).

Every file the package writes goes through :func:`atomic_output` (or one of the
``write_*_atomic`` wrappers): the bytes land in a temporary file in the destination's
own folder, which is renamed onto the destination only once it is complete, so a crash
or an error never leaves a half-written file under the real name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from priming.errors import ConfigError

__all__ = [
    "make_dir",
    "atomic_output",
    "atomic_path",
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "replace_dir",
    "make_temp_dir",
    "umask_mode",
]


def umask_mode(mode: int) -> int:
    """``mode`` less the process umask: the permissions ``open``/``mkdir`` would give.

    ``tempfile.mkstemp``/``mkdtemp`` create 0600/0700 entries whatever the umask; files
    and folders renamed from them into place are given this mode instead, so outputs
    follow the umask (0644/0755 under the usual 022) like any other file."""
    current = os.umask(0)
    os.umask(current)
    return mode & ~current


def make_temp_dir(parent: str | os.PathLike[str], prefix: str) -> Path:
    """A new temporary folder in ``parent`` (``tempfile.mkdtemp``) with the umask's mode."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, umask_mode(0o777))
    return tmp


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


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], suffix: str = ".tmp", *, make_parents: bool = True
) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    For writers that want a file name (``savefig``, ``pyarrow.parquet.write_table``).
    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, umask_mode(0o666))
    finally:
        os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike[str], *, fsync: bool = False, make_parents: bool = True
) -> Iterator[IO[bytes]]:
    """Open a binary file that appears under ``path`` only once the block completes.

    ``fsync=True`` also forces the bytes to disk before the rename (for files whose
    presence marks finished work, such as manifests and cache shards).
    """
    with atomic_path(path, make_parents=make_parents) as tmp, open(tmp, "wb") as fh:
        yield fh
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_output(path, fsync=fsync) as fh:
        fh.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, fsync: bool = False) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the path."""
    return write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def write_json_atomic(
    path: str | os.PathLike[str], obj: Any, *, fsync: bool = False, **dumps_kwargs: Any
) -> Path:
    """Serialise ``obj`` as JSON (``json.dumps(obj, **dumps_kwargs)``) to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(obj, **dumps_kwargs) + "\n", fsync=fsync)


def replace_dir(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Move the finished folder ``src`` onto ``dest``, replacing any folder already there.

    The old folder is first renamed aside (into a temporary folder next to ``dest``) and
    removed only once ``src`` is in place, so ``dest`` is never a mix of old and new.
    """
    src, dest = Path(src), Path(dest)
    if not dest.exists():
        os.replace(src, dest)
        return dest
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
    os.replace(dest, old / "previous")
    os.replace(src, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest
