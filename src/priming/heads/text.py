"""Zero-shot text heads: class names × prompt templates (+ descriptions) → ``T`` (C × D)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import sparse

from priming.classnames import name_key
from priming.errors import ConfigError, DataError, NotFittedError
from priming.heads._util import check_classes, check_matrix, check_temperature
from priming.heads.base import BaseHead, register_head
from priming.heads.templates import check_descriptions, get_templates, parse_class_names
from priming.imprint.normalize import l2_normalize
from priming.progress import ProgressCallback, as_callback

log = logging.getLogger(__name__)

__all__ = ["build_text_weights", "ZeroShotHead"]


def _encode(
    encoder, texts: list[str], batch_size: int, progress: ProgressCallback | None
) -> np.ndarray:
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
    return l2_normalize(np.asarray(A @ l2_normalize(E).astype(np.float64), dtype=np.float32))


def build_text_weights(
    encoder,
    class_names: Sequence[str | Sequence[str]],
    templates: str | Path | Sequence[str] = "imagenet7",
    descriptions: Mapping[str, Sequence[str]] | str | Path | None = None,
    *,
    batch_size: int = 256,
    progress: ProgressCallback | None = None,
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
    progress : priming.progress.ProgressCallback, optional
        Receives the encoder's progress events (anything ``priming.progress.as_callback``
        accepts; None reports nothing).
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
        index = {name_key(n): i for i, names in enumerate(classes) for n in names}
        unknown = []
        for key, sents in desc.items():
            i = index.get(name_key(key))
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
    E = _encode(encoder, texts, batch_size, as_callback(progress))
    where = {t: i for i, t in enumerate(texts)}
    T = _mean_heads(prompt_groups, where, E)
    has_desc = np.array([bool(g) for g in desc_groups])
    if has_desc.any():
        Td = _mean_heads(
            [g if g else prompt_groups[i] for i, g in enumerate(desc_groups)], where, E
        )
        T = np.where(has_desc[:, None], (T + Td) / 2.0, T)
    return T.astype(np.float32)


def example_text_weights(n_classes: int, n_features: int, random_state=None) -> np.ndarray:
    """Random unit text weights (n_classes, n_features) for examples and the contract tests."""
    rng = np.random.default_rng(random_state)
    return l2_normalize(rng.standard_normal((n_classes, n_features)).astype(np.float32))


@register_head("zero-shot")
class ZeroShotHead(BaseHead):
    """Classify by cosine similarity to fixed text weights: ``argmax_c normalise(x)·T_c``.

    Parameters
    ----------
    text_weights : array (C, D)
        One row per class (e.g. from :func:`build_text_weights`), used as given.
    classes : sequence or None
        Names of the rows (any hashable values); predictions come back as these (row
        indices when None).
    temperature : float
        ``predict_proba`` is ``softmax(scores / temperature)`` (0.01 = CLIP's logit scale 100).

    ``fit(X=None, y=None)`` learns nothing: it validates the weights (and, when ``X`` is
    given, that it has their width) and sets ``classes_``, ``weights_`` (= T),
    ``proxy_labels_`` (one proxy per class) and ``n_features_in_``.
    """

    _fitted_arrays = ("weights_", "proxy_labels_")

    def __init__(self, text_weights, classes=None, temperature: float = 0.01) -> None:
        self.text_weights = text_weights
        self.classes = classes
        self.temperature = temperature

    @classmethod
    def from_encoder(
        cls,
        encoder,
        class_names,
        templates="imagenet7",
        descriptions=None,
        progress: ProgressCallback | None = None,
        **kwargs,
    ) -> ZeroShotHead:
        """Build the text weights with ``encoder`` and return a fitted head named by the classes."""
        names = parse_class_names(class_names)
        T = build_text_weights(
            encoder, names, templates=templates, descriptions=descriptions, progress=progress
        )
        return cls(T, classes=[n[0] for n in names], **kwargs).fit()

    @classmethod
    def _example(cls, n_classes=3, n_features=8, random_state=None) -> ZeroShotHead:
        return cls(example_text_weights(n_classes, n_features, random_state))

    @classmethod
    def _example_grid(cls) -> dict:
        return {"temperature": [0.01, 0.1]}

    def fit(self, X=None, y=None) -> ZeroShotHead:
        """Validate the weights; nothing is learned from ``X`` and ``y``."""
        T = check_matrix(self.text_weights, "text_weights")
        classes = check_classes(self.classes, T.shape[0])
        check_temperature(self.temperature)
        if X is not None:
            check_matrix(X, "X", T.shape[1], allow_empty=True)
        self.classes_ = classes
        self.weights_ = T.copy()
        self.proxy_labels_ = np.arange(T.shape[0])
        self.n_features_in_ = T.shape[1]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise NotFittedError("this ZeroShotHead is not fitted yet; call fit() first")

    def _check_loaded(self) -> None:
        T = check_matrix(self.weights_, "weights_")
        check_temperature(self.temperature)
        if T.shape[1] != self.n_features_in_ or len(self.classes_) != T.shape[0]:
            raise DataError(
                f"weights_ has shape {T.shape} but the head has {len(self.classes_)} classes "
                f"of {self.n_features_in_} features"
            )
        self.weights_ = T

    def decision_function(self, X) -> np.ndarray:
        """``normalise(x)·T_c`` for every class, shape (n, C), ``classes_`` order."""
        self._check_fitted()
        X = check_matrix(X, "X", self.n_features_in_, allow_empty=True)
        return l2_normalize(X) @ self.weights_.T

    def to_linear(self) -> tuple[np.ndarray, None]:
        """``(W, None)``: scores are ``normalise(x) @ W.T``."""
        self._check_fitted()
        return self.weights_.copy(), None
