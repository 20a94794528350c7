"""A numpy-only encoder for cache tests: no torch import, deterministic, optionally slow."""

from __future__ import annotations

import time

import numpy as np

from priming.images import load_image


class PixelEncoder:
    """Embeds an image as its 4x4 thumbnail (48 numbers), L2-normalised."""

    name = "test:pixels"
    modality = "image"
    dim = 48

    def __init__(self, delay: float = 0.0, tag: str = "v1"):
        self.delay = delay
        self.fingerprint = f"pixel-encoder-{tag}"
        self.n_encoded = 0

    def encode_images(self, images, batch_size=None, progress=False):
        if self.delay:
            time.sleep(self.delay)
        rows = []
        for im in images:
            im = load_image(im)
            rows.append(np.asarray(im.resize((4, 4)), dtype=np.float32).ravel() + 1.0)
        self.n_encoded += len(rows)
        X = np.stack(rows)
        return X / np.linalg.norm(X, axis=1, keepdims=True)
