"""Build a priming pool from a corpus (METHODS §1.2).

search (phrase | all-tokens) and/or text-to-image kNN → ambiguity → NSFW → de-duplication
(url, near-identical embedding) → test-leakage guard → zero-shot agreement → per-class cap
→ optional balancing. ``pool.stats()`` has the per-class counts after every step.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import numpy as np

from priming.errors import ConfigError, DataError
from priming.heads.templates import parse_class_names
from priming.pool.knn import cosine_topk
from priming.pool.pool import PrimingPool

log = logging.getLogger(__name__)

__all__ = ["build_pool", "check_corpus_model"]

RECALL = ("search", "knn", "both")
MODES = ("phrase", "all_tokens", "all-tokens")
AMBIGUOUS = ("drop", "longest")
SCORES = ("zero-shot", "similarity")


def _l2(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


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


def _empty_hits():
    import pyarrow as pa

    return pa.table(
        {
            "row_id": pa.array([], pa.int64()),
            "label": pa.array([], pa.string()),
            "similarity": pa.array([], pa.float32()),
            "nsfw": pa.array([], pa.bool_()),
        }
    )


def _col(table, *names, default=None):
    for n in names:
        if n in table.column_names:
            return table.column(n).to_pylist()
    return [default] * table.num_rows


def _resolve_longest(corpus, ambiguous, classes: list[list[str]], label_index: dict[str, int]):
    """Assign ambiguous rows to the class whose longest matching name is longest."""
    if ambiguous is None or ambiguous.num_rows == 0:
        return [], []
    row_ids = ambiguous.column("row_id").to_pylist()
    labels_list = ambiguous.column("labels").to_pylist()
    captions = _col(corpus.rows(row_ids), "caption", "TEXT", "text", default="")
    out_rows, out_labels = [], []
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
        if best is not None:
            out_rows.append(rid)
            out_labels.append(best)
    return out_rows, out_labels


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
        filter) set aside, unfiltered and uncapped, as ``pool.holdout`` — a validation set
        with caption labels for choosing α without shots.
    random_state : int, Generator or None
        Seeds the hold-out split.
    encoder, model
        The run's encoder (or model name) to check against the corpus's recorded model.
    """
    classes = parse_class_names(class_names)
    names = [c[0] for c in classes]
    C = len(classes)
    for opt, val, choices in (
        ("recall", recall, RECALL),
        ("mode", mode, MODES),
        ("ambiguous", ambiguous, AMBIGUOUS),
        ("score", score, SCORES),
    ):
        if val not in choices:
            raise ConfigError(f"{opt} must be one of {choices}, got {val!r}")
    if per_class is not None and int(per_class) < 1:
        raise ConfigError(f"per_class must be >= 1 or None, got {per_class}")
    if min_probability is not None and not 0 <= min_probability <= 1:
        raise ConfigError(f"min_probability must lie in [0, 1], got {min_probability}")
    T = None
    if text_weights is not None:
        T = np.asarray(text_weights, dtype=np.float32)
        if T.ndim != 2 or T.shape[0] != C:
            raise DataError(f"text_weights must have one row per class ({C}), got shape {T.shape}")
    needs_T = [
        n
        for n, on in (
            ("agreement", agreement),
            ("recall='knn'", recall != "search"),
            ("score='zero-shot'", score == "zero-shot" and per_class),
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
    check_corpus_model(corpus, None if T is None else T.shape[1], encoder, model)
    label_index = {n: i for i, n in enumerate(names)}

    row_ids: list[int] = []
    labels: list[int] = []
    sims: dict[int, float] = {}
    hit_nsfw: dict[int, bool] = {}
    meta: dict = {
        "corpus": getattr(corpus, "fingerprint", None),
        "embedding_model": getattr(corpus, "embedding_model", None),
        "recall": recall,
        "mode": mode,
    }
    steps: list[tuple[str, list[int]]] = []

    def record(step, labs):
        steps.append((step, np.bincount(np.asarray(labs, dtype=np.int64), minlength=C).tolist()))

    if recall in ("search", "both"):
        from priming.corpus._store import tokenize

        # a name without letters or digits ("***") can match no caption: reported, and
        # its class keeps its other names (or, with none, its text weight)
        queries = {n: [s for s in c if tokenize(s)] for n, c in zip(names, classes)}
        unsearchable = [s for c in classes for s in c if not tokenize(s)]
        if unsearchable:
            log.warning(
                "%d class name(s) have no letters or digits and can match no caption: %s",
                len(unsearchable),
                ", ".join(repr(u) for u in unsearchable[:10]),
            )
            meta["unsearchable_names"] = unsearchable
        queries = {n: c for n, c in queries.items() if c}
        hits = (
            corpus.search_captions(
                queries, limit_per_label=search_limit, mode=mode.replace("-", "_")
            )
            if queries
            else None
        )
        t = hits.table if hits is not None else _empty_hits()
        row_ids = [int(r) for r in t.column("row_id").to_pylist()]
        labels = [label_index[lab] for lab in t.column("label").to_pylist()]
        for r, s in zip(row_ids, _col(t, "similarity", default=None)):
            sims[r] = np.nan if s is None else float(s)
        hit_nsfw.update(zip(row_ids, _col(t, "nsfw", default=False)))
        n_amb = 0 if hits is None or hits.ambiguous is None else hits.ambiguous.num_rows
        meta["ambiguous_rows"] = n_amb
        if ambiguous == "longest" and n_amb:
            r2, l2 = _resolve_longest(corpus, hits.ambiguous, classes, label_index)
            row_ids += r2
            labels += l2
            meta["ambiguous_kept"] = len(r2)
        record("search", labels)
    if recall in ("knn", "both"):
        k = int(knn_k or per_class or 1000)
        k = min(k, int(corpus.n_rows))
        kscores, krows = corpus.knn(_l2(T), k)
        krows = np.asarray(krows).ravel()
        kscores = np.asarray(kscores).ravel()
        klabels = np.repeat(np.arange(C), k)
        valid = krows >= 0
        krows, kscores, klabels = krows[valid], kscores[valid], klabels[valid]
        # a row reached from several classes goes to the class with the highest score
        order = np.lexsort((-kscores, krows))
        krows, kscores, klabels = krows[order], kscores[order], klabels[order]
        first = np.ones(len(krows), bool)
        first[1:] = krows[1:] != krows[:-1]
        krows, klabels = krows[first], klabels[first]
        if recall == "knn":
            row_ids, labels = krows.tolist(), klabels.tolist()
            record("knn", labels)
        else:
            have = set(row_ids)
            new = [(r, lab) for r, lab in zip(krows.tolist(), klabels.tolist()) if r not in have]
            row_ids += [r for r, _ in new]
            labels += [lab for _, lab in new]
            record("search+knn", labels)

    rid = np.asarray(row_ids, dtype=np.int64)
    lab = np.asarray(labels, dtype=np.int64)
    order = np.argsort(rid, kind="stable")
    rid, lab = rid[order], lab[order]
    if len(rid):
        info = corpus.rows(rid.tolist())
        captions = np.asarray(_col(info, "caption", "TEXT", "text", default=""), dtype=object)
        urls = np.asarray(_col(info, "url", "URL", default=""), dtype=object)
        flags = np.asarray(
            [
                bool(hit_nsfw[r]) if r in hit_nsfw else _is_nsfw(v)
                for r, v in zip(rid.tolist(), _col(info, "nsfw", "NSFW", default=False))
            ],
            dtype=bool,
        )
        sim_col = _col(info, "similarity", default=None)
        similarity = np.asarray(
            [sims.get(r, np.nan if s is None else s) for r, s in zip(rid.tolist(), sim_col)],
            dtype=np.float32,
        )
    else:
        captions = urls = np.zeros(0, dtype=object)
        flags = np.zeros(0, bool)
        similarity = np.zeros(0, np.float32)

    keep = np.ones(len(rid), bool)
    if nsfw:
        keep &= ~flags
        record("nsfw", lab[keep])

    if dedup_url and len(rid):
        seen: set = set()
        for i in np.flatnonzero(keep):
            u = urls[i]
            if not u:
                continue
            if u in seen:
                keep[i] = False
            seen.add(u)
        record("dedup-url", lab[keep])

    idx = np.flatnonzero(keep)
    rid, lab, captions, urls, similarity = (
        rid[idx],
        lab[idx],
        captions[idx],
        urls[idx],
        similarity[idx],
    )
    E = np.asarray(corpus.embeddings(rid.tolist()), dtype=np.float32) if len(rid) else None
    if E is None:
        E = np.zeros(
            (0, T.shape[1] if T is not None else (getattr(corpus, "dim", 0) or 0)), np.float32
        )
    if T is not None and E.shape[1] != T.shape[1]:
        check_corpus_model(corpus, T.shape[1], encoder, model)
    if len(rid):  # rows without an embedding (image not downloaded / corrupt) read as NaN
        has = np.isfinite(E).all(axis=1)
        if not has.all():
            rid, lab, captions, urls, similarity, E = (
                a[has] for a in (rid, lab, captions, urls, similarity, E)
            )
            meta["no_embedding"] = int((~has).sum())
            record("has-embedding", lab)
    keep = np.ones(len(rid), bool)

    if dedup_threshold is not None and len(rid):
        keep &= _near_duplicate_mask(E, lab, float(dedup_threshold))
        record("dedup-embedding", lab[keep])

    if eval_embeddings is not None and (leakage_guard is None or leakage_guard):
        Ev = np.asarray(eval_embeddings, dtype=np.float32)
        if Ev.ndim != 2 or Ev.shape[1] != E.shape[1]:
            raise DataError(
                f"evaluation embeddings have shape {Ev.shape}; the corpus embeddings are "
                f"{E.shape[1]}-d"
            )
        if len(Ev) and keep.any():
            idx = np.flatnonzero(keep)
            s, _ = cosine_topk(E[idx], Ev, 1)
            leak = s[:, 0] >= leakage_threshold
            keep[idx[leak]] = False
            meta["leakage_dropped"] = int(leak.sum())
        record("leakage", lab[keep])
    elif leakage_guard and eval_embeddings is None:
        raise ConfigError("leakage_guard=True needs eval_embeddings")

    held = np.zeros(len(rid), bool)
    if holdout:
        if not 0 < holdout < 1:
            raise ConfigError(f"holdout must lie in (0, 1), got {holdout}")
        rng = np.random.default_rng(random_state)
        for c in range(C):
            idx = np.flatnonzero(keep & (lab == c))
            n_h = int(np.floor(holdout * len(idx)))
            if n_h:
                held[rng.choice(idx, n_h, replace=False)] = True
        keep &= ~held
        record("holdout", lab[keep])

    zs_prob = np.full(len(rid), np.nan, np.float32)
    if T is not None and len(rid):
        S = _l2(E) @ T.T
        z = S / temperature
        z -= z.max(axis=1, keepdims=True)
        P = np.exp(z)
        P /= P.sum(axis=1, keepdims=True)
        zs_prob = P[np.arange(len(rid)), lab].astype(np.float32)
        if agreement:
            ok = S.argmax(axis=1) == lab
            if min_probability is not None:
                ok &= zs_prob >= min_probability
            keep &= ok
            record("agreement", lab[keep])

    scores = zs_prob if score == "zero-shot" else similarity
    if per_class is not None and keep.any():
        keep = _cap(keep, lab, scores, int(per_class), C)
        record("cap", lab[keep])
    if balance and keep.any():
        counts = np.bincount(lab[keep], minlength=C)
        m = int(counts[counts > 0].min())
        keep = _cap(keep, lab, scores, m, C)
        record("balance", lab[keep])

    idx = np.flatnonzero(keep)
    pool = PrimingPool(
        E[idx],
        lab[idx],
        names,
        rid[idx],
        captions[idx],
        urls[idx],
        scores[idx],
        meta=meta,
        steps=steps,
    )
    hidx = np.flatnonzero(held)
    pool.holdout = PrimingPool(
        E[hidx], lab[hidx], names, rid[hidx], captions[hidx], urls[hidx], zs_prob[hidx], meta=meta
    )
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


def _cap(keep: np.ndarray, lab: np.ndarray, scores: np.ndarray, n: int, C: int) -> np.ndarray:
    """Keep the ``n`` highest-scoring kept rows of each class (NaN scores rank last)."""
    idx = np.flatnonzero(keep)
    s = np.nan_to_num(scores[idx].astype(np.float64), nan=-np.inf)
    order = np.lexsort((-s, lab[idx]))  # by class, then score descending
    sorted_lab = lab[idx][order]
    start = np.searchsorted(sorted_lab, np.arange(C))
    rank = np.arange(len(order)) - start[sorted_lab]
    out = np.zeros_like(keep)
    out[idx[order[rank < n]]] = True
    return out


def _near_duplicate_mask(
    E: np.ndarray, lab: np.ndarray, threshold: float, k: int = 8
) -> np.ndarray:
    """True for rows to keep: within each class, rows linked by cosine ≥ threshold form
    groups (connected components over each row's k nearest); the first row of a group stays."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(E)
    rows, cols = [], []
    order = np.argsort(lab, kind="stable")
    bounds = np.flatnonzero(np.diff(lab[order])) + 1
    for members in np.split(order, bounds):
        if len(members) < 2:
            continue
        s, nb = cosine_topk(E[members], E, min(k, len(members)), pool_index=members)
        hit = (s >= threshold) & (nb != members[:, None])
        r, c = np.nonzero(hit)
        rows.append(members[r])
        cols.append(nb[r, c])
    keep = np.ones(n, bool)
    if rows:
        r = np.concatenate(rows)
        c = np.concatenate(cols)
        if len(r):
            g = coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
            _, comp = connected_components(g, directed=False)
            first = np.full(comp.max() + 1, n)
            np.minimum.at(first, comp, np.arange(n))
            keep = first[comp] == np.arange(n)
    return keep
