"""Recall methods: how ``build_pool`` finds its candidate rows in the corpus.

A recall method is ``fn(ctx) -> Recalled`` registered with :func:`register_recall`; it
records its own step(s) with ``ctx.record`` (and dropped rows with ``ctx.drop``). Built
in: ``search`` (caption search), ``knn`` (text-to-image k-NN from each class's text
weight) and ``both`` (their union; a row found by both keeps its caption label).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from priming.imprint.normalize import l2_normalize
from priming.pool.choices import RECALL_METHODS
from priming.pool.steps import BuildContext
from priming.registry import Registry

log = logging.getLogger(__name__)

__all__ = ["RECALLS", "RECALL_METHODS", "Recalled", "register_recall"]


@dataclass
class Recalled:
    """Recalled rows with their class index; optional values the corpus search already
    returned (caption–image similarity, NSFW flag) by row id."""

    row_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    similarity: dict[int, float] = field(default_factory=dict)
    nsfw: dict[int, bool] = field(default_factory=dict)


RECALLS: Registry[Callable[[BuildContext], Recalled]] = Registry("recall method")


def register_recall(name: str):
    """Decorator: register ``fn(ctx) -> Recalled`` as the recall method ``name``."""
    return RECALLS.register(name)


def column(table, *names, default=None) -> list:
    """The first of ``names`` that ``table`` has, as a list (else ``default`` per row)."""
    for n in names:
        if n in table.column_names:
            return table.column(n).to_pylist()
    return [default] * table.num_rows


def _longest(corpus, ambiguous, classes: list[list[str]], label_index: dict[str, int]):
    """Assign ambiguous rows to the class whose longest matching name is longest:
    ``(rows, labels, unmatched rows)``."""
    row_ids = ambiguous.column("row_id").to_pylist()
    labels_list = ambiguous.column("labels").to_pylist()
    captions = column(corpus.rows(row_ids), "caption", "TEXT", "text", default="")
    out_rows, out_labels, lost = [], [], []
    for rid, labs, cap in zip(row_ids, labels_list, captions):
        cap = f" {(cap or '').casefold()} "
        best, best_len = None, -1
        for lab in labs:
            c = label_index.get(lab)
            if c is None:
                continue
            for name in classes[c]:
                pat = r"(?<!\w)" + re.escape(name.casefold()) + r"(?!\w)"
                if len(name) > best_len and re.search(pat, cap):
                    best, best_len = c, len(name)
        if best is None:
            lost.append(rid)
        else:
            out_rows.append(rid)
            out_labels.append(best)
    return out_rows, out_labels, lost


def _drop_ambiguous(ctx: BuildContext, ambiguous, keep_ids: set[int], reason_for) -> int:
    """Log the ambiguous rows not in ``keep_ids`` as dropped by the search step."""
    ids = [r for r in ambiguous.column("row_id").to_pylist() if r not in keep_ids]
    if not ids:
        return 0
    labs = dict(zip(ambiguous.column("row_id").to_pylist(), ambiguous.column("labels").to_pylist()))
    info = ctx.corpus.rows(ids)
    ctx.drop(
        "search",
        np.asarray(ids, np.int64),
        np.full(len(ids), -1, np.int64),
        np.asarray([reason_for(labs[r]) for r in ids], dtype=object),
        np.asarray(column(info, "caption", "TEXT", "text", default=None), dtype=object),
        np.asarray(column(info, "url", "URL", default=None), dtype=object),
    )
    return len(ids)


def _search(ctx: BuildContext) -> tuple[Recalled, int]:
    """Caption search for every class's names: ``(recalled, ambiguous rows dropped)``."""
    from priming.corpus import tokenize

    classes, names = ctx.classes, ctx.names
    label_index = {n: i for i, n in enumerate(names)}
    # a name without letters or digits ("***") can match no caption: reported, and its
    # class keeps its other names (or, with none, its text weight)
    queries = {n: [s for s in c if tokenize(s)] for n, c in zip(names, classes)}
    unsearchable = [s for c in classes for s in c if not tokenize(s)]
    if unsearchable:
        log.warning(
            "%d class name(s) have no letters or digits and can match no caption: %s",
            len(unsearchable),
            ", ".join(repr(u) for u in unsearchable[:10]),
        )
        ctx.meta["unsearchable_names"] = unsearchable
    queries = {n: c for n, c in queries.items() if c}
    out = Recalled()
    if not queries:
        ctx.meta["ambiguous_rows"] = 0
        return out, 0
    st = ctx.settings
    hits = ctx.corpus.search_captions(
        queries, limit_per_label=st.search_limit, mode=st.mode.replace("-", "_")
    )
    t = hits.select(["similarity", "nsfw"])  # caption and url are read for kept rows only
    out.row_ids = [int(r) for r in t.column("row_id").to_pylist()]
    out.labels = [label_index[lab] for lab in t.column("label").to_pylist()]
    for r, s in zip(out.row_ids, column(t, "similarity", default=None)):
        out.similarity[r] = np.nan if s is None else float(s)
    out.nsfw.update(zip(out.row_ids, column(t, "nsfw", default=False)))
    amb = hits.ambiguous
    n_amb = 0 if amb is None else amb.num_rows
    ctx.meta["ambiguous_rows"] = n_amb
    if not n_amb:
        return out, 0
    if st.ambiguous == "longest":
        r2, l2, _ = _longest(ctx.corpus, amb, classes, label_index)
        out.row_ids += r2
        out.labels += l2
        ctx.meta["ambiguous_kept"] = len(r2)
        gone = _drop_ambiguous(
            ctx, amb, set(r2), lambda labs: f"ambiguous ({', '.join(labs)}): no name matches whole"
        )
    else:
        gone = _drop_ambiguous(
            ctx, amb, set(), lambda labs: f"caption matches several classes: {', '.join(labs)}"
        )
    return out, gone


def _knn(ctx: BuildContext) -> tuple[np.ndarray, np.ndarray]:
    """Each class's ``knn_k`` nearest corpus rows to its text weight; a row reached from
    several classes goes to the class with the highest score. ``(rows, labels)``."""
    st, C = ctx.settings, ctx.n_classes
    k = int(st.knn_k or st.per_class or 1000)
    k = min(k, int(ctx.corpus.n_rows))
    kscores, krows = ctx.corpus.knn(l2_normalize(ctx.text_weights), k)
    krows = np.asarray(krows).ravel()
    kscores = np.asarray(kscores).ravel()
    klabels = np.repeat(np.arange(C), k)
    valid = krows >= 0
    krows, kscores, klabels = krows[valid], kscores[valid], klabels[valid]
    order = np.lexsort((-kscores, krows))
    krows, kscores, klabels = krows[order], kscores[order], klabels[order]
    first = np.ones(len(krows), bool)
    first[1:] = krows[1:] != krows[:-1]
    return krows[first], klabels[first]


@register_recall("search")
def search_recall(ctx: BuildContext) -> Recalled:
    """Caption search (phrase or all-tokens) for every class name and synonym."""
    out, gone = _search(ctx)
    ctx.record("search", out.labels, [], unassigned=gone)
    return out


@register_recall("knn")
def knn_recall(ctx: BuildContext) -> Recalled:
    """Text-to-image k-NN from each class's text weight."""
    rows, labels = _knn(ctx)
    ctx.record("knn", labels, [])
    return Recalled(rows.tolist(), labels.tolist())


@register_recall("both")
def both_recall(ctx: BuildContext) -> Recalled:
    """Caption search, then the k-NN rows it did not find (a row found by both keeps its
    caption label)."""
    out, gone = _search(ctx)
    ctx.record("search", out.labels, [], unassigned=gone)
    krows, klabels = _knn(ctx)
    have = set(out.row_ids)
    new = [(r, lab) for r, lab in zip(krows.tolist(), klabels.tolist()) if r not in have]
    out.row_ids += [r for r, _ in new]
    out.labels += [lab for _, lab in new]
    ctx.record("search+knn", out.labels, [])
    return out
