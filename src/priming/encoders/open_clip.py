"""``open_clip:ARCH/PRETRAINED`` and ``open_clip:ARCH@/path/to/checkpoint``.

Models are built through the real ``open_clip`` API. For an architecture open_clip
does not know, put its config next to the checkpoint as ``ARCH.json`` (the format of
open_clip's ``model_configs``); it is registered with ``open_clip.add_model_config``.
A directory instead of a checkpoint file is loaded with open_clip's ``local-dir:``
schema (``open_clip_config.json`` + weights, the layout of open_clip hub repos).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from priming._optional import require
from priming.encoders.base import (
    Encoder,
    choose_device,
    hash_files,
    make_fingerprint,
    resolve_precision,
    torch_dtype,
)
from priming.errors import ConfigError

log = logging.getLogger(__name__)


def _import_open_clip():
    return require("open_clip", "clip", package="open_clip_torch")


def _state_dict_digest(model) -> str:
    import torch

    h = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        h.update(key.encode())
        t = tensor.detach().cpu().contiguous()
        h.update(str(t.dtype).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class OpenClipEncoder(Encoder):
    """An open_clip CLIP model: images and texts in one embedding space."""

    modality = "image-text"

    def __init__(self, spec: str, device: str | None = None, precision: str | None = None):
        open_clip = _import_open_clip()
        if not spec:
            raise ConfigError("open_clip: needs ARCH/PRETRAINED or ARCH@/path/to/checkpoint")
        device = choose_device(device)
        precision = resolve_precision(precision, device)
        model_name, pretrained, weights = self._parse(open_clip, spec)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=pretrained, device="cpu"
            )
            tokenizer = open_clip.get_tokenizer(model_name)
        except RuntimeError as exc:
            raise ConfigError(f"cannot load open_clip model {spec!r}: {exc}") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load open_clip model {spec!r}: {exc}") from None
        self._setup(f"open_clip:{spec}", model, preprocess, tokenizer, device, precision, weights)

    @classmethod
    def from_model(
        cls,
        model,
        preprocess,
        tokenizer,
        name: str = "open_clip:<in-memory>",
        device: str | None = None,
        precision: str | None = None,
    ) -> OpenClipEncoder:
        """Wrap an open_clip model already in memory (weights identified by their hash)."""
        self = cls.__new__(cls)
        device = choose_device(device)
        precision = resolve_precision(precision, device)
        self._setup(
            name,
            model,
            preprocess,
            tokenizer,
            device,
            precision,
            {"state_dict": _state_dict_digest(model)},
        )
        return self

    @staticmethod
    def _parse(open_clip, spec: str) -> tuple[str, str | None, dict[str, Any]]:
        if spec.startswith(("hf-hub:", "local-dir:")):
            return spec, None, {"schema": spec}
        if "@" in spec:
            arch, _, path_s = spec.partition("@")
            path = Path(path_s).expanduser()
            if not path.exists():
                raise ConfigError(f"open_clip checkpoint {path_s!r} does not exist")
            if path.is_dir():
                return f"local-dir:{path}", None, {"files": hash_files(path)}
            if arch not in open_clip.list_models():
                cfg = path.parent / f"{arch}.json"
                if not cfg.is_file():
                    raise ConfigError(
                        f"open_clip does not know architecture {arch!r} and there is no "
                        f"{cfg.name} next to the checkpoint; known architectures include "
                        f"{', '.join(sorted(open_clip.list_models())[:12])}, ..."
                    )
                open_clip.add_model_config(cfg)
            cfg_digest = (
                hash_files(path.parent / f"{arch}.json")
                if (path.parent / f"{arch}.json").is_file()
                else None
            )
            return arch, str(path), {"checkpoint": hash_files(path), "config": cfg_digest}
        arch, sep, tag = spec.partition("/")
        if arch not in open_clip.list_models():
            raise ConfigError(
                f"unknown open_clip architecture {arch!r}; e.g. "
                f"{', '.join(sorted(open_clip.list_models())[:12])}, ... "
                "(open_clip.list_models() has them all)"
            )
        if not sep or not tag:
            tags = open_clip.list_pretrained_tags_by_model(arch)
            raise ConfigError(
                f"open_clip:{spec} names no weights; use open_clip:{arch}/TAG with TAG one of "
                f"{', '.join(tags) or '(none published)'}, or open_clip:{arch}@/path/to/checkpoint"
            )
        return arch, tag, {"arch": arch, "pretrained": tag}

    def _setup(self, name, model, preprocess, tokenizer, device, precision, weights) -> None:
        self.name = name
        self.device = device
        self.precision = precision
        self.dtype = torch_dtype(precision)
        model.eval()
        model.to(device=device, dtype=self.dtype)
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.has_text_tower = hasattr(model, "encode_text")
        self.modality = "image-text" if self.has_text_tower else "image"
        self.dim = self._infer_dim(model)
        self.fingerprint = make_fingerprint(
            adapter="open_clip",
            weights=weights,
            preprocess=repr(preprocess),
            context_length=getattr(tokenizer, "context_length", None),
            precision=precision,
        )

    def _infer_dim(self, model) -> int:
        import torch

        proj = getattr(getattr(model, "visual", None), "output_dim", None)
        if proj:
            return int(proj)
        with torch.inference_mode():  # pragma: no cover - fallback for exotic towers
            size = getattr(model.visual, "image_size", 224)
            size = size if isinstance(size, (tuple, list)) else (size, size)
            x = torch.zeros(1, 3, *size, device=self.device, dtype=self.dtype)
            return int(model.encode_image(x).shape[-1])

    def _prepare_image(self, image):
        return self.preprocess(image)

    def _encode_image_batch(self, prepared: list) -> np.ndarray:
        import torch

        pixels = torch.stack(prepared).to(self.device, self.dtype)
        with self._inference():
            feats = self.model.encode_image(pixels)
        return feats.float().cpu().numpy()

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(texts).to(self.device)
        with self._inference():
            feats = self.model.encode_text(tokens)
        return feats.float().cpu().numpy()
