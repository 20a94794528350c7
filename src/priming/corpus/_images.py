"""Reading img2dataset output back and mapping each downloaded image to its corpus row.

img2dataset writes either webdataset shards (``NNNNN.tar`` holding ``key.jpg``,
``key.txt``, ``key.json``) or the ``files`` layout (folders ``NNNNN/`` holding the same
three files). Every sample's ``.json`` carries the ``url`` it came from and the extra
columns passed with ``--save_additional_columns`` — ``export_urls`` writes a ``row_id``
column for exactly this. Nothing here decodes an image: samples hand out raw bytes and
the caller decodes them (by default with :func:`priming.images.load_image`, which refuses
images over the pixel limit). Every sample's ``read`` is picklable.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from priming.errors import DataError

__all__ = ["ImageSample", "ImageMatch", "scan_img2dataset", "match_samples", "ROW_ID_FIELDS"]

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
#: json fields read as the corpus row id, in order of preference
ROW_ID_FIELDS = ("row_id", "priming_row")


@dataclass
class ImageSample:
    """One img2dataset sample: ``source`` names it (``00000.tar/000000012``)."""

    source: str
    meta: dict[str, Any]
    read: Callable[[], bytes] | None  # None: the sample has no image member


@dataclass
class ImageMatch:
    """Samples matched to corpus rows, and what could not be matched."""

    by_row: dict[int, ImageSample] = field(default_factory=dict)
    unmatched: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    duplicates: int = 0
    no_image: list[tuple[str, str]] = field(default_factory=list)


def read_range(path: str, offset: int, size: int) -> bytes:
    """``size`` bytes of file ``path`` from ``offset`` (one handle per read: thread-safe)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(size)


def _tar_reader(path: str, offset: int, size: int) -> Callable[[], bytes]:
    # a partial of a top-level function: picklable, so a read can run on any executor
    return functools.partial(read_range, path, offset, size)


def _file_reader(path: Path) -> Callable[[], bytes]:
    return path.read_bytes


def _parse_json(raw: bytes, source: str) -> dict[str, Any]:
    try:
        meta = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return {"_bad_json": f"{source}: unreadable json sidecar"}
    return meta if isinstance(meta, dict) else {"_bad_json": f"{source}: json is not an object"}


def _scan_tar(path: Path) -> list[ImageSample]:
    parts: dict[str, dict[str, tuple[int, int]]] = {}
    jsons: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                base = m.name.rsplit("/", 1)[-1]
                if base.startswith(".") or "." not in base:
                    continue
                stem, ext = base.split(".", 1)
                key = m.name[: len(m.name) - len(base)] + stem
                parts.setdefault(key, {})[ext.lower()] = (m.offset_data, m.size)
                if ext.lower() == "json" and m.size <= 1 << 20:
                    fh = tf.extractfile(m)
                    jsons[key] = fh.read() if fh is not None else b""
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"images: cannot read tar {str(path)!r}: {exc}") from None
    out = []
    for key, p in parts.items():
        source = f"{path.name}/{key}"
        meta = _parse_json(jsons[key], source) if key in jsons else {}
        ext = next((e for e in IMAGE_EXTENSIONS if e in p), None)
        read = None if ext is None else _tar_reader(str(path), *p[ext])
        out.append(ImageSample(source, meta, read))
    return out


def _scan_files(folder: Path, root: Path) -> list[ImageSample]:
    groups: dict[str, dict[str, Path]] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and "." in f.name and not f.name.startswith("."):
            stem, ext = f.name.split(".", 1)
            groups.setdefault(stem, {})[ext.lower()] = f
    out = []
    for stem, p in groups.items():
        if not any(e in p for e in IMAGE_EXTENSIONS + ("json",)):
            continue
        source = f"{folder.relative_to(root).as_posix() or '.'}/{stem}"
        meta = _parse_json(p["json"].read_bytes(), source) if "json" in p else {}
        ext = next((e for e in IMAGE_EXTENSIONS if e in p), None)
        out.append(ImageSample(source, meta, None if ext is None else _file_reader(p[ext])))
    return out


def _inputs(images: str | os.PathLike) -> tuple[Path, list[Path], list[Path]]:
    root = Path(images)
    if root.is_file() and root.suffix == ".tar":
        return root.parent, [root], []
    if not root.is_dir():
        raise DataError(
            f"images {str(root)!r}: not a folder of img2dataset output (webdataset .tar shards "
            "or the 'files' layout) nor a .tar file"
        )
    tars = sorted(root.glob("*.tar"))
    dirs = sorted(
        d
        for d in root.iterdir()
        if d.is_dir() and not d.name.startswith(".") and any(d.glob("*.json"))
    )
    if any(root.glob("*.json")) and not tars:  # a single 'files' folder given directly
        dirs.append(root)
    if not tars and not dirs:
        raise DataError(
            f"images {str(root)!r} holds no img2dataset output: expected NNNNN.tar webdataset "
            "shards or NNNNN/ folders of key.jpg + key.json"
        )
    return root, tars, dirs


def images_signature(images: str | os.PathLike) -> str:
    """A digest of the img2dataset output's files (names, sizes, modification times)."""
    root, tars, dirs = _inputs(images)
    h = hashlib.sha256()
    for p in tars + [f for d in dirs for f in sorted(d.iterdir()) if f.is_file()]:
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def scan_img2dataset(images: str | os.PathLike) -> list[ImageSample]:
    """Every sample of the img2dataset output ``images`` (a folder or one ``.tar``)."""
    root, tars, dirs = _inputs(images)
    out: list[ImageSample] = []
    for t in tars:
        out.extend(_scan_tar(t))
    for d in dirs:
        out.extend(_scan_files(d, root))
    return out


def _row_id(meta: dict[str, Any]) -> Any:
    for f in ROW_ID_FIELDS:
        if meta.get(f) is not None:
            return meta[f]
    return None


def match_samples(
    samples: list[ImageSample], n_rows: int, url_lookup: Callable[[set[str]], dict[str, int]]
) -> ImageMatch:
    """Map samples to corpus rows: by the exported ``row_id`` (or ``priming_row``) field
    of the json, else by ``url`` (``url_lookup(urls) -> {url: row_id}``; a url shared by
    several rows maps to the first). A row reached twice keeps its first sample."""
    res = ImageMatch()
    by_url: list[tuple[ImageSample, str]] = []
    found: list[tuple[ImageSample, int]] = []
    for s in samples:
        if "_bad_json" in s.meta:
            res.unmatched.append((s.source, s.meta["_bad_json"]))
            continue
        rid = _row_id(s.meta)
        if rid is not None:
            if isinstance(rid, int) and not isinstance(rid, bool):
                r = rid
            elif isinstance(rid, float) and rid.is_integer():
                r = int(rid)
            elif isinstance(rid, str) and rid.strip().isdigit():
                r = int(rid)
            else:
                res.unmatched.append((s.source, f"row id {rid!r} is not an integer"))
                continue
            if not 0 <= r < n_rows:
                res.unmatched.append(
                    (s.source, f"row id {r} is not in the corpus (0..{n_rows - 1})")
                )
                continue
            found.append((s, r))
        elif isinstance(s.meta.get("url"), str) and s.meta["url"]:
            by_url.append((s, s.meta["url"]))
        else:
            res.unmatched.append((s.source, "json has neither a row id nor a url"))
    if by_url:
        lookup = url_lookup({u for _, u in by_url})
        for s, u in by_url:
            if u in lookup:
                found.append((s, lookup[u]))
            else:
                res.unmatched.append((s.source, f"url {u!r} is not in the corpus"))
    for s, r in found:
        if r in res.by_row:
            res.duplicates += 1
            continue
        if s.read is None:
            res.no_image.append((s.source, "sample has no image file"))
            continue
        res.by_row[r] = s
    return res
