"""Read benchmark datasets from local paths in their usual layouts. Nothing is downloaded.

A loader returns a :class:`LoadedSplit`: a list of *items* (strings) with integer labels in
the benchmark's own label space. An item is one of

* a file path (``/data/food-101/images/pizza/1.jpg``),
* ``TAR::MEMBER`` — an image inside a webdataset tar (CLIP_benchmark layout),
* ``IDXFILE::N`` — image ``N`` of an MNIST-style idx file.

:func:`open_image` turns any item into a ``PIL.Image``. Layouts:

``imagefolder``
    ``root/<class>/<image>`` or ``root/<split>/<class>/<image>``; class folders are matched to
    the benchmark's folder names (ImageNet: WordNet ids; ImageNet-V2: ``0..999``) or to its
    class names after normalisation (case, spaces, ``_``, ``-`` ignored). Without a benchmark,
    the sorted folder names are the classes.
``wds``
    CLIP_benchmark webdataset folder: ``root/<split>/*.tar`` with ``KEY.{jpg,png,webp}`` +
    ``KEY.cls`` members, and ``root/classnames.txt``.
``torchvision``
    The folders torchvision's dataset classes create: Food-101 (``food-101/meta``), DTD
    (``dtd/labels``), FGVC-Aircraft (``fgvc-aircraft-2013b/data``), Oxford-IIIT Pet
    (``oxford-iiit-pet/annotations``), Flowers-102 (``flowers-102/imagelabels.mat``),
    Stanford Cars (``stanford_cars/devkit``), SUN397 (``SUN397/ClassName.txt``), EuroSAT
    (``eurosat/2750``), Caltech-101 (``caltech101/101_ObjectCategories``), ImageNet
    (``train``/``val`` WordNet-id folders), MNIST / Fashion-MNIST (``raw`` idx files).
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import struct
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from priming._optional import require
from priming.data.benchmarks import Benchmark, get_benchmark, normalize_name
from priming.errors import ConfigError, DataError

__all__ = ["LoadedSplit", "load_split", "open_image", "LAYOUTS"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm")


@dataclass
class LoadedSplit:
    """Items of one split with labels in the benchmark's own label space."""

    items: list[str]
    labels: np.ndarray
    classnames: list[str]
    split: str
    layout: str

    def __len__(self) -> int:
        return len(self.items)


# --------------------------------------------------------------------------- helpers


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _class_index(bench: Benchmark | None) -> dict[str, int] | None:
    return None if bench is None else bench.folder_to_index()


def _lookup(index: dict[str, int], folder: str, where: str) -> int:
    if folder in index:
        return index[folder]
    key = normalize_name(folder)
    if key in index:
        return index[key]
    raise DataError(f"{where}: class folder {folder!r} does not match any class of the benchmark")


def _finish(items: list[str], labels: list[int], classnames: list[str], split: str, layout: str):
    if not items:
        raise DataError(f"no images found for split {split!r} ({layout} layout)")
    return LoadedSplit(items, np.asarray(labels, dtype=np.int64), list(classnames), split, layout)


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"expected file {path} is missing")
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


# --------------------------------------------------------------------------- imagefolder


def _load_imagefolder(root: Path, split: str, bench: Benchmark | None) -> LoadedSplit:
    base = root / split if (root / split).is_dir() else root
    if split == "val" and not (root / "val").is_dir() and (root / "test").is_dir():
        base = root / "test"
    dirs = sorted(d for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    dirs = [d for d in dirs if d.name != "BACKGROUND_Google"]
    if not dirs:
        raise DataError(f"{base}: no class folders (expected root/<class>/<image>)")
    index = _class_index(bench)
    classnames = list(bench.classnames) if bench else [d.name for d in dirs]
    items: list[str] = []
    labels: list[int] = []
    for i, d in enumerate(dirs):
        label = i if index is None else _lookup(index, d.name, str(base))
        for f in sorted(d.rglob("*")):
            if f.is_file() and _is_image(f):
                items.append(str(f))
                labels.append(label)
    return _finish(items, labels, classnames, split, "imagefolder")


# --------------------------------------------------------------------------- webdataset


def _load_wds(root: Path, split: str, bench: Benchmark | None) -> LoadedSplit:
    shard_dir = root / split
    tars = sorted(shard_dir.glob("*.tar")) if shard_dir.is_dir() else []
    if not tars:
        raise DataError(f"{shard_dir}: no .tar shards (CLIP_benchmark webdataset layout)")
    folder_names = (
        _read_lines(root / "classnames.txt") if (root / "classnames.txt").is_file() else None
    )
    if bench is not None:
        classnames = list(bench.classnames)
        if folder_names is not None and len(folder_names) != bench.n_classes:
            raise DataError(
                f"{root / 'classnames.txt'} lists {len(folder_names)} classes but benchmark "
                f"{bench.name!r} has {bench.n_classes}"
            )
    elif folder_names is not None:
        classnames = folder_names
    else:
        raise DataError(f"{root}: classnames.txt is missing; pass a benchmark name")
    items: list[str] = []
    labels: list[int] = []
    for tar_path in tars:
        with tarfile.open(tar_path) as tf:
            members = {m.name: m for m in tf.getmembers() if m.isfile()}
            for name in sorted(members):
                stem, ext = os.path.splitext(name)
                if ext.lower() not in IMAGE_EXTENSIONS:
                    continue
                cls = members.get(stem + ".cls")
                if cls is None:
                    raise DataError(f"{tar_path}: image {name!r} has no {stem}.cls label")
                f = tf.extractfile(cls)
                raw = f.read().decode().strip() if f else ""
                if not re.fullmatch(r"\d+", raw) or int(raw) >= len(classnames):
                    raise DataError(f"{tar_path}: {stem}.cls holds an invalid label {raw!r}")
                items.append(f"{tar_path}::{name}")
                labels.append(int(raw))
    return _finish(items, labels, classnames, split, "wds")


# --------------------------------------------------------------------------- torchvision


def _tv_food101(root: Path, split: str, bench: Benchmark) -> tuple[list[str], list[int]]:
    base = root / "food-101" if (root / "food-101").is_dir() else root
    index = bench.folder_to_index()
    items, labels = [], []
    for ln in _read_lines(base / "meta" / f"{'train' if split == 'train' else 'test'}.txt"):
        cls = ln.split("/")[0]
        items.append(str(base / "images" / f"{ln}.jpg"))
        labels.append(_lookup(index, cls, "food101 meta"))
    return items, labels


def _tv_dtd(root: Path, split: str, bench: Benchmark, partition: int = 1):
    base = root / "dtd" / "dtd" if (root / "dtd" / "dtd").is_dir() else root / "dtd"
    base = base if base.is_dir() else root
    index = bench.folder_to_index()
    items, labels = [], []
    for ln in _read_lines(base / "labels" / f"{split}{partition}.txt"):
        items.append(str(base / "images" / ln))
        labels.append(_lookup(index, ln.split("/")[0], "dtd labels"))
    return items, labels


def _tv_aircraft(root: Path, split: str, bench: Benchmark):
    base = root / "fgvc-aircraft-2013b" if (root / "fgvc-aircraft-2013b").is_dir() else root
    index = bench.folder_to_index()
    items, labels = [], []
    for ln in _read_lines(base / "data" / f"images_variant_{split}.txt"):
        img, variant = ln.split(" ", 1)
        items.append(str(base / "data" / "images" / f"{img}.jpg"))
        labels.append(_lookup(index, variant, "aircraft variants"))
    return items, labels


def _tv_pets(root: Path, split: str, bench: Benchmark):
    base = root / "oxford-iiit-pet" if (root / "oxford-iiit-pet").is_dir() else root
    name = "trainval" if split in ("train", "trainval") else "test"
    items, labels = [], []
    for ln in _read_lines(base / "annotations" / f"{name}.txt"):
        if ln.startswith("#"):
            continue
        img, class_id = ln.split()[:2]
        items.append(str(base / "images" / f"{img}.jpg"))
        labels.append(int(class_id) - 1)
    return items, labels


def _loadmat(path: Path) -> dict[str, Any]:
    from scipy.io import loadmat

    if not path.is_file():
        raise DataError(f"expected file {path} is missing")
    return loadmat(str(path), squeeze_me=True)


def _tv_flowers(root: Path, split: str, bench: Benchmark):
    base = root / "flowers-102" if (root / "flowers-102").is_dir() else root
    labels_all = np.atleast_1d(_loadmat(base / "imagelabels.mat")["labels"]).astype(int)
    setid = _loadmat(base / "setid.mat")
    key = {"train": "trnid", "val": "valid", "test": "tstid"}.get(split)
    if key is None:
        raise ConfigError(f"flowers102 split must be train, val or test, got {split!r}")
    ids = np.atleast_1d(setid[key]).astype(int)
    items = [str(base / "jpg" / f"image_{i:05d}.jpg") for i in ids]
    return items, [int(labels_all[i - 1]) - 1 for i in ids]


def _tv_cars(root: Path, split: str, bench: Benchmark):
    base = root / "stanford_cars" if (root / "stanford_cars").is_dir() else root
    if split == "train":
        annos = _loadmat(base / "devkit" / "cars_train_annos.mat")["annotations"]
        img_dir = base / "cars_train"
    else:
        annos = _loadmat(base / "cars_test_annos_withlabels.mat")["annotations"]
        img_dir = base / "cars_test"
    annos = np.atleast_1d(annos)
    items = [str(img_dir / str(a["fname"])) for a in annos]
    return items, [int(a["class"]) - 1 for a in annos]


def _tv_sun397(root: Path, split: str, bench: Benchmark):
    base = root / "SUN397" if (root / "SUN397").is_dir() else root
    index = bench.folder_to_index()
    items, labels = [], []
    for cname in _read_lines(base / "ClassName.txt"):
        # "/a/apartment_building/outdoor" -> "apartment building outdoor"
        readable = " ".join(cname.strip("/").split("/")[1:]).replace("_", " ")
        label = _lookup(index, readable, "SUN397 ClassName.txt")
        for f in sorted((base / cname.strip("/")).glob("*")):
            if f.is_file() and _is_image(f):
                items.append(str(f))
                labels.append(label)
    return items, labels


def _tv_folder(sub: str) -> Callable[[Path, str, Benchmark], tuple[list[str], list[int]]]:
    def load(root: Path, split: str, bench: Benchmark):
        base = root / sub if (root / sub).is_dir() else root
        s = _load_imagefolder(base, split, bench)
        return s.items, s.labels.tolist()

    return load


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte idx file")
    ndim = data[3]
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise DataError(f"{path}: idx payload does not match its header shape {shape}")
    return arr.reshape(shape)


def _find_idx(raw: Path, stem: str) -> Path:
    for cand in (raw / stem, raw / f"{stem}.gz"):
        if cand.is_file():
            return cand
    raise DataError(f"{raw}: neither {stem} nor {stem}.gz exists")


def _tv_mnist(folder: str) -> Callable[[Path, str, Benchmark], tuple[list[str], list[int]]]:
    def load(root: Path, split: str, bench: Benchmark):
        raw = root / folder / "raw" if (root / folder / "raw").is_dir() else root / "raw"
        raw = raw if raw.is_dir() else root
        prefix = "train" if split == "train" else "t10k"
        img_path = _find_idx(raw, f"{prefix}-images-idx3-ubyte")
        labels = _read_idx(_find_idx(raw, f"{prefix}-labels-idx1-ubyte")).astype(int)
        n = _read_idx(img_path).shape[0]
        if n != len(labels):
            raise DataError(f"{raw}: {n} images but {len(labels)} labels")
        return [f"{img_path}::{i}" for i in range(n)], labels.tolist()

    return load


_TORCHVISION: dict[str, Callable[..., tuple[list[str], list[int]]]] = {
    "food101": _tv_food101,
    "dtd": _tv_dtd,
    "aircraft": _tv_aircraft,
    "pets": _tv_pets,
    "flowers102": _tv_flowers,
    "cars": _tv_cars,
    "sun397": _tv_sun397,
    "eurosat": _tv_folder("eurosat/2750"),
    "caltech101": _tv_folder("caltech101/101_ObjectCategories"),
    "imagenet1k": _tv_folder("."),
    "mnist": _tv_mnist("MNIST"),
    "fashionmnist": _tv_mnist("FashionMNIST"),
}


def _load_torchvision(root: Path, split: str, bench: Benchmark | None) -> LoadedSplit:
    if bench is None or bench.name not in _TORCHVISION:
        valid = ", ".join(sorted(_TORCHVISION))
        raise ConfigError(f"the torchvision layout needs one of these benchmarks: {valid}")
    items, labels = _TORCHVISION[bench.name](root, split, bench)
    bad = [v for v in labels if not 0 <= v < bench.n_classes]
    if bad:
        raise DataError(f"{root}: label {bad[0]} is outside 0..{bench.n_classes - 1}")
    return _finish(items, labels, list(bench.classnames), split, "torchvision")


LAYOUTS: dict[str, Callable[[Path, str, Benchmark | None], LoadedSplit]] = {
    "imagefolder": _load_imagefolder,
    "wds": _load_wds,
    "torchvision": _load_torchvision,
}


def _detect_layout(root: Path, split: str) -> str:
    if (root / split).is_dir() and any((root / split).glob("*.tar")):
        return "wds"
    return "imagefolder"


def load_split(
    root: str | os.PathLike[str],
    benchmark: str | Benchmark | None = None,
    split: str = "test",
    layout: str | None = None,
) -> LoadedSplit:
    """Read one split of a dataset from ``root``.

    Parameters
    ----------
    root : path
        The dataset folder.
    benchmark : str, Benchmark or None
        Registry name (``"food101"``) giving the label space; ``None`` for a plain image folder
        or a webdataset folder with its own ``classnames.txt``.
    split : str
        ``"train"``, ``"val"``, ``"test"`` (``"trainval"`` for Pets).
    layout : str or None
        ``"imagefolder"``, ``"wds"`` or ``"torchvision"``; ``None`` detects ``wds`` (tar shards
        under ``root/split``) or falls back to ``imagefolder``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root {root} is not a directory")
    bench = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    layout = layout or _detect_layout(root, split)
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; valid choices: {', '.join(sorted(LAYOUTS))}")
    out = LAYOUTS[layout](root, split, bench)
    log.info("loaded %d items of %s/%s (%s)", len(out), root, split, layout)
    return out


def open_image(item: str, max_pixels: int | None = None) -> Any:
    """Open a loader item (path, ``TAR::MEMBER`` or ``IDXFILE::N``) as an RGB ``PIL.Image``.

    Decoded by the library's one image decoder (``load_image``: EXIF orientation, alpha on
    white, the decompression-bomb pixel limit — ``max_pixels``, default Pillow's); an
    unreadable, corrupt or oversize image is a DataError naming the item."""
    from priming.images import DEFAULT_MAX_PIXELS, load_image

    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    if "::" in item:
        container, member = item.rsplit("::", 1)
        if container.endswith(".tar"):
            try:
                with tarfile.open(container) as tf:
                    f = tf.extractfile(member)
                    if f is None:
                        raise DataError(f"{container} has no file {member!r}")
                    data = f.read()
            except (tarfile.TarError, KeyError, OSError) as exc:
                raise DataError(f"{item}: cannot read from the tar file ({exc})") from None
            return load_image(data, max_pixels=limit, name=item)
        Image = require("PIL.Image", "clip", package="pillow")
        arr = _read_idx(Path(container))[int(member)]
        return load_image(Image.fromarray(arr), max_pixels=limit, name=item)
    return load_image(item, max_pixels=limit, name=item)
