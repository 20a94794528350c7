"""Class names: reading class-name files and matching data labels to classes.

One module, one normalisation rule. A class is a list of names, the first being its
name and the others synonyms. Two spellings are the same name when their
:func:`name_key` is equal: Unicode NFC, control and zero-width characters removed,
``_`` and ``-`` read as spaces, runs of white space collapsed, case folded. The key
decides duplicates (between classes and within one class) and label matching.

- :func:`parse_class_names`: a list (``"a|b"`` strings or lists of synonyms) → synonym lists;
- :func:`load_class_names`: a text file (one class per line, ``|`` between synonyms, ``#``
  comments) or a JSON file (a list, or an object name → synonyms);
- :func:`match_labels`: data labels → class indices, unknown labels an error listing them.

Plumbing: only the standard library, numpy and :mod:`priming.errors` are imported, so
any layer (heads, pool, job, the CLI) may use it.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from priming.errors import DataError

__all__ = [
    "clean_name",
    "name_key",
    "parse_class_names",
    "load_class_names",
    "class_index",
    "match_labels",
]

# control characters, zero-width characters and marks, line/paragraph separators, BOM
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
_SPACE = re.compile(r"\s+")


def clean_name(text: str) -> str:
    """A class name as written, cleaned: Unicode NFC, control/zero-width characters
    removed, runs of white space collapsed, ends stripped (case is kept)."""
    text = unicodedata.normalize("NFC", str(text))
    text = _CONTROL.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def name_key(text: str) -> str:
    """The comparison key of a name (the one normalisation rule of the package):
    :func:`clean_name`, then ``_``/``-`` as spaces, white space collapsed, case folded."""
    return " ".join(clean_name(text).replace("_", " ").replace("-", " ").casefold().split())


def _synonyms(entry: object, i: int, source: str) -> list[str]:
    if isinstance(entry, str):
        raw: list[object] = list(entry.split("|"))
    elif isinstance(entry, (list, tuple)):
        raw = list(entry)
    else:
        raise DataError(
            f"{source}: class {i + 1} is {entry!r}; a class is a name (string, '|' between "
            "synonyms) or a list of names"
        )
    names: list[str] = []
    keys: set[str] = set()
    for n in raw:
        if not isinstance(n, str):
            raise DataError(f"{source}: class {i + 1} has a non-string name {n!r}")
        n = clean_name(n)
        k = name_key(n)
        if n and k not in keys:
            names.append(n)
            keys.add(k)
    if not names:
        raise DataError(f"{source}: class {i + 1} ({entry!r}) has no usable name")
    return names


def parse_class_names(
    classes: Sequence[str | Sequence[str]], source: str = "class names"
) -> list[list[str]]:
    """Normalise class names to a list of synonym lists (the first name is the class's).

    A string may carry synonyms separated by ``|``. Names are cleaned with
    :func:`clean_name`; a synonym whose :func:`name_key` repeats an earlier one of the
    same class is dropped. Empty classes, non-string names and a name shared by two
    classes are errors naming the class.
    """
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise DataError(f"{source}: expected a list of class names, got {type(classes).__name__}")
    out: list[list[str]] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(classes):
        names = _synonyms(entry, i, source)
        for n in names:
            key = name_key(n)
            if key in seen:
                raise DataError(
                    f"{source}: duplicate class name {n!r} (class {seen[key] + 1} "
                    f"{out[seen[key]][0]!r} and class {i + 1}); class names must be unique"
                )
            seen[key] = i
        out.append(names)
    if not out:
        raise DataError(f"{source}: no classes")
    return out


def load_class_names(path: str | Path) -> list[list[str]]:
    """Read a class-name file.

    Text: one class per line, ``|`` separating synonyms; blank lines and lines starting
    with ``#`` are skipped; odd characters (BOM, control, zero-width) are removed.
    JSON (``.json``): a list of names (each a string or a list of synonyms) or an object
    mapping class name → synonym list. Errors name the file and the class.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"class-name file {str(p)!r} does not exist")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"class-name file {str(p)!r} is not UTF-8 text: {exc}") from None
    source = f"class-name file {str(p)!r}"
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{source} is not valid JSON: {exc}") from None
        if isinstance(data, Mapping):
            data = [[k, *(v if isinstance(v, list) else [v])] for k, v in data.items()]
        if not isinstance(data, list):
            raise DataError(f"{source} must hold a JSON list or object")
        return parse_class_names(data, source)
    entries = []
    for ln in text.splitlines():
        s = clean_name(ln)
        if s and not s.startswith("#"):
            entries.append(s)
    return parse_class_names(entries, source)


def class_index(class_names: Sequence[Sequence[str]]) -> dict[str, int]:
    """Map the :func:`name_key` of every name and synonym to its class index."""
    return {name_key(n): i for i, names in enumerate(class_names) for n in names}


def match_labels(labels, class_names: Sequence[Sequence[str]], what: str) -> np.ndarray:
    """Map data labels to class indices (int64): a label matches a class when its
    :func:`name_key` equals that of the class's name or of a synonym. Unknown labels
    raise a DataError naming ``what`` and listing them."""
    index = class_index(class_names)
    out = np.empty(len(labels), dtype=np.int64)
    unknown = []
    for j, lab in enumerate(labels):
        i = index.get(name_key(str(lab)))
        if i is None:
            unknown.append(str(lab))
            out[j] = -1
        else:
            out[j] = i
    if unknown:
        uniq = sorted(set(unknown))
        raise DataError(
            f"{what}: {len(unknown)} item(s) have labels outside the class list: "
            f"{', '.join(repr(u) for u in uniq[:8])}{' ...' if len(uniq) > 8 else ''}; "
            f"classes are: {', '.join(n[0] for n in class_names[:10])}"
            f"{' ...' if len(class_names) > 10 else ''}"
        )
    return out
