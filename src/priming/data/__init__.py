"""Target datasets and their embeddings.

- :func:`open_dataset` reads image folders, CSV/JSONL manifests, webdataset tar shards
  (img2dataset output) and embedding files;
- :func:`embed` turns a dataset into embeddings through a content-addressed, resumable
  on-disk cache;
- :func:`load_embeddings` reads precomputed ``.npy``/``.npz`` embeddings with labels.
"""

from priming.data.cache import cache_key, embed
from priming.data.datasets import (
    Dataset,
    EmbeddingFileDataset,
    ImageFolderDataset,
    ManifestDataset,
    WebDataset,
    file_identity,
    open_dataset,
)
from priming.data.embeddings import EmbeddedData, load_embeddings

__all__ = [
    "Dataset",
    "EmbeddedData",
    "EmbeddingFileDataset",
    "ImageFolderDataset",
    "ManifestDataset",
    "WebDataset",
    "cache_key",
    "embed",
    "file_identity",
    "load_embeddings",
    "open_dataset",
]
