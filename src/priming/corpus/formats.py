"""The source layouts ``corpus build`` reads: which columns hold what, per public release.

Each format names, for every canonical column of a shard row (``caption``, ``url``,
``key``, ``width``, ``height``, ``similarity``, ``nsfw``, ``punsafe``), the column
spellings of that release, plus the NSFW score columns whose maximum is thresholded
(COYO), and where row-aligned embeddings come from (``.npy`` per file, or DataComp's
``.npz`` with several keys). :func:`detect_format` picks the format of one parquet file
from its column names and file name; ``generic`` is the fallback of the older
LAION-style alias table (:data:`priming.corpus._ingest.COLUMN_ALIASES`) when no known
layout matches. Nothing here imports pyarrow or (at import) numpy: the CLI takes
:data:`FORMAT_NAMES` from here cheaply.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from priming.errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "FORMAT_NAMES",
    "FORMATS",
    "DATACOMP_EMBEDDING_MODELS",
    "Layout",
    "SourceFormat",
    "datacomp_embedding_model",
    "detect_format",
    "layout_for",
    "npz_member_shape",
    "load_npz_member",
    "resolve_npz",
]

#: names accepted by ``--format`` / ``build_corpus(format=...)``
FORMAT_NAMES = ("relaion", "datacomp", "coyo", "laion", "clip-retrieval")
GENERIC = "generic"

#: Spark's output names, used by the LAION, Re-LAION and COYO releases
SPARK_PART = re.compile(r"part-\d{5}-[0-9a-fA-F-]+-c000(\.snappy)?\.parquet")
CLIP_RETRIEVAL_PART = re.compile(r"metadata_\d+\.parquet")

#: DataComp ``.npz`` key prefix -> the encoder name (priming.encoders) of those features
DATACOMP_EMBEDDING_MODELS = {
    "l14": "open_clip:ViT-L-14/openai",
    "b32": "open_clip:ViT-B-32/openai",
}


@dataclass(frozen=True)
class SourceFormat:
    """One release's layout: canonical column -> its spellings, first present wins."""

    name: str
    title: str
    columns: Mapping[str, tuple[str, ...]]
    nsfw_scores: tuple[str, ...] = ()
    embeddings: str = "npy"  # "npy": one .npy per parquet; "npz": DataComp's keyed .npz
    required: tuple[str, ...] = ("caption", "url")


@dataclass(frozen=True)
class Layout:
    """The resolved reading of one parquet file: which column serves which purpose."""

    format: str
    mapping: dict[str, str]
    nsfw_scores: tuple[str, ...] = ()
    reason: str = ""
    embeddings: str = "npy"
    columns: tuple[str, ...] = field(default=())

    def read_columns(self) -> list[str]:
        return sorted(set(self.mapping.values()) | set(self.nsfw_scores))


FORMATS: dict[str, SourceFormat] = {
    "relaion": SourceFormat(
        "relaion",
        "Re-LAION-2B-en research / research-safe",
        {
            "caption": ("caption",),
            "url": ("url",),
            "key": ("key",),
            "width": ("width", "original_width"),
            "height": ("height", "original_height"),
            "similarity": ("similarity",),
            "nsfw": ("NSFW", "nsfw"),
            "punsafe": ("punsafe",),
        },
    ),
    "datacomp": SourceFormat(
        "datacomp",
        "DataComp CommonPool / DataComp-1B",
        {
            "caption": ("text",),
            "url": ("url",),
            "key": ("uid",),
            "width": ("original_width",),
            "height": ("original_height",),
            "similarity": ("clip_b32_similarity_score", "clip_l14_similarity_score"),
        },
        embeddings="npz",
    ),
    "coyo": SourceFormat(
        "coyo",
        "COYO-700M",
        {
            "caption": ("text",),
            "url": ("url",),
            "key": ("id",),
            "width": ("width",),
            "height": ("height",),
            "similarity": ("clip_similarity_vitb32", "clip_similarity_vitl14"),
        },
        nsfw_scores=("nsfw_score_opennsfw2", "nsfw_score_gantman"),
    ),
    "laion": SourceFormat(
        "laion",
        "LAION-2B-en / LAION-400M (original metadata)",
        {
            "caption": ("TEXT",),
            "url": ("URL",),
            "key": ("SAMPLE_ID", "key"),
            "width": ("WIDTH",),
            "height": ("HEIGHT",),
            "similarity": ("similarity",),
            "nsfw": ("NSFW",),
            "punsafe": ("punsafe",),
        },
    ),
    "clip-retrieval": SourceFormat(
        "clip-retrieval",
        "clip-retrieval / img2dataset output",
        {
            "caption": ("caption",),
            "url": ("url",),
            "key": ("key",),
            "width": ("width",),
            "height": ("height",),
            "similarity": ("similarity",),
            "nsfw": ("NSFW",),
            "punsafe": ("punsafe",),
        },
    ),
}


# --------------------------------------------------------------------------- detection
def _evidence(name: str, cols: set[str], filename: str) -> str | None:
    """Why a file with columns ``cols`` and name ``filename`` looks like format ``name``
    (None: it does not)."""
    spark = bool(SPARK_PART.fullmatch(filename))
    if name == "datacomp" and {"uid", "text"} <= cols:
        extra = [c for c in ("clip_b32_similarity_score", "clip_l14_similarity_score") if c in cols]
        return "columns uid, text" + (f", {', '.join(extra)}" if extra else "")
    if name == "coyo" and "text" in cols:
        own = [c for c in (*FORMATS["coyo"].nsfw_scores, "clip_similarity_vitb32") if c in cols]
        own += [c for c in ("clip_similarity_vitl14", "watermark_score") if c in cols]
        if own:
            return f"columns text, {', '.join(own)}"
    if name == "laion" and {"TEXT", "URL"} <= cols:
        return "columns URL, TEXT"
    if name == "clip-retrieval" and "caption" in cols:
        if "image_path" in cols or "status" in cols:
            return f"columns caption, {'image_path' if 'image_path' in cols else 'status'}"
        if CLIP_RETRIEVAL_PART.fullmatch(filename):
            return f"columns caption and the file name {filename!r} (metadata_N.parquet)"
    if name == "relaion" and {"caption", "url"} <= cols and (spark or "punsafe" in cols):
        why = "a Spark part-NNNNN-<hash>-c000 file name" if spark else "column punsafe"
        return f"columns url, caption and {why}"
    return None


def detect_format(names: Sequence[str], path: str | Path) -> tuple[str, str]:
    """``(format, reason)`` for a parquet file with columns ``names``.

    ``generic`` (with its reason) when no known layout matches; a DataError naming the
    file and the candidates when several do (then ``--format`` decides).
    """
    path = Path(path)
    cols = set(names)
    hits = {n: why for n in FORMAT_NAMES if (why := _evidence(n, cols, path.name)) is not None}
    if len(hits) > 1:
        raise DataError(
            f"metadata {str(path)!r}: the layout is ambiguous, it matches "
            + "; ".join(f"{n} ({why})" for n, why in hits.items())
            + "; name one with --format ("
            + "|".join(FORMAT_NAMES)
            + ")"
        )
    if hits:
        ((name, why),) = hits.items()
        return name, why
    return GENERIC, "no known layout matched; columns read by the LAION-style alias table"


def layout_for(
    fmt: str,
    names: Sequence[str],
    source: str,
    generic_aliases: Mapping[str, tuple[str, ...]],
    reason: str = "",
) -> Layout:
    """Resolve format ``fmt`` against the columns ``names`` of one file (``source`` names
    it in errors). ``generic_aliases`` is the fallback table for ``generic``."""
    if fmt == GENERIC:
        spec = SourceFormat(
            GENERIC, "LAION-style (generic)", generic_aliases, required=("caption",)
        )
    elif fmt in FORMATS:
        spec = FORMATS[fmt]
    else:
        raise ConfigError(
            f"format: unknown format {fmt!r}; choose one of {', '.join(FORMAT_NAMES)}"
        )
    present = set(names)
    mapping: dict[str, str] = {}
    for canon, aliases in spec.columns.items():
        for a in aliases:
            if a in present:
                mapping[canon] = a
                break
    for canon in spec.required:
        if canon not in mapping:
            hint = ""
            if fmt == GENERIC:
                hint = f" (the layout matches none of {', '.join(FORMAT_NAMES)})"
            raise DataError(
                f"{source}: no {canon} column for format {fmt!r}{hint}; columns found: "
                f"{', '.join(names) or '(none)'}; accepted {canon} columns: "
                f"{', '.join(spec.columns[canon])}"
            )
    scores = tuple(c for c in spec.nsfw_scores if c in present)
    return Layout(fmt, mapping, scores, reason, spec.embeddings, tuple(names))


# --------------------------------------------------------------------------- DataComp .npz
def datacomp_embedding_model(key: str) -> str | None:
    """The encoder that made the features under DataComp key ``key`` (``l14_img`` ->
    OpenAI CLIP ViT-L/14 as an open_clip name); None for a key of no known model."""
    prefix = key.split("_", 1)[0]
    return DATACOMP_EMBEDDING_MODELS.get(prefix)


def resolve_npz(
    embeddings: str | Path | Sequence[str | Path] | None, meta_files: list[Path]
) -> list[Path]:
    """Pair each DataComp parquet with its ``.npz``: the sibling ``NAME.npz`` (None), one
    in folder ``embeddings``, or an explicit list (same order as the parquet files)."""
    if embeddings is not None and not isinstance(embeddings, (str, Path)):
        paths = [Path(e) for e in embeddings]
        if len(paths) != len(meta_files):
            raise DataError(
                f"embeddings: {len(paths)} .npz files given for {len(meta_files)} metadata files"
            )
    elif embeddings is not None and Path(embeddings).is_file():
        if len(meta_files) != 1:
            raise DataError(
                f"embeddings: one file {str(embeddings)!r} given for {len(meta_files)} "
                "metadata files; give the folder of the .npz files"
            )
        paths = [Path(embeddings)]
    else:
        root = None if embeddings is None else Path(embeddings)
        if root is not None and not root.is_dir():
            raise DataError(f"embeddings: {str(root)!r} does not exist")
        paths = [(root or m.parent) / f"{m.stem}.npz" for m in meta_files]
    for meta, p in zip(meta_files, paths):
        if not p.is_file():
            raise DataError(
                f"embeddings: no .npz for DataComp metadata {meta.name!r} (looked for {str(p)!r})"
            )
    return [p.resolve() for p in paths]


def _member(z: zipfile.ZipFile, path: Path, key: str) -> str:
    name = f"{key}.npy"
    if name not in z.namelist():
        keys = sorted(n[:-4] for n in z.namelist() if n.endswith(".npy"))
        raise DataError(
            f"embeddings {str(path)!r} have no key {key!r}; keys: {', '.join(keys) or '(none)'}"
        )
    return name


def npz_member_shape(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of array ``key`` in an ``.npz`` without reading its data."""
    import numpy as np

    try:
        with zipfile.ZipFile(path) as z, z.open(_member(z, path, key)) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"embeddings: cannot read {str(path)!r} as .npz: {exc}") from None
    return tuple(shape), dtype


def load_npz_member(path: str | Path, key: str) -> np.ndarray:
    """Array ``key`` of an ``.npz`` (read whole: DataComp files hold ~10k rows each)."""
    import numpy as np

    with zipfile.ZipFile(path) as z:
        _member(z, Path(path), key)
    with np.load(path, allow_pickle=False) as npz:
        return npz[key]
