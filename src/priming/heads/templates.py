"""Prompt-template sets and description files.

The class-name helpers (``clean_name``, ``parse_class_names``, ``load_class_names``) are
re-exported from :mod:`priming.classnames`, the one implementation.

Built-in template sets (``{}`` is the class-name placeholder):

``imagenet80``
    The 80 CLIP prompt templates for ImageNet (Radford et al. 2021).
``imagenet7``
    The 7-template ImageNet subset selected in the CLIP prompt-engineering notebook,
    which Neural Priming uses for ImageNet.
``flowers102``, ``cars``, ``aircraft``, ``food101``, ``pets``, ``sun397``, ``dtd``,
``eurosat``, ``caltech101``, ``cifar``
    Per-dataset templates of the CLIP evaluation suite (the Neural Priming benchmarks
    use these for their zero-shot heads).
``identity``
    Just the class name (``"{}"``): the right choice for text-only embedding models.

Attribution: the ImageNet template strings are data taken from ``open_clip``'s
``zero_shot_metadata`` module (MIT licence, Copyright (c) 2012-2021 Gabriel Ilharco et
al.), which in turn reproduces OpenAI's CLIP prompt lists (MIT licence). The
per-dataset sets follow OpenAI CLIP's published ``data/prompts.md`` (MIT licence).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from priming.classnames import clean_name, load_class_names, parse_class_names
from priming.errors import DataError
from priming.registry import Registry

log = logging.getLogger(__name__)

__all__ = [
    "TEMPLATE_SETS",
    "get_templates",
    "load_templates",
    "load_descriptions",
    "load_class_names",
    "parse_class_names",
    "clean_name",
]

_IMAGENET80 = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

_IMAGENET7 = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

_PER_DATASET: dict[str, tuple[str, ...]] = {
    "flowers102": ("a photo of a {}, a type of flower.",),
    "food101": ("a photo of {}, a type of food.",),
    "pets": ("a photo of a {}, a type of pet.",),
    "aircraft": (
        "a photo of a {}, a type of aircraft.",
        "a photo of the {}, a type of aircraft.",
    ),
    "cars": (
        "a photo of a {}.",
        "a photo of the {}.",
        "a photo of my {}.",
        "i love my {}!",
        "a photo of my dirty {}.",
        "a photo of my clean {}.",
        "a photo of my new {}.",
        "a photo of my old {}.",
    ),
    "sun397": ("a photo of a {}.", "a photo of the {}."),
    "dtd": (
        "a photo of a {} texture.",
        "a photo of a {} pattern.",
        "a photo of a {} thing.",
        "a photo of a {} object.",
        "a photo of the {} texture.",
        "a photo of the {} pattern.",
        "a photo of the {} thing.",
        "a photo of the {} object.",
    ),
    "eurosat": (
        "a centered satellite photo of {}.",
        "a centered satellite photo of a {}.",
        "a centered satellite photo of the {}.",
    ),
    "caltech101": (
        "a photo of a {}.",
        "a painting of a {}.",
        "a plastic {}.",
        "a sculpture of a {}.",
        "a sketch of a {}.",
        "a tattoo of a {}.",
        "a toy {}.",
        "a rendition of a {}.",
        "a embroidered {}.",
        "a cartoon {}.",
        "a {} in a video game.",
        "a plushie {}.",
        "a origami {}.",
        "art of a {}.",
        "graffiti of a {}.",
        "a drawing of a {}.",
        "a doodle of a {}.",
        "a photo of the {}.",
    ),
    "cifar": (
        "a photo of a {}.",
        "a blurry photo of a {}.",
        "a black and white photo of a {}.",
        "a low contrast photo of a {}.",
        "a high contrast photo of a {}.",
        "a bad photo of a {}.",
        "a good photo of a {}.",
        "a photo of a small {}.",
        "a photo of a big {}.",
        "a photo of the {}.",
        "a blurry photo of the {}.",
        "a black and white photo of the {}.",
        "a low contrast photo of the {}.",
        "a high contrast photo of the {}.",
        "a bad photo of the {}.",
        "a good photo of the {}.",
        "a photo of the small {}.",
        "a photo of the big {}.",
    ),
}

TEMPLATE_SETS: Registry[tuple[str, ...]] = Registry("template set")
TEMPLATE_SETS.register("imagenet80", _IMAGENET80)
TEMPLATE_SETS.register("imagenet7", _IMAGENET7)
TEMPLATE_SETS.register("identity", ("{}",))
for _name, _tmpl in _PER_DATASET.items():
    TEMPLATE_SETS.register(_name, _tmpl)


def _check_templates(templates: Sequence[str], source: str) -> tuple[str, ...]:
    out = []
    for i, t in enumerate(templates):
        if not isinstance(t, str):
            raise DataError(f"{source}: template {i + 1} is not a string: {t!r}")
        if t.count("{}") != 1:
            raise DataError(
                f"{source}: template {i + 1} {t!r} must contain the placeholder '{{}}' exactly once"
            )
        out.append(t)
    if not out:
        raise DataError(f"{source}: no templates")
    return tuple(out)


def get_templates(spec: str | Path | Sequence[str]) -> tuple[str, ...]:
    """Resolve a template specification.

    Parameters
    ----------
    spec : str, Path or sequence of str
        A built-in set name (see :data:`TEMPLATE_SETS`), the path of a template file,
        or the templates themselves.
    """
    if isinstance(spec, Path):
        return load_templates(spec)
    if isinstance(spec, str):
        if spec in TEMPLATE_SETS:
            return TEMPLATE_SETS.get(spec)
        if "{}" not in spec and (
            Path(spec).is_file() or "/" in spec or spec.endswith((".txt", ".json"))
        ):
            return load_templates(spec)
        if "{}" in spec:
            return _check_templates([spec], "templates")
        TEMPLATE_SETS.get(spec)  # raises, listing the valid names
    return _check_templates(list(spec), "templates")


def load_templates(path: str | Path) -> tuple[str, ...]:
    """Read a template file: one template per line with a ``{}`` placeholder
    (blank lines and ``#`` comments skipped), or a JSON list of strings."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"template file {str(p)!r} does not exist")
    text = p.read_text(encoding="utf-8-sig")
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"template file {str(p)!r} is not valid JSON: {exc}") from None
        if not isinstance(data, list):
            raise DataError(f"template file {str(p)!r} must hold a JSON list of strings")
        return _check_templates(data, f"template file {str(p)!r}")
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    return _check_templates(lines, f"template file {str(p)!r}")


def load_descriptions(path: str | Path) -> dict[str, list[str]]:
    """Read a CuPL-style description file: a JSON object class name -> list of sentences."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"description file {str(p)!r} does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"description file {str(p)!r} is not valid JSON: {exc}") from None
    return check_descriptions(data, f"description file {str(p)!r}")


def check_descriptions(data: object, source: str = "descriptions") -> dict[str, list[str]]:
    """Validate a mapping class name -> sentences (a single string is one sentence)."""
    if not isinstance(data, Mapping):
        raise DataError(f"{source} must be a JSON object mapping class name -> list of sentences")
    out: dict[str, list[str]] = {}
    for k, v in data.items():
        sents = [v] if isinstance(v, str) else v
        if not isinstance(sents, list) or not all(isinstance(s, str) for s in sents):
            raise DataError(f"{source}: entry {k!r} must be a list of sentences")
        sents = [s.strip() for s in sents if s.strip()]
        if sents:
            out[clean_name(k)] = sents
    return out
