"""One conversion of results to JSON-able values (numpy, paths, dataclasses, non-finite floats)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import PurePath
from typing import Any

import numpy as np

__all__ = ["to_jsonable"]


def to_jsonable(o: Any) -> Any:
    """A JSON-able copy of ``o``: dict keys become strings, numpy arrays and scalars become
    lists and Python numbers, paths strings, dataclasses dicts (or their ``to_json()``),
    and NaN/inf become ``None`` (JSON has no such numbers)."""
    if hasattr(o, "to_json") and callable(o.to_json) and not isinstance(o, type):
        return to_jsonable(o.to_json())
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return {f.name: to_jsonable(getattr(o, f.name)) for f in dataclasses.fields(o)}
    if isinstance(o, dict):
        return {str(k): to_jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return to_jsonable(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, PurePath):
        return str(o)
    return o
