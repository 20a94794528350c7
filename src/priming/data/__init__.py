"""Target datasets and their embeddings.

- :func:`open_dataset` reads image folders, CSV/JSONL manifests, webdataset tar shards
  (img2dataset output) and embedding files;
- :func:`embed` turns a dataset into embeddings through a content-addressed, resumable
  on-disk cache;
- :func:`load_embeddings` reads precomputed ``.npy``/``.npz`` embeddings with labels;
- :func:`get_benchmark` / :func:`list_benchmarks` name the evaluation benchmarks (class
  names, templates, splits) and :func:`load_split` reads one split of a benchmark's
  files as image items with labels (:func:`open_image` opens one item).
"""

from priming.data.benchmarks import Benchmark, get_benchmark, list_benchmarks
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
from priming.data.loaders import LoadedSplit, load_split, open_image

__all__ = [
    "Benchmark",
    "Dataset",
    "EmbeddedData",
    "EmbeddingFileDataset",
    "ImageFolderDataset",
    "LoadedSplit",
    "ManifestDataset",
    "WebDataset",
    "cache_key",
    "embed",
    "file_identity",
    "get_benchmark",
    "list_benchmarks",
    "load_embeddings",
    "load_split",
    "open_dataset",
    "open_image",
]
