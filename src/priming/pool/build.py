"""Build a priming pool from a corpus (METHODS §1.2), as steps.

validation → recall (a registry: ``search`` | ``knn`` | ``both``, see
:mod:`priming.pool.recall`) → the filter steps of :data:`priming.pool.steps.FILTERS`
(NSFW → url de-duplication → read embeddings → near-duplicates → test-leakage guard →
hold-out split → zero-shot agreement → per-class cap → balancing). Every step records the
per-class counts it kept and dropped and every row it dropped with the reason:
``pool.stats()``, ``pool.steps``, ``pool.dropped``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import fields

import numpy as np

from priming.classnames import parse_class_names
from priming.errors import ConfigError, DataError
from priming.pool.choices import AMBIGUOUS_POLICIES, POOL_SCORES, SEARCH_MODES
from priming.pool.pool import PrimingPool
from priming.pool.recall import RECALLS, Recalled, column
from priming.pool.steps import (
    FILTERS,
    BuildContext,
    PoolRows,
    PoolSettings,
    StepResult,
    read_embeddings,
)

log = logging.getLogger(__name__)

__all__ = ["build_pool", "check_corpus_model"]


def check_corpus_model(
    corpus, dim: int | None = None, encoder=None, model: str | None = None
) -> None:
    """Raise a ConfigError naming both sides when the corpus embeddings come from a
    different model (by recorded model name/fingerprint) or have a different width."""
    cdim = getattr(corpus, "dim", None)
    if dim is not None and cdim is not None and int(cdim) != int(dim):
        who = f"model {getattr(encoder, 'name', model) or 'of the text weights'}"
        raise ConfigError(
            f"embedding dimension mismatch: the corpus stores {cdim}-d embeddings "
            f"(model {getattr(corpus, 'embedding_model', None) or 'unknown'}) but the {who} "
            f"produces {dim}-d embeddings"
        )
    recorded = getattr(corpus, "embedding_model", None)
    manifest = getattr(corpus, "manifest", None)
    corpus_fp = None
    if isinstance(manifest, dict) and manifest.get("embedding_source") == "captions":
        corpus_fp = manifest.get("embedding_fingerprint")  # the encoder's (fill_embeddings)
    enc_fp = getattr(encoder, "fingerprint", None)
    if corpus_fp and enc_fp:  # the same weights under another spelling of the name
        if corpus_fp == enc_fp:
            return
        raise ConfigError(
            f"model mismatch: the corpus embeddings were made with {recorded or 'a model'!r} "
            f"(fingerprint {corpus_fp[:12]}) but this run uses "
            f"{getattr(encoder, 'name', model)!r} (fingerprint {enc_fp[:12]}); re-embed the "
            "corpus (priming corpus embed --overwrite) or use that model"
        )
    mine = [
        m
        for m in (model, getattr(encoder, "name", None), getattr(encoder, "fingerprint", None))
        if m
    ]
    if recorded and mine and recorded not in mine:
        raise ConfigError(
            f"model mismatch: the corpus embeddings were made with {recorded!r} but this run "
            f"uses {mine[0]!r}; re-embed the corpus (priming corpus embed --overwrite) or use "
            "that model"
        )


# ----------------------------------------------------------------------- validation
def _count(name: str, v, allow_none: bool = True) -> int | None:
    """A positive integer parameter (integral floats accepted), or a ConfigError."""
    if v is None and allow_none:
        return None
    ok = not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating))
    if ok and isinstance(v, (float, np.floating)):
        ok = math.isfinite(v) and float(v).is_integer()
    if not ok or v < 1:
        none = " or None" if allow_none else ""
        raise ConfigError(f"{name} must be a positive integer{none}, got {v!r}")
    return int(v)


def _number(name: str, v, lo: float, hi: float, allow_none: bool = False, open_lo=False):
    """A finite real parameter in [lo, hi] (``(lo, hi]`` with ``open_lo``)."""
    if v is None and allow_none:
        return None
    ok = not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating))
    ok = ok and math.isfinite(v) and (lo < v if open_lo else lo <= v) and v <= hi
    if not ok:
        rng = f"{'(' if open_lo else '['}{lo:g}, {hi:g}]"
        none = " or None" if allow_none else ""
        raise ConfigError(f"{name} must be a finite number in {rng}{none}, got {v!r}")
    return float(v)


def _flag(name: str, v, allow_none: bool = False):
    if (v is None and allow_none) or isinstance(v, (bool, np.bool_)):
        return None if v is None else bool(v)
    raise ConfigError(f"{name} must be True or False, got {v!r}")


def _array(name: str, v, C: int | None = None) -> np.ndarray | None:
    if v is None:
        return None
    A = np.asarray(v)
    if not np.issubdtype(A.dtype, np.number) or np.issubdtype(A.dtype, np.complexfloating):
        raise DataError(f"{name} must be real numbers, got dtype {A.dtype}")
    A = A.astype(np.float32)
    if C is not None and (A.ndim != 2 or A.shape[0] != C):
        raise DataError(f"{name} must have one row per class ({C}), got shape {A.shape}")
    if A.ndim != 2:
        raise DataError(f"{name} must be 2-D (n, D), got shape {A.shape}")
    if not np.isfinite(A).all():
        raise DataError(f"{name} contain NaN or infinite values")
    return A


def _settings(kw: dict) -> PoolSettings:
    """Check every build_pool option; the error names the parameter."""
    for opt, choices in (
        ("mode", SEARCH_MODES + ("all-tokens",)),
        ("ambiguous", AMBIGUOUS_POLICIES),
        ("score", POOL_SCORES),
    ):
        if kw[opt] not in choices:
            raise ConfigError(f"{opt} must be one of {choices}, got {kw[opt]!r}")
    if not isinstance(kw["recall"], str) or kw["recall"] not in RECALLS:
        raise ConfigError(f"recall must be one of {tuple(RECALLS)}, got {kw['recall']!r}")
    for b in ("nsfw", "dedup_url", "agreement", "balance"):
        kw[b] = _flag(b, kw[b])
    for c in ("per_class", "search_limit", "knn_k"):
        kw[c] = _count(c, kw[c])
    kw["dedup_threshold"] = _number("dedup_threshold", kw["dedup_threshold"], -1, 1, True)
    kw["leakage_threshold"] = _number("leakage_threshold", kw["leakage_threshold"], -1, 1)
    kw["min_probability"] = _number("min_probability", kw["min_probability"], 0, 1, True)
    kw["temperature"] = _number("temperature", kw["temperature"], 0, math.inf, open_lo=True)
    h = kw["holdout"]
    real = isinstance(h, (int, float, np.integer, np.floating)) and not isinstance(h, bool)
    if h is not None and not (real and (h == 0 or 0 < h < 1)):
        raise ConfigError(f"holdout must lie in (0, 1) (0 or None: off), got {h!r}")
    kw["holdout"] = float(h or 0.0)
    return PoolSettings(**kw)


def _check_inputs(corpus, T, st: PoolSettings, leakage_guard, eval_embeddings) -> bool:
    """The checks that involve the corpus and the arrays; returns whether the leakage
    guard is on."""
    needs_T = [
        n
        for n, on in (
            ("agreement", st.agreement),
            ("recall='knn'", st.recall != "search"),
            ("score='zero-shot'", st.score == "zero-shot" and st.per_class),
        )
        if on
    ]
    if T is None and needs_T:
        raise ConfigError(f"text_weights are required for {', '.join(needs_T)}")
    if not getattr(corpus, "has_embeddings", False):
        raise DataError(
            "the corpus has no embeddings; add them first (priming.corpus.fill_embeddings "
            "or set_embeddings)"
        )
    guard = _flag("leakage_guard", leakage_guard, allow_none=True)
    if guard and eval_embeddings is None:
        raise ConfigError("leakage_guard=True needs eval_embeddings")
    return eval_embeddings is not None and guard is not False


# ---------------------------------------------------------------------- the pipeline
def _candidates(ctx: BuildContext, found: Recalled) -> PoolRows:
    """The recalled rows in row-id order with their caption, url, NSFW flag and
    caption–image similarity."""
    rid = np.asarray(found.row_ids, dtype=np.int64)
    lab = np.asarray(found.labels, dtype=np.int64)
    if len(rid) != len(lab):
        raise DataError(f"recall returned {len(rid)} rows but {len(lab)} labels")
    if len(lab) and (lab.min() < 0 or lab.max() >= ctx.n_classes):
        raise DataError(f"recall returned labels outside [0, {ctx.n_classes})")
    order = np.argsort(rid, kind="stable")
    rid, lab = rid[order], lab[order]
    if not len(rid):
        empty = np.zeros(0, dtype=object)
        return PoolRows(rid, lab, empty, empty, np.zeros(0, bool), np.zeros(0, np.float32))
    info = ctx.corpus.rows(rid.tolist())
    ids = rid.tolist()
    flags = [
        bool(found.nsfw[r]) if r in found.nsfw else _is_nsfw(v)
        for r, v in zip(ids, column(info, "nsfw", "NSFW", default=False))
    ]
    sims = [
        found.similarity.get(r, np.nan if s is None else s)
        for r, s in zip(ids, column(info, "similarity", default=None))
    ]
    return PoolRows(
        rid,
        lab,
        np.asarray(column(info, "caption", "TEXT", "text", default=""), dtype=object),
        np.asarray(column(info, "url", "URL", default=""), dtype=object),
        np.asarray(flags, dtype=bool),
        np.asarray(sims, dtype=np.float32),
    )


def _apply(step, rows: PoolRows, ctx: BuildContext, res: StepResult):
    """Log what ``res`` dropped; return ``(kept rows, dropped rows)``."""
    name = getattr(step, "step_name", getattr(step, "__name__", "step"))
    src = res.rows if res.rows is not None else rows
    keep = np.asarray(res.keep)
    if keep.dtype != bool or keep.shape != (len(src),):
        raise DataError(
            f"pool step {name!r} returned a keep mask of shape {keep.shape} / dtype "
            f"{keep.dtype}; expected bool ({len(src)},)"
        )
    gone = np.flatnonzero(~keep)
    reason = res.reason
    if not isinstance(reason, str):
        reason = np.asarray(reason, dtype=object)[gone]
    ctx.drop(name, src.row_ids[gone], src.labels[gone], reason, src.captions[gone], src.urls[gone])
    dropped, kept = src.take(gone), src.take(np.flatnonzero(keep))
    if res.record:
        ctx.record(name, kept.labels, dropped.labels)
    return kept, dropped


def _run(rows: PoolRows, ctx: BuildContext, steps) -> tuple[PoolRows, list[PoolRows]]:
    """Run the filter steps in order: ``(kept rows, held-out row groups)``."""
    held = []
    for step in steps:
        res = step(rows, ctx)
        if res is None:
            continue
        rows, dropped = _apply(step, rows, ctx, res)
        if res.held:
            held.append(dropped)
    if rows.embeddings is None:  # a step list without read_embeddings: read them last
        rows, _ = _apply(read_embeddings, rows, ctx, read_embeddings(rows, ctx))
    return rows, held


def _make_pool(ctx: BuildContext, rows: PoolRows, held: list[PoolRows]) -> PrimingPool:
    """The PrimingPool of the kept rows, with step records, dropped rows and held-out rows."""
    C, names = ctx.n_classes, ctx.names
    steps = [
        {
            "step": s,
            "kept": np.bincount(k, minlength=C).tolist(),
            "dropped": None if d is None else np.bincount(d, minlength=C).tolist(),
            "unassigned": u,
        }
        for s, k, d, u in ctx.records
    ]
    D = rows.embeddings.shape[1] if rows.embeddings is not None else 0
    scores = rows.zs_prob if ctx.settings.score == "zero-shot" else rows.similarity
    pool = PrimingPool(
        rows.embeddings if rows.embeddings is not None else np.zeros((0, D), np.float32),
        rows.labels,
        names,
        rows.row_ids,
        rows.captions,
        rows.urls,
        scores,
        meta=ctx.meta,
        steps=steps,
    )
    for step, rid, lab, reason, cap, url in ctx.dropped:
        pool.add_dropped(step, rid, lab, reason, cap, url)
    for h in held:
        if len(h):
            hp = PrimingPool(
                h.embeddings,
                h.labels,
                names,
                h.row_ids,
                h.captions,
                h.urls,
                h.zs_prob,
                meta=ctx.meta,
            )
            pool.heldout = hp if pool.heldout is None else _concat(pool.heldout, hp)
    return pool


def _concat(a: PrimingPool, b: PrimingPool) -> PrimingPool:
    return PrimingPool(
        np.concatenate([a.embeddings, b.embeddings]),
        np.concatenate([a.labels, b.labels]),
        a.class_names,
        np.concatenate([a.row_ids, b.row_ids]),
        np.concatenate([a.captions, b.captions]),
        np.concatenate([a.urls, b.urls]),
        np.concatenate([a.scores, b.scores]),
        meta=a.meta,
    )


def build_pool(
    corpus,
    class_names: Sequence[str | Sequence[str]],
    text_weights=None,
    per_class: int | None = 1000,
    *,
    recall: str = "search",
    mode: str = "phrase",
    search_limit: int | None = None,
    knn_k: int | None = None,
    ambiguous: str = "drop",
    nsfw: bool = True,
    dedup_url: bool = True,
    dedup_threshold: float | None = 0.995,
    eval_embeddings=None,
    leakage_guard: bool | None = None,
    leakage_threshold: float = 0.95,
    agreement: bool = True,
    min_probability: float | None = None,
    temperature: float = 0.01,
    score: str = "zero-shot",
    balance: bool = False,
    holdout: float = 0.0,
    random_state=None,
    encoder=None,
    model: str | None = None,
    steps: Sequence | None = None,
) -> PrimingPool:
    """Build a :class:`PrimingPool` for ``class_names`` from ``corpus``.

    Parameters
    ----------
    corpus : Corpus
        From ``priming.corpus.open_corpus`` (needs row-aligned embeddings).
    class_names : sequence
        One entry per class (synonyms as a list or ``"a|b"``); labels index this list.
    text_weights : array (C, D) or None
        Zero-shot text weights; needed for ``agreement``, ``score="zero-shot"`` and kNN recall.
    per_class : int or None
        Keep at most this many rows per class, the highest-scoring (None: no cap).
    recall : {"search", "knn", "both"}
        Caption search, text-to-image kNN from each class's text weight, or their union
        (a row labelled differently by the two keeps its caption label).
    mode : {"phrase", "all_tokens"}
        Caption search mode.
    ambiguous : {"drop", "longest"}
        Rows whose caption matches several classes: dropped, or kept under the class
        with the longest matching name.
    nsfw : bool
        Drop rows flagged NSFW.
    dedup_url, dedup_threshold
        Drop repeated urls; drop rows whose embedding has cosine ≥ ``dedup_threshold``
        with another row of the same class (one kept per group; None: off).
    eval_embeddings, leakage_guard, leakage_threshold
        Drop rows with cosine ≥ ``leakage_threshold`` to any evaluation embedding
        (on by default when ``eval_embeddings`` is given).
    agreement, min_probability, temperature
        Keep a row only if the zero-shot head predicts its label, and optionally
        ``softmax(f·Tᵀ / temperature)[label] ≥ min_probability``.
    score : {"zero-shot", "similarity"}
        Ranking for the cap: zero-shot probability of the row's label, or the corpus's
        caption–image similarity.
    balance : bool
        After the cap, cut every class to the size of the smallest non-empty class.
    holdout : float
        Fraction of each class's rows (after the leakage guard, before the agreement
        filter) set aside, unfiltered and uncapped, as ``pool.heldout`` — a validation set
        with caption labels for choosing α without shots.
    random_state : int, Generator or None
        Seeds the hold-out split.
    encoder, model
        The run's encoder (or model name) to check against the corpus's recorded model.
    steps : sequence of filter steps or None
        The steps after recall (None: :data:`priming.pool.steps.FILTERS`); each is
        ``step(rows, ctx) -> StepResult | None`` named with
        :func:`priming.pool.steps.pool_step` (see ``docs/priming.md``).

    Returns
    -------
    PrimingPool
        With ``stats()`` / ``steps`` (kept and dropped counts per step and class),
        ``dropped`` (every dropped row with its step and reason) and ``heldout``.
    """
    args = dict(locals())
    classes = parse_class_names(class_names)
    st = _settings({f.name: args[f.name] for f in fields(PoolSettings) if f.name in args})
    T = _array("text_weights", text_weights, len(classes))
    Ev = _array("eval_embeddings", eval_embeddings)
    st.leakage = _check_inputs(corpus, T, st, leakage_guard, Ev)
    check_corpus_model(corpus, None if T is None else T.shape[1], encoder, model)
    ctx = BuildContext(
        corpus, classes, T, st, Ev, random_state, encoder=encoder, model=model,
        meta=_pool_meta(corpus, st),
    )  # fmt: skip
    found = RECALLS.get(st.recall)(ctx)
    rows, held = _run(_candidates(ctx, found), ctx, FILTERS if steps is None else steps)
    return _report_empty(_make_pool(ctx, rows, held))


def _pool_meta(corpus, st: PoolSettings) -> dict:
    """What ``pool.json`` records of the corpus and the recall."""
    return {
        "corpus": getattr(corpus, "fingerprint", None),
        "embedding_model": getattr(corpus, "embedding_model", None),
        "recall": st.recall,
        "mode": st.mode,
    }


def _report_empty(pool: PrimingPool) -> PrimingPool:
    names, C = pool.class_names, len(pool.class_names)
    empty = [names[c] for c in np.flatnonzero(pool.counts() == 0)]
    pool.meta["empty_classes"] = empty
    if empty:
        log.warning(
            "%d of %d classes have no pool items (they keep their text weight): %s%s",
            len(empty),
            C,
            ", ".join(empty[:10]),
            " ..." if len(empty) > 10 else "",
        )
    if len(pool) == 0:
        log.warning("the priming pool is empty: the primed head will equal the zero-shot head")
    return pool


def _is_nsfw(v) -> bool:
    """LAION's NSFW column holds "UNLIKELY" / "UNSURE" / "NSFW"; anything but UNLIKELY
    (or a false value) counts as flagged."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if v is None:
        return False
    return str(v).strip().upper() not in ("", "UNLIKELY", "FALSE", "0", "NONE")
