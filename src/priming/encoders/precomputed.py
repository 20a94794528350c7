"""``precomputed`` — embeddings supplied as files instead of computed by a model."""

from __future__ import annotations

from priming.encoders.base import Encoder, make_fingerprint
from priming.errors import ConfigError


class PrecomputedEncoder(Encoder):
    """Placeholder encoder for data that already are embeddings (``.npy``/``.npz``).

    It cannot encode anything; :func:`priming.data.embed` reads the embedding files
    directly. ``dim`` is 0 until known (``precomputed:DIM`` fixes it for checks).
    """

    modality = "embeddings"

    def __init__(self, spec: str = ""):
        self.name = "precomputed" + (f":{spec}" if spec else "")
        try:
            self.dim = int(spec) if spec else 0
        except ValueError:
            raise ConfigError(
                f"precomputed encoder takes an optional dimension, 'precomputed:512'; got {spec!r}"
            ) from None
        self.fingerprint = make_fingerprint(adapter="precomputed", dim=self.dim)

    def encode_texts(self, texts, batch_size=None, progress=None):
        raise ConfigError(
            "the 'precomputed' encoder cannot encode texts; create a real text encoder "
            "(e.g. 'sentence-transformers:all-MiniLM-L6-v2' or an open_clip/hf CLIP model)"
        )

    def encode_images(self, images, batch_size=None, progress=None, workers=None, executor=None):
        raise ConfigError(
            "the 'precomputed' encoder cannot encode images; give embedding files "
            "(.npy/.npz + labels) as data, or create an image encoder"
        )
