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


class FakeHits:
    """Like priming.corpus.CaptionHits: ``table`` (every column) and ``select``."""

    def __init__(self, table, ambiguous, counts):
        self.table, self.ambiguous, self.counts = table, ambiguous, counts

    def select(self, columns=()):
        keep = ["row_id", "label", "name", *columns]
        return self.table.select([c for c in keep if c in self.table.column_names])


class FakeCorpus:
    """In-memory corpus with the priming.corpus interface (phrase / all-tokens search)."""

    def __init__(
        self,
        captions,
        embeddings,
        urls=None,
        nsfw=None,
        similarity=None,
        embedding_model="fake:enc",
    ):
        n = len(captions)
        self.captions = list(captions)
        self.E = np.asarray(embeddings, np.float32)
        self.urls = list(urls) if urls is not None else [f"http://x/{i}.jpg" for i in range(n)]
        self.nsfw = list(nsfw) if nsfw is not None else [False] * n
        self.sim = list(similarity) if similarity is not None else [0.3] * n
        self.n_rows = n
        self.dim = self.E.shape[1]
        self.has_embeddings = True
        self.embedding_model = embedding_model
        self.fingerprint = "fakecorpus"
        self.queries = []

    @staticmethod
    def _tokens(s):
        import re

        return re.findall(r"\w+", s.casefold())

    def _match(self, caption, name, mode):
        ct, nt = self._tokens(caption), self._tokens(name)
        if not nt:
            return False
        if mode in ("all-tokens", "all_tokens"):
            return set(nt) <= set(ct)
        return any(ct[i : i + len(nt)] == nt for i in range(len(ct) - len(nt) + 1))

    def search_captions(self, queries, limit_per_label=None, mode="phrase"):
        import pyarrow as pa

        self.queries.append((dict(queries), mode))
        matches = {}
        for i, cap in enumerate(self.captions):
            labs = [
                lab
                for lab, names in queries.items()
                if any(self._match(cap, n, mode) for n in names)
            ]
            if labs:
                matches[i] = labs
        rows = [(i, labs[0]) for i, labs in matches.items() if len(labs) == 1]
        amb = [(i, labs) for i, labs in matches.items() if len(labs) > 1]
        if limit_per_label is not None:
            seen, kept = {}, []
            for i, lab in rows:
                if seen.get(lab, 0) < limit_per_label:
                    kept.append((i, lab))
                    seen[lab] = seen.get(lab, 0) + 1
            rows = kept
        table = pa.table(
            {
                "row_id": pa.array([i for i, _ in rows], pa.int64()),
                "label": pa.array([lab for _, lab in rows], pa.string()),
                "name": pa.array([lab for _, lab in rows], pa.string()),
                "caption": pa.array([self.captions[i] for i, _ in rows], pa.string()),
                "url": pa.array([self.urls[i] for i, _ in rows], pa.string()),
                "nsfw": pa.array([bool(self.nsfw[i]) for i, _ in rows], pa.bool_()),
                "similarity": pa.array([self.sim[i] for i, _ in rows], pa.float32()),
            }
        )
        ambiguous = pa.table(
            {
                "row_id": pa.array([i for i, _ in amb], pa.int64()),
                "labels": pa.array([labs for _, labs in amb]),
            }
        )
        counts = {lab: sum(1 for _, l2 in rows if l2 == lab) for lab in queries}
        return FakeHits(table, ambiguous, counts)

    def embeddings(self, row_ids):
        return self.E[np.asarray(row_ids, dtype=np.int64)]

    def knn(self, queries, k):
        S = np.asarray(queries, np.float32) @ self.E.T
        idx = np.argsort(-S, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(S, idx, 1).astype(np.float32), idx.astype(np.int64)

    def rows(self, row_ids):
        import pyarrow as pa

        ids = [int(r) for r in row_ids]
        return pa.table(
            {
                "row_id": pa.array(ids, pa.int64()),
                "caption": pa.array([self.captions[i] for i in ids]),
                "url": pa.array([self.urls[i] for i in ids]),
                "nsfw": pa.array([bool(self.nsfw[i]) for i in ids]),
                "similarity": pa.array([self.sim[i] for i in ids], pa.float32()),
            }
        )


class BagOfWordsEncoder(FakeEncoder):
    """Texts sharing words get similar embeddings: normalised sum of per-token vectors."""

    def __init__(self, dim: int = 32, name: str = "fake:bow") -> None:
        super().__init__(dim=dim, name=name)

    def encode_texts(self, texts, batch_size=64, progress=False):
        import re

        texts = list(texts)
        self.calls.append(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for tok in re.findall(r"\w+", t.casefold()):
                out[i] += text_vector(tok, self.dim)
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(n, 1e-12)


def write_text_corpus(tmp_path, captions, encoder, name="corpus"):
    """Build a real priming corpus of ``captions`` and fill its embeddings with ``encoder``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from priming.corpus import build_corpus, fill_embeddings

    src = tmp_path / f"{name}-src"
    src.mkdir()
    pq.write_table(
        pa.table(
            {
                "url": [f"http://example.org/{i}" for i in range(len(captions))],
                "caption": list(captions),
                "NSFW": ["UNLIKELY"] * len(captions),
                "similarity": [0.3] * len(captions),
            }
        ),
        src / "part-0.parquet",
    )
    out = build_corpus(src / "part-0.parquet", out=tmp_path / name, workers=1)
    fill_embeddings(out, encoder)
    return out
