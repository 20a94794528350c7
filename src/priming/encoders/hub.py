"""Locate hub models already in the local Hugging Face cache (never downloads)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers' own progress bars ("Loading weights", …) off while a model loads, and
    back as they were afterwards: only the CLI draws bars (the library reports progress)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # sentence-transformers without transformers cannot happen; be safe
        yield
        return
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()
