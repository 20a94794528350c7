"""Zero-shot text heads: class names × prompt templates (+ descriptions) → ``T`` (C × D)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import sparse

from priming.errors import ConfigError, DataError, NotFittedError
from priming.heads._util import (
    check_matrix,
    l2_normalize,
    save_npz_atomic,
    softmax,
    to_jsonable_labels,
    write_json_atomic,
)
from priming.heads.templates import check_descriptions, get_templates, parse_class_names

log = logging.getLogger(__name__)

__all__ = ["build_text_weights", "ZeroShotHead"]


def _encode(encoder, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
    if not callable(getattr(encoder, "encode_texts", None)):
        raise ConfigError(
            f"encoder {getattr(encoder, 'name', encoder)!r} has no encode_texts(); "
            "a text head needs a model with a text tower"
        )
    E = np.asarray(encoder.encode_texts(texts, batch_size=batch_size, progress=progress))
    if E.ndim != 2 or E.shape[0] != len(texts):
        raise DataError(
            f"encoder {getattr(encoder, 'name', encoder)!r} returned shape {E.shape} "
            f"for {len(texts)} texts"
        )
    return E.astype(np.float32, copy=False)


def _mean_heads(groups: list[list[str]], E_of: dict[str, int], E: np.ndarray) -> np.ndarray:
    """normalise(mean_s normalise(E[s])) per group, as one sparse product."""
    rows, cols, vals = [], [], []
    for c, texts in enumerate(groups):
        for t in texts:
            rows.append(c)
            cols.append(E_of[t])
            vals.append(1.0 / len(texts))
    A = sparse.csr_matrix((vals, (rows, cols)), shape=(len(groups), E.shape[0]), dtype=np.float64)
    return l2_normalize(np.asarray(A @ l2_normalize(E).astype(np.float64)))


def build_text_weights(
    encoder,
    class_names: Sequence[str | Sequence[str]],
    templates: str | Path | Sequence[str] = "imagenet7",
    descriptions: Mapping[str, Sequence[str]] | str | Path | None = None,
    *,
    batch_size: int = 256,
    progress: bool = False,
) -> np.ndarray:
    """Zero-shot text weights ``T`` (C × D), METHODS §1.3.

    ``T_c = normalise(mean over prompts of normalise(g(prompt)))`` where the prompts are
    every template formatted with every synonym of class ``c``. With descriptions
    (CuPL format), ``T = (T_templates + T_descriptions) / 2`` as in the reference (not
    re-normalised); classes without descriptions keep ``T_templates``.

    Parameters
    ----------
    encoder : object
        Anything with ``encode_texts(texts, batch_size=, progress=)`` returning an
        ``(n, D)`` array (duck-typed; see ``priming.encoders``).
    class_names : sequence
        One entry per class: a name, a ``"name|synonym"`` string, or a list of synonyms.
    templates : str, Path or sequence of str
        A built-in set name (``"imagenet7"``, ``"imagenet80"``, ``"identity"``, ...), a
        template file, or the templates (each with one ``{}``).
    descriptions : mapping, path or None
        Class name (any synonym) → list of sentences, or a JSON file of that.
    """
    classes = parse_class_names(class_names)
    tmpl = get_templates(templates)
    prompt_groups = [[t.replace("{}", n) for n in names for t in tmpl] for names in classes]

    desc_groups: list[list[str]] = [[] for _ in classes]
    if descriptions is not None:
        if isinstance(descriptions, (str, Path)):
            from priming.heads.templates import load_descriptions

            desc = load_descriptions(descriptions)
        else:
            desc = check_descriptions(descriptions)
        index = {n.casefold(): i for i, names in enumerate(classes) for n in names}
        unknown = []
        for key, sents in desc.items():
            i = index.get(key.casefold())
            if i is None:
                unknown.append(key)
            else:
                desc_groups[i].extend(sents)
        if unknown:
            log.warning(
                "descriptions for %d unknown class(es) ignored: %s", len(unknown), unknown[:5]
            )
        missing = [classes[i][0] for i, g in enumerate(desc_groups) if not g]
        if missing:
            log.warning(
                "%d class(es) have no descriptions and keep their template weight: %s",
                len(missing),
                missing[:5],
            )

    texts = sorted({t for g in prompt_groups for t in g} | {t for g in desc_groups for t in g})
    E = _encode(encoder, texts, batch_size, progress)
    where = {t: i for i, t in enumerate(texts)}
    T = _mean_heads(prompt_groups, where, E)
    has_desc = np.array([bool(g) for g in desc_groups])
    if has_desc.any():
        Td = _mean_heads(
            [g if g else prompt_groups[i] for i, g in enumerate(desc_groups)], where, E
        )
        T = np.where(has_desc[:, None], (T + Td) / 2.0, T)
    return T.astype(np.float32)


class ZeroShotHead:
    """Classify by cosine similarity to fixed text weights: ``argmax_c normalise(x)·T_c``.

    Parameters
    ----------
    text_weights : array (C, D)
        One row per class (e.g. from :func:`build_text_weights`).
    classes : sequence or None
        Names of the rows; predictions come back as these (row indices when None).
    temperature : float
        ``predict_proba`` is ``softmax(scores / temperature)`` (0.01 = CLIP's logit scale 100).
    """

    def __init__(self, text_weights, classes=None, temperature: float = 0.01) -> None:
        self.text_weights = text_weights
        self.classes = classes
        self.temperature = temperature

    @classmethod
    def from_encoder(
        cls, encoder, class_names, templates="imagenet7", descriptions=None, **kwargs
    ) -> ZeroShotHead:
        """Build the text weights with ``encoder`` and return a fitted head named by the classes."""
        names = parse_class_names(class_names)
        T = build_text_weights(encoder, names, templates=templates, descriptions=descriptions)
        return cls(T, classes=[n[0] for n in names], **kwargs).fit()

    def get_params(self, deep: bool = True) -> dict:
        return {
            "text_weights": self.text_weights,
            "classes": self.classes,
            "temperature": self.temperature,
        }

    def set_params(self, **params) -> ZeroShotHead:
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def fit(self, X=None, y=None) -> ZeroShotHead:
        """Validate the weights; ``X`` and ``y`` are ignored (nothing is learned)."""
        T = check_matrix(self.text_weights, "text_weights")
        self.classes_ = _check_classes(self.classes, T.shape[0])
        self.weights_ = T.copy()
        self.proxy_labels_ = np.arange(T.shape[0])
        self.n_features_in_ = T.shape[1]
        if not float(self.temperature) > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature!r}")
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise NotFittedError("this ZeroShotHead is not fitted yet; call fit() first")

    def decision_function(self, X) -> np.ndarray:
        self._check_fitted()
        X = check_matrix(X, "X", self.n_features_in_, allow_empty=True)
        return l2_normalize(X) @ self.weights_.T

    def predict(self, X) -> np.ndarray:
        scores = self.decision_function(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def predict_proba(self, X) -> np.ndarray:
        return softmax(self.decision_function(X), self.temperature)

    def score(self, X, y) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def to_linear(self) -> tuple[np.ndarray, None]:
        """``(W, None)``: scores are ``normalise(x) @ W.T``."""
        self._check_fitted()
        return self.weights_.copy(), None

    def save(self, path: str | Path) -> Path:
        """Write ``head.json`` + ``arrays.npz`` into the folder ``path``."""
        self._check_fitted()
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        save_npz_atomic(p / "arrays.npz", text_weights=self.weights_)
        write_json_atomic(
            p / "head.json",
            {
                "kind": "zero-shot",
                "format_version": 1,
                "classes": None if self.classes is None else to_jsonable_labels(self.classes_),
                "temperature": float(self.temperature),
            },
        )
        return p

    @classmethod
    def load(cls, path: str | Path) -> ZeroShotHead:
        from priming.heads._io import head_meta_error

        meta, arrays = _read_head(path, "zero-shot")
        try:
            return cls(arrays["text_weights"], meta["classes"], meta["temperature"]).fit()
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise DataError(f"{str(path)!r}: {exc}") from None
            raise head_meta_error(path, exc) from None


def _check_classes(classes, n_rows: int) -> np.ndarray:
    if classes is None:
        return np.arange(n_rows)
    arr = np.asarray(list(classes))
    if arr.ndim != 1 or len(arr) != n_rows:
        raise ConfigError(
            f"classes has {len(arr)} names but text_weights has {n_rows} rows; give one name per row"
        )
    if len(set(arr.tolist())) != len(arr):
        seen, dup = set(), []
        for c in arr.tolist():
            if c in seen:
                dup.append(c)
            seen.add(c)
        raise DataError(f"duplicate class names: {dup[:5]}")
    return arr


def _read_head(path: str | Path, kind: str) -> tuple[dict, dict]:
    from priming.heads._io import read_head_arrays, read_head_meta

    meta = read_head_meta(path, kind)
    return meta, read_head_arrays(path, ("text_weights",))
