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


def _l2(X):
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


class FakeImprint:
    """Stand-in for ImprintedHead: l2 / {mean | all} / l2 / l2 / max."""

    def __init__(self, generator: str = "mean", aggregation: str = "max", norm_inf: str = "l2"):
        self.generator = generator
        self.aggregation = aggregation
        self.norm_inf = norm_inf

    def get_params(self, deep=True):
        return {
            "generator": self.generator,
            "aggregation": self.aggregation,
            "norm_inf": self.norm_inf,
        }

    def set_params(self, **p):
        for k, v in p.items():
            setattr(self, k, v)
        return self

    def fit(self, X, y):
        Xn = _l2(X)
        self.classes_ = np.unique(y)
        codes = np.searchsorted(self.classes_, y)
        if self.generator == "mean":
            W = np.stack([Xn[codes == i].sum(0) for i in range(len(self.classes_))])
            self.weights_ = _l2(W)
            self.proxy_labels_ = np.arange(len(self.classes_))
        else:
            self.weights_ = Xn
            self.proxy_labels_ = codes
        self.n_features_in_ = X.shape[1]
        return self

    def decision_function(self, X):
        Xn = _l2(X)
        S = Xn @ self.weights_.T
        out = np.full((len(X), len(self.classes_)), -np.inf, dtype=np.float32)
        for p, c in enumerate(self.proxy_labels_):
            out[:, c] = np.maximum(out[:, c], S[:, p])
        return out

    def save(self, path):
        np.savez(
            str(path) + ".npz",
            classes=self.classes_,
            weights=self.weights_,
            proxy_labels=self.proxy_labels_,
        )

    @classmethod
    def load(cls, path):
        z = np.load(str(path) + ".npz")
        est = cls()
        est.classes_, est.weights_, est.proxy_labels_ = (
            z["classes"],
            z["weights"],
            z["proxy_labels"],
        )
        est.generator = (
            "mean" if len(np.unique(est.proxy_labels_)) == len(est.proxy_labels_) else "all"
        )
        return est
