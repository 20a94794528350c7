"""Reproduction recipe (``priming reproduce neural-priming``): the Neural Priming paper's
runs on one benchmark.

Zero-shot vs priming, transductive priming and few-shot priming with the paper's model
(OpenCLIP ViT-B/16, LAION-2B) over a benchmark from :mod:`priming.data.benchmarks`, printed
beside the published numbers (METHODS §1.6) and beside the baseline measured in the same run.
The baseline and every primed head are scored over the same label space: the benchmark's own
class list (ImageNet-R/-A: their 200 classes).

The pieces are the library's: the job's steps (:func:`priming.job.steps.make_text_head`,
:func:`~priming.job.steps.make_pool`, :func:`~priming.job.steps.narrow`),
:class:`priming.heads.PrimedHead` (over the benchmark's label space, where a name may
repeat), :func:`priming.eval.protocol.sample_few_shot` and
:func:`priming.job.metrics.classification_report`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from priming._fs import atomic_output, make_dir, write_text_atomic
from priming._json import to_jsonable
from priming.classnames import name_key
from priming.errors import ConfigError, DataError
from priming.progress import ProgressCallback, track

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MODEL",
    "PAPER",
    "REFERENCE_DATASET_ALPHAS",
    "reference_alpha",
    "reproduce_neural_priming",
    "NPResult",
]

#: The model of the paper's tables.
DEFAULT_MODEL = "open_clip:ViT-B-16/laion2b_s34b_b88k"

#: Published top-1 % (Wallingford et al. 2023; METHODS §1.6). ``few_shot`` values are read
#: off the paper's figure (priming vs CoOp), so they carry about ±0.5 reading error.
PAPER: dict[str, dict[str, Any]] = {
    "zero_shot": {
        "imagenet1k": 68.30, "cars": 87.40, "aircraft": 25.86, "flowers102": 71.65,
        "food101": 86.58, "pets": 90.21, "sun397": 67.35,
    },
    "cupl": {
        "imagenet1k": 70.25, "cars": 88.63, "aircraft": 29.64, "flowers102": 72.32,
        "food101": 86.20, "pets": 91.16, "sun397": 70.80,
    },
    "priming": {
        "imagenet1k": 70.75, "cars": 89.30, "aircraft": 33.03, "flowers102": 79.81,
        "food101": 86.66, "pets": 91.87, "sun397": 71.21,
    },
    "priming_cupl": {
        "imagenet1k": 71.38, "cars": 90.23, "aircraft": 36.00, "flowers102": 80.04,
        "food101": 86.86, "pets": 91.85, "sun397": 72.35,
    },
    # (CLIP zero-shot, transductive priming)
    "transductive": {
        "imagenet-v2": (62.61, 64.23), "imagenet-r": (64.57, 79.37),
        "imagenet-sketch": (57.05, 59.97), "imagenet-a": (35.95, 38.20),
    },
    # shots -> (priming, CoOp)
    "few_shot": {
        "flowers102": {1: (80.7, 74.9), 2: (88.9, 82.3), 5: (94.7, 89.4), 10: (94.9, 92.2)},
    },
}  # fmt: skip

#: The reference code's hand-set α per dataset, by shots per class (METHODS §1.4).
REFERENCE_DATASET_ALPHAS: dict[str, dict[int, float]] = {
    "imagenet1k": {0: 0.9},
    "cars": {0: 0.9},
    "flowers102": {0: 0.7, 2: 0.58},
    "aircraft": {3: 0.55},
}


def reference_alpha(dataset: str, n_shots: int) -> float:
    """α the reference would use: its hand-set value for ``dataset`` where it has one,
    otherwise the general schedule (:data:`priming.heads.REFERENCE_ALPHAS`) with the
    dataset's values taking precedence, linearly interpolated over shots."""
    from priming.data.benchmarks import get_benchmark
    from priming.heads.alpha import REFERENCE_ALPHAS

    bench = get_benchmark(dataset)
    key = bench.parent or bench.name
    points = {**REFERENCE_ALPHAS, **REFERENCE_DATASET_ALPHAS.get(key, {})}
    xs = np.array(sorted(points), dtype=float)
    return float(np.interp(float(n_shots), xs, [points[int(x)] for x in xs]))


@dataclass
class NPResult:
    """Outcome of :func:`reproduce_neural_priming`."""

    rows: list[dict[str, Any]]
    metrics: dict[str, Any]
    text: str
    files: dict[str, Path] = field(default_factory=dict)


# --------------------------------------------------------------------------- inputs


def _unique_names(names: Sequence[str]) -> tuple[list[str], np.ndarray, list[int]]:
    """Distinct class names (the same when their :func:`priming.classnames.name_key` is),
    each benchmark class's index into them, and the benchmark classes that repeat an
    earlier name (ImageNet has two)."""
    seen: dict[str, int] = {}
    uniq: list[str] = []
    index = np.empty(len(names), dtype=np.int64)
    dups: list[int] = []
    for i, n in enumerate(names):
        k = name_key(n)
        if k in seen:
            dups.append(i)
        else:
            seen[k] = len(uniq)
            uniq.append(n)
        index[i] = seen[k]
    return uniq, index, dups


def _split_dataset(split, source: str):
    """Wrap a loader split as a :class:`priming.data.datasets.Dataset` (cacheable)."""
    from priming.data.datasets import Dataset, file_identity
    from priming.data.loaders import open_image

    class SplitDataset(Dataset):
        kind = "image"

        def __init__(self) -> None:
            self.source = source
            self.ids = list(split.items)
            self.labels = [str(int(v)) for v in split.labels]

        def load(self, i: int):
            try:
                return open_image(self.ids[i])
            except DataError:
                raise
            except Exception as exc:  # undecodable file: skipped and reported by embed()
                raise DataError(f"{self.ids[i]}: cannot decode image ({exc})") from None

        def _fingerprint_parts(self) -> list[Any]:
            files: dict[str, Any] = {}
            for item in self.ids:
                f = item.rsplit("::", 1)[0] if "::" in item else item
                if f not in files:
                    files[f] = file_identity(Path(f), self.fingerprint_mode)
            return [self.ids, sorted(files.items())]

    return SplitDataset()


def _labels_to_index(labels, bench, what: str) -> np.ndarray:
    """Labels (indices or names/folder names) to indices in the benchmark's label space."""
    lab = np.asarray(labels)
    C = bench.n_classes
    if lab.dtype.kind in "iu":
        out = lab.astype(np.int64)
    else:
        strs = [str(v) for v in lab.tolist()]
        if all(s.lstrip("-").isdigit() for s in strs):
            out = np.array([int(s) for s in strs], dtype=np.int64)
        else:
            from priming.data.benchmarks import normalize_name

            index = bench.folder_to_index()
            out = np.array(
                [index.get(s, index.get(normalize_name(s), -1)) for s in strs], dtype=np.int64
            )
            bad = sorted({s for s, o in zip(strs, out) if o < 0})
            if bad:
                raise DataError(
                    f"{what}: labels {bad[:5]} are not classes of {bench.name!r} "
                    f"(e.g. {', '.join(bench.classnames[:3])}; or use indices 0..{C - 1})"
                )
    if len(out) and (out.min() < 0 or out.max() >= C):
        raise DataError(
            f"{what}: label indices must lie in 0..{C - 1} (the {C}-class label space of "
            f"{bench.name!r}); got {int(out.min())}..{int(out.max())}"
        )
    return out


def _load_npz_split(path: Path, bench, what: str) -> tuple[np.ndarray, np.ndarray]:
    from priming.data import load_embeddings

    d = load_embeddings(path)
    if d.labels is None:
        raise DataError(f"{what} {str(path)!r} has no labels (array 'labels' in the .npz)")
    X = np.asarray(d.embeddings, dtype=np.float32)
    return X, _labels_to_index(d.labels, bench, f"{what} {str(path)!r}")


def _save_npz(path: Path, **arrays) -> None:
    with atomic_output(path) as fh:
        np.savez(fh, **arrays)


# --------------------------------------------------------------------------- evaluation


def _evaluate(y: np.ndarray, scores: np.ndarray, C: int) -> dict[str, Any]:
    from priming.job.metrics import classification_report

    if scores.shape[1] != C:  # the label-space contract of this recipe
        raise DataError(f"scores have {scores.shape[1]} columns, label space has {C}")
    labels = np.arange(C)
    rep = classification_report(y, scores.argmax(axis=1), scores=scores, labels=labels)
    return {
        "top1": rep["top1"],
        "top5": rep["top5"],
        "balanced_accuracy": rep["balanced_accuracy"],
        "macro_f1": rep["macro_f1"],
        "n": int(len(y)),
        "n_labels": int(scores.shape[1]),
    }


def _pct(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def _table(rows: list[dict[str, Any]]) -> list[str]:
    head = (
        "| setting | paper baseline | paper priming | paper Δ | ours baseline | ours priming "
        "| ours Δ | ours spread (min–max) | α | pool items |"
    )
    out = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pb, pp, ob, op = r["paper_baseline"], r["paper_priming"], r["ours_baseline"], r["ours"]
        pd = None if pb is None or pp is None else pp - pb
        od = None if ob is None or op is None else op - ob
        spread = "" if r.get("spread") is None else f"{r['spread'][0]:.2f}–{r['spread'][1]:.2f}"
        out.append(
            f"| {r['setting']} | {_pct(pb)} | {_pct(pp)} | {_pct(pd)} | {_pct(ob)} | {_pct(op)} "
            f"| {_pct(od)} | {spread} | {r['alpha']:.2f} | {r['pool']} |"
        )
    return out


# --------------------------------------------------------------------------- the recipe


@dataclass(frozen=True)
class _LabelSpace:
    """The benchmark's classes, their distinct names (text head and pool are built over
    these) and the map back: ``first_of[u]`` is the first class named ``uniq[u]``."""

    classnames: list[str]
    uniq: list[str]
    to_uniq: np.ndarray
    dups: list[int]
    first_of: np.ndarray

    @classmethod
    def of(cls, bench) -> _LabelSpace:
        classnames = list(bench.classnames)
        uniq, to_uniq, dups = _unique_names(classnames)
        first_of = np.array([classnames.index(u) for u in uniq], dtype=np.int64)
        if dups:
            log.info(
                "%s repeats %d class name(s) (%s); those classes share the text weight of the "
                "first and get no pool items",
                bench.name,
                len(dups),
                ", ".join(classnames[i] for i in dups),
            )
        return cls(classnames, uniq, to_uniq, dups, first_of)

    def labels(self, pool) -> np.ndarray:
        """Pool items' labels in the benchmark's label space."""
        return self.first_of[pool.labels] if len(pool) else np.zeros(0, dtype=np.int64)


class _Encoder:
    """The encoder, created on first use (precomputed inputs may need none)."""

    def __init__(self, encoder: Any, model: str, device: str | None) -> None:
        self.encoder, self.model, self.device = encoder, model, device

    def get(self) -> Any:
        if self.encoder is None:
            from priming.encoders import create_encoder

            self.encoder = create_encoder(self.model, device=self.device)
        return self.encoder

    @property
    def name(self) -> str | None:
        if self.encoder is not None:
            return getattr(self.encoder, "name", None)
        return self.model


def _check_args(bench, data, embeddings, alpha, shots, seeds, train_split):
    from priming.heads.alpha import check_alpha

    if (data is None) == (embeddings is None):
        raise ConfigError("give exactly one of data (a dataset root) or embeddings (a folder)")
    if alpha != "reference":
        alpha = check_alpha(alpha)
    shots = [int(s) for s in shots]
    if any(s < 1 for s in shots):
        raise ConfigError(f"shots must be positive integers, got {shots}")
    seeds = [int(s) for s in seeds]
    if shots and not seeds:
        raise ConfigError("few-shot runs need at least one seed")
    if shots and train_split not in bench.splits and embeddings is None:
        raise ConfigError(
            f"{bench.name!r} ships only {', '.join(bench.splits)}: few-shot runs need a "
            f"training split to draw shots from (drop --shots)"
        )
    return alpha, shots, seeds


def _precomputed_inputs(emb: Path, bench, need_train: bool):
    if not (emb / "test.npz").is_file():
        raise DataError(f"embeddings folder {str(emb)!r} has no test.npz")
    X_test, y_test = _load_npz_split(emb / "test.npz", bench, "test embeddings")
    X_train = y_train = None
    if need_train:
        if not (emb / "train.npz").is_file():
            raise DataError(f"few-shot runs need {str(emb / 'train.npz')!r}")
        X_train, y_train = _load_npz_split(emb / "train.npz", bench, "train embeddings")
    return X_test, y_test, X_train, y_train


def _encode_split(enc: _Encoder, data, bench, split_name, layout, out: Path, opts: dict):
    """Embed one split of the dataset (cached) and keep a copy in ``out/embeddings``."""
    from priming.data import embed
    from priming.data.loaders import load_split

    split = load_split(data, bench, split=split_name, layout=layout)
    if len(split) == 0:
        raise DataError(f"{data}: split {split_name!r} has no images")
    res = embed(enc.get(), _split_dataset(split, f"{data}::{bench.name}/{split_name}"), **opts)
    if res.skipped:
        log.warning("%s: %d image(s) skipped", split_name, len(res.skipped))
    y = np.array([int(v) for v in res.labels], dtype=np.int64)
    X = np.asarray(res.embeddings, dtype=np.float32)
    _save_npz(out / "embeddings" / f"{split_name}.npz", embeddings=X, labels=y, ids=res.ids)
    return X, y


def _encoded_inputs(enc: _Encoder, data, bench, splits, layout, out: Path, opts: dict):
    """``(X_test, y_test, X_train, y_train)`` from the dataset (train: None without a second
    split)."""
    encoded = [_encode_split(enc, data, bench, sp, layout, out, opts) for sp in splits]
    (X_test, y_test), (X_train, y_train) = encoded[0], (encoded + [(None, None)])[1]
    return X_test, y_test, X_train, y_train


def _text_head(
    enc: _Encoder, bench, space: _LabelSpace, embeddings, D, tmpl, descriptions, progress
):
    """``(T, text, source)``: the text weights over the label space, the job's
    :class:`~priming.job.steps.TextHead` over the distinct names, and where they came from."""
    from priming.classnames import parse_class_names
    from priming.job.steps import TextHead, make_text_head

    C = len(space.classnames)
    text_file = Path(embeddings) / "text.npz" if embeddings is not None else None
    if text_file is not None and text_file.is_file():
        with np.load(text_file, allow_pickle=False) as z:
            if "weights" not in z:
                raise DataError(f"{str(text_file)!r} needs an array 'weights' (C x D)")
            T = np.asarray(z["weights"], dtype=np.float32)
        if T.shape != (C, D):
            raise DataError(
                f"{str(text_file)!r}: weights have shape {T.shape}, expected ({C}, {D}) "
                f"({C} classes of {bench.name!r}, {D}-d test embeddings)"
            )
        text = TextHead(parse_class_names(space.uniq), T[space.first_of], tmpl)
        return T, text, str(text_file)
    text = make_text_head(
        enc.get(), space.uniq, templates=tmpl, descriptions=descriptions, progress=progress
    )
    T = text.weights[space.to_uniq]
    if T.shape[1] != D:
        raise DataError(f"text weights are {T.shape[1]}-d but the test embeddings {D}-d")
    return T, text, f"templates {tmpl}" + (" + descriptions" if descriptions else "")


def _target(X_test: np.ndarray):
    """The test embeddings as the job's :class:`~priming.job.steps.Inputs` (eval data
    without labels: the recipe scores over its own label space)."""
    from priming.data import EmbeddedData
    from priming.job.steps import Inputs

    ids = np.arange(len(X_test)).astype(str)
    return Inputs(eval=EmbeddedData(X_test, None, ids))


@dataclass
class _Ctx:
    """What every row of the recipe shares."""

    bench: Any
    T: np.ndarray
    alpha: Any
    X_test: np.ndarray
    y_test: np.ndarray

    def fit(self, X, y, n_shots, is_shot=None, a=None):
        from priming.heads import PrimedHead

        a = self.alpha if a is None else a
        if a == "reference":
            a = reference_alpha(self.bench.name, n_shots)
        head = PrimedHead(self.T, alpha=a, empty_class="text", random_state=0)
        Xf = X if len(X) else np.zeros((0, self.T.shape[1]), np.float32)
        return head.fit(Xf, y, shots=is_shot)

    def evaluate(self, scores) -> dict[str, Any]:
        return _evaluate(self.y_test, scores, self.T.shape[0])


def _row(setting, base_name, paper, ours_base_name, ours_base, ours, alpha, pool, **extra):
    return {
        "setting": setting,
        "paper_baseline_name": base_name,
        "paper_baseline": paper[0],
        "paper_priming": paper[1],
        "ours_baseline_name": ours_base_name,
        "ours_baseline": ours_base,
        "ours": ours,
        **extra,
        "alpha": alpha,
        "pool": int(pool),
    }


def _priming_row(ctx: _Ctx, pool, pool_y, cupl: bool, evals: dict):
    head = ctx.fit(pool.embeddings, pool_y, 0)
    evals["zero_shot"] = ctx.evaluate(head.text_scores(ctx.X_test))
    evals["priming"] = ctx.evaluate(head.decision_function(ctx.X_test))
    evals["priming"]["alpha"] = head.alpha_
    base_key, prime_key = ("cupl", "priming_cupl") if cupl else ("zero_shot", "priming")
    name = ctx.bench.name
    row = _row(
        "zero-shot → priming", "CuPL" if cupl else "CLIP zero-shot",
        (PAPER[base_key].get(name), PAPER[prime_key].get(name)),
        "zero-shot (same run)", 100 * evals["zero_shot"]["top1"],
        100 * evals["priming"]["top1"], head.alpha_, len(pool),
    )  # fmt: skip
    return head, row


def _transductive_row(ctx: _Ctx, pool, space: _LabelSpace, k: int, evals: dict):
    from priming.job.steps import narrow as narrow_step

    narrow = narrow_step(pool, _target(ctx.X_test), transductive=True, k=k)
    th = ctx.fit(narrow.embeddings, space.labels(narrow), 0)
    evals["transductive"] = ctx.evaluate(th.decision_function(ctx.X_test))
    evals["transductive"].update(alpha=th.alpha_, pool=int(len(narrow)))
    return _row(
        f"transductive (k={k})", "CLIP zero-shot",
        PAPER["transductive"].get(ctx.bench.name, (None, None)),
        "zero-shot (same run)", 100 * evals["zero_shot"]["top1"],
        100 * evals["transductive"]["top1"], th.alpha_, len(narrow),
    )  # fmt: skip


def _few_shot_row(ctx: _Ctx, pool, pool_y, X_train, y_train, n: int, seeds, evals: dict):
    from priming.eval.protocol import sample_few_shot, summarize

    runs = []
    for seed in seeds:
        idx = sample_few_shot(y_train, n, seed)
        Xs, ys = X_train[idx], y_train[idx]
        X = np.concatenate([pool.embeddings, Xs]) if len(pool) else Xs
        y = np.concatenate([pool_y, ys])
        mask = np.r_[np.zeros(len(pool), bool), np.ones(len(ys), bool)]
        primed = ctx.fit(X, y, n, mask)
        base = ctx.fit(Xs, ys, n, np.ones(len(ys), bool), a=primed.alpha_)
        runs.append(
            {
                "seed": seed,
                "n_shots": int(len(idx)),
                "alpha": primed.alpha_,
                "shots_only": ctx.evaluate(base.decision_function(ctx.X_test)),
                "priming": ctx.evaluate(primed.decision_function(ctx.X_test)),
            }
        )
    p = summarize([100 * r["priming"]["top1"] for r in runs])
    b = summarize([100 * r["shots_only"]["top1"] for r in runs])
    evals.setdefault("few_shot", {})[str(n)] = {"runs": runs, "priming": p, "shots_only": b}
    pp, pc = PAPER["few_shot"].get(ctx.bench.name, {}).get(n, (None, None))
    return _row(
        f"{n}-shot (median of {len(seeds)} seeds)", "CoOp", (pc, pp),
        "text + shots, no pool (same run)", b["median"], p["median"],
        runs[0]["alpha"], len(pool), spread=(p["min"], p["max"]),
    )  # fmt: skip


def _label_space_json(bench, space: _LabelSpace) -> dict[str, Any]:
    return {
        "benchmark": bench.name,
        "n_classes": bench.n_classes,
        "classes_sha256": hashlib.sha256("\n".join(space.classnames).encode()).hexdigest(),
        "shared_text_weights": [space.classnames[i] for i in space.dups],
    }


def _run_settings(ctx, pool, pool_y, space, out, enc, cupl, transductive_k, shots, seeds,
                  X_train, y_train, progress):  # fmt: skip
    """The rows of the recipe: zero-shot → priming, transductive (``transductive_k``
    not None), one per few-shot setting; the primed head and the pool are saved."""
    evals: dict[str, Any] = {}
    n_steps = 1 + (transductive_k is not None) + len(shots)
    with track(progress, "neural-priming", total=n_steps, unit="settings") as tracker:
        head, row = _priming_row(ctx, pool, pool_y, cupl, evals)
        rows = [row]
        head.save(out / "head", metadata={"model": enc.name, "dataset": ctx.bench.name})
        pool.save(out / "pool")
        tracker.advance()
        if transductive_k is not None:
            rows.append(_transductive_row(ctx, pool, space, transductive_k, evals))
            tracker.advance()
        for n in shots:
            rows.append(_few_shot_row(ctx, pool, pool_y, X_train, y_train, n, seeds, evals))
            tracker.advance()
    return rows, evals


def _metrics(bench, space, enc, corpus, alpha, tmpl, embeddings, X_test, pool, rows, evals):
    precomputed_text = embeddings is not None and (Path(embeddings) / "text.npz").is_file()
    return {
        "recipe": "neural-priming",
        "dataset": bench.name,
        "model": enc.name,
        "corpus": str(corpus),
        "label_space": _label_space_json(bench, space),
        "alpha": alpha,
        "templates": None if precomputed_text else tmpl,
        "n_test": int(len(X_test)),
        "pool": {"size": int(len(pool)), "stats": pool.stats()},
        "rows": rows,
        "eval": evals,
        "paper": {
            k: (v.get(bench.name) if isinstance(v, dict) else None) for k, v in PAPER.items()
        },
    }


def _notes(bench, space: _LabelSpace, cupl: bool, text_source: str, alpha) -> list[str]:
    C = len(space.classnames)
    return [
        f"- baselines: paper = {'CuPL' if cupl else 'CLIP zero-shot'} (few-shot: CoOp); ours = "
        "measured in this run over the same label space (few-shot: text head + shots, no "
        "pool, same α)",
        f"- label space: {C} classes of `{bench.name}` for every row"
        + (f" (ImageNet-1k subset: {bench.parent})" if bench.parent_indices and C < 1000 else ""),
        f"- text head: {text_source}; α: {alpha}"
        + (
            " (reference per-dataset values, else the shots schedule)"
            if alpha == "reference"
            else ""
        ),
        "- paper few-shot values are read off a figure (±0.5)",
    ]


def _write_outputs(out: Path, title: str, table, notes, metrics, pool) -> dict[str, Path]:
    files = {"metrics": out / "metrics.json", "report": out / "report.md"}
    write_text_atomic(files["metrics"], json.dumps(to_jsonable(metrics), indent=2))
    md = [
        f"# {title}", "", "Top-1 accuracy (%).", "", *table, "", *notes, "",
        "## Pool: items per class after every step", "", pool.stats_table(), "",
    ]  # fmt: skip
    write_text_atomic(files["report"], "\n".join(md))
    files.update(head=out / "head", pool=out / "pool")
    return files


def reproduce_neural_priming(
    dataset: str,
    corpus: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    layout: str | None = None,
    embeddings: str | os.PathLike[str] | None = None,
    model: str = DEFAULT_MODEL,
    encoder: Any = None,
    shots: Sequence[int] = (),
    seeds: Sequence[int] = (0, 1, 2),
    alpha: Any = "reference",
    transductive: bool = True,
    transductive_k: int = 10,
    per_class: int | None = 1000,
    leakage_threshold: float = 0.95,
    dedup_threshold: float | None = 0.995,
    agreement: bool = True,
    templates: str | None = None,
    descriptions: str | os.PathLike[str] | None = None,
    test_split: str = "test",
    train_split: str = "train",
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    device: str | None = None,
    progress: ProgressCallback | None = None,
) -> NPResult:
    """Run the Neural Priming comparisons on ``dataset`` and write a report to ``out_dir``.

    - ``dataset``: benchmark name (``flowers102``, ``imagenet-r``, ...): class names,
      templates, label space. ``corpus``: a corpus with image embeddings from ``model``.
    - ``data`` + ``layout`` (``imagefolder``, ``wds``, ``torchvision``; None detects), or
      ``embeddings``: a folder with ``test.npz`` (``embeddings``, ``labels``: indices in the
      label space or class/folder names), optional ``train.npz`` (shots) and ``text.npz``
      (``weights``, C × D; without it ``model``'s text tower builds the text head).
    - ``model`` / ``encoder``: encoder name (default the paper's) or object.
    - ``shots``, ``seeds``: few-shot settings drawn from ``train_split`` with
      :func:`~priming.eval.protocol.sample_few_shot`, and their seeds.
    - ``alpha``: ``"reference"`` (:func:`reference_alpha` per setting), ``"schedule"``,
      ``"auto"`` or a number. ``transductive``/``transductive_k``: also prime with the pool
      narrowed to the test set's k nearest items.
    - ``per_class``, ``leakage_threshold``, ``dedup_threshold``, ``agreement``: pool cap and
      filters of :func:`priming.pool.build_pool`; ``templates`` (default: the reference's
      set), ``descriptions`` (CuPL JSON: then the paper's CuPL rows are the comparison).
    - ``progress``: a :data:`priming.progress.ProgressCallback` for encoding and the steps.
    """
    from priming.corpus import open_corpus
    from priming.data.benchmarks import get_benchmark
    from priming.job.steps import make_pool
    from priming.pool import check_corpus_model

    bench = get_benchmark(dataset)
    alpha, shots, seeds = _check_args(bench, data, embeddings, alpha, shots, seeds, train_split)
    out = make_dir(out_dir, "output folder")
    space = _LabelSpace.of(bench)
    enc = _Encoder(encoder, model, device)
    if embeddings is not None:
        X_test, y_test, X_train, y_train = _precomputed_inputs(Path(embeddings), bench, bool(shots))
    else:
        opts = {"cache_dir": cache_dir, "batch_size": batch_size, "progress": progress}
        splits = (test_split, train_split) if shots else (test_split,)
        X_test, y_test, X_train, y_train = _encoded_inputs(
            enc, data, bench, splits, layout, out, opts
        )
    D = X_test.shape[1]
    tmpl = templates or bench.reference_templates or bench.templates
    T, text, text_source = _text_head(
        enc, bench, space, embeddings, D, tmpl, descriptions, progress
    )
    corp = open_corpus(corpus)
    check_corpus_model(corp, D, enc.encoder, model=enc.name)
    # the pool must duplicate neither the test images nor the training split shots come from
    pool = make_pool(
        corp, text, _target(X_test), encoder=enc.encoder, exclude=X_train,
        per_class=per_class, leakage_threshold=leakage_threshold,
        dedup_threshold=dedup_threshold, agreement=agreement, model=enc.name,
    ).pool  # fmt: skip
    pool_y = space.labels(pool)
    ctx = _Ctx(bench, T, alpha, X_test, y_test)
    rows, evals = _run_settings(
        ctx, pool, pool_y, space, out, enc, bool(descriptions),
        transductive_k if transductive else None, shots, seeds, X_train, y_train, progress,
    )  # fmt: skip
    title = (
        f"Neural Priming on {bench.title} ({bench.n_classes} classes, model {enc.name}, "
        f"{len(X_test)} test images, pool {len(pool)} items)"
    )
    table = _table(rows)
    notes = _notes(bench, space, bool(descriptions), text_source, alpha)
    metrics = _metrics(
        bench, space, enc, corpus, alpha, tmpl, embeddings, X_test, pool, rows, evals
    )
    files = _write_outputs(out, title, table, notes, metrics, pool)
    text = "\n".join([title, "", *table, "", *notes])
    return NPResult(rows=rows, metrics=metrics, text=text, files=files)
