"""The encoder interface shared by every adapter, and the helpers they use.

An encoder turns images and/or texts into L2-normalised float32 embeddings. Adapters
subclass :class:`Encoder` and implement the ``_encode_text_batch`` /
``_prepare_image`` + ``_encode_image_batch`` hooks; batching, progress, normalisation
and parallel image preparation live here once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from priming._optional import require
from priming.errors import ConfigError, DataError
from priming.exec import ExecutorSpec, open_executor
from priming.imprint.normalize import l2_normalize as _l2_normalize
from priming.progress import ProgressCallback, as_callback, track

log = logging.getLogger(__name__)

__all__ = [
    "Encoder",
    "choose_device",
    "resolve_precision",
    "l2_normalize",
    "hash_files",
    "make_fingerprint",
]

# Bump when a change in this package alters the embeddings an encoder produces, so
# content-addressed caches written by older versions are not served.
ENCODER_FORMAT_VERSION = 1

PRECISIONS = ("fp32", "fp16", "bf16")


def _import_torch():
    return require("torch", "clip")


def choose_device(device: str | None = None) -> str:
    """Return ``device`` validated, or the best available one: CUDA, then MPS, then CPU."""
    torch = _import_torch()
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    kind = str(device).split(":", 1)[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {device!r} is not valid; choose cpu, cuda[:N], mps or auto")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but CUDA is not available here")
    if kind == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ConfigError(f"device {device!r} was asked for but MPS is not available here")
    return str(device)


def resolve_precision(precision: str | None, device: str) -> str:
    """Validate ``precision`` (fp32, fp16, bf16; None means fp32) for ``device``."""
    if precision is None:
        return "fp32"
    p = str(precision).lower()
    aliases = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}
    p = aliases.get(p, p)
    if p not in PRECISIONS:
        raise ConfigError(
            f"precision {precision!r} is not valid; choose one of {', '.join(PRECISIONS)}"
        )
    if p == "fp16" and device.startswith("cpu"):
        raise ConfigError("precision 'fp16' needs a GPU (cuda or mps); use 'bf16' or 'fp32' on CPU")
    return p


def torch_dtype(precision: str):
    torch = _import_torch()
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """:func:`priming.imprint.normalize.l2_normalize` (the one implementation) in
    float32, the encoders' output dtype; all-zero rows stay zero (never NaN)."""
    return _l2_normalize(np.asarray(x, dtype=np.float32))


_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASH_MEMO[key] = h.hexdigest()
    return _HASH_MEMO[key]


def hash_files(root: str | os.PathLike, files: Iterable[str | os.PathLike] | None = None) -> str:
    """Content hash of a model directory (every regular file, by relative name) or one file."""
    root = Path(root)
    if root.is_file():
        return _file_sha256(root)
    paths = (
        sorted(Path(p) for p in files)
        if files is not None
        else sorted(
            p for p in root.rglob("*") if p.is_file() and ".cache" not in p.relative_to(root).parts
        )
    )
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p.relative_to(root) if p.is_absolute() else p).encode())
        h.update(b"\0")
        h.update(_file_sha256(p if p.is_absolute() else root / p).encode())
    return h.hexdigest()


def make_fingerprint(**parts: Any) -> str:
    """A stable hex digest of a JSON-serialisable description."""
    parts = {"format": ENCODER_FORMAT_VERSION, **parts}
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _load_and_prepare(prepare: Callable[[Any], Any], item: Any) -> Any:
    """Decode one image (a path, bytes or a PIL image) with the one decoder, then
    ``prepare`` it for the model (a top-level task for the executor)."""
    from priming.images import load_image

    return prepare(load_image(item))


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _check_batch_size(batch_size: int) -> int:
    if (
        not isinstance(batch_size, (int, np.integer))
        or isinstance(batch_size, bool)
        or batch_size < 1
    ):
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


class Encoder:
    """Base class of the foundation-model adapters.

    Attributes
    ----------
    name : str
        The name the encoder was created with (e.g. ``"hf:openai/clip-vit-base-patch32"``).
    dim : int
        Embedding dimension.
    modality : str
        ``"image-text"``, ``"image"`` or ``"text"``.
    fingerprint : str
        Stable hex digest of the adapter, weights identity, preprocessing and precision;
        it keys the embedding cache.
    device, precision : str
        Where and in which dtype the model runs.
    """

    name: str
    dim: int
    modality: str
    fingerprint: str
    device: str = "cpu"
    precision: str = "fp32"
    default_batch_size: int = 64

    @property
    def has_text(self) -> bool:
        return "text" in self.modality

    @property
    def has_image(self) -> bool:
        return "image" in self.modality

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, modality={self.modality!r}, "
            f"device={self.device!r}, precision={self.precision!r})"
        )

    # -- hooks for adapters ---------------------------------------------------------
    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _prepare_image(self, image) -> Any:  # PIL RGB image -> model input (one item)
        raise NotImplementedError  # pragma: no cover

    def _encode_image_batch(self, prepared: list[Any]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    # -- public API -------------------------------------------------------------------
    def encode_texts(
        self,
        texts: Sequence[str],
        batch_size: int | None = None,
        progress: ProgressCallback | bool | None = None,
    ) -> np.ndarray:
        """Embed ``texts``; returns an ``(n, dim)`` float32 array with unit-norm rows.

        ``progress``: a :data:`priming.progress.ProgressCallback` that receives the task
        ``"encode texts"`` in texts, per batch (a bool is accepted and reports nothing).
        """
        if not self.has_text:
            raise ConfigError(
                f"encoder {self.name!r} has no text tower (modality {self.modality!r}); "
                "it can only encode images"
            )
        if isinstance(texts, str):
            raise DataError("texts must be a sequence of strings, not a single string")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise DataError(f"texts[{i}] is {type(t).__name__}, expected str")
        bs = _check_batch_size(batch_size or self.default_batch_size)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with track(as_callback(progress), "encode texts", len(texts), "texts") as bar:
            for a, b in _chunks(len(texts), bs):
                out[a:b] = self._encode_text_batch(texts[a:b])
                bar.advance(b - a)
        return l2_normalize(out)

    def encode_images(
        self,
        images: Sequence[Any],
        batch_size: int | None = None,
        progress: ProgressCallback | bool | None = None,
        workers: int | None = None,
        executor: ExecutorSpec = None,
    ) -> np.ndarray:
        """Embed images (PIL images or file paths); ``(n, dim)`` float32, unit-norm rows.

        Paths are decoded with EXIF orientation, converted to RGB and checked against the
        decompression-bomb limit (:func:`priming.images.load_image`); a file that cannot be
        decoded raises :class:`DataError` naming it (use :func:`priming.data.embed` to
        skip and report bad files instead). Decoding runs ahead of the model on
        ``executor`` (:mod:`priming.exec`; default: ``workers`` local threads).
        ``progress`` receives the task ``"encode images"`` in images, per batch.
        """
        if not self.has_image:
            raise ConfigError(
                f"encoder {self.name!r} has no image tower (modality {self.modality!r}); "
                "it can only encode texts"
            )
        images = list(images)
        bs = _check_batch_size(batch_size or self.default_batch_size)
        prep = functools.partial(_load_and_prepare, self._prepare_image)
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        with track(as_callback(progress), "encode images", len(images), "images") as bar:
            for a, b, prepared in self.iter_prepared(images, prep, bs, workers, executor):
                out[a:b] = self._encode_image_batch(prepared)
                bar.advance(b - a)
        return l2_normalize(out)

    @staticmethod
    def iter_prepared(
        items: Sequence[Any],
        prep: Callable[[Any], Any],
        batch_size: int,
        workers: int | None,
        executor: ExecutorSpec = None,
    ) -> Iterator[tuple[int, int, list[Any]]]:
        """Yield ``(start, stop, [prep(item) ...])`` per batch, preparing ahead on the
        executor (default: ``workers`` local threads; ``prep`` and the items must be
        picklable for a process or distributed executor).

        Decoding and resizing release the GIL, so a thread pool overlaps them with the
        model's forward pass. At most two batches are prepared ahead.
        """
        n = len(items)
        if workers is None:
            workers = min(8, os.cpu_count() or 1)
        if executor is None and (workers <= 1 or n <= 1):
            for a, b in _chunks(n, batch_size):
                yield a, b, [prep(x) for x in items[a:b]]
            return
        with open_executor(executor, max_workers=max(1, workers), kind="thread") as ex:
            pending: list[tuple[int, int, list]] = []
            chunks = iter(_chunks(n, batch_size))
            for _ in range(2):
                nxt = next(chunks, None)
                if nxt is not None:
                    pending.append((*nxt, [ex.submit(prep, x) for x in items[nxt[0] : nxt[1]]]))
            while pending:
                a, b, futs = pending.pop(0)
                nxt = next(chunks, None)
                if nxt is not None:
                    pending.append((*nxt, [ex.submit(prep, x) for x in items[nxt[0] : nxt[1]]]))
                yield a, b, [f.result() for f in futs]

    # subclasses that need the torch inference context call this
    def _inference(self):
        torch = _import_torch()
        return torch.inference_mode()
