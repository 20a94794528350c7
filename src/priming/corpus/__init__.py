"""The pretraining corpus: LAION-style ingest, caption full-text search, vector search.

A corpus is a directory: ``manifest.json`` (schema version, shards, row counts,
embedding model/dim, checksums), ``shards/shard-NNNNN.sqlite`` (rows + an FTS5 index
over the captions) and, when present, ``shards/shard-NNNNN*.f16.npy`` (row-aligned
float16 embeddings) and ``index/ivfpq.faiss``. See ``docs/corpus.md``.
"""

from priming.corpus._export import check_export_path, export_urls
from priming.corpus._ingest import COLUMN_ALIASES, build_corpus
from priming.corpus._manifest import SCHEMA_VERSION, read_manifest, sha256_file
from priming.corpus._store import (
    SEARCH_MODES,
    CaptionHits,
    Corpus,
    open_corpus,
    phrase_expression,
    tokenize,
)
from priming.corpus._vectors import build_index, decode_image, fill_embeddings, set_embeddings
from priming.corpus._verify import verify_corpus

__all__ = [
    "COLUMN_ALIASES",
    "SCHEMA_VERSION",
    "SEARCH_MODES",
    "CaptionHits",
    "Corpus",
    "build_corpus",
    "build_index",
    "check_export_path",
    "decode_image",
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
