"""Readers for target datasets: image folders, CSV/JSONL manifests, webdataset tars.

A :class:`Dataset` is a list of items (``ids``, optional ``labels``) that can be decoded
one at a time (``load(i)``: an RGB image, or ``text(i)``) and fingerprinted without
decoding anything (paths, sizes and modification times, or content hashes).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from priming.errors import ConfigError, DataError
from priming.images import DEFAULT_MAX_PIXELS, load_image

log = logging.getLogger(__name__)

__all__ = [
    "Dataset",
    "ImageFolderDataset",
    "ManifestDataset",
    "WebDataset",
    "EmbeddingFileDataset",
    "open_dataset",
    "file_identity",
    "IMAGE_EXTENSIONS",
]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".jfif"}
)
EMBEDDING_EXTENSIONS = (".npy", ".npz")
PATH_COLUMNS = ("path", "image", "file", "filepath", "filename", "image_path")
LABEL_COLUMNS = ("label", "class", "category", "y")
TEXT_COLUMNS = ("text", "caption", "sentence")


class Dataset:
    """Items to embed. Subclasses fill ``ids``, ``labels`` and ``kind``.

    Attributes
    ----------
    source : str
        What was opened (a path or a pattern).
    kind : str
        ``"image"``, ``"text"`` or ``"embeddings"``.
    ids : list of str
        One stable identifier per item (relative path, tar/key, ...).
    labels : list of str or None
        Class label per item, or None for unlabelled data.
    """

    source: str
    kind: str = "image"
    ids: list[str]
    labels: list[str] | None
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    fingerprint_mode: str = "stat"

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        lab = f", {len(set(self.labels))} labels" if self.labels is not None else ""
        return f"{type(self).__name__}({self.source!r}, {len(self)} {self.kind} items{lab})"

    def load(self, i: int):
        """Decode item ``i`` to an RGB PIL image; raises :class:`DataError` if it cannot."""
        raise NotImplementedError  # pragma: no cover

    def text(self, i: int) -> str:
        raise ConfigError(f"{self.source}: {self.kind} data has no texts")

    def precheck(self, i: int) -> str | None:
        """A reason to skip item ``i`` without decoding it, or None."""
        return None

    def _fingerprint_parts(self) -> list[Any]:  # pragma: no cover
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Hex digest of what the items are: identities, labels and file identities."""
        h = hashlib.sha256()
        head = {"type": type(self).__name__, "kind": self.kind, "mode": self.fingerprint_mode}
        h.update(json.dumps(head, sort_keys=True).encode())
        for part in self._fingerprint_parts():
            h.update(json.dumps(part, default=str, separators=(",", ":")).encode())
            h.update(b"\n")
        h.update(json.dumps(self.labels).encode())
        return h.hexdigest()


def file_identity(path: Path, mode: str) -> list[Any]:
    """How a file enters a fingerprint: ``[size, mtime_ns]`` (``mode="stat"``) or
    ``[size, sha256]`` (``mode="content"``); ``[None]`` when it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return [None]
    if mode == "content":
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return [st.st_size, h.hexdigest()]
    return [st.st_size, st.st_mtime_ns]


class _FileListDataset(Dataset):
    """Items that are image files on disk."""

    paths: list[Path]

    def load(self, i: int):
        return load_image(self.paths[i], max_pixels=self.max_pixels, name=self.ids[i])

    def precheck(self, i: int) -> str | None:
        if self.kind != "image":  # text manifests have no paths
            return None
        ext = self.paths[i].suffix.lower()
        if ext not in IMAGE_EXTENSIONS:
            return f"not an image file (extension {ext or 'none'!r})"
        return None

    def _fingerprint_parts(self) -> list[Any]:
        return [[i, file_identity(p, self.fingerprint_mode)] for i, p in zip(self.ids, self.paths)]


class ImageFolderDataset(_FileListDataset):
    """``root/<class>/<file>`` (labels from folder names), or a flat folder (unlabelled)."""

    def __init__(
        self,
        root: str | os.PathLike,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        fingerprint_mode: str = "stat",
    ):
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"image folder {str(root)!r} is not a directory")
        self.source = str(root)
        self.max_pixels = max_pixels
        self.fingerprint_mode = fingerprint_mode
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        files: list[tuple[Path, str | None]] = []
        if class_dirs:
            loose = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
            if loose:
                log.warning("%s: ignoring %d files outside the class folders", root, len(loose))
            for d in class_dirs:
                for p in sorted(d.rglob("*")):
                    rel = p.relative_to(root)
                    if p.is_file() and not any(part.startswith(".") for part in rel.parts):
                        files.append((p, d.name))
            self.labels = [lab for _, lab in files]  # type: ignore[misc]
        else:
            files = [
                (p, None)
                for p in sorted(root.iterdir())
                if p.is_file() and not p.name.startswith(".")
            ]
            self.labels = None
        if not files:
            raise DataError(f"image folder {str(root)!r} contains no files")
        self.paths = [p for p, _ in files]
        self.ids = [p.relative_to(root).as_posix() for p in self.paths]


def _pick(columns: Sequence[str], choices: Sequence[str]) -> str | None:
    lower = {c.lower().strip(): c for c in columns}
    for c in choices:
        if c in lower:
            return lower[c]
    return None


class ManifestDataset(_FileListDataset):
    """A CSV (with header) or JSONL file listing ``path,label`` (or ``text,label``).

    Relative paths are resolved against the manifest's folder. Accepted column names:
    path/image/file/filepath/filename/image_path, label/class/category/y,
    text/caption/sentence (a text dataset), and an optional id.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        fingerprint_mode: str = "stat",
    ):
        path = Path(path)
        if not path.is_file():
            raise DataError(f"manifest {str(path)!r} does not exist")
        self.source = str(path)
        self.max_pixels = max_pixels
        self.fingerprint_mode = fingerprint_mode
        rows = self._read_rows(path)
        if not rows:
            raise DataError(f"manifest {str(path)!r} lists no items")
        columns = list(rows[0].keys())
        pcol, lcol, tcol = (
            _pick(columns, PATH_COLUMNS),
            _pick(columns, LABEL_COLUMNS),
            _pick(columns, TEXT_COLUMNS),
        )
        icol = _pick(columns, ("id", "key"))
        if pcol is None and tcol is None:
            raise DataError(
                f"manifest {str(path)!r} has columns {columns}; it needs a path column "
                f"({'/'.join(PATH_COLUMNS)}) or a text column ({'/'.join(TEXT_COLUMNS)})"
            )
        base = path.parent
        self.kind = "image" if pcol is not None else "text"
        self.labels = (
            None if lcol is None else ["" if r.get(lcol) is None else str(r[lcol]) for r in rows]
        )
        if self.kind == "image":
            self.paths = []
            for n, r in enumerate(rows, start=2 if path.suffix.lower() == ".csv" else 1):
                v = r.get(pcol)
                if v in (None, ""):
                    raise DataError(f"manifest {str(path)!r} line {n}: empty {pcol!r}")
                p = Path(str(v)).expanduser()
                self.paths.append(p if p.is_absolute() else base / p)
            self.ids = [str(r[icol]) if icol else str(r[pcol]) for r in rows]
            self.texts: list[str] = []
        else:
            self.paths = []
            self.texts = []
            for n, r in enumerate(rows, start=2 if path.suffix.lower() == ".csv" else 1):
                v = r.get(tcol)
                if v is None or not str(v).strip():
                    where = f"line {n}" if path.suffix.lower() == ".csv" else f"item {n}"
                    raise DataError(
                        f"manifest {str(path)!r} {where}: empty {tcol!r} (nothing to embed)"
                    )
                self.texts.append(str(v))
            self.ids = [str(r[icol]) if icol else str(i) for i, r in enumerate(rows)]
        if len(set(self.ids)) != len(self.ids):
            raise DataError(f"manifest {str(path)!r} lists some items twice (duplicate ids)")

    @staticmethod
    def _read_rows(path: Path) -> list[dict[str, Any]]:
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            rows = []
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(
                            f"manifest {str(path)!r} line {n}: invalid JSON ({exc})"
                        ) from None
                    if not isinstance(row, dict):
                        raise DataError(f"manifest {str(path)!r} line {n}: expected an object")
                    rows.append(row)
            return rows
        with open(path, encoding="utf-8", newline="") as f:
            sample = f.read(4096)
            f.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",\t;")
            except csv.Error:
                dialect = csv.excel
            return list(csv.DictReader(f, dialect=dialect))

    def text(self, i: int) -> str:
        if self.kind != "text":
            return super().text(i)
        return self.texts[i]

    def _fingerprint_parts(self) -> list[Any]:
        parts: list[Any] = [["manifest", file_identity(Path(self.source), "content")]]
        if self.kind == "text":
            return parts + [self.ids, self.texts]
        return parts + super()._fingerprint_parts()


def _expand_braces(pattern: str) -> list[str]:
    m = re.search(r"\{(\d+)\.\.(\d+)\}", pattern)
    if not m:
        return [pattern]
    a, b = m.group(1), m.group(2)
    width = len(a)
    out = []
    for k in range(int(a), int(b) + 1):
        out += _expand_braces(pattern[: m.start()] + str(k).zfill(width) + pattern[m.end() :])
    return out


@dataclass(frozen=True)
class _TarMember:
    tar: int
    offset: int
    size: int


class WebDataset(Dataset):
    """Webdataset tar shards as written by img2dataset (``key.jpg``, ``key.txt``, ``key.json``).

    ``source`` is a ``.tar`` file, a folder of ``.tar`` files, or a brace pattern such as
    ``shards/{00000..00009}.tar``. Labels come from a ``key.cls`` member or a ``"label"``
    field of ``key.json`` when every sample has one; captions (``key.txt``) are kept in
    ``captions``.
    """

    def __init__(
        self,
        source: str | os.PathLike,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        fingerprint_mode: str = "stat",
    ):
        src = os.fspath(source)
        self.source = src
        self.max_pixels = max_pixels
        self.fingerprint_mode = fingerprint_mode
        if os.path.isdir(src):
            tars = sorted(str(p) for p in Path(src).glob("*.tar"))
        else:
            tars = _expand_braces(src)
        missing = [t for t in tars if not os.path.isfile(t)]
        if not tars or missing:
            raise DataError(f"webdataset {src!r}: no such tar file(s): {missing[:3] or [src]}")
        self.tars = tars
        self.ids, self.members, self.captions = [], [], []
        self.missing: dict[int, str] = {}
        labels: list[str | None] = []
        for t_i, tar_path in enumerate(tars):
            try:
                samples = self._scan(tar_path)
            except (tarfile.TarError, OSError) as exc:
                raise DataError(f"webdataset {tar_path!r}: cannot read tar ({exc})") from None
            for key, parts in samples.items():
                img_ext = next((e for e in parts if "." + e in IMAGE_EXTENSIONS), None)
                idx = len(self.ids)
                self.ids.append(f"{Path(tar_path).name}/{key}")
                if img_ext is None:
                    self.missing[idx] = f"sample has no image member (has {sorted(parts)})"
                    self.members.append(None)
                else:
                    self.members.append(_TarMember(t_i, *parts[img_ext]))
                self.captions.append(self._small_text(tar_path, parts.get("txt")))
                labels.append(self._label(tar_path, parts))
        if not self.ids:
            raise DataError(f"webdataset {src!r} contains no samples")
        self.labels = labels if all(x is not None for x in labels) else None  # type: ignore[assignment]

    @staticmethod
    def _scan(tar_path: str) -> dict[str, dict[str, tuple[int, int]]]:
        samples: dict[str, dict[str, tuple[int, int]]] = {}
        with tarfile.open(tar_path, "r:") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                name = m.name
                base = name.rsplit("/", 1)[-1]
                if base.startswith(".") or "." not in base:
                    continue
                prefix = name[: len(name) - len(base)]
                stem, ext = base.split(".", 1)
                samples.setdefault(prefix + stem, {})[ext.lower()] = (m.offset_data, m.size)
        return samples

    @staticmethod
    def _read(tar_path: str, where: tuple[int, int]) -> bytes:
        with open(tar_path, "rb") as f:  # one handle per read: safe across threads
            f.seek(where[0])
            return f.read(where[1])

    def _small_text(self, tar_path: str, where) -> str | None:
        if where is None or where[1] > 1 << 16:
            return None
        return self._read(tar_path, where).decode("utf-8", "replace")

    def _label(self, tar_path: str, parts: dict[str, tuple[int, int]]) -> str | None:
        for ext in ("cls", "label"):
            if ext in parts:
                return self._read(tar_path, parts[ext]).decode("utf-8", "replace").strip()
        if "json" in parts and parts["json"][1] < 1 << 20:
            try:
                meta = json.loads(self._read(tar_path, parts["json"]))
            except (json.JSONDecodeError, UnicodeDecodeError):
                return None
            if isinstance(meta, dict) and meta.get("label") is not None:
                return str(meta["label"])
        return None

    def precheck(self, i: int) -> str | None:
        return self.missing.get(i)

    def load(self, i: int):
        m = self.members[i]
        if m is None:
            raise DataError(f"{self.ids[i]}: {self.missing[i]}")
        data = self._read(self.tars[m.tar], (m.offset, m.size))
        return load_image(data, max_pixels=self.max_pixels, name=self.ids[i])

    def _fingerprint_parts(self) -> list[Any]:
        return [[t, file_identity(Path(t), self.fingerprint_mode)] for t in self.tars] + [self.ids]


class EmbeddingFileDataset(Dataset):
    """Precomputed embeddings (``.npy``/``.npz`` + labels); see :func:`load_embeddings`."""

    kind = "embeddings"

    def __init__(self, path: str | os.PathLike, labels: str | os.PathLike | None = None):
        from priming.data.embeddings import load_embeddings

        self.source = os.fspath(path)
        self.data = load_embeddings(path, labels=labels)
        self.ids = list(self.data.ids)
        self.labels = None if self.data.labels is None else list(self.data.labels)

    def load(self, i: int):
        raise ConfigError(f"{self.source}: embedding files hold no images")

    def _fingerprint_parts(self) -> list[Any]:
        return [[self.source, file_identity(Path(self.source), "content")]]


def open_dataset(
    path_or_spec: str | os.PathLike | Dataset,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    fingerprint: str = "stat",
    labels: str | os.PathLike | None = None,
) -> Dataset:
    """Open a dataset, choosing the reader from what ``path_or_spec`` is.

    - a folder of ``.tar`` files, a ``.tar`` file or a ``{00000..00009}.tar`` pattern:
      webdataset shards;
    - a folder: an image folder (``root/<class>/<file>``, or flat and unlabelled);
    - ``.csv`` / ``.tsv`` / ``.jsonl``: a manifest;
    - ``.npy`` / ``.npz``: embeddings (``labels`` may name a labels file).

    ``fingerprint`` is ``"stat"`` (paths, sizes, modification times; fast) or
    ``"content"`` (hash every file's bytes) and decides when the cache recomputes.
    """
    if isinstance(path_or_spec, Dataset):
        return path_or_spec
    if fingerprint not in ("stat", "content"):
        raise ConfigError(f"fingerprint must be 'stat' or 'content', got {fingerprint!r}")
    spec = os.fspath(path_or_spec)
    low = spec.lower()
    if low.endswith(EMBEDDING_EXTENSIONS):
        return EmbeddingFileDataset(spec, labels=labels)
    if low.endswith(".tar") or re.search(r"\{\d+\.\.\d+\}", spec):
        return WebDataset(spec, max_pixels=max_pixels, fingerprint_mode=fingerprint)
    if os.path.isdir(spec):
        if any(Path(spec).glob("*.tar")):
            return WebDataset(spec, max_pixels=max_pixels, fingerprint_mode=fingerprint)
        return ImageFolderDataset(spec, max_pixels=max_pixels, fingerprint_mode=fingerprint)
    if low.endswith((".csv", ".tsv", ".jsonl", ".ndjson")):
        return ManifestDataset(spec, max_pixels=max_pixels, fingerprint_mode=fingerprint)
    if not os.path.exists(spec):
        raise DataError(f"dataset {spec!r} does not exist")
    raise DataError(
        f"cannot tell what dataset {spec!r} is; give an image folder, a .csv/.jsonl manifest, "
        "webdataset .tar shards or .npy/.npz embeddings"
    )
