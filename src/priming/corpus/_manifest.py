"""The corpus manifest: one JSON file that says what a corpus directory holds.

The manifest is the single source of truth. A shard's files exist on disk before the
manifest names them (each is written under a temporary name and renamed into place), so
a reader that trusts only the manifest never sees a half-written shard, and a build that
is killed resumes from the shards the manifest lists as finished.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from priming._fs import write_bytes_atomic, write_json_atomic
from priming.errors import DataError

SCHEMA_VERSION = 1
FORMAT = "priming-corpus"
MANIFEST = "manifest.json"
SHARD_DIR = "shards"
INDEX_DIR = "index"
TOKENIZER = "unicode61 remove_diacritics 2"

__all__ = [
    "SCHEMA_VERSION",
    "MANIFEST",
    "atomic_write_bytes",
    "atomic_write_json",
    "read_manifest",
    "sha256_file",
]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, forced to disk before the rename."""
    write_bytes_atomic(path, data, fsync=True)


def atomic_write_json(path: Path, obj: Any) -> None:
    write_json_atomic(path, obj, fsync=True, indent=1, sort_keys=False)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(corpus_dir: Path) -> dict[str, Any]:
    """Read and validate ``corpus_dir/manifest.json``; raise :class:`DataError` if unusable."""
    corpus_dir = Path(corpus_dir)
    path = corpus_dir / MANIFEST
    if not corpus_dir.is_dir():
        raise DataError(f"corpus directory {str(corpus_dir)!r} does not exist")
    if not path.is_file():
        raise DataError(
            f"{str(corpus_dir)!r} is not a corpus: it has no {MANIFEST} "
            "(build one with `priming corpus build`)"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"corpus manifest {str(path)!r} is unreadable: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{str(path)!r} is not a priming corpus manifest")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DataError(
            f"corpus {str(corpus_dir)!r} has schema version {version!r}; this version of "
            f"priming reads schema version {SCHEMA_VERSION} (rebuild the corpus)"
        )
    return manifest
