"""``hf:REPO_OR_DIR`` — Hugging Face ``transformers`` models.

CLIP-family dual encoders (CLIP, SigLIP, the LAION OpenCLIP checkpoints in transformers
format) give images and texts in one space through ``get_image_features`` /
``get_text_features``. Image-only backbones with a pooled output (DINOv2, ViT) give
image embeddings for imprinting without text.
"""

from __future__ import annotations

import logging
import os
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
from priming.encoders.hub import local_snapshot, quiet_loading
from priming.errors import ConfigError

log = logging.getLogger(__name__)

_FIXED_LENGTH_TEXT = ("siglip", "siglip2")  # trained with padding to max_length


def _features(out: Any):
    """transformers 5 returns output objects where 4.x returned tensors."""
    if hasattr(out, "pooler_output") and out.pooler_output is not None:
        return out.pooler_output
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state[:, 0]
    return out


class HFEncoder(Encoder):
    """A transformers model: CLIP-family (image + text) or an image backbone."""

    def __init__(self, spec: str, device: str | None = None, precision: str | None = None):
        transformers = require("transformers", "clip")
        from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

        if not spec:
            raise ConfigError("hf: needs a hub repository id or a local model directory")
        self.name = f"hf:{spec}"
        self.device = choose_device(device)
        self.precision = resolve_precision(precision, self.device)
        local = os.path.isdir(spec)
        try:
            with quiet_loading():
                config = AutoConfig.from_pretrained(spec)
                model = AutoModel.from_pretrained(spec)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot load transformers model {spec!r}: {exc}. Give a local directory "
                "(save_pretrained) or a hub id available offline"
            ) from None
        self.model_type = getattr(config, "model_type", "")
        self.has_text_tower = hasattr(model, "get_text_features") and hasattr(
            model, "get_image_features"
        )
        try:
            self.image_processor = AutoImageProcessor.from_pretrained(spec)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load the image processor of {spec!r}: {exc}") from None
        self.tokenizer = None
        if self.has_text_tower:
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(spec)
            except (OSError, ValueError, TypeError) as exc:
                log.warning("%s: no tokenizer (%s); text encoding disabled", spec, exc)
                self.has_text_tower = False
        self.modality = "image-text" if self.has_text_tower else "image"
        model.eval()
        model.to(self.device)
        self.dtype = torch_dtype(self.precision)
        if self.precision != "fp32":
            model.to(self.dtype)
        self.model = model
        self.dim = self._infer_dim(config, model)
        self.max_length = self._text_max_length(config)
        if local:
            weights: dict[str, Any] = {"files": hash_files(Path(spec))}
        else:
            snap = local_snapshot(spec)
            weights = {"repo": spec, "snapshot": snap.name if snap else None}
        self.fingerprint = make_fingerprint(
            adapter="hf",
            transformers=transformers.__version__.split(".")[0],
            model_type=self.model_type,
            weights=weights,
            image_processor=self.image_processor.to_dict(),
            max_length=self.max_length,
            precision=self.precision,
        )

    @staticmethod
    def _infer_dim(config, model) -> int:
        if hasattr(model, "get_image_features"):
            if getattr(config, "projection_dim", None):  # CLIP: projected features
                return int(config.projection_dim)
            vision = getattr(config, "vision_config", None)
            if vision is not None:  # SigLIP: pooled vision output, no projection
                return int(vision.hidden_size)
        return int(config.hidden_size)

    def _text_max_length(self, config) -> int | None:
        if not self.has_text_tower:
            return None
        text_cfg = getattr(config, "text_config", None)
        n = getattr(text_cfg, "max_position_embeddings", None)
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if tok_max is not None and tok_max < 10**6:
            n = min(n, tok_max) if n else tok_max
        return int(n) if n else None

    # -- images -----------------------------------------------------------------------
    def _prepare_image(self, image) -> np.ndarray:
        px = self.image_processor(images=image, return_tensors="np")["pixel_values"]
        return np.asarray(px[0], dtype=np.float32)

    def _encode_image_batch(self, prepared: list[np.ndarray]) -> np.ndarray:
        import torch

        pixels = torch.from_numpy(np.stack(prepared)).to(self.device, self.dtype)
        with self._inference():
            if self.has_text_tower:
                feats = _features(self.model.get_image_features(pixel_values=pixels))
            else:
                feats = _features(self.model(pixel_values=pixels))
        return feats.float().cpu().numpy()

    # -- texts ------------------------------------------------------------------------
    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        fixed = self.model_type in _FIXED_LENGTH_TEXT
        tok = self.tokenizer(
            texts,
            padding="max_length" if fixed else True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        tok = {k: v.to(self.device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}
        if fixed:
            tok.pop("attention_mask", None)
        with self._inference():
            feats = _features(self.model.get_text_features(**tok))
        return feats.float().cpu().numpy()
