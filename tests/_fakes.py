"""Small deterministic stand-ins for the encoder and corpus used by priming tests."""

from __future__ import annotations

import hashlib

import numpy as np


def text_vector(text: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


class FakeEncoder:
    """encode_texts maps each string to a fixed pseudo-random unit vector."""

    def __init__(self, dim: int = 16, name: str = "fake:enc") -> None:
        self.dim = dim
        self.name = name
        self.modality = "text"
        self.fingerprint = hashlib.sha256(f"{name}/{dim}".encode()).hexdigest()
        self.calls: list[list[str]] = []

    def encode_texts(self, texts, batch_size=64, progress=False):
        texts = list(texts)
        self.calls.append(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([text_vector(t, self.dim) for t in texts])
