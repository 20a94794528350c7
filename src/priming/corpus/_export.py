"""Export corpus rows as an img2dataset url list."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from priming._fs import atomic_path
from priming.corpus._store import CaptionHits, Corpus, _pa
from priming.errors import ConfigError, DataError

__all__ = ["export_urls", "EXPORT_COLUMNS"]

EXPORT_COLUMNS = ("url", "caption", "row_id", "label", "key", "width", "height", "similarity")


#: file name endings export_urls writes (parquet, the format img2dataset reads)
EXPORT_SUFFIXES = (".parquet", ".pq")


def check_export_path(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """The output path of :func:`export_urls`, its folder created. A ConfigError names it
    when it is a folder, when its folder cannot be created, when its name does not end in
    ``.parquet`` / ``.pq`` (the format follows the extension), or when the file exists and
    ``overwrite`` is false."""
    from priming._fs import make_dir

    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"output {str(out)!r} is a folder; give the path of a .parquet file")
    if out.suffix.lower() not in EXPORT_SUFFIXES:
        raise ConfigError(
            f"output {str(out)!r}: export-urls writes parquet; give a name ending in "
            f"{' or '.join(EXPORT_SUFFIXES)}"
        )
    if out.exists() and not overwrite:
        raise ConfigError(
            f"output {str(out)!r} exists; pass overwrite=True (CLI: --overwrite) to replace it"
        )
    make_dir(out.parent, f"folder of the output {str(out)!r}")
    return out


def export_urls(
    corpus: Corpus,
    rows: Any,
    out: str | os.PathLike,
    overwrite: bool = False,
    include_nsfw: bool = False,
) -> dict[str, int]:
    """Write ``rows`` (a :class:`CaptionHits`, a table with ``row_id`` [and ``label``], or
    row ids) as a parquet url list for img2dataset.

    Columns: ``url``, ``caption``, ``row_id``, ``label`` (empty when unknown), ``key``,
    ``width``, ``height``, ``similarity``. Rows without a url are left out and counted
    (``missing_url``); so are rows flagged NSFW (``skipped_nsfw``), which ``priming
    prime`` would drop from its pool too, unless ``include_nsfw=True`` (CLI:
    ``--include-nsfw``). ``written + missing_url + skipped_nsfw`` is the number of rows.
    Read it with ``img2dataset --input_format parquet --url_col url --caption_col caption
    --save_additional_columns '["row_id","label"]'``; the ``row_id`` saved in each
    sample's json maps a downloaded image back to its corpus row. An existing ``out`` is
    replaced only with ``overwrite=True``; ``out`` must end in ``.parquet`` or ``.pq``.
    """
    pa = _pa()
    import pyarrow.parquet as pq

    out = check_export_path(out, overwrite)
    labels = None
    if isinstance(rows, CaptionHits):
        rows = rows.table
    if isinstance(rows, pa.Table):
        if "row_id" not in rows.column_names:
            raise DataError(
                f"rows table has no 'row_id' column; columns: {', '.join(rows.column_names)}"
            )
        ids = rows.column("row_id").to_numpy()
        if "label" in rows.column_names:
            labels = rows.column("label").to_pylist()
    else:
        ids = np.asarray(rows)
    meta = corpus.rows(ids)
    url = meta.column("url")
    import pyarrow.compute as pc

    if not isinstance(include_nsfw, (bool, np.bool_)):
        raise ConfigError(f"include_nsfw must be True or False, got {include_nsfw!r}")
    has_url = pc.fill_null(pc.greater(pc.utf8_length(url), 0), False)
    n_missing = _count(pc.invert(has_url))
    keep = has_url
    n_nsfw = 0
    if not include_nsfw:  # unknown (null) counts as not flagged, as in the pool's filter
        flagged = pc.and_(has_url, pc.fill_null(meta.column("nsfw"), False))
        n_nsfw = _count(flagged)
        keep = pc.and_(has_url, pc.invert(flagged))
    table = pa.table(
        {
            "url": url,
            "caption": meta.column("caption"),
            "row_id": meta.column("row_id"),
            "label": pa.array(
                labels if labels is not None else [None] * meta.num_rows, pa.string()
            ),
            "key": meta.column("key"),
            "width": meta.column("width"),
            "height": meta.column("height"),
            "similarity": meta.column("similarity"),
        }
    ).filter(keep)
    with atomic_path(out, make_parents=False) as tmp:
        pq.write_table(table, tmp)
    return {"written": table.num_rows, "missing_url": n_missing, "skipped_nsfw": n_nsfw}


def _count(mask: Any) -> int:
    """How many entries of a boolean arrow array are true."""
    import pyarrow.compute as pc

    return int(pc.sum(mask).as_py() or 0) if len(mask) else 0
