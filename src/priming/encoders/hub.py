"""Locate hub models already in the local Hugging Face cache (never downloads)."""

from __future__ import annotations

from pathlib import Path


def local_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot directory of ``repo_id`` (its name is the commit), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    try:
        hit = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # invalid repo id and the like
        return None
    if isinstance(hit, str):
        return Path(hit).parent
    return None
