"""Benchmark registry: class names, label spaces and template-set names of the standard datasets.

Each :class:`Benchmark` knows its class names (in label-index order), the folder names its
usual on-disk layouts use, the name of its prompt-template set (resolved by
``priming.heads.templates``; this module stores names only) and, for the 200-class ImageNet
variants, which ImageNet-1k classes form its own label space.

Sources of the packaged class names (``priming/data/benchmark_data/*.json``):

* ImageNet-1k names: ``open_clip_torch`` ``zero_shot_metadata.IMAGENET_CLASSNAMES`` (MIT licence,
  Copyright (c) 2012-2021 Gabriel Ilharco, Mitchell Wortsman, Nicholas Carlini, Rohan Taori,
  Achal Dave, Vaishaal Shankar, John Miller, Hongseok Namkoong, Hannaneh Hajishirzi, Ali Farhadi,
  Ludwig Schmidt). WordNet ids and the ImageNet-R / ImageNet-A 200-class index lists: ``timm``
  (Apache-2.0). Flowers-102 names: ``torchvision`` (BSD-3-Clause). The others are the datasets'
  public label names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from priming.errors import DataError
from priming.registry import Registry

__all__ = ["Benchmark", "BENCHMARKS", "get_benchmark", "list_benchmarks", "normalize_name"]


@dataclass(frozen=True)
class Benchmark:
    """One evaluation benchmark.

    Attributes
    ----------
    name : str
        Registry name (``"imagenet-r"``).
    title : str
        Human-readable name.
    classnames : tuple of str
        Class names in label-index order (the benchmark's own label space).
    templates : str
        Name of the prompt-template set in ``priming.heads.templates``.
    reference_templates : str or None
        Template set the Neural Priming reference used, when it differs (``imagenet7``).
    folders : tuple of str or None
        Per-class folder names of the usual layouts (ImageNet: WordNet ids), same order.
    parent : str or None
        Benchmark whose label space this one is a subset of (``imagenet1k``).
    parent_indices : tuple of int or None
        Index in ``parent``'s label space of each class.
    splits : tuple of str
        Splits the dataset ships (``("test",)`` for test-only variants).
    layouts : tuple of str
        Loader layouts known to work (see :mod:`priming.data.loaders`).
    source : str
        Where the class names come from (licence attribution).
    """

    name: str
    title: str
    classnames: tuple[str, ...]
    templates: str
    reference_templates: str | None = None
    folders: tuple[str, ...] | None = None
    parent: str | None = None
    parent_indices: tuple[int, ...] | None = None
    splits: tuple[str, ...] = ("train", "test")
    layouts: tuple[str, ...] = ("imagefolder", "wds")
    source: str = ""

    @property
    def n_classes(self) -> int:
        return len(self.classnames)

    def folder_to_index(self) -> dict[str, int]:
        """Map every accepted folder spelling (folder name, class name, normalised) to an index."""
        out: dict[str, int] = {}
        for i, name in enumerate(self.classnames):
            out.setdefault(normalize_name(name), i)
        if self.folders is not None:
            for i, f in enumerate(self.folders):
                out[f] = i
                out[normalize_name(f)] = i
        return out


def normalize_name(name: str) -> str:
    """Lower-case and strip everything but letters and digits (``"Sea_Lake"`` -> ``"sealake"``)."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


@cache
def _load_json(name: str) -> dict[str, Any]:
    res = resources.files("priming.data").joinpath("benchmark_data", name)
    text = res.read_text(encoding="utf-8")
    return json.loads(text)


BENCHMARKS: Registry[Any] = Registry("benchmark")

_TITLES = {
    "cars": ("Stanford Cars", "cars", ("imagefolder", "wds", "torchvision")),
    "aircraft": ("FGVC Aircraft", "aircraft", ("imagefolder", "wds", "torchvision")),
    "flowers102": ("Oxford Flowers-102", "flowers102", ("imagefolder", "wds", "torchvision")),
    "food101": ("Food-101", "food101", ("imagefolder", "wds", "torchvision")),
    "pets": ("Oxford-IIIT Pets", "pets", ("imagefolder", "wds", "torchvision")),
    "sun397": ("SUN397", "sun397", ("imagefolder", "wds", "torchvision")),
    "dtd": ("Describable Textures (DTD)", "dtd", ("imagefolder", "wds", "torchvision")),
    "eurosat": ("EuroSAT", "eurosat", ("imagefolder", "wds", "torchvision")),
    "caltech101": ("Caltech-101", "caltech101", ("imagefolder", "wds", "torchvision")),
    "cifar10": ("CIFAR-10", "cifar", ("imagefolder", "wds")),
    "cifar100": ("CIFAR-100", "cifar", ("imagefolder", "wds")),
    # vision-only tasks of the IMPRINT benchmark: the class name itself is the prompt
    "mnist": ("MNIST", "identity", ("imagefolder", "wds", "torchvision")),
    "fashionmnist": ("Fashion-MNIST", "identity", ("imagefolder", "wds", "torchvision")),
}


def _make(name: str) -> Benchmark:
    if name.startswith("imagenet"):
        data = _load_json("imagenet.json")
        names, wnids = data["classnames"], data["wnids"]
        common = {"templates": "imagenet80", "reference_templates": "imagenet7"}
        if name == "imagenet1k":
            return Benchmark(
                name,
                "ImageNet-1k",
                tuple(names),
                folders=tuple(wnids),
                layouts=("imagefolder", "wds", "torchvision"),
                source=data["source"],
                **common,
            )
        if name == "imagenet-v2":
            # ImageNetV2 folders are the class indices 0..999
            return Benchmark(
                name,
                "ImageNet-V2 (matched frequency)",
                tuple(names),
                folders=tuple(str(i) for i in range(1000)),
                parent="imagenet1k",
                parent_indices=tuple(range(1000)),
                splits=("test",),
                source=data["source"],
                **common,
            )
        if name == "imagenet-sketch":
            return Benchmark(
                name,
                "ImageNet-Sketch",
                tuple(names),
                folders=tuple(wnids),
                parent="imagenet1k",
                parent_indices=tuple(range(1000)),
                splits=("test",),
                source=data["source"],
                **common,
            )
        key = {"imagenet-r": "imagenet-r", "imagenet-a": "imagenet-a"}[name]
        idx = data["subsets"][key]
        title = "ImageNet-R (200 classes)" if key == "imagenet-r" else "ImageNet-A (200 classes)"
        return Benchmark(
            name,
            title,
            tuple(names[i] for i in idx),
            folders=tuple(wnids[i] for i in idx),
            parent="imagenet1k",
            parent_indices=tuple(idx),
            splits=("test",),
            source=data["source"],
            **common,
        )
    entry = _load_json("classnames.json")[name]
    title, templates, layouts = _TITLES[name]
    folders = entry.get("folders")
    return Benchmark(
        name,
        title,
        tuple(entry["classnames"]),
        templates,
        folders=tuple(folders) if folders is not None else None,
        layouts=layouts,
        source=entry["source"],
    )


for _name in ("imagenet1k", "imagenet-v2", "imagenet-sketch", "imagenet-r", "imagenet-a", *_TITLES):
    BENCHMARKS.register(_name, _name)


@cache
def get_benchmark(name: str) -> Benchmark:
    """The :class:`Benchmark` called ``name``; an unknown name lists the valid ones."""
    return _make(BENCHMARKS.get(name))


def list_benchmarks() -> list[str]:
    """Names of every registered benchmark."""
    return BENCHMARKS.names()


def to_parent_labels(benchmark: Benchmark, labels: Any) -> Any:
    """Map label indices of a subset benchmark (``imagenet-r``) to its parent's label space."""
    import numpy as np

    if benchmark.parent_indices is None:
        raise DataError(f"benchmark {benchmark.name!r} has no parent label space")
    lab = np.asarray(labels, dtype=np.int64)
    if lab.size and (lab.min() < 0 or lab.max() >= benchmark.n_classes):
        raise DataError(f"labels must lie in 0..{benchmark.n_classes - 1} for {benchmark.name!r}")
    return np.asarray(benchmark.parent_indices, dtype=np.int64)[lab]
