"""Checking a corpus directory's files against its manifest."""

from __future__ import annotations

import os
from pathlib import Path

from priming.corpus._manifest import read_manifest, sha256_file
from priming.corpus._search import ShardRef, close_connections, shard_connection
from priming.errors import DataError

__all__ = ["verify_corpus"]

_FILES = (
    ("db", "db_bytes", "db_sha256"),
    ("embeddings", "embeddings_bytes", "embeddings_sha256"),
    ("embeddings_mask", None, "embeddings_mask_sha256"),
)


def verify_corpus(corpus_dir: str | os.PathLike, checksums: bool = False) -> list[str]:
    """Problems found in the corpus at ``corpus_dir`` (an empty list: none).

    Always checks (fast) that every file the manifest names exists with its recorded size
    and that every shard database opens and answers; with ``checksums`` it also
    recomputes every file's SHA-256 (reads everything)."""
    corpus_dir = Path(corpus_dir)
    manifest = read_manifest(corpus_dir)
    problems: list[str] = []
    if not manifest.get("complete"):
        problems.append("the build is unfinished; rerun the same `priming corpus build`")
    for s in manifest.get("shards", []):
        for key, size_key, sha_key in _FILES:
            if key not in s:
                continue
            path = corpus_dir / s[key]
            if not path.is_file():
                problems.append(f"{s[key]}: missing")
                continue
            if size_key and size_key in s and path.stat().st_size != s[size_key]:
                problems.append(
                    f"{s[key]}: {path.stat().st_size} bytes, the manifest records {s[size_key]}"
                )
            elif checksums and sha_key in s and sha256_file(path) != s[sha_key]:
                problems.append(f"{s[key]}: checksum mismatch")
        db = corpus_dir / s["db"]
        if db.is_file():
            ref = ShardRef(str(db.resolve()), "verify", 0, str(s["name"]), str(corpus_dir))
            try:
                with shard_connection(ref) as con:
                    con.execute("SELECT count(*) FROM rows").fetchone()
            except DataError:
                problems.append(f"{s['db']}: not a readable shard database")
            finally:
                close_connections([ref])
    return problems
