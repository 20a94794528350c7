"""The head contract: one base class, one registry of head kinds, one save format.

Every head is a scikit-learn estimator (``BaseEstimator`` + ``ClassifierMixin``)
registered under a *kind* name with :func:`register_head`::

    @register_head("my-head")
    class MyHead(BaseHead):
        _fitted_arrays = ("weights_",)          # numpy arrays set by fit
        _fitted_values = ("alpha_",)            # JSON-able values set by fit

        def __init__(self, text_weights=None, alpha=0.5):
            self.text_weights = text_weights
            self.alpha = alpha

        def fit(self, X, y):
            ...                                  # sets classes_, n_features_in_, ...
            return self

        def decision_function(self, X):
            ...                                  # (n, C) scores in classes_ order

``predict`` / ``predict_proba`` / ``score`` come from the base class. :meth:`BaseHead.save`
writes a folder with ``head.json`` (kind, format version, constructor parameters, JSON-able
fitted values, caller metadata) and ``arrays.npz`` (array parameters and fitted arrays);
parameters or fitted attributes that are themselves heads are saved in sub-folders. No
pickle anywhere. :func:`load_head` reads any registered kind back.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from priming._fs import atomic_output, replace_dir
from priming._json import to_jsonable
from priming.errors import DataError, NotFittedError
from priming.registry import Registry

__all__ = ["BaseHead", "HEADS", "register_head", "load_head", "softmax"]

#: head kind name -> head class
HEADS: Registry[type] = Registry("head kind")

FORMAT_VERSION = 1


def register_head(kind: str):
    """Class decorator: register a :class:`BaseHead` subclass under ``kind``."""

    def _add(cls: type) -> type:
        cls.kind = kind
        HEADS.register(kind, cls)
        return cls

    return _add


def softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``scores / temperature`` (numerically stable, float64)."""
    z = np.asarray(scores, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class BaseHead(ClassifierMixin, BaseEstimator):
    """Base of every registered head: prediction from ``decision_function`` and the one
    save format. Subclasses declare what ``fit`` produces in ``_fitted_arrays``
    (numpy arrays), ``_fitted_values`` (JSON-able values) and ``_fitted_heads``
    (attributes holding fitted heads)."""

    kind: ClassVar[str] = ""
    _fitted_arrays: ClassVar[tuple[str, ...]] = ()
    _fitted_values: ClassVar[tuple[str, ...]] = ()
    _fitted_heads: ClassVar[tuple[str, ...]] = ()
    #: ``predict_proba = softmax(decision_function / temperature)`` unless the head has a
    #: ``temperature`` parameter; 0.01 is CLIP's logit scale 100 for cosine scores.
    default_temperature: ClassVar[float] = 0.01

    # -- prediction -------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit() first"
            )

    def decision_function(self, X) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, X) -> np.ndarray:
        scores = self.decision_function(X)
        return np.asarray(self.classes_)[np.argmax(scores, axis=1)]

    def predict_proba(self, X) -> np.ndarray:
        t = getattr(self, "temperature", None)
        return softmax(self.decision_function(X), self.default_temperature if t is None else t)

    def predict_log_proba(self, X) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    # -- storage ------------------------------------------------------------------------
    def _save_extra(self, folder: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Hook for subclasses with state the declarations cannot describe."""

    def _load_extra(self, folder: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Hook: the counterpart of :meth:`_save_extra`, run after the declared state."""

    def save(self, path: str | os.PathLike, metadata: dict | None = None) -> Path:
        """Write the fitted head into folder ``path`` (built aside, then moved into place).

        ``metadata`` (JSON-able, e.g. the model that made the embeddings) is stored in
        ``head.json`` and read back as ``metadata_``."""
        self._check_fitted()
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.tmp-", dir=p.parent))
        try:
            self._write(tmp, metadata)
            replace_dir(tmp, p)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return p

    def _write(self, folder: Path, metadata: dict | None) -> None:
        arrays: dict[str, np.ndarray] = {}
        params: dict[str, Any] = {}
        sub_params: list[str] = []
        for name, value in self.get_params(deep=False).items():
            if isinstance(value, BaseHead):
                if hasattr(value, "classes_"):
                    value._write(_subdir(folder, "params", name), None)
                else:
                    _write_unfitted(value, _subdir(folder, "params", name))
                sub_params.append(name)
            elif isinstance(value, np.ndarray):
                arrays[f"param:{name}"] = _plain_array(value, name)
            elif isinstance(value, np.random.Generator | np.random.RandomState):
                params[name] = None
            else:
                params[name] = to_jsonable(value)
        for name in self._fitted_arrays:
            value = getattr(self, name, None)
            if value is not None:
                arrays[f"fitted:{name}"] = _plain_array(np.asarray(value), name)
        classes = np.asarray(self.classes_)
        classes_list = None
        if classes.dtype.kind in "biufU":
            arrays["classes_"] = classes
        else:
            classes_list = to_jsonable(classes.tolist())
        fitted_heads = []
        for name in self._fitted_heads:
            value = getattr(self, name, None)
            if value is not None:
                value._write(_subdir(folder, "fitted", name), None)
                fitted_heads.append(name)
        meta = {
            "kind": self.kind,
            "format_version": FORMAT_VERSION,
            "params": params,
            "head_params": sub_params,
            "fitted": {n: to_jsonable(getattr(self, n, None)) for n in self._fitted_values},
            "fitted_heads": fitted_heads,
            "classes_list": classes_list,
            "n_features_in": int(self.n_features_in_),
            "metadata": to_jsonable(metadata or getattr(self, "metadata_", None) or {}),
        }
        self._save_extra(folder, arrays, meta)
        with atomic_output(folder / "arrays.npz") as fh:
            np.savez(fh, **arrays)
        with atomic_output(folder / "head.json") as fh:
            fh.write(json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> BaseHead:
        """Read a head folder written by :meth:`save` (of this class's kind)."""
        p = Path(path)
        meta = read_head_json(p)
        if meta.get("kind") != cls.kind:
            raise DataError(f"{str(p)!r} holds a {meta.get('kind')!r} head, not {cls.kind!r}")
        return cls._read(p, meta)

    @classmethod
    def _read(cls, p: Path, meta: dict) -> BaseHead:
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"{str(p)!r}: head format version {meta.get('format_version')!r} is not "
                f"supported (this priming reads version {FORMAT_VERSION})"
            )
        arrays = read_head_npz(p)
        try:
            params = dict(meta["params"])
            for key, value in arrays.items():
                if key.startswith("param:"):
                    params[key[6:]] = value
            for name in meta.get("head_params", []):
                params[name] = load_head(p / "params" / name)
            head = cls(**params)
            if meta.get("unfitted"):
                return head
            for name in cls._fitted_arrays:
                if f"fitted:{name}" in arrays:
                    setattr(head, name, arrays[f"fitted:{name}"])
            for name, value in meta["fitted"].items():
                setattr(head, name, value)
            for name in meta.get("fitted_heads", []):
                setattr(head, name, load_head(p / "fitted" / name))
            if meta.get("classes_list") is not None:
                classes = np.empty(len(meta["classes_list"]), dtype=object)
                classes[:] = meta["classes_list"]
            else:
                classes = arrays["classes_"]
            head.classes_ = classes
            head.n_features_in_ = int(meta["n_features_in"])
            head.metadata_ = meta.get("metadata") or {}
            head._load_extra(p, arrays, meta)
        except DataError as exc:
            raise DataError(f"{str(p)!r}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            detail = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
            raise DataError(f"{str(p / 'head.json')!r} is malformed ({detail})") from None
        return head


def _subdir(folder: Path, group: str, name: str) -> Path:
    d = folder / group / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def _plain_array(value: np.ndarray, name: str) -> np.ndarray:
    if value.dtype.hasobject:
        raise DataError(f"cannot save {name!r} (an object array) without pickle")
    return value


def _write_unfitted(head: BaseHead, folder: Path) -> None:
    """An unfitted head used as a parameter (e.g. the imprint template of a primed head)."""
    arrays, params, subs = {}, {}, []
    for name, value in head.get_params(deep=False).items():
        if isinstance(value, BaseHead):
            _write_unfitted(value, _subdir(folder, "params", name))
            subs.append(name)
        elif isinstance(value, np.ndarray):
            arrays[f"param:{name}"] = _plain_array(value, name)
        elif isinstance(value, np.random.Generator | np.random.RandomState):
            params[name] = None
        else:
            params[name] = to_jsonable(value)
    meta = {
        "kind": head.kind,
        "format_version": FORMAT_VERSION,
        "params": params,
        "head_params": subs,
        "unfitted": True,
    }
    with atomic_output(folder / "arrays.npz") as fh:
        np.savez(fh, **arrays)
    with atomic_output(folder / "head.json") as fh:
        fh.write(json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"))


def read_head_json(p: Path) -> dict:
    """``head.json`` of a head folder as a dict; anything else is a DataError naming it."""
    f = p / "head.json"
    if not f.is_file():
        raise DataError(f"{str(p)!r} is not a saved head folder (no head.json)")
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{str(f)!r} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise DataError(f"{str(f)!r} is not a head description (not a JSON object)")
    return meta


def read_head_npz(p: Path) -> dict[str, np.ndarray]:
    """``arrays.npz`` of a head folder, read without pickle; damage is a DataError."""
    f = p / "arrays.npz"
    if not f.is_file():
        raise DataError(f"{str(p)!r} is an incomplete head folder (no arrays.npz)")
    try:
        with np.load(f, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{str(f)!r} is not a readable head array file ({msg})") from None


def load_head(path: str | os.PathLike) -> BaseHead:
    """Load any registered head kind from a folder written by ``save``."""
    p = Path(path)
    meta = read_head_json(p)
    kind = meta.get("kind")
    if kind not in HEADS:
        raise DataError(
            f"{str(p)!r} holds an unknown head kind {kind!r}; known kinds: "
            f"{', '.join(HEADS.names())}"
        )
    return HEADS.get(kind)._read(p, meta)
