"""The main job: class names (+ shots / unlabelled data) and a corpus in; an adapted
head, its pool, ``metrics.json`` and a report out (``priming prime``).

:class:`PrimeConfig` is the one place where a run's settings are validated (from CLI
options or a TOML file); :func:`run_prime` executes it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from priming._fs import replace_dir
from priming.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["PrimeConfig", "load_config", "run_prime", "match_labels", "PrimeResult"]

_RECALL = ("search", "knn", "both")
_MODES = ("phrase", "all_tokens")
_SCORES = ("zero-shot", "similarity")


@dataclass
class PrimeConfig:
    """Settings of one ``priming prime`` run (field names = TOML keys = CLI options)."""

    model: str | None = None
    classes: str | None = None
    corpus: str | None = None
    out: str | None = None
    shots: str | None = None
    eval: str | None = None
    unlabelled: str | None = None
    transductive: bool = False
    guided: bool = False
    transductive_k: int = 10
    head: str = "neural-priming"
    n_proxies: int | None = None
    compare: list[str] = field(default_factory=list)
    alpha: Any = "schedule"
    alpha_holdout: float = 0.2
    empty_class: str = "text"
    templates: str | None = None
    descriptions: str | None = None
    per_class: int | None = 1000
    recall: str = "search"
    search_mode: str = "phrase"
    search_limit: int | None = None
    ambiguous: str = "drop"
    nsfw: bool = True
    dedup_threshold: float | None = 0.995
    leakage_threshold: float = 0.95
    agreement: bool = True
    min_probability: float | None = None
    score: str = "zero-shot"
    balance: bool = False
    cache_dir: str | None = None
    batch_size: int = 64
    device: str | None = None
    seed: int = 0
    overwrite: bool = False
    progress: bool = True

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "config") -> PrimeConfig:
        """Build and validate a config; every problem is reported in one ConfigError."""
        names = {f.name for f in dataclasses.fields(cls)}
        errors = []
        clean = {}
        for k, v in data.items():
            key = k.replace("-", "_")
            if key not in names:
                errors.append(f"unknown setting {k!r} (valid: {', '.join(sorted(names))})")
            else:
                clean[key] = v
        if isinstance(clean.get("compare"), str):
            clean["compare"] = [clean["compare"]]
        cfg = cls(**clean)
        errors += cfg._problems()
        if errors:
            raise ConfigError(f"{source}: {len(errors)} problem(s):\n  - " + "\n  - ".join(errors))
        return cfg

    def _problems(self) -> list[str]:
        from priming.heads import PRESETS
        from priming.heads.alpha import check_alpha

        e: list[str] = []
        for req in ("model", "classes", "corpus", "out"):
            if not getattr(self, req):
                e.append(f"{req} is required")
        for p in ("classes", "corpus", "shots", "eval", "unlabelled", "descriptions"):
            v = getattr(self, p)
            if v is not None and not isinstance(v, str):
                e.append(f"{p} must be a path string, got {v!r}")
            elif v and not Path(v).exists():
                e.append(f"{p}: {v!r} does not exist")
        if self.out is not None and not isinstance(self.out, str):
            e.append(f"out must be a folder path string, got {self.out!r}")
        elif self.out:
            o = Path(self.out)
            if o.exists() and not o.is_dir():
                e.append(f"out: {self.out!r} exists and is not a folder")
            else:
                blocker = next((a for a in o.parents if a.exists()), None)
                if blocker is not None and not blocker.is_dir():
                    e.append(f"out: {self.out!r} cannot be created: {str(blocker)!r} is a file")
        if self.templates and not isinstance(self.templates, str):
            e.append(f"templates must be a set name or a file path, got {self.templates!r}")
        elif self.templates:
            from priming.heads import TEMPLATE_SETS

            t = self.templates
            if t not in TEMPLATE_SETS and "{}" not in t and not Path(t).is_file():
                e.append(
                    f"templates {t!r} is neither a built-in set ({', '.join(TEMPLATE_SETS.names())}) "
                    "nor an existing file"
                )
        for b in (
            "transductive",
            "guided",
            "nsfw",
            "agreement",
            "balance",
            "overwrite",
            "progress",
        ):
            if not isinstance(getattr(self, b), bool):
                e.append(f"{b} must be true or false, got {getattr(self, b)!r}")
        for heads in ([self.head], self.compare if isinstance(self.compare, list) else [None]):
            for h in heads:
                if h not in PRESETS:
                    e.append(f"head preset {h!r} is unknown; valid: {', '.join(sorted(PRESETS))}")
        try:
            self.alpha = check_alpha(self.alpha)
        except ConfigError as exc:
            e.append(str(exc))
        choices = (
            ("recall", _RECALL),
            ("search_mode", _MODES),
            ("score", _SCORES),
            ("ambiguous", ("drop", "longest")),
            ("empty_class", ("text", "zero")),
        )
        for name, ch in choices:
            if getattr(self, name) not in ch:
                e.append(f"{name} must be one of {', '.join(ch)}; got {getattr(self, name)!r}")

        def pos_int(name, allow_none=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                e.append(
                    f"{name} must be a positive integer{' or omitted' if allow_none else ''}, got {v!r}"
                )

        pos_int("transductive_k")
        pos_int("batch_size")
        pos_int("per_class", True)
        pos_int("search_limit", True)
        pos_int("n_proxies", True)
        for name, lo, hi, none_ok in (
            ("dedup_threshold", -1, 1, True),
            ("leakage_threshold", -1, 1, False),
            ("min_probability", 0, 1, True),
            ("alpha_holdout", 0.01, 0.9, False),
        ):
            v = getattr(self, name)
            if v is None and none_ok:
                continue
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
                e.append(f"{name} must be a number in [{lo}, {hi}], got {v!r}")
        if self.transductive and not (self.eval or self.unlabelled):
            e.append("transductive needs unlabelled data: give eval or unlabelled")
        if self.guided and not self.shots:
            e.append("guided (few-shot-guided narrowing) needs shots")
        return e


def load_config(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> PrimeConfig:
    """Read a TOML run file (keys as in :class:`PrimeConfig`; an optional ``[prime]``
    table), apply ``overrides`` and validate. Relative paths are resolved against the
    file's folder."""
    import tomllib

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
    if "prime" in data and isinstance(data["prime"], dict):
        data = data["prime"]
    for k in (
        "classes",
        "corpus",
        "out",
        "shots",
        "eval",
        "unlabelled",
        "descriptions",
        "cache_dir",
    ):
        v = data.get(k)
        if isinstance(v, str) and v and not Path(v).is_absolute():
            data[k] = str((p.parent / v).resolve())
    t = data.get("templates")
    if (
        isinstance(t, str)
        and ("/" in t or t.endswith((".txt", ".json")))
        and not Path(t).is_absolute()
    ):
        data["templates"] = str((p.parent / t).resolve())
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return PrimeConfig.from_mapping(data, source=f"config file {str(p)!r}")


def match_labels(labels, class_names: list[list[str]], what: str) -> np.ndarray:
    """Map data labels to class indices: exact name, then any synonym ignoring case,
    ``_``/``-`` as spaces. Unknown labels raise a DataError listing them."""

    def norm(s: str) -> str:
        return " ".join(str(s).replace("_", " ").replace("-", " ").casefold().split())

    exact = {names[0]: i for i, names in enumerate(class_names)}
    loose = {norm(n): i for i, names in enumerate(class_names) for n in names}
    out = np.empty(len(labels), dtype=np.int64)
    unknown = []
    for j, lab in enumerate(labels):
        i = exact.get(str(lab), loose.get(norm(lab)))
        if i is None:
            unknown.append(str(lab))
            out[j] = -1
        else:
            out[j] = i
    if unknown:
        uniq = sorted(set(unknown))
        raise DataError(
            f"{what}: {len(unknown)} item(s) have labels outside the class list: "
            f"{', '.join(repr(u) for u in uniq[:8])}{' ...' if len(uniq) > 8 else ''}; "
            f"classes are: {', '.join(n[0] for n in class_names[:10])}"
            f"{' ...' if len(class_names) > 10 else ''}"
        )
    return out


@dataclass
class PrimeResult:
    run_dir: Path
    metrics: dict
    head: Any
    pool: Any


def _bar(total, desc, enabled):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)


def _default_cache() -> Path:
    env = os.environ.get("PRIMING_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "priming" / "embeddings"


def _embed(encoder, path, cfg, what):
    from priming.data import embed

    res = embed(
        encoder,
        path,
        cache_dir=cfg.cache_dir or _default_cache(),
        batch_size=cfg.batch_size,
        progress=cfg.progress,
    )
    if res.skipped:
        log.warning("%s: %d item(s) skipped, e.g. %s", what, len(res.skipped), res.skipped[:3])
    if len(res.embeddings) == 0:
        raise DataError(f"{what} {path!r}: no items could be embedded")
    return res


def _report(y_true_idx, head_or_scores, names) -> dict:
    from priming.eval.metrics import classification_report

    scores = head_or_scores
    pred = np.asarray(names)[scores.argmax(axis=1)]
    rep = classification_report(np.asarray(names)[y_true_idx], pred, scores=scores, labels=names)
    rep.pop("confusion", None)
    return rep


def run_prime(cfg: PrimeConfig, encoder=None) -> PrimeResult:
    """Run the whole job described by ``cfg`` (see the module docstring).

    ``encoder`` overrides ``cfg.model`` (any object with the encoder interface).
    """
    from priming.corpus import open_corpus
    from priming.heads import ImprintedHead, PrimedHead, build_text_weights, load_class_names
    from priming.pool import build_pool, check_corpus_model, narrow_pool

    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name, t0):
        timings[name] = round(time.perf_counter() - t0, 3)

    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise ConfigError(
            f"run folder {str(out)!r} already exists and is not empty (use --overwrite)"
        )
    steps = _bar(6, "priming", cfg.progress)

    def step(msg):
        if steps is not None:
            steps.set_description(msg)
            steps.update(1)
        log.info(msg)

    t0 = time.perf_counter()
    classes = load_class_names(cfg.classes)
    names = [c[0] for c in classes]
    if encoder is None:
        from priming.encoders import create_encoder

        encoder = create_encoder(cfg.model, device=cfg.device)
    corpus = open_corpus(cfg.corpus)
    check_corpus_model(corpus, int(encoder.dim), encoder)
    templates = cfg.templates or (
        "identity" if getattr(encoder, "modality", "") == "text" else "imagenet7"
    )
    T = build_text_weights(
        encoder, classes, templates=templates, descriptions=cfg.descriptions, progress=cfg.progress
    )
    lap("text_head", t0)
    step("text head")

    t0 = time.perf_counter()
    shots = ev = unl = None
    if cfg.shots:
        shots = _embed(encoder, cfg.shots, cfg, "shots")
        if shots.labels is None:
            raise DataError(f"shots {cfg.shots!r} have no labels")
        shots_y = match_labels(shots.labels, classes, f"shots {cfg.shots!r}")
    if cfg.eval:
        ev = _embed(encoder, cfg.eval, cfg, "eval")
        eval_y = (
            None if ev.labels is None else match_labels(ev.labels, classes, f"eval {cfg.eval!r}")
        )
    if cfg.unlabelled:
        unl = _embed(encoder, cfg.unlabelled, cfg, "unlabelled")
    lap("encode_data", t0)
    step("data encoded")

    t0 = time.perf_counter()
    leak_ref = [d.embeddings for d in (ev, unl) if d is not None]
    # alpha="auto" without shots: validate on held-out pool rows taken before the
    # agreement filter (rows that passed it agree with the text head by construction)
    use_holdout = cfg.alpha == "auto" and (shots is None or len(shots_y) < 2)
    pool = build_pool(
        corpus,
        classes,
        T,
        per_class=cfg.per_class,
        recall=cfg.recall,
        mode=cfg.search_mode,
        search_limit=cfg.search_limit,
        ambiguous=cfg.ambiguous,
        nsfw=cfg.nsfw,
        dedup_threshold=cfg.dedup_threshold,
        eval_embeddings=np.concatenate(leak_ref) if leak_ref else None,
        leakage_threshold=cfg.leakage_threshold,
        agreement=cfg.agreement,
        min_probability=cfg.min_probability,
        score=cfg.score,
        balance=cfg.balance,
        holdout=cfg.alpha_holdout if use_holdout else 0.0,
        random_state=cfg.seed,
        encoder=encoder,
    )
    holdout = pool.holdout
    if cfg.transductive or cfg.guided:
        parts = []
        if cfg.transductive:
            q = unl.embeddings if unl is not None else ev.embeddings
            parts.append(narrow_pool(pool, q, k=cfg.transductive_k))
        if cfg.guided:
            parts.append(
                narrow_pool(pool, shots.embeddings, k=cfg.transductive_k, same_class=shots_y)
            )
        if len(parts) == 1:
            pool = parts[0]
        else:
            keep = np.isin(pool.row_ids, np.union1d(parts[0].row_ids, parts[1].row_ids))
            pool = pool.subset(keep, step="transductive+guided")
    lap("pool", t0)
    step(f"pool: {len(pool)} items")

    t0 = time.perf_counter()

    def make_head(preset):
        kw = {"random_state": cfg.seed}
        if cfg.n_proxies and preset == cfg.head:
            kw["n_proxies"] = cfg.n_proxies
        return PrimedHead(
            T,
            classes=names,
            alpha=cfg.alpha,
            imprint=ImprintedHead.from_preset(preset, **kw),
            empty_class=cfg.empty_class,
            random_state=cfg.seed,
        )

    X_parts = [pool.embeddings]
    y_parts = [np.asarray(names)[pool.labels]] if len(pool) else [np.zeros(0, dtype=object)]
    is_shot = [np.zeros(len(pool), bool)]
    if shots is not None:
        X_parts.append(np.asarray(shots.embeddings, np.float32))
        y_parts.append(np.asarray(names)[shots_y])
        is_shot.append(np.ones(len(shots_y), bool))
    X_fit = np.concatenate(X_parts) if len(X_parts) > 1 else X_parts[0]
    y_fit = (
        np.concatenate(y_parts).astype(object) if len(y_parts) > 1 else y_parts[0].astype(object)
    )
    mask = np.concatenate(is_shot)
    if X_fit.shape[0] == 0:
        X_fit = np.zeros((0, T.shape[1]), np.float32)
    val = None
    if holdout is not None and len(holdout):
        val = (holdout.embeddings, np.asarray(names)[holdout.labels])
    head = make_head(cfg.head).fit(X_fit, y_fit, shots=mask, validation=val)
    others = {
        p: make_head(p).fit(X_fit, y_fit, shots=mask, validation=val)
        for p in cfg.compare
        if p != cfg.head
    }
    lap("fit", t0)
    step(f"head fitted (alpha={head.alpha_:.2f}, {head.alpha_source_})")

    t0 = time.perf_counter()
    evaluation = None
    if ev is not None and eval_y is not None:
        Xe = np.asarray(ev.embeddings, np.float32)
        evaluation = {
            "zero_shot": _report(eval_y, head.text_scores(Xe), names),
            f"primed ({cfg.head})": _report(eval_y, head.decision_function(Xe), names),
        }
        for p, h in others.items():
            evaluation[f"primed ({p})"] = _report(eval_y, h.decision_function(Xe), names)
    lap("evaluate", t0)
    step("evaluated" if evaluation else "no labelled eval data")

    counts = pool.counts()
    metrics = {
        "config": {k: v for k, v in dataclasses.asdict(cfg).items()},
        "model": {
            "name": getattr(encoder, "name", cfg.model),
            "dim": int(encoder.dim),
            "fingerprint": getattr(encoder, "fingerprint", None),
        },
        "templates": templates if isinstance(templates, str) else list(templates),
        "n_classes": len(names),
        "classes": names,
        "pool": {
            "size": int(len(pool)),
            "per_class": dict(zip(names, counts.tolist())),
            "stats": pool.stats(),
            "empty_classes": [n for n, c in zip(names, counts) if c == 0],
            "meta": pool.meta,
        },
        "shots": None if shots is None else int(len(shots_y)),
        "alpha": {
            "value": head.alpha_,
            "source": head.alpha_source_,
            "cv_accuracy": head.alpha_scores_,
        },
        "eval": evaluation,
        "timings_s": timings,
    }
    t0 = time.perf_counter()
    _write_run(out, cfg, head, pool, metrics, {**{cfg.head: head}, **others})
    lap("write", t0)
    metrics["timings_s"]["total"] = round(time.perf_counter() - t_start, 3)
    _write_json(out / "metrics.json", metrics)
    step("written")
    if steps is not None:
        steps.close()
    return PrimeResult(out, metrics, head, pool)


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, Path):
        return str(o)
    return o


def _write_json(path: Path, obj) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(_jsonable(obj), fh, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_run(out: Path, cfg, head, pool, metrics, heads) -> None:
    """Write everything into a temporary sibling folder, then move it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        head.save(
            tmp / "head", metadata={"model": metrics["model"], "templates": metrics["templates"]}
        )
        for name, h in heads.items():
            if h is not head:
                h.save(tmp / "heads" / name, metadata={"model": metrics["model"]})
        pool.save(tmp / "pool")
        _write_json(tmp / "metrics.json", metrics)
        plot = _plot(tmp / "report.png", metrics)
        (tmp / "report.md").write_text(_markdown(metrics, pool, plot), encoding="utf-8")
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _plot(path: Path, metrics) -> str | None:
    try:
        from priming.eval.plots import atomic_savefig, pyplot
    except ImportError:
        return None
    try:
        plt = pyplot()
    except Exception:  # matplotlib missing: the report goes without a plot
        return None
    names = metrics["classes"]
    counts = [metrics["pool"]["per_class"][n] for n in names]
    ev = metrics["eval"]
    ncols = 2 if ev else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4.5), squeeze=False)
    ax = axes[0, 0]
    order = np.argsort(counts)[::-1]
    ax.bar(range(len(names)), np.asarray(counts)[order], color="#4878a8")
    ax.set_title("pool items per class")
    ax.set_xlabel("class (sorted by count)")
    ax.set_ylabel("items")
    if len(names) <= 40:
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([names[i] for i in order], rotation=90, fontsize=7)
    if ev:
        ax = axes[0, 1]
        zs = ev["zero_shot"]["per_class"]
        key = next(k for k in ev if k.startswith("primed"))
        pr = ev[key]["per_class"]
        x = np.array([zs[n] for n in names], dtype=float)
        y = np.array([pr[n] for n in names], dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[ok], y[ok], s=np.clip(np.asarray(counts)[ok], 5, 80), alpha=0.7)
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
        ax.set_xlabel("zero-shot accuracy per class")
        ax.set_ylabel(f"{key} accuracy per class")
        ax.set_title("per-class accuracy (marker size: pool items)")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
    fig.tight_layout()
    atomic_savefig(fig, path)
    return path.name


def _fmt(v):
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.2f}"


def _markdown(metrics, pool, plot) -> str:
    cfg = metrics["config"]
    lines = [
        "# Priming run",
        "",
        f"- model: `{metrics['model']['name']}` (dim {metrics['model']['dim']})",
        f"- classes: {metrics['n_classes']} from `{cfg['classes']}`; templates: `{metrics['templates']}`",
        f"- corpus: `{cfg['corpus']}`; recall `{cfg['recall']}`, search `{cfg['search_mode']}`, "
        f"per class ≤ {cfg['per_class']}",
        f"- pool: {metrics['pool']['size']} items; classes without items (text weight kept): "
        f"{len(metrics['pool']['empty_classes'])}",
        f"- shots: {metrics['shots'] or 0}; transductive: {cfg['transductive']}; guided: {cfg['guided']}",
        f"- head: `{cfg['head']}`, α = {metrics['alpha']['value']:.2f} ({metrics['alpha']['source']}), "
        f"empty classes: `{cfg['empty_class']}`",
        "",
    ]
    ev = metrics["eval"]
    if ev:
        lines += [
            "## Accuracy (%)",
            "",
            "| head | top-1 | top-5 | balanced | macro F1 |",
            "|---|---|---|---|---|",
        ]
        for name, r in ev.items():
            lines.append(
                f"| {name} | {_fmt(r['top1'])} | {_fmt(r['top5'])} | "
                f"{_fmt(r['balanced_accuracy'])} | {_fmt(r['macro_f1'])} |"
            )
        lines.append("")
    if plot:
        lines += [f"![pool counts and per-class accuracy]({plot})", ""]
    lines += ["## Pool: items per class after every step", "", pool.stats_table(), ""]
    if ev:
        key = next(k for k in ev if k.startswith("primed"))
        lines += [
            "## Per-class accuracy (%)",
            "",
            f"| class | pool items | zero-shot | {key} |",
            "|---|---|---|---|",
        ]
        for n in metrics["classes"]:
            lines.append(
                f"| {n} | {metrics['pool']['per_class'][n]} | {_fmt(ev['zero_shot']['per_class'][n])} | "
                f"{_fmt(ev[key]['per_class'][n])} |"
            )
        lines.append("")
    lines += (
        ["## Timings (s)", ""] + [f"- {k}: {v}" for k, v in metrics["timings_s"].items()] + [""]
    )
    return "\n".join(lines)
