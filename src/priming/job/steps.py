"""The steps of a priming run, each a small function with typed inputs and outputs.

:func:`priming.job.run_prime` composes them; recipes (demo, reproductions) and sweeps
call them directly::

    text = make_text_head(encoder, load_class_names("classes.txt"))
    inputs = encode_inputs(encoder, text.classes, eval="test/", cache_dir="cache")
    built = make_pool(corpus, text, inputs, encoder=encoder, per_class=500)
    heads = fit_heads(text, built.pool, inputs, holdout=built.holdout, alpha="auto")
    scores = evaluate(heads, inputs, text.names)

Everything here works on embeddings once :func:`encode_inputs` has run.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from priming.classnames import load_class_names, match_labels, parse_class_names
from priming.errors import ConfigError, DataError
from priming.progress import ProgressCallback

log = logging.getLogger(__name__)

__all__ = [
    "TextHead",
    "Inputs",
    "BuiltPool",
    "default_cache_dir",
    "check_out_dir",
    "run_lock",
    "open_encoder",
    "make_text_head",
    "encode_data",
    "encode_inputs",
    "pool_options",
    "head_options",
    "run_metrics",
    "make_pool",
    "narrow",
    "fit_heads",
    "evaluate",
    "predictions_table",
    "write_run",
    "write_metrics",
]


@dataclass
class TextHead:
    """The zero-shot text head of a run: classes (synonym lists), their names, the
    text weights ``weights`` (C × D) and the templates used."""

    classes: list[list[str]]
    weights: np.ndarray
    templates: str | list[str]

    @property
    def names(self) -> list[str]:
        return [c[0] for c in self.classes]


@dataclass
class Inputs:
    """The run's target data, embedded: labelled shots, evaluation data (labels optional)
    and unlabelled data, each an :class:`~priming.data.EmbeddedData` or None; ``*_y`` are
    class indices into the run's classes."""

    shots: Any = None
    shots_y: np.ndarray | None = None
    eval: Any = None
    eval_y: np.ndarray | None = None
    unlabelled: Any = None

    def leakage_reference(self) -> np.ndarray | None:
        """Target embeddings the pool must not duplicate (eval and unlabelled data)."""
        ref = [d.embeddings for d in (self.eval, self.unlabelled) if d is not None]
        return np.concatenate(ref) if ref else None

    @property
    def n_shots(self) -> int:
        return 0 if self.shots_y is None else int(len(self.shots_y))


@dataclass
class BuiltPool:
    """The priming pool after filters and narrowing, and the held-out rows (or None)."""

    pool: Any
    holdout: Any = None


def default_cache_dir() -> Path:
    """The embedding cache: ``$PRIMING_CACHE``, else ``$XDG_CACHE_HOME/priming/embeddings``
    (``~/.cache/priming/embeddings``)."""
    env = os.environ.get("PRIMING_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "priming" / "embeddings"


def _is_run_dir(p: Path) -> bool:
    return (p / "metrics.json").is_file() and (p / "head" / "head.json").is_file()


def check_out_dir(out: str | os.PathLike, inputs: Mapping[str, Path], overwrite: bool) -> Path:
    """Check that the run folder ``out`` may be written, before any work is done.

    A non-empty ``out`` needs ``overwrite``, and then must hold an earlier run (its
    ``metrics.json`` and ``head/``). ``out`` may never be, or contain, an input of the run
    (``inputs``: setting name → path) nor the current folder, since replacing ``out``
    deletes what it holds; nor lie inside an input folder (a corpus, an image folder, the
    cache), which the run must leave as it found it.
    """
    o = Path(out).resolve()
    cwd = Path.cwd().resolve()
    if o == cwd or o in cwd.parents:
        raise ConfigError(f"out {str(out)!r} is (or holds) the current folder; choose a new folder")
    for name, path in inputs.items():
        p = Path(path).resolve()
        if p == o or o in p.parents:
            raise ConfigError(
                f"out {str(out)!r} holds the run's {name} {str(path)!r}; writing the run there "
                "would delete it — choose another folder"
            )
        if p.is_dir() and p in o.parents:
            raise ConfigError(
                f"out {str(out)!r} lies inside the run's {name} folder {str(path)!r}; "
                "write the run elsewhere"
            )
    if o.is_dir() and any(o.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"run folder {str(out)!r} already exists and is not empty (use --overwrite)"
            )
        if not _is_run_dir(o):
            raise ConfigError(
                f"out {str(out)!r} is not an earlier run of priming prime (no metrics.json and "
                "head/); --overwrite only replaces run folders — choose another folder"
            )
    return Path(out)


@contextlib.contextmanager
def run_lock(out: str | os.PathLike) -> Iterator[None]:
    """Hold ``.<out>.lock`` next to the run folder for the whole run: a second run to the
    same ``out`` fails at once with a ConfigError instead of silently replacing the first
    one's result. Inside the lock, what an interrupted earlier run left (``.<out>.tmp-*``,
    ``.<out>.old.*``) is removed. Without ``fcntl`` (Windows) nothing is locked."""
    import glob
    import shutil

    from priming._fs import make_dir

    o = Path(out)
    make_dir(o.parent, "folder of the run folder")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock = o.parent / f".{o.name}.lock"
    fh = open(lock, "a+")  # noqa: SIM115 (held open for the whole run)
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"another priming prime run is writing {str(out)!r} right now; wait for it or "
                "choose another --out"
            ) from None
        name = glob.escape(o.name)
        for stale in [*o.parent.glob(f".{name}.tmp-*"), *o.parent.glob(f".{name}.old.*")]:
            log.info("removing %s left by an interrupted run", stale)
            shutil.rmtree(stale, ignore_errors=True)
        yield
        lock.unlink(missing_ok=True)
    finally:
        fh.close()


def open_encoder(model: str | None, encoder=None, device: str | None = None):
    """``encoder`` when given, else the encoder named ``model``."""
    if encoder is not None:
        return encoder
    if not model:
        raise ConfigError("no model: name an encoder (e.g. open_clip:ViT-B-16/laion2b_s34b_b88k)")
    from priming.encoders import create_encoder

    return create_encoder(model, device=device)


def make_text_head(
    encoder,
    classes: str | os.PathLike | Sequence[str | Sequence[str]],
    *,
    templates: str | Sequence[str] | None = None,
    descriptions: str | os.PathLike | Mapping[str, Sequence[str]] | None = None,
    progress: ProgressCallback | None = None,
) -> TextHead:
    """Parse ``classes`` (a class-name file or a list) and build the text weights.

    ``templates`` defaults to ``identity`` for text encoders, ``imagenet7`` otherwise."""
    from priming.heads import build_text_weights

    if isinstance(classes, (str, os.PathLike)):
        parsed = load_class_names(classes)
    else:
        parsed = parse_class_names(classes)
    if templates is None:
        templates = "identity" if getattr(encoder, "modality", "") == "text" else "imagenet7"
    T = build_text_weights(
        encoder, parsed, templates=templates, descriptions=descriptions, progress=progress
    )
    return TextHead(
        parsed, np.asarray(T), templates if isinstance(templates, str) else list(templates)
    )


def encode_data(
    encoder,
    path: str | os.PathLike,
    what: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    progress: ProgressCallback | None = None,
):
    """Embed one dataset through the cache (``cache_dir`` None: :func:`default_cache_dir`);
    skipped items are logged, no item at all is a DataError naming ``what``."""
    from priming.data import embed

    res = embed(
        encoder,
        str(path),
        cache_dir=cache_dir or default_cache_dir(),
        batch_size=batch_size,
        progress=progress,
    )
    if res.skipped:
        log.warning("%s: %d item(s) skipped, e.g. %s", what, len(res.skipped), res.skipped[:3])
    if len(res.embeddings) == 0:
        raise DataError(f"{what} {str(path)!r}: no items could be embedded")
    return res


def encode_inputs(
    encoder,
    classes: Sequence[Sequence[str]],
    *,
    shots: str | os.PathLike | None = None,
    eval: str | os.PathLike | None = None,
    unlabelled: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    progress: ProgressCallback | None = None,
) -> Inputs:
    """Embed the run's target data and map its labels to ``classes`` (synonym lists).

    Shots need labels; eval labels are optional (no labels: no accuracy)."""
    kw = dict(cache_dir=cache_dir, batch_size=batch_size, progress=progress)
    res = Inputs()
    if shots:
        res.shots = encode_data(encoder, shots, "shots", **kw)
        if res.shots.labels is None:
            raise DataError(f"shots {str(shots)!r} have no labels")
        res.shots_y = match_labels(res.shots.labels, classes, f"shots {str(shots)!r}")
    if eval:
        res.eval = encode_data(encoder, eval, "eval", **kw)
        if res.eval.labels is None:
            log.warning("eval %r has no labels: no accuracy will be reported", str(eval))
        else:
            res.eval_y = match_labels(res.eval.labels, classes, f"eval {str(eval)!r}")
    if unlabelled:
        res.unlabelled = encode_data(encoder, unlabelled, "unlabelled", **kw)
    return res


def pool_options(cfg, n_shots: int = 0) -> dict[str, Any]:
    """The :func:`make_pool` keyword arguments of a :class:`PrimeConfig` (``n_shots``: the
    run's labelled shots, which decide whether ``alpha="auto"`` needs held-out pool rows)."""
    # alpha="auto" without shots: choose it on held-out pool rows taken before the
    # agreement filter (rows that passed it agree with the text head by construction)
    use_holdout = cfg.alpha == "auto" and n_shots < 2
    return {
        "per_class": cfg.per_class,
        "recall": cfg.recall,
        "mode": cfg.search_mode,
        "search_limit": cfg.search_limit,
        "ambiguous": cfg.ambiguous,
        "nsfw": cfg.nsfw,
        "dedup_threshold": cfg.dedup_threshold,
        "leakage_threshold": cfg.leakage_threshold,
        "agreement": cfg.agreement,
        "min_probability": cfg.min_probability,
        "score": cfg.score,
        "balance": cfg.balance,
        "holdout": cfg.alpha_holdout if use_holdout else 0.0,
        "random_state": cfg.seed,
        "transductive": cfg.transductive,
        "guided": cfg.guided,
        "k": cfg.transductive_k,
    }


def head_options(cfg) -> dict[str, Any]:
    """The :func:`fit_heads` keyword arguments of a :class:`PrimeConfig`."""
    return {
        "head": cfg.head,
        "compare": list(cfg.compare),
        "alpha": cfg.alpha,
        "empty_class": cfg.empty_class,
        "n_proxies": cfg.n_proxies,
        "random_state": cfg.seed,
    }


def make_pool(
    corpus,
    text: TextHead,
    inputs: Inputs | None = None,
    *,
    encoder=None,
    exclude: np.ndarray | None = None,
    holdout: float = 0.0,
    random_state: int | None = 0,
    transductive: bool = False,
    guided: bool = False,
    k: int = 10,
    **options: Any,
) -> BuiltPool:
    """Build the pool for ``text``'s classes from ``corpus`` (``options``: any
    :func:`priming.pool.build_pool` settings, e.g. from :func:`pool_options`), guarded
    against leakage of ``inputs``' target data and of ``exclude`` (more embeddings the
    pool must not duplicate, e.g. the split a recipe draws shots from), then narrow it
    (:func:`narrow`)."""
    from priming.pool import build_pool

    inputs = inputs or Inputs()
    ref = [r for r in (inputs.leakage_reference(), exclude) if r is not None]
    pool = build_pool(
        corpus,
        text.classes,
        text.weights,
        eval_embeddings=np.concatenate(ref) if len(ref) > 1 else (ref[0] if ref else None),
        holdout=holdout,
        random_state=random_state,
        encoder=encoder,
        **options,
    )
    held = pool.heldout
    return BuiltPool(narrow(pool, inputs, transductive=transductive, guided=guided, k=k), held)


def narrow(pool, inputs: Inputs, *, transductive: bool = False, guided: bool = False, k: int = 10):
    """Transductive narrowing (each unlabelled — else eval — item's ``k`` nearest pool
    items) and/or few-shot-guided narrowing (each shot's ``k`` nearest items of its
    class); with both, the union. Neither: ``pool`` unchanged."""
    from priming.pool import narrow_pool

    parts = []
    if transductive:
        src = inputs.unlabelled if inputs.unlabelled is not None else inputs.eval
        if src is None:
            raise ConfigError("transductive narrowing needs unlabelled or eval data")
        parts.append(narrow_pool(pool, src.embeddings, k=k))
    if guided:
        if inputs.shots is None:
            raise ConfigError("guided narrowing needs shots")
        parts.append(narrow_pool(pool, inputs.shots.embeddings, k=k, same_class=inputs.shots_y))
    if not parts:
        return pool
    if len(parts) == 1:
        return parts[0]
    keep = np.isin(pool.row_ids, np.union1d(parts[0].row_ids, parts[1].row_ids))
    return pool.subset(keep, step="transductive+guided")


def fit_heads(
    text: TextHead,
    pool,
    inputs: Inputs | None = None,
    *,
    holdout=None,
    head: str = "neural-priming",
    compare: Sequence[str] = (),
    alpha: Any = "schedule",
    empty_class: str = "text",
    n_proxies: int | None = None,
    random_state: int | None = 0,
) -> dict[str, Any]:
    """Fit a :class:`~priming.heads.PrimedHead` per imprinting preset (``head`` first,
    then ``compare``) on pool ∪ shots; ``holdout`` (a pool of held-out rows) is the
    validation set for ``alpha="auto"`` without shots. Returns preset → fitted head."""
    from priming.heads import ImprintedHead, PrimedHead

    inputs = inputs or Inputs()
    names = np.asarray(text.names, dtype=object)
    X_parts = [np.asarray(pool.embeddings, np.float32)]
    y_parts = [names[pool.labels] if len(pool) else np.zeros(0, dtype=object)]
    if inputs.shots is not None:
        X_parts.append(np.asarray(inputs.shots.embeddings, np.float32))
        y_parts.append(names[inputs.shots_y])
    is_shot = np.concatenate([np.zeros(len(pool), bool), np.ones(inputs.n_shots, bool)])
    X = np.concatenate(X_parts) if len(X_parts) > 1 else X_parts[0]
    if X.shape[0] == 0:
        X = np.zeros((0, text.weights.shape[1]), np.float32)
    y = np.concatenate(y_parts).astype(object)
    val = None
    if holdout is not None and len(holdout):
        val = (holdout.embeddings, names[holdout.labels])

    def make(preset: str):
        kw: dict[str, Any] = {"random_state": random_state}
        if n_proxies and preset == head:
            kw["n_proxies"] = n_proxies
        return PrimedHead(
            text.weights,
            classes=list(text.names),
            alpha=alpha,
            imprint=ImprintedHead.from_preset(preset, **kw),
            empty_class=empty_class,
            random_state=random_state,
        )

    from priming.heads import PRESETS

    heads = {}
    for name in [head, *compare]:
        if name in heads:
            continue
        if name in PRESETS:
            heads[name] = make(name).fit(X, y, shots=is_shot, validation=val)
        else:
            heads[name] = fit_registered_head(name, text, X, y, random_state)
    return heads


def fit_registered_head(kind: str, text: TextHead, X: np.ndarray, y: np.ndarray, random_state):
    """A head of a registered kind (``priming.heads.HEADS``) with its own label-free
    defaults, fitted on pool ∪ shots (every row weight 1); a head that takes text weights
    gets the run's text head. With no rows at all, heads that allow it fit as zero-shot
    (``fit(None)``)."""
    import inspect

    from priming.heads import HEADS

    cls = HEADS.get(kind)
    params = inspect.signature(cls.__init__).parameters
    kw: dict[str, Any] = {}
    if "text_weights" in params:
        kw["text_weights"] = text.weights
    if "classes" in params:
        kw["classes"] = list(text.names)
    if "random_state" in params:
        kw["random_state"] = random_state
    est = cls(**kw)
    if X.shape[0] == 0 and "text_weights" in params:
        return est.fit(None, None)
    return est.fit(X, y)


def head_label(name: str) -> str:
    """The key of a head in ``metrics.json`` ``eval``: ``primed (PRESET)`` for a primed
    head, the kind itself for any other registered head."""
    from priming.heads import PRESETS

    return f"primed ({name})" if name in PRESETS else name


def evaluate(heads: Mapping[str, Any], inputs: Inputs, names: Sequence[str]):
    """Accuracy of the zero-shot text head (from the first head) and of every primed
    head on the labelled eval data, as ``{"zero_shot": HeadMetrics, "primed (P)": ...}``;
    None without labelled eval data."""
    from priming.job.metrics import classification_report
    from priming.job.results import HeadMetrics

    if inputs.eval is None or inputs.eval_y is None or not heads:
        return None
    Xe = np.asarray(inputs.eval.embeddings, np.float32)
    labels = np.asarray(names)
    y_true = labels[inputs.eval_y]

    def report(scores):
        pred = labels[scores.argmax(axis=1)]
        rep = classification_report(y_true, pred, scores=scores, labels=list(names))
        return HeadMetrics.from_report(rep)

    first = next(iter(heads.values()))
    out = {"zero_shot": report(first.text_scores(Xe))}
    for name, h in heads.items():
        # transductive heads adapt to the batch they are given: the whole eval set
        out[head_label(name)] = report(h.decision_function(Xe))
    return out


def predictions_table(head, inputs: Inputs, names: Sequence[str], top: int = 3) -> str | None:
    """CSV of the head's predictions on the eval data — ``id,label,prediction,confidence,
    top3`` (``top3``: the best classes joined by ``|``; ``label`` empty without labels);
    None without eval data."""
    import csv
    import io

    if inputs.eval is None:
        return None
    proba = head.predict_proba(np.asarray(inputs.eval.embeddings, np.float32))
    order = np.argsort(-proba, axis=1, kind="stable")[:, :top]
    labels = np.asarray(names)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "label", "prediction", "confidence", f"top{top}"])
    for j, row in enumerate(order):
        lab = "" if inputs.eval_y is None else labels[inputs.eval_y[j]]
        w.writerow(
            [
                inputs.eval.ids[j],
                lab,
                labels[row[0]],
                f"{proba[j, row[0]]:.4f}",
                "|".join(labels[row]),
            ]
        )
    return buf.getvalue()


def write_run(
    out: str | os.PathLike,
    heads: Mapping[str, Any],
    pool,
    metrics,
    *,
    predictions: str | None = None,
) -> Path:
    """Write the run folder ``out``: ``head/`` (the first of ``heads``), ``heads/<preset>/``
    (the others), ``pool/``, ``metrics.json``, ``report.md`` (+ ``report.png`` when
    matplotlib is there) and ``predictions.csv`` (eval predictions, when given).

    ``metrics`` is a :class:`~priming.job.results.RunMetrics`. Everything is written into
    a temporary sibling folder that replaces ``out`` only once complete (call
    :func:`check_out_dir` first: this replaces whatever ``out`` holds)."""
    import shutil

    from priming._fs import (
        make_dir,
        make_temp_dir,
        replace_dir,
        write_json_atomic,
        write_text_atomic,
    )
    from priming.job.report import markdown_report, plot_report

    out = Path(out)
    make_dir(out.parent, "folder of the run folder")
    m = metrics.to_json()
    tmp = make_temp_dir(out.parent, f".{out.name}.tmp-")
    try:
        items = list(heads.items())
        main = items[0][1]
        main.save(tmp / "head", metadata={"model": m["model"], "templates": m["templates"]})
        for name, h in items[1:]:
            h.save(tmp / "heads" / name, metadata={"model": m["model"]})
        pool.save(tmp / "pool")
        write_json_atomic(tmp / "metrics.json", m, indent=2)
        if predictions is not None:
            write_text_atomic(tmp / "predictions.csv", predictions)
        plot = plot_report(tmp / "report.png", m)
        write_text_atomic(tmp / "report.md", markdown_report(m, pool, plot))
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def write_metrics(out: str | os.PathLike, metrics) -> Path:
    """(Re)write ``out/metrics.json`` from a :class:`~priming.job.results.RunMetrics`."""
    from priming._fs import write_json_atomic

    return write_json_atomic(Path(out) / "metrics.json", metrics.to_json(), indent=2)


def head_selection(heads: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """For every head (keyed as in ``metrics.json`` ``eval``): which rule chose each of its
    hyperparameters — a primed head's α (value, rule), another head's ``selection_``."""
    out: dict[str, dict[str, Any]] = {}
    for name, h in heads.items():
        if hasattr(h, "alpha_source_"):
            out[head_label(name)] = {"alpha": {"value": h.alpha_, "rule": h.alpha_source_}}
        elif getattr(h, "selection_", None) is not None:
            out[head_label(name)] = dict(h.selection_)
    return out


def run_metrics(
    cfg, encoder, text: TextHead, inputs: Inputs, pool, head, evaluation, timings, heads=None
):
    """The :class:`~priming.job.results.RunMetrics` of a finished run (``head``: the main
    head; ``heads``: all fitted heads, for their selection rules; ``timings``: step name →
    seconds, kept by reference)."""
    from priming.job.results import AlphaChoice, ModelInfo, PoolSummary, RunMetrics

    return RunMetrics(
        config=cfg.to_json(),
        model=ModelInfo(
            getattr(encoder, "name", cfg.model),
            int(encoder.dim),
            getattr(encoder, "fingerprint", None),
        ),
        templates=text.templates,
        classes=text.names,
        pool=PoolSummary.of(pool, text.names),
        shots=inputs.n_shots if inputs.shots is not None else None,
        alpha=AlphaChoice(head.alpha_, head.alpha_source_, head.alpha_scores_),
        eval=evaluation,
        timings_s=timings,
        selection=head_selection(heads or {}),
    )


@contextlib.contextmanager
def executor(cfg):
    """What the run passes as ``executor=``: the configured name, or for ``ray`` with a
    ``ray_address`` one :class:`~priming.exec.ray.RayExecutor` on that cluster for the run."""
    if cfg.ray_address and cfg.executor != "ray":
        raise ConfigError("ray_address needs executor 'ray'")
    if cfg.executor != "ray" or not cfg.ray_address:
        yield cfg.executor
        return
    from priming.exec.ray import RayExecutor

    ex = RayExecutor(address=cfg.ray_address)
    try:
        yield ex
    finally:
        ex.shutdown(wait=True)
