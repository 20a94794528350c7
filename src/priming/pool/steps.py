"""The pieces ``build_pool`` is made of: the candidate rows, the build context with its
step log, and the filter steps.

A filter step is a function ``step(rows, ctx) -> StepResult | None`` named with
:func:`pool_step`: it sees the rows still in the pool and returns which to keep and why
the others go (``None``: the step is switched off and is not recorded). The pipeline
records every step's kept and dropped counts per class and every dropped row with its
reason, then carries on with the kept rows only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from priming.imprint.normalize import l2_normalize
from priming.imprint.topk import topk

__all__ = [
    "BuildContext",
    "PoolRows",
    "PoolSettings",
    "StepResult",
    "pool_step",
]


@dataclass
class PoolSettings:
    """The validated settings of one ``build_pool`` call (see its docstring)."""

    per_class: int | None = 1000
    recall: str = "search"
    mode: str = "phrase"
    search_limit: int | None = None
    knn_k: int | None = None
    ambiguous: str = "drop"
    nsfw: bool = True
    dedup_url: bool = True
    dedup_threshold: float | None = 0.995
    leakage: bool = False
    leakage_threshold: float = 0.95
    agreement: bool = True
    min_probability: float | None = None
    temperature: float = 0.01
    score: str = "zero-shot"
    balance: bool = False
    holdout: float = 0.0


@dataclass
class PoolRows:
    """Candidate pool rows, column by column (all arrays of one length)."""

    row_ids: np.ndarray
    labels: np.ndarray
    captions: np.ndarray
    urls: np.ndarray
    nsfw: np.ndarray
    similarity: np.ndarray
    embeddings: np.ndarray | None = None
    #: zero-shot probability of the row's label and the zero-shot top-1 class (NaN / -1
    #: until the embeddings are read, or without text weights)
    zs_prob: np.ndarray | None = None
    zs_top: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.row_ids)

    def take(self, idx: np.ndarray) -> PoolRows:
        """The rows at positions (or bool mask) ``idx``."""
        return PoolRows(
            **{
                f.name: None if (v := getattr(self, f.name)) is None else v[idx]
                for f in fields(self)
            }
        )


@dataclass
class StepResult:
    """What a step keeps (bool per row) and why it drops the others: one string or one
    string per row. ``held=True`` moves the dropped rows to the held-out rows instead;
    ``rows`` replaces the step's input rows (same length, e.g. with embeddings read)."""

    keep: np.ndarray
    reason: Any = ""
    held: bool = False
    rows: PoolRows | None = None
    #: False: nothing to report, the step leaves no record (its dropped rows, if any,
    #: are still logged)
    record: bool = True


@dataclass
class BuildContext:
    """Everything a recall method or a step may read, and the log they write to."""

    corpus: Any
    classes: list[list[str]]
    text_weights: np.ndarray | None
    settings: PoolSettings
    eval_embeddings: np.ndarray | None = None
    random_state: Any = None
    encoder: Any = None
    model: str | None = None
    meta: dict = field(default_factory=dict)
    #: ``(step, kept labels, dropped labels, unassigned)`` in pipeline order
    records: list[tuple[str, np.ndarray, np.ndarray | None, int]] = field(default_factory=list)
    #: dropped rows: ``(step, row_ids, labels (-1: none), reasons, captions, urls)``
    dropped: list[tuple] = field(default_factory=list)
    #: rows in the pool once the embeddings were read (steps that today run "when there
    #: were rows" test this, not the rows left after earlier filters)
    n_loaded: int = 0

    @property
    def names(self) -> list[str]:
        return [c[0] for c in self.classes]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def record(self, step: str, kept_labels, dropped=None, unassigned: int = 0) -> None:
        """Record a step's per-class counts (kept labels, dropped labels)."""
        kept = np.asarray(kept_labels, np.int64)
        drop = None if dropped is None else np.asarray(dropped, np.int64)
        self.records.append((step, kept, drop, int(unassigned)))

    def drop(self, step: str, row_ids, labels, reason, captions=None, urls=None) -> None:
        """Log dropped rows (``labels`` -1 for a row without a single class)."""
        n = len(row_ids)
        if n:
            self.dropped.append((step, row_ids, labels, reason, captions, urls))


Step = Callable[[PoolRows, BuildContext], "StepResult | None"]


def pool_step(name: str) -> Callable[[Step], Step]:
    """Name a filter step (the name its records carry in ``pool.stats()`` and
    ``steps.parquet``)."""

    def deco(fn: Step) -> Step:
        fn.step_name = name
        return fn

    return deco


# ------------------------------------------------------------------------ the steps
@pool_step("nsfw")
def nsfw_filter(rows: PoolRows, ctx: BuildContext) -> StepResult | None:
    """Drop rows flagged NSFW."""
    if not ctx.settings.nsfw:
        return None
    return StepResult(~rows.nsfw, "flagged NSFW")


@pool_step("dedup-url")
def url_dedup_filter(rows: PoolRows, ctx: BuildContext) -> StepResult | None:
    """Keep the first row of every url (rows without a url are kept)."""
    if not ctx.settings.dedup_url or not len(rows):
        return None
    keep = np.ones(len(rows), bool)
    seen: set = set()
    for i, u in enumerate(rows.urls):
        if not u:
            continue
        if u in seen:
            keep[i] = False
        seen.add(u)
    return StepResult(keep, "repeats the url of an earlier row")


@pool_step("has-embedding")
def read_embeddings(rows: PoolRows, ctx: BuildContext) -> StepResult | None:
    """Read the rows' embeddings (rows without one, e.g. an image that never downloaded,
    read as NaN and are dropped) and their zero-shot scores. Recorded only when a row
    lacks an embedding."""
    from priming.pool.build import check_corpus_model

    T, corpus = ctx.text_weights, ctx.corpus
    if len(rows):
        E = np.asarray(corpus.embeddings(rows.row_ids.tolist()), dtype=np.float32)
    else:
        E = np.zeros((0, T.shape[1] if T is not None else (getattr(corpus, "dim", 0) or 0)))
        E = E.astype(np.float32)
    if T is not None and E.shape[1] != T.shape[1]:
        check_corpus_model(corpus, T.shape[1], ctx.encoder, ctx.model)
    has = np.isfinite(E).all(axis=1)
    out = replace(rows, embeddings=E)
    ctx.n_loaded = int(has.sum())
    zs_prob = np.full(len(rows), np.nan, np.float32)
    zs_top = np.full(len(rows), -1, np.int64)
    if T is not None and has.any():
        S = l2_normalize(E[has]) @ T.T
        z = S / ctx.settings.temperature
        z -= z.max(axis=1, keepdims=True)
        P = np.exp(z)
        P /= P.sum(axis=1, keepdims=True)
        zs_prob[has] = P[np.arange(len(P)), rows.labels[has]]
        zs_top[has] = S.argmax(axis=1)
    out.zs_prob, out.zs_top = zs_prob, zs_top
    if has.all():
        return StepResult(has, rows=out, record=False)
    ctx.meta["no_embedding"] = int((~has).sum())
    return StepResult(has, "no embedding (image missing or unreadable)", rows=out)


@pool_step("dedup-embedding")
def near_dedup_filter(rows: PoolRows, ctx: BuildContext) -> StepResult | None:
    """Within each class, rows linked by cosine ≥ ``dedup_threshold`` form groups; the
    first row of each group stays."""
    if ctx.settings.dedup_threshold is None or not len(rows):
        return None
    keep, first = near_duplicates(rows.embeddings, rows.labels, ctx.settings.dedup_threshold)
    reasons = np.empty(len(rows), object)
    gone = np.flatnonzero(~keep)
    reasons[gone] = [f"near-duplicate of corpus row {rows.row_ids[first[i]]}" for i in gone]
    return StepResult(keep, reasons)


@pool_step("leakage")
def leakage_filter(rows: PoolRows, ctx: BuildContext) -> StepResult | None:
    """Drop rows with cosine ≥ ``leakage_threshold`` to an evaluation embedding."""
    from priming.errors import DataError

    Ev = ctx.eval_embeddings
    if not ctx.settings.leakage or Ev is None:
        return None
    D = rows.embeddings.shape[1]
    if Ev.ndim != 2 or Ev.shape[1] != D:
        raise DataError(
            f"evaluation embeddings have shape {Ev.shape}; the corpus embeddings are {D}-d"
        )
    keep = np.ones(len(rows), bool)
    if len(Ev) and len(rows):
        s, _ = topk(rows.embeddings, Ev, 1)
        keep = ~(s[:, 0] >= ctx.settings.leakage_threshold)
        ctx.meta["leakage_dropped"] = int((~keep).sum())
    t = ctx.settings.leakage_threshold
    return StepResult(keep, f"cosine >= {t:g} to an evaluation image (test leakage)")


@pool_step("holdout")
def holdout_split(rows: PoolRows, ctx: BuildContext) -> StepResult | None:
    """Set aside ``holdout`` of each class's rows (before agreement, so unfiltered by it)
    as held-out rows for label-free α selection."""
    h = ctx.settings.holdout
    if not h:
        return None
    rng = np.random.default_rng(ctx.random_state)
    held = np.zeros(len(rows), bool)
    for c in range(ctx.n_classes):
        idx = np.flatnonzero(rows.labels == c)
        n_h = int(np.floor(h * len(idx)))
        if n_h:
            held[rng.choice(idx, n_h, replace=False)] = True
    return StepResult(~held, "held out for label-free alpha selection", held=True)


@pool_step("agreement")
def agreement_filter(rows: PoolRows, ctx: BuildContext) -> StepResult | None:
    """Keep a row only if the zero-shot head's top-1 is its label (and, with
    ``min_probability``, its label's zero-shot probability reaches it)."""
    st = ctx.settings
    if ctx.text_weights is None or not ctx.n_loaded or not st.agreement:
        return None
    names = np.asarray(ctx.names + ["?"], dtype=object)
    ok = rows.zs_top == rows.labels
    reasons = np.empty(len(rows), object)
    bad = np.flatnonzero(~ok)
    reasons[bad] = [
        f"zero-shot top-1 is {names[t]!r}, not {names[lab]!r}"
        for t, lab in zip(rows.zs_top[bad], rows.labels[bad])
    ]
    if st.min_probability is not None:
        low = ok & ~(rows.zs_prob >= st.min_probability)
        reasons[low] = [
            f"zero-shot probability {p:.3g} < min_probability {st.min_probability:g}"
            for p in rows.zs_prob[low]
        ]
        ok &= ~low
    return StepResult(ok, reasons)


def _scores(rows: PoolRows, ctx: BuildContext) -> np.ndarray:
    return rows.zs_prob if ctx.settings.score == "zero-shot" else rows.similarity


@pool_step("cap")
def cap_filter(rows: PoolRows, ctx: BuildContext) -> StepResult | None:
    """Keep the ``per_class`` best-scoring rows of each class."""
    n = ctx.settings.per_class
    if n is None or not len(rows):
        return None
    keep = top_per_class(rows.labels, _scores(rows, ctx), n, ctx.n_classes)
    return StepResult(keep, f"beyond the per-class cap of {n} (by {ctx.settings.score} score)")


@pool_step("balance")
def balance_filter(rows: PoolRows, ctx: BuildContext) -> StepResult | None:
    """Cut every class to the size of the smallest non-empty class."""
    if not ctx.settings.balance or not len(rows):
        return None
    counts = np.bincount(rows.labels, minlength=ctx.n_classes)
    m = int(counts[counts > 0].min())
    keep = top_per_class(rows.labels, _scores(rows, ctx), m, ctx.n_classes)
    return StepResult(keep, f"balanced to the smallest class ({m} rows)")


#: The filter steps of ``build_pool`` in pipeline order (after recall).
FILTERS: tuple[Step, ...] = (
    nsfw_filter,
    url_dedup_filter,
    read_embeddings,
    near_dedup_filter,
    leakage_filter,
    holdout_split,
    agreement_filter,
    cap_filter,
    balance_filter,
)


# ------------------------------------------------------------------------- helpers
def top_per_class(labels: np.ndarray, scores: np.ndarray, n: int, C: int) -> np.ndarray:
    """Mask of the ``n`` highest-scoring rows of each class (NaN scores rank last, ties
    by position)."""
    s = np.nan_to_num(scores.astype(np.float64), nan=-np.inf)
    order = np.lexsort((-s, labels))  # by class, then score descending
    sorted_lab = labels[order]
    start = np.searchsorted(sorted_lab, np.arange(C))
    rank = np.arange(len(order)) - start[sorted_lab]
    out = np.zeros(len(labels), bool)
    out[order[rank < n]] = True
    return out


def near_duplicates(E: np.ndarray, lab: np.ndarray, threshold: float, k: int = 8):
    """``(keep, first)``: within each class, rows linked by cosine ≥ ``threshold`` form
    groups (connected components over each row's ``k`` nearest); ``keep`` is True for the
    first row of each group, ``first[i]`` that row's position."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(E)
    rows, cols = [], []
    order = np.argsort(lab, kind="stable")
    bounds = np.flatnonzero(np.diff(lab[order])) + 1
    for members in np.split(order, bounds):
        if len(members) < 2:
            continue
        s, nb = topk(E[members], E, min(k, len(members)), pool_index=members)
        hit = (s >= threshold) & (nb != members[:, None]) & (nb >= 0)
        r, c = np.nonzero(hit)
        rows.append(members[r])
        cols.append(nb[r, c])
    first = np.arange(n)
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    if len(r):
        c = np.concatenate(cols)
        g = coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
        _, comp = connected_components(g, directed=False)
        lead = np.full(comp.max() + 1, n)
        np.minimum.at(lead, comp, np.arange(n))
        first = lead[comp]
    return first == np.arange(n), first
