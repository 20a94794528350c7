"""The pretraining corpus: LAION-style ingest, caption full-text search, vector search.

A corpus is a directory: ``manifest.json`` (schema version, shards, row counts,
embedding model/dim, checksums), ``shards/shard-NNNNN.sqlite`` (rows + an FTS5 index
over the captions) and, when present, ``shards/shard-NNNNN*.f16.npy`` (row-aligned
float16 embeddings) and ``index/ivfpq.faiss``. See ``docs/corpus.md``.

Names are imported lazily (as in :mod:`priming.pool`): ``import priming.corpus`` and the
choice tuples of :mod:`priming.corpus.choices` (``SEARCH_MODES``, ``KNN_METHODS``) are
cheap; the first use of any other name imports the storage modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from priming._lazy import lazy_exports
from priming.corpus.choices import KNN_METHODS, SEARCH_MODES

if TYPE_CHECKING:  # the lazy names, for type checkers and editors
    from priming.corpus._export import check_export_path, export_urls
    from priming.corpus._ingest import COLUMN_ALIASES, build_corpus
    from priming.corpus._manifest import SCHEMA_VERSION, read_manifest, sha256_file
    from priming.corpus._store import (
        CaptionHits,
        Corpus,
        open_corpus,
        phrase_expression,
        tokenize,
    )
    from priming.corpus._vectors import (
        build_index,
        decode_image,
        fill_embeddings,
        set_embeddings,
    )
    from priming.corpus._verify import verify_corpus
    from priming.corpus.formats import FORMAT_NAMES, FORMATS, detect_format

_EXPORTS = {
    "check_export_path": "priming.corpus._export",
    "export_urls": "priming.corpus._export",
    "COLUMN_ALIASES": "priming.corpus._ingest",
    "build_corpus": "priming.corpus._ingest",
    "SCHEMA_VERSION": "priming.corpus._manifest",
    "read_manifest": "priming.corpus._manifest",
    "sha256_file": "priming.corpus._manifest",
    "CaptionHits": "priming.corpus._store",
    "Corpus": "priming.corpus._store",
    "open_corpus": "priming.corpus._store",
    "phrase_expression": "priming.corpus._store",
    "tokenize": "priming.corpus._store",
    "build_index": "priming.corpus._vectors",
    "decode_image": "priming.corpus._vectors",
    "fill_embeddings": "priming.corpus._vectors",
    "set_embeddings": "priming.corpus._vectors",
    "verify_corpus": "priming.corpus._verify",
    "FORMAT_NAMES": "priming.corpus.formats",
    "FORMATS": "priming.corpus.formats",
    "detect_format": "priming.corpus.formats",
}

__all__ = [
    "COLUMN_ALIASES",
    "FORMATS",
    "FORMAT_NAMES",
    "KNN_METHODS",
    "SCHEMA_VERSION",
    "SEARCH_MODES",
    "CaptionHits",
    "Corpus",
    "build_corpus",
    "build_index",
    "check_export_path",
    "decode_image",
    "detect_format",
    "export_urls",
    "fill_embeddings",
    "open_corpus",
    "phrase_expression",
    "read_manifest",
    "set_embeddings",
    "sha256_file",
    "tokenize",
    "verify_corpus",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
