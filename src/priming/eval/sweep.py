"""Sweeps of head configurations × shots × seeds over cached embeddings.

A sweep is described by a YAML (or JSON) file; see ``docs/evaluation.md`` for the format.
Every head configuration is checked up front by building an ``ImprintedHead`` and fitting it
on a tiny dummy problem, so an invalid combination is rejected with the head's own reason
before any work starts. Each run (dataset × task × head × shots × seed) is keyed by a hash of
everything that determines it; its result is written atomically to ``<output>.parts/KEY.json``
so an interrupted sweep resumes where it stopped. The
final table (one row per run) is written to ``output`` as Parquet or CSV.
Runs execute on an executor (``priming.exec``): a local process pool by default.
A run with ``alpha`` fits a ``PrimedHead`` over the imprinted head (the one primed score).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import threading
import time
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from priming._fs import atomic_path, make_dir, write_bytes_atomic
from priming._json import to_jsonable
from priming._optional import require
from priming.errors import ConfigError, DataError, PrimingError
from priming.eval.metrics import classification_report, save_predictions
from priming.eval.protocol import sample_few_shot
from priming.exec import EXECUTORS, ExecutorSpec, open_executor
from priming.progress import ProgressCallback, track

__all__ = [
    "SweepConfig",
    "DatasetSpec",
    "HeadSpec",
    "Run",
    "load_sweep_config",
    "parse_sweep_config",
    "expand_runs",
    "run_sweep",
    "SweepResult",
    "execute_run",
    "build_head",
    "load_embedding_file",
    "head_label",
    "RESULT_METRICS",
]

log = logging.getLogger(__name__)

HEAD_PARAMS = (
    "norm_pre",
    "generator",
    "n_proxies",
    "norm_post",
    "norm_inf",
    "aggregation",
    "n_neighbors",
    "metric",
    "weighting",
    "presample",
    "ls_lambda",
)
RESULT_METRICS = ("top1", "top5", "balanced_accuracy", "macro_f1", "weighted_f1")
RESULT_SUFFIXES = (".parquet", ".csv")


# --------------------------------------------------------------------------- embeddings


def load_embedding_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read ``(embeddings, labels)`` with :func:`priming.data.load_embeddings` (``.npz``
    with ``embeddings``/``labels``, or ``.npy`` with a sibling labels file); a file without
    labels is a DataError."""
    from priming.data import load_embeddings

    p = Path(path)
    data = load_embeddings(p)
    if data.labels is None:
        raise DataError(f"embedding file {p} has no labels")
    return np.asarray(data.embeddings, dtype=np.float32), np.asarray(data.labels)


def _file_fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class DatasetSpec:
    """One (backbone, dataset, task): train/test embedding files and an optional class subset."""

    backbone: str
    dataset: str
    task: str
    train: str
    test: str
    classes: tuple[Any, ...] | None = None
    text_weights: str | None = None

    def fingerprint(self) -> str:
        parts = [_file_fingerprint(Path(self.train)), _file_fingerprint(Path(self.test))]
        if self.text_weights:
            parts.append(_file_fingerprint(Path(self.text_weights)))
        return "|".join(parts)


@dataclass(frozen=True)
class HeadSpec:
    """One concrete head configuration (a point of the grid)."""

    label: str
    params: tuple[tuple[str, Any], ...]
    alpha: float | None = None

    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass
class SweepConfig:
    name: str
    datasets: list[DatasetSpec]
    heads: list[HeadSpec]
    shots: list[int | None]
    seeds: list[int]
    output: Path
    workers: int = 1
    save_predictions: bool = False
    nc1: bool = True
    rejected: list[tuple[str, str]] = field(default_factory=list)


def head_label(params: Mapping[str, Any], alpha: float | None = None) -> str:
    """Compact name ``NORMpre/GEN(k)/NORMpost/NORMinf/AGG`` of a head configuration."""
    p = {**_default_params(), **params}
    gen = p["generator"]
    if gen not in ("mean", "ls", "all", "none"):
        gen = f"{gen}({p['n_proxies']})"
    agg = p["aggregation"]
    if agg == "mnn":
        agg = f"mnn(m={p['n_neighbors']},{p['metric']})"
    label = f"{p['norm_pre']}/{gen}/{p['norm_post']}/{p['norm_inf']}/{agg}"
    if p.get("presample"):
        label += f" presample={p['presample']}"
    if alpha is not None:
        label += f" a={alpha:g}"
    return label


@lru_cache(maxsize=1)
def _default_params() -> dict[str, Any]:
    from priming.heads import ImprintedHead

    defaults = ImprintedHead().get_params()
    return {k: defaults[k] for k in HEAD_PARAMS if k in defaults}


def _presets() -> dict[str, dict[str, Any]]:
    from priming.heads import PRESETS

    return {k: dict(v) for k, v in PRESETS.items()}


def _canonical(obj: Any) -> Any:
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items())}
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def config_hash(obj: Any) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of ``obj``."""
    text = json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _validate_head(params: dict[str, Any], random_state: int = 0) -> str | None:
    """None if ``ImprintedHead(**params)`` fits a tiny dummy problem, else the reason."""
    from priming.heads import ImprintedHead

    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 4)).astype(np.float32)
    y = np.repeat([0, 1, 2], 4)
    try:
        head = ImprintedHead(**params, random_state=random_state)
        head.fit(X, y)
        head.decision_function(X[:2])
    except TypeError as exc:
        return f"invalid parameter: {exc}"
    except (PrimingError, ValueError) as exc:
        return str(exc)
    return None


def _is_alpha(a: Any) -> bool:
    return not isinstance(a, bool) and isinstance(a, (int, float)) and 0 <= a <= 1


def _parse_heads(entries: Any, errors: list[str]) -> tuple[list[HeadSpec], list[tuple[str, str]]]:
    if not isinstance(entries, list) or not entries:
        errors.append("'heads' must be a non-empty list of head configurations")
        return [], []
    presets = _presets()
    heads: list[HeadSpec] = []
    rejected: list[tuple[str, str]] = []
    for n, entry in enumerate(entries):
        where = f"heads[{n}]"
        if isinstance(entry, str):
            entry = {"preset": entry}
        if not isinstance(entry, Mapping):
            errors.append(f"{where}: expected a mapping or a preset name, got {entry!r}")
            continue
        entry = dict(entry)
        name = entry.pop("name", None)
        preset = entry.pop("preset", None)
        alphas = _as_list(entry.pop("alpha", None))
        unknown = sorted(set(entry) - set(HEAD_PARAMS))
        if unknown:
            errors.append(
                f"{where}: unknown key(s) {', '.join(unknown)}; valid: name, preset, alpha, "
                + ", ".join(HEAD_PARAMS)
            )
            continue
        base: dict[str, Any] = {}
        if preset is not None:
            if preset not in presets:
                errors.append(
                    f"{where}: unknown preset {preset!r}; valid choices: {', '.join(sorted(presets))}"
                )
                continue
            base = presets[preset]
        bad = [a for a in alphas if a is not None and not _is_alpha(a)]
        if bad:
            errors.append(
                f"{where}: alpha must be a number in [0, 1] (or null), got "
                + ", ".join(repr(a) for a in bad)
            )
            continue
        keys = sorted(entry)
        grids = [_as_list(entry[k]) for k in keys]
        for combo in itertools.product(*grids):
            params = {**base, **dict(zip(keys, combo))}
            params.pop("random_state", None)
            reason = _validate_head(params)
            point_label = name or preset or head_label(params)
            if len(keys) and (name or preset):
                varying = [f"{k}={v}" for k, v, g in zip(keys, combo, grids) if len(g) > 1]
                if varying:
                    point_label += " " + ",".join(varying)
            if reason is not None:
                rejected.append((f"{where} {head_label(params)}", reason))
                continue
            full = {**_default_params(), **params}
            for a in alphas:
                label = point_label if a is None or len(alphas) == 1 else f"{point_label} a={a:g}"
                heads.append(HeadSpec(label, tuple(sorted(full.items())), a))
    return heads, rejected


def _parse_datasets(entries: Any, base_dir: Path, errors: list[str]) -> list[DatasetSpec]:
    if not isinstance(entries, list) or not entries:
        errors.append("'datasets' must be a non-empty list")
        return []
    out: list[DatasetSpec] = []
    for n, e in enumerate(entries):
        where = f"datasets[{n}]"
        if not isinstance(e, Mapping):
            errors.append(f"{where}: expected a mapping")
            continue
        valid = {"backbone", "dataset", "task", "tasks", "train", "test", "classes", "text_weights"}
        unknown = sorted(set(e) - valid)
        if unknown:
            errors.append(
                f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
            )
        missing = [k for k in ("dataset", "train", "test") if k not in e]
        if missing:
            errors.append(f"{where}: missing key(s) {', '.join(missing)}")
            continue
        paths = {}
        for k in ("train", "test", "text_weights"):
            if e.get(k) is None:
                continue
            p = Path(str(e[k]))
            p = p if p.is_absolute() else base_dir / p
            if not p.is_file():
                errors.append(f"{where}.{k}: file {p} does not exist")
            paths[k] = str(p)
        tasks: dict[str, Any]
        if "tasks" in e:
            if not isinstance(e["tasks"], Mapping) or not e["tasks"]:
                errors.append(f"{where}.tasks: expected a mapping task name -> class list or null")
                continue
            tasks = dict(e["tasks"])
        else:
            tasks = {str(e.get("task", "all")): e.get("classes")}
        for tname, classes in tasks.items():
            if classes is not None and (not isinstance(classes, list) or len(classes) < 2):
                errors.append(f"{where}: task {tname!r} needs a list of at least 2 classes or null")
                continue
            out.append(
                DatasetSpec(
                    str(e.get("backbone", "default")),
                    str(e["dataset"]),
                    str(tname),
                    paths.get("train", ""),
                    paths.get("test", ""),
                    tuple(classes) if classes is not None else None,
                    paths.get("text_weights"),
                )
            )
    return out


def _check_duplicates(heads, datasets, shots, seeds, errors: list[str]) -> None:
    """Two names for one configuration (or one data set) would be one run: say so."""
    labels = [h.label for h in heads]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        errors.append(f"duplicate head labels {dup}; give the heads distinct 'name's")
    # runs are keyed by what determines them, not by names: two names for one
    # configuration (or one data set) would be one run, so say so before anything runs
    same: dict[Any, list[str]] = {}
    for h in heads:
        same.setdefault((h.params, h.alpha), []).append(h.label)
    for names in same.values():
        if len(names) > 1:
            errors.append(
                f"heads {', '.join(repr(n) for n in names)} are the same configuration; keep one"
            )
    same_data: dict[Any, list[str]] = {}
    for d in datasets:
        same_data.setdefault((d.train, d.test, d.classes, d.text_weights), []).append(
            f"{d.backbone}/{d.dataset}/{d.task}"
        )
    for names in same_data.values():
        if len(names) > 1:
            errors.append(f"datasets {', '.join(names)} are the same files and classes; keep one")
    for axis, values in (("shots", shots), ("seeds", seeds)):
        rep = sorted({repr(v) for v in values if values.count(v) > 1})
        if rep:
            errors.append(f"{axis}: repeated value(s) {', '.join(rep)}")


def parse_sweep_config(data: Mapping[str, Any], base_dir: str | Path = ".") -> SweepConfig:
    """Validate a sweep description; every problem is reported at once in one ConfigError.

    Head combinations that the head itself rejects are not errors: they are collected in
    ``SweepConfig.rejected`` with the reason (and reported by the CLI) unless *every*
    combination is invalid.
    """
    base_dir = Path(base_dir)
    errors: list[str] = []
    if not isinstance(data, Mapping):
        raise ConfigError("a sweep config must be a mapping (YAML/JSON object)")
    valid = {
        "name",
        "datasets",
        "heads",
        "shots",
        "seeds",
        "output",
        "workers",
        "save_predictions",
        "nc1",
    }
    unknown = sorted(set(data) - valid)
    if unknown:
        errors.append(
            f"unknown top-level key(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
        )
    datasets = _parse_datasets(data.get("datasets"), base_dir, errors)
    heads, rejected = _parse_heads(data.get("heads"), errors)
    shots = _as_list(data.get("shots", [None]))
    if not shots:
        errors.append("shots: empty list; give at least one setting (null = all rows)")
    for s in shots:
        if s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 1):
            errors.append(f"shots: {s!r} is not a positive integer or null (all rows)")
    seeds = _as_list(data.get("seeds", [0, 1, 2]))
    if not seeds:
        errors.append("seeds: empty list; give at least one seed")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            errors.append(f"seeds: {s!r} is not a non-negative integer")
    workers = data.get("workers", 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        errors.append(f"workers: must be a positive integer, got {workers!r}")
    for h in heads:
        if h.alpha is not None:
            for d in datasets:
                if d.text_weights is None:
                    errors.append(
                        f"head {h.label!r} mixes a text head (alpha) but dataset "
                        f"{d.dataset!r} has no text_weights file"
                    )
                    break
    if not heads and rejected and not errors:
        errors.append(
            "every head combination is invalid:\n  " + "\n  ".join(f"{w}: {r}" for w, r in rejected)
        )
    _check_duplicates(heads, datasets, shots, seeds, errors)
    output = Path(str(data.get("output", "results.parquet")))
    output = output if output.is_absolute() else base_dir / output
    if output.suffix not in RESULT_SUFFIXES:
        errors.append(f"output: {str(output)!r} must end in .parquet or .csv")
    if errors:
        raise ConfigError("invalid sweep config:\n  - " + "\n  - ".join(errors))
    return SweepConfig(
        name=str(data.get("name", "sweep")),
        datasets=datasets,
        heads=heads,
        shots=shots,
        seeds=seeds,
        output=output,
        workers=workers,
        save_predictions=bool(data.get("save_predictions", False)),
        nc1=bool(data.get("nc1", True)),
        rejected=rejected,
    )


def load_sweep_config(path: str | os.PathLike[str]) -> SweepConfig:
    """Read and validate a sweep YAML/JSON file (relative paths are relative to its folder)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"sweep config {p} " + ("is not a file" if p.exists() else "does not exist")
        )
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read sweep config {p}: {exc}") from None
    if p.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{p}: not valid JSON: {exc}") from None
    else:
        yaml = require("yaml", "cli", package="pyyaml")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_sweep_config(data or {}, p.parent)


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Run:
    dataset: DatasetSpec
    head: HeadSpec
    shots: int | None
    seed: int

    def key(self) -> str:
        return config_hash(
            {
                "data": self.dataset.fingerprint(),
                "classes": list(self.dataset.classes) if self.dataset.classes else None,
                "head": dict(self.head.params),
                "alpha": self.head.alpha,
                "shots": self.shots,
                "seed": self.seed,
            }
        )


def expand_runs(cfg: SweepConfig) -> list[Run]:
    """Every (dataset × head × shots × seed) run of a sweep, in a stable order."""
    return [
        Run(d, h, s, seed)
        for d in cfg.datasets
        for h in cfg.heads
        for s in cfg.shots
        for seed in cfg.seeds
    ]


def _load_text_weights(path: Path, y_train: np.ndarray) -> np.ndarray:
    """Text-head rows aligned with ``np.unique(y_train)``.

    ``.npz`` with ``weights`` (C, D) and ``labels`` (C,) is aligned by label; a ``.npy`` matrix
    must already follow the sorted order of the training labels.
    """
    classes = np.unique(y_train)
    try:
        return _read_text_weights(path, classes)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"cannot read text weights {path}: {exc}") from None


def _read_text_weights(path: Path, classes: np.ndarray) -> np.ndarray:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "weights" not in z.files or "labels" not in z.files:
                raise DataError(f"{path} must hold arrays 'weights' and 'labels'")
            W, labs = z["weights"].astype(np.float32), z["labels"].astype(str)
        pos = {lab: i for i, lab in enumerate(labs.tolist())}
        missing = [c for c in classes.astype(str).tolist() if c not in pos]
        if missing:
            raise DataError(f"{path}: no text weights for class(es) {missing[:5]}")
        return W[[pos[c] for c in classes.astype(str).tolist()]]
    W = np.load(path, allow_pickle=False).astype(np.float32)
    if W.ndim != 2 or W.shape[0] != len(classes):
        raise DataError(
            f"{path}: text weights {W.shape} need one row per training class ({len(classes)})"
        )
    return W


@lru_cache(maxsize=8)
def _load_task(
    spec: DatasetSpec,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    X_tr, y_tr = load_embedding_file(spec.train)
    X_te, y_te = load_embedding_file(spec.test)
    if X_tr.shape[1] != X_te.shape[1]:
        raise DataError(f"{spec.train} and {spec.test} have different widths")
    T = None
    if spec.text_weights:
        T = _load_text_weights(Path(spec.text_weights), y_tr)
        if T.shape[1] != X_tr.shape[1]:
            raise DataError(
                f"{spec.text_weights}: text weights have width {T.shape[1]} but the embeddings "
                f"in {spec.train} have {X_tr.shape[1]}"
            )
        if not np.isfinite(T).all():
            raise DataError(f"{spec.text_weights}: text weights contain NaN or infinite values")
    if spec.classes is not None:
        cls = (
            np.asarray(spec.classes).astype(y_tr.dtype)
            if y_tr.dtype.kind in "iu"
            else np.asarray([str(c) for c in spec.classes])
        )
        m_tr, m_te = np.isin(y_tr, cls), np.isin(y_te, cls)
        if not m_tr.any() or not m_te.any():
            raise DataError(
                f"task {spec.task!r}: none of its classes occur in {spec.train} / {spec.test}"
            )
        if T is not None:
            T = T[np.searchsorted(np.unique(y_tr), np.unique(y_tr[m_tr]))]
        X_tr, y_tr, X_te, y_te = X_tr[m_tr], y_tr[m_tr], X_te[m_te], y_te[m_te]
    return X_tr, y_tr, X_te, y_te, T


def build_head(run: Run, T: np.ndarray | None, classes: np.ndarray) -> Any:
    """The head a run fits: an ``ImprintedHead``, or a ``PrimedHead`` over it when the run
    mixes in the text head (``alpha``) — the one definition of a primed score."""
    from priming.heads import ImprintedHead, PrimedHead

    head = ImprintedHead(**run.head.kwargs(), random_state=run.seed)
    if run.head.alpha is None:
        return head
    if T is None or T.shape[0] != len(classes):
        raise DataError(
            f"text_weights of {run.dataset.dataset!r} must have one row per class "
            f"({len(classes)}), in sorted label order"
        )
    return PrimedHead(T, classes=classes, alpha=float(run.head.alpha), imprint=head)


def execute_run(run: Run, predictions_dir: str | None = None) -> dict[str, Any]:
    """Fit and evaluate one run; returns its result row."""
    X_tr, y_tr, X_te, y_te, T = _load_task(run.dataset)
    idx = sample_few_shot(y_tr, run.shots, run.seed)
    head = build_head(run, T, np.unique(y_tr))
    t0 = time.perf_counter()
    head.fit(X_tr[idx], y_tr[idx])
    t1 = time.perf_counter()
    scores = head.decision_function(X_te)
    y_pred = head.classes_[np.argmax(scores, axis=1)]
    t2 = time.perf_counter()
    rep = classification_report(y_te, y_pred, scores=scores, labels=head.classes_)
    key = run.key()
    if predictions_dir is not None:
        save_predictions(Path(predictions_dir) / f"{key}.npz", y_te, y_pred, scores, head.classes_)
    row = _row_head(run, key)
    row.update({m: (np.nan if rep[m] is None else rep[m]) for m in RESULT_METRICS})
    row.update(
        {
            "n_train": int(len(idx)),
            "n_test": int(len(y_te)),
            "n_classes": int(len(head.classes_)),
            "n_proxies_total": int(head.weights_.shape[0]),
            "fit_seconds": t1 - t0,
            "predict_seconds": t2 - t1,
        }
    )
    return row


def _row_head(run: Run, key: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "key": key,
        "backbone": run.dataset.backbone,
        "dataset": run.dataset.dataset,
        "task": run.dataset.task,
        "config": run.head.label,
        "config_hash": config_hash({"head": dict(run.head.params), "alpha": run.head.alpha}),
        "shots": -1 if run.shots is None else run.shots,
        "seed": run.seed,
        "alpha": np.nan if run.head.alpha is None else float(run.head.alpha),
    }
    for k, v in run.head.params:
        row[k] = json.dumps(v) if isinstance(v, (dict, list, tuple)) else v
    return row


def _execute_and_store(
    run: Run, parts_dir: str, predictions_dir: str | None
) -> tuple[dict[str, Any], list[str]]:
    """Run and store one run; returns its row and the warnings it raised (reported once per
    sweep by :func:`run_sweep`, not once per run)."""
    with _collect_warnings() as messages:
        row = execute_run(run, predictions_dir)
    data = json.dumps(row, default=lambda o: o.item() if isinstance(o, np.generic) else str(o))
    write_bytes_atomic(Path(parts_dir) / f"{row['key']}.json", data.encode())
    return row, messages


class _ListHandler(logging.Handler):
    """Collects the messages of warnings logged by one thread."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.messages = messages
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


_QUIET_LOCK = threading.Lock()
_QUIET = {"depth": 0, "propagate": True}


@contextlib.contextmanager
def _collect_warnings() -> Iterator[list[str]]:
    """Collect the library's log warnings and Python warnings of one run instead of
    emitting them (a sweep would repeat each once per run). Safe with runs in several
    threads: each collects its own thread's records (Python warnings are collected only
    in the main thread, where ``warnings.catch_warnings`` is safe)."""
    messages: list[str] = []
    logger = logging.getLogger("priming")
    handler = _ListHandler(messages)
    with _QUIET_LOCK:
        if _QUIET["depth"] == 0:
            _QUIET["propagate"] = logger.propagate
            logger.propagate = False
        _QUIET["depth"] += 1
    logger.addHandler(handler)
    try:
        if threading.current_thread() is threading.main_thread():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                yield messages
            messages.extend(f"{w.category.__name__}: {w.message}" for w in caught)
        else:
            yield messages
    finally:
        logger.removeHandler(handler)
        with _QUIET_LOCK:
            _QUIET["depth"] -= 1
            if _QUIET["depth"] == 0:
                logger.propagate = _QUIET["propagate"]


def nc1_table(cfg: SweepConfig) -> list[dict[str, Any]]:
    """NC1 (textbook and reference-compatible) of the training embeddings per dataset/task."""
    from priming.imprint import nc1

    rows = []
    for spec in dict.fromkeys(cfg.datasets):
        X_tr, y_tr, *_ = _load_task(spec)
        rows.append(
            {
                "backbone": spec.backbone,
                "dataset": spec.dataset,
                "task": spec.task,
                "nc1": float(nc1(X_tr, y_tr, variant="textbook")),
                "nc1_reference": float(nc1(X_tr, y_tr, variant="reference")),
            }
        )
    return rows


def _write_table(rows: list[dict[str, Any]], path: Path) -> Path:
    import pandas as pd

    df = pd.DataFrame(rows)
    make_dir(path.parent)
    with atomic_path(path, suffix=path.suffix) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
    return path


def read_results(path: str | os.PathLike[str]) -> Any:
    """Read a results table (``.parquet`` or ``.csv``) as a pandas DataFrame."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise DataError(
            f"results file {p} " + ("is not a file" if p.exists() else "does not exist")
        )
    if p.suffix not in RESULT_SUFFIXES:
        raise DataError(f"results file {p}: unsupported format (use .parquet or .csv)")
    try:
        return pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
    except pd.errors.EmptyDataError:
        raise DataError(f"results file {p} is empty") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        msg = " ".join(str(exc).split())
        raise DataError(f"cannot read results file {p}: {msg}") from None


@dataclass(frozen=True)
class SweepResult:
    """What :func:`run_sweep` did: the table it wrote and how many runs were new."""

    output: Path
    n_runs: int
    n_done_before: int
    n_new: int
    n_rows: int
    nc1_output: Path | None
    warnings: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return to_jsonable(
            {
                "output": str(self.output),
                "n_runs": self.n_runs,
                "n_done_before": self.n_done_before,
                "n_new": self.n_new,
                "n_rows": self.n_rows,
                "nc1_output": None if self.nc1_output is None else str(self.nc1_output),
                "warnings": dict(self.warnings),
            }
        )


def _execute_all(
    todo: list[Run],
    parts: Path,
    pred_dir: str | None,
    workers: int,
    executor: ExecutorSpec,
    progress: ProgressCallback | None,
) -> dict[str, int]:
    """Run ``todo`` on the executor; returns each distinct warning with its count."""
    if executor is None and (workers <= 1 or len(todo) <= 1):
        executor = "inline"  # today's behaviour: no process pool for one worker or one run
    counts: dict[str, int] = {}
    with (
        track(progress, "sweep", total=len(todo), unit="runs") as tracker,
        open_executor(executor, max_workers=workers, kind="process") as ex,
    ):
        futures = [ex.submit(_execute_and_store, r, str(parts), pred_dir) for r in todo]
        for fut in as_completed(futures):
            _, messages = fut.result()
            for m in messages:
                counts[m] = counts.get(m, 0) + 1
            tracker.advance()
    for m, n in counts.items():
        log.warning("%s (in %d of %d runs)", m, n, len(todo))
    return counts


def run_sweep(
    cfg: SweepConfig,
    *,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    limit: int | None = None,
    executor: ExecutorSpec = None,
) -> SweepResult:
    """Run every missing run of ``cfg`` (resuming from ``<output>.parts``) and write the table.

    ``limit`` stops after that many new runs (the table is still written with what exists).
    ``executor``: where runs execute (``priming.exec``; default: a local process pool of
    ``workers`` processes, in-process for one worker). ``progress`` receives one event per
    finished run. A warning raised by runs is logged once, with the number of runs.
    """
    runs = expand_runs(cfg)
    if cfg.output.suffix not in RESULT_SUFFIXES:
        raise ConfigError(f"output {str(cfg.output)!r} must end in .parquet or .csv")
    if isinstance(executor, str):
        EXECUTORS.get(executor)  # an unknown name fails before anything is written
    for spec in dict.fromkeys(cfg.datasets):
        _load_task(spec)  # bad files, widths or class lists fail here, before any output
    parts = make_dir(cfg.output.with_name(cfg.output.name + ".parts"), "sweep results folder")
    pred_dir = (
        str(cfg.output.with_name(cfg.output.stem + ".predictions"))
        if cfg.save_predictions
        else None
    )
    keys = [r.key() for r in runs]
    if len(set(keys)) != len(keys):
        raise ConfigError("two runs of the sweep have the same configuration; remove duplicates")
    done = {p.stem for p in parts.glob("*.json")}
    todo = [r for r, k in zip(runs, keys) if k not in done]
    if limit is not None:
        todo = todo[:limit]
    n_before = len(runs) - len([k for k in keys if k not in done])
    counts = _execute_all(todo, parts, pred_dir, workers or cfg.workers, executor, progress)
    wanted = set(keys)
    rows = []
    for p in sorted(parts.glob("*.json")):
        if p.stem in wanted:
            rows.append(json.loads(p.read_text(encoding="utf-8")))
    order = {k: i for i, k in enumerate(keys)}
    rows.sort(key=lambda r: order[r["key"]])
    for r in rows:
        r["sweep"] = cfg.name
    _write_table(rows, cfg.output)
    nc1_out = None
    if cfg.nc1:
        nc1_out = cfg.output.with_name(cfg.output.stem + ".nc1" + cfg.output.suffix)
        _write_table(nc1_table(cfg), nc1_out)
    return SweepResult(cfg.output, len(runs), n_before, len(todo), len(rows), nc1_out, counts)
