"""Statistics across configurations (METHODS.md §2).

Ranks within each group (``backbone, dataset, task``) of the median accuracy over seeds; the
Friedman test over groups; pairwise Wilcoxon signed-rank tests (Pratt zero handling) with
Holm's step-down correction; a critical-difference diagram whose bars join configurations
that are *not* significantly different. Two configurations with identical result vectors
are never significantly different (p = 1), unlike the reference implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from priming.errors import DataError

__all__ = [
    "ComparisonResult",
    "median_matrix",
    "rank_matrix",
    "holm",
    "compare_configs",
    "cd_cliques",
    "plot_cd_diagram",
]

DEFAULT_GROUP = ("backbone", "dataset", "task")


def _join_cols(df: Any, cols: Sequence[str], skip_missing: bool = False) -> Any:
    """One string per row: the values of ``cols`` joined by ``/`` (missing values skipped or 'nan')."""
    import pandas as pd

    def join(row: Any) -> str:
        return "/".join(
            str(v)
            for v in row
            if not (skip_missing and (v is None or (isinstance(v, float) and np.isnan(v))))
        )

    if not len(cols):
        return pd.Series("all", index=df.index)
    return df[list(cols)].apply(join, axis=1).astype(object)


def median_matrix(
    records: Any,
    *,
    group_cols: Sequence[str] = DEFAULT_GROUP,
    config_col: str = "config",
    metric: str = "top1",
) -> tuple[np.ndarray, list[tuple[Any, ...]], list[str]]:
    """Median of ``metric`` over seeds (and any other repeat) per group and configuration.

    ``records`` is a pandas DataFrame or a list of dicts. Returns ``(M, groups, configs)`` with
    ``M[g, c]`` the median (NaN where a group lacks a configuration). Group columns that are
    absent are ignored.
    """
    import pandas as pd

    df = records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    for col in (config_col, metric):
        if col not in df.columns:
            raise DataError(f"results have no column {col!r}; columns: {', '.join(df.columns)}")
    if df.empty:
        raise DataError("results are empty")
    gcols = [c for c in group_cols if c in df.columns]
    key = _join_cols(df, gcols) if gcols else pd.Series("all", index=df.index)
    med = df.assign(_g=key).groupby(["_g", config_col], sort=True)[metric].median().unstack()
    groups = [tuple(g.split("/")) for g in med.index]
    return med.to_numpy(dtype=float), groups, [str(c) for c in med.columns]


def rank_matrix(M: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """Rank configurations within each row (1 = best; ties get the average rank)."""
    M = np.asarray(M, dtype=float)
    return sps.rankdata(-M if higher_is_better else M, axis=1, method="average")


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    adj_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj_sorted
    return out


def _wilcoxon_pratt(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b
    if np.all(d == 0):
        return 1.0  # identical result vectors: no evidence of any difference
    try:
        res = sps.wilcoxon(a, b, zero_method="pratt", alternative="two-sided")
    except ValueError:
        return 1.0
    p = float(res.pvalue)
    return 1.0 if not np.isfinite(p) else p


@dataclass
class ComparisonResult:
    """Outcome of :func:`compare_configs`.

    ``pairwise`` holds one dict per pair: ``a``, ``b``, ``p`` (raw Wilcoxon), ``p_holm``,
    ``significant`` (``p_holm < alpha``).
    """

    configs: list[str]
    groups: list[tuple[Any, ...]]
    medians: np.ndarray
    ranks: np.ndarray
    mean_ranks: np.ndarray
    friedman_statistic: float
    friedman_p: float
    pairwise: list[dict[str, Any]] = field(default_factory=list)
    alpha: float = 0.05

    def significant(self, a: str, b: str) -> bool:
        for row in self.pairwise:
            if {row["a"], row["b"]} == {a, b}:
                return bool(row["significant"])
        raise DataError(f"no comparison between {a!r} and {b!r}")

    def ranking(self) -> list[tuple[str, float]]:
        """Configurations sorted by mean rank (best first)."""
        order = np.argsort(self.mean_ranks, kind="stable")
        return [(self.configs[i], float(self.mean_ranks[i])) for i in order]


def compare_configs(
    records: Any,
    *,
    group_cols: Sequence[str] = DEFAULT_GROUP,
    config_col: str = "config",
    metric: str = "top1",
    alpha: float = 0.05,
    complete_only: bool = True,
) -> ComparisonResult:
    """Ranks, Friedman test and pairwise Wilcoxon–Holm comparisons of configurations.

    Groups missing a configuration are dropped when ``complete_only`` (the tests need paired
    data); at least two groups and two configurations must remain.
    """
    M, groups, configs = median_matrix(
        records, group_cols=group_cols, config_col=config_col, metric=metric
    )
    keep = ~np.isnan(M).any(axis=1)
    if complete_only:
        M, groups = M[keep], [g for g, k in zip(groups, keep) if k]
    if len(configs) < 2 or len(groups) < 2:
        raise DataError(
            f"need at least 2 configurations and 2 complete groups to compare, got "
            f"{len(configs)} configurations and {len(groups)} groups"
        )
    R = rank_matrix(M)
    if len(configs) >= 3 and not np.all(M == M[:, :1]):
        fr = sps.friedmanchisquare(*[M[:, j] for j in range(M.shape[1])])
        stat, p = float(fr.statistic), float(fr.pvalue)
        if not np.isfinite(p):
            stat, p = 0.0, 1.0
    elif len(configs) >= 3:
        stat, p = 0.0, 1.0
    else:
        stat, p = float("nan"), float("nan")
    pairs = [(i, j) for i in range(len(configs)) for j in range(i + 1, len(configs))]
    raw = [_wilcoxon_pratt(M[:, i], M[:, j]) for i, j in pairs]
    adj = holm(raw)
    pairwise = [
        {
            "a": configs[i],
            "b": configs[j],
            "p": raw[n],
            "p_holm": float(adj[n]),
            "significant": bool(adj[n] < alpha),
        }
        for n, (i, j) in enumerate(pairs)
    ]
    return ComparisonResult(
        configs, groups, M, R, R.mean(axis=0), stat, p, pairwise, alpha=float(alpha)
    )


def cd_cliques(result: ComparisonResult) -> list[list[str]]:
    """Maximal runs of rank-adjacent configurations with no significant pair among them."""
    names = [c for c, _ in result.ranking()]
    sig = {frozenset((r["a"], r["b"])): r["significant"] for r in result.pairwise}
    cliques: list[list[str]] = []
    for i in range(len(names)):
        j = i
        while j + 1 < len(names) and not any(
            sig[frozenset((names[k], names[j + 1]))] for k in range(i, j + 1)
        ):
            j += 1
        if j > i and not any(set(names[i : j + 1]) <= set(c) for c in cliques):
            cliques.append(names[i : j + 1])
    return cliques


def plot_cd_diagram(result: ComparisonResult, path: str | Path, title: str | None = None) -> Path:
    """Draw a critical-difference diagram to ``path`` (PNG, matplotlib Agg backend).

    The axis shows mean ranks (1 = best, on the left); every configuration is labelled; thick
    bars join configurations that are not significantly different (Wilcoxon–Holm).
    """
    from priming.eval.plots import atomic_savefig, pyplot

    plt = pyplot()
    ranking = result.ranking()
    k = len(ranking)
    cliques = cd_cliques(result)
    half = (k + 1) // 2
    n_rows = max(half, k - half)
    row_h, bar_h = 0.5, 0.3
    clique_y0 = -0.4
    base = clique_y0 - bar_h * max(len(cliques), 1) - 0.2
    bottom = base - row_h * (n_rows - 1) - 0.4
    top = 1.0
    fig, ax = plt.subplots(figsize=(9, 0.42 * (top - bottom) + 0.9))
    lo, hi = 1, max(k, 2)
    ax.set_xlim(lo - 0.5, hi + 0.5)
    ax.set_ylim(bottom, top)
    ax.axis("off")
    ax.hlines(0, lo, hi, color="black", lw=1.2)
    for r in range(lo, hi + 1):
        ax.vlines(r, 0, 0.15, color="black", lw=1)
        ax.text(r, 0.3, str(r), ha="center", va="bottom", fontsize=10)
    for t in np.arange(lo, hi, 0.5):
        ax.vlines(t, 0, 0.08, color="black", lw=0.6)
    for n, clique in enumerate(cliques):
        ranks = [dict(ranking)[c] for c in clique]
        y = clique_y0 - bar_h * n
        ax.hlines(y, min(ranks) - 0.1, max(ranks) + 0.1, color="tab:red", lw=4, alpha=0.8)
    for i, (name, rank) in enumerate(ranking):
        left = i < half
        row = i if left else k - 1 - i
        y = base - row_h * row
        x_text = lo - 0.35 if left else hi + 0.35
        ax.plot([rank, rank, x_text], [0, y, y], color="0.35", lw=0.9)
        ax.text(
            x_text,
            y,
            f"{name} ({rank:.2f})" if left else f"({rank:.2f}) {name}",
            ha="right" if left else "left",
            va="center",
            fontsize=9,
        )
    ttl = title or "Mean rank (1 = best); red bars: not significantly different"
    ax.set_title(
        f"{ttl}\nFriedman p = {result.friedman_p:.3g}, Wilcoxon–Holm at {result.alpha:g}, "
        f"{len(result.groups)} groups",
        fontsize=10,
    )
    fig.subplots_adjust(left=0.26, right=0.74, top=1 - 0.75 / fig.get_figheight(), bottom=0.02)
    return atomic_savefig(fig, path)
