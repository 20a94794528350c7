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

        @classmethod
        def _example(cls, n_classes, n_features, random_state=None):
            ...                                  # an instance for a small test problem

``predict`` / ``predict_proba`` / ``score`` come from the base class. :meth:`BaseHead.save`
writes a folder with ``head.json`` (kind, format version, constructor parameters, JSON-able
fitted values, caller metadata) and ``arrays.npz`` (array parameters and fitted arrays);
parameters or fitted attributes that are themselves heads are saved in sub-folders. No
pickle anywhere. :func:`load_head` reads any registered kind back; a head file of an
unknown format version, with entries the format does not have, or with fitted values the
head's own checks (:meth:`BaseHead._check_loaded`) refuse is a :class:`DataError` naming
the file. :func:`read_head_metadata` reads the caller's ``metadata`` (e.g. the model
name and fingerprint) without loading the arrays.

A new head kind is one module: subclass :class:`BaseHead`, decorate it with
:func:`register_head`, declare its fitted state, and give it an ``_example`` classmethod
when it cannot be built without arguments (e.g. it needs text weights). The contract test
(``tests/test_head_contract.py``) runs scikit-learn's estimator checks, ``clone``,
``GridSearchCV`` and ``cross_val_score`` and a save/load round trip over every registered
kind, building each with ``_example``: a head whose instance has ``text_weights`` is
tested on data whose class centres are those text weights, so any weights work.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from priming._fs import atomic_output, make_temp_dir, replace_dir
from priming._json import to_jsonable
from priming.errors import ConfigError, DataError, NotFittedError, PrimingError
from priming.registry import Registry

__all__ = [
    "BaseHead",
    "HEADS",
    "FORMAT_VERSION",
    "register_head",
    "load_head",
    "read_head_metadata",
    "softmax",
]

#: head kind name -> head class
HEADS: Registry[type] = Registry("head kind")

FORMAT_VERSION = 2
"""Version 2: one folder format for every head kind (version 1 was the earlier per-kind
files: ``imprint.npz`` for imprinted heads, their own ``head.json`` for text and primed
heads; not read any more: refit and save again)."""

#: the entries a ``head.json`` may have; anything else is refused as not written by us
_HEAD_JSON_KEYS = frozenset(
    {"kind", "format_version", "params", "head_params", "fitted", "fitted_heads",
     "classes_list", "n_features_in", "metadata", "unfitted", "extra"}
)  # fmt: skip


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
    #: True for heads whose score of a row depends on the other rows of the batch given
    #: (transductive and test-time heads): the contract tests then skip the subset and
    #: order invariance of ``decision_function``.
    transductive: ClassVar[bool] = False

    # -- scikit-learn protocol ------------------------------------------------------------
    def set_params(self, **params) -> BaseHead:
        """scikit-learn's ``set_params`` (nested ``a__b`` included); an unknown name is a
        :class:`ConfigError` listing the valid ones."""
        try:
            return super().set_params(**params)
        except PrimingError:
            raise
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def __sklearn_is_fitted__(self) -> bool:
        try:
            self._check_fitted()
        except NotFittedError:
            return False
        return True

    @classmethod
    def _example(cls, n_classes: int = 3, n_features: int = 8, random_state=None) -> BaseHead:
        """An instance for a small synthetic problem with ``n_classes`` classes in
        ``n_features`` dimensions (used by the contract tests). Heads that need
        constructor arguments (text weights) override this."""
        return cls()

    @classmethod
    def _example_grid(cls) -> dict:
        """A small ``GridSearchCV`` parameter grid for the contract tests (``{}``: none)."""
        return {}

    # -- prediction -------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit() first")

    def _check_loaded(self) -> None:
        """Hook run after :func:`load_head` restored the state: validate parameters and
        fitted values (raise DataError/ConfigError); the loader names the file."""

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
        tmp = make_temp_dir(p.parent, f".{p.name}.tmp-")
        try:
            self._write(tmp, metadata)
            replace_dir(tmp, p)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return p

    def _write(self, folder: Path, metadata: dict | None) -> None:
        arrays, params, sub_params = _split_params(self, folder)
        for name in self._fitted_arrays:
            value = getattr(self, name, None)
            if value is not None:
                arrays[f"fitted:{name}"] = _plain_array(np.asarray(value), name)
        classes = np.asarray(self.classes_)
        classes_list = None
        if classes.dtype.kind in "biufU":
            arrays["classes_"] = classes
        else:
            classes_list = _json_labels(classes.tolist())
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
            "fitted": {n: _json_value(getattr(self, n, None), n) for n in self._fitted_values},
            "fitted_heads": fitted_heads,
            "classes_list": classes_list,
            "n_features_in": int(self.n_features_in_),
            "metadata": _json_value(metadata or getattr(self, "metadata_", None) or {}, "metadata"),
        }
        self._save_extra(folder, arrays, meta)
        _write_files(folder, arrays, meta)

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
        _check_head_json(p, meta, cls)
        arrays = read_head_npz(p)
        try:
            head = cls._restore(p, meta, arrays)
            if not meta.get("unfitted"):
                head._check_loaded()
        except DataError as exc:
            msg = str(exc)
            raise DataError(msg if str(p) in msg else f"{str(p)!r}: {msg}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            detail = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
            detail = detail.splitlines()[0] if detail else type(exc).__name__
            raise DataError(f"{str(p / 'head.json')!r} is malformed ({detail})") from None
        return head

    @classmethod
    def _restore(cls, p: Path, meta: dict, arrays: dict[str, np.ndarray]) -> BaseHead:
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
        return head


def _subdir(folder: Path, group: str, name: str) -> Path:
    d = folder / group / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def _plain_array(value: np.ndarray, name: str) -> np.ndarray:
    if value.dtype.hasobject:
        raise DataError(f"cannot save {name!r} (an object array) without pickle")
    return value


def _json_value(value: Any, name: str) -> Any:
    """``value`` as JSON-able data, or a DataError naming what cannot be saved."""
    out = to_jsonable(value)
    try:
        json.dumps(out)
    except (TypeError, ValueError):
        raise DataError(
            f"cannot save {name!r} of type {type(value).__name__} in head.json "
            "(only JSON-able values, numpy arrays and heads are saved)"
        ) from None
    return out


def _json_labels(items: list) -> list:
    """Class labels for ``head.json``: numbers, strings, booleans or None (what JSON gives
    back unchanged); other hashable labels (tuples, ...) cannot be saved."""
    bad = [v for v in items if not (v is None or isinstance(v, str | int | float | bool))]
    if bad:
        raise DataError(
            f"cannot save class labels such as {bad[0]!r} ({type(bad[0]).__name__}): saved "
            "heads need numbers, strings or booleans as labels"
        )
    return _json_value(items, "classes_")


def _split_params(head: BaseHead, folder: Path) -> tuple[dict, dict, list[str]]:
    """Constructor parameters as (arrays, JSON params, names of head parameters); head
    parameters are written into ``folder/params/<name>`` (fitted or not)."""
    arrays: dict[str, np.ndarray] = {}
    params: dict[str, Any] = {}
    subs: list[str] = []
    for name, value in head.get_params(deep=False).items():
        if isinstance(value, BaseHead):
            if value.__sklearn_is_fitted__():
                value._write(_subdir(folder, "params", name), None)
            else:
                _write_unfitted(value, _subdir(folder, "params", name))
            subs.append(name)
        elif isinstance(value, np.ndarray):
            arrays[f"param:{name}"] = _plain_array(value, name)
        elif isinstance(value, np.random.Generator | np.random.RandomState):
            params[name] = None
        else:
            params[name] = _json_value(value, name)
    return arrays, params, subs


def _write_files(folder: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    with atomic_output(folder / "arrays.npz") as fh:
        np.savez(fh, **arrays)
    with atomic_output(folder / "head.json") as fh:
        fh.write(json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"))


def _write_unfitted(head: BaseHead, folder: Path) -> None:
    """An unfitted head used as a parameter (e.g. the imprint template of a primed head)."""
    arrays, params, subs = _split_params(head, folder)
    meta = {
        "kind": head.kind,
        "format_version": FORMAT_VERSION,
        "params": params,
        "head_params": subs,
        "unfitted": True,
    }
    _write_files(folder, arrays, meta)


def _check_head_json(p: Path, meta: dict, cls: type) -> None:
    """Refuse a ``head.json`` of another format version or with entries that this format
    does not have (a file not written by :meth:`BaseHead.save`)."""
    f = str(p / "head.json")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        hint = (
            " (written by an earlier priming, which had one file format per head kind: "
            "fit the head again and save it)"
            if version == 1
            else ""
        )
        raise DataError(
            f"{f!r}: head format version {version!r} is not supported (this priming reads "
            f"version {FORMAT_VERSION}){hint}"
        )
    if "imprint_class" in meta:
        raise DataError(
            f"{f!r} names an imprint class ('imprint_class', an entry of format version 1); "
            "a head file names its class only by its registered kind"
        )
    unknown = sorted(set(meta) - _HEAD_JSON_KEYS)
    if unknown:
        raise DataError(f"{f!r} has entries the head format does not have: {', '.join(unknown)}")
    allowed = {
        "params": set(cls._get_param_names()),
        "head_params": set(cls._get_param_names()),
        "fitted": set(cls._fitted_values),
        "fitted_heads": set(cls._fitted_heads),
    }
    for key, names in allowed.items():
        value = meta.get(key, {} if key in ("params", "fitted") else [])
        if not isinstance(value, dict if key in ("params", "fitted") else list):
            raise DataError(f"{f!r} is malformed ({key!r} has the wrong type)")
        if meta.get("unfitted") and key in ("fitted", "fitted_heads"):
            continue
        bad = sorted(str(n) for n in value if n not in names)
        if bad:
            raise DataError(
                f"{f!r}: {key} {', '.join(bad)} are not {key.replace('_', ' ')} of a "
                f"{cls.kind!r} head"
            )


def read_head_json(p: Path) -> dict:
    """``head.json`` of a head folder as a dict; anything else is a DataError naming it."""
    p = Path(p)
    f = p / "head.json"
    if p.is_file():
        raise DataError(
            f"{str(p)!r} is a file, not a saved head folder (an ImprintedHead .npz of an "
            "earlier priming? heads are saved as folders since head format version 2: fit "
            "the head again and save it)"
        )
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
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{str(f)!r} is not a readable head array file ({msg})") from None


def read_head_metadata(path: str | os.PathLike) -> dict:
    """The ``metadata`` a head folder was saved with (``save(path, metadata=...)``, e.g.
    ``{"model": ..., "model_fingerprint": ...}``), without loading its arrays; ``{}`` when
    none was recorded."""
    p = Path(path)
    meta = read_head_json(p)
    value = meta.get("metadata") or {}
    if not isinstance(value, dict):
        raise DataError(f"{str(p / 'head.json')!r}: metadata is not a JSON object")
    return value


def load_head(path: str | os.PathLike) -> BaseHead:
    """Load any registered head kind from a folder written by ``save``."""
    p = Path(path)
    meta = read_head_json(p)
    kind = meta.get("kind")
    if not isinstance(kind, str) or kind not in HEADS:
        raise DataError(
            f"{str(p)!r} holds an unknown head kind {kind!r}; known kinds: "
            f"{', '.join(HEADS.names())}"
        )
    return HEADS.get(kind)._read(p, meta)
