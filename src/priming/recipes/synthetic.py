"""Synthetic sub-cluster benchmark: classes that are unions of ``d`` Gaussian blobs.

This is the offline evidence for the IMPRINT findings (METHODS.md §2): when every class is
made of ``d`` sub-clusters, one mean proxy per class cannot represent it, k-means imprinting
recovers the sub-clusters and its accuracy peaks near ``k = d``; ``max`` aggregation equals
``mnn`` with ``m = 1``; voting over more neighbours (larger ``m``) hurts.

Geometry of :func:`make_subclusters`: every class ``c`` owns ``d`` sub-cluster centres drawn
uniformly on the unit sphere of ``R^D`` (all ``C·d`` centres independent), and a sample of
sub-cluster ``j`` is ``centre_cj + cluster_std · N(0, I_D)``. Samples are spread evenly over a
class's sub-clusters (sample ``i`` of a class belongs to sub-cluster ``i mod d``), so every
sub-cluster has ``n/d`` samples when ``d`` divides ``n``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from priming._fs import make_dir, write_bytes_atomic
from priming.errors import ConfigError
from priming.progress import ProgressCallback, track

__all__ = [
    "SyntheticFindings",
    "reproduce_synthetic",
    "make_subclusters",
    "SubclusterTable",
    "default_configs",
    "run_subcluster_experiment",
]

log = logging.getLogger(__name__)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {value!r}")
    return int(value)


def make_subclusters(
    n_classes: int = 10,
    n_subclusters: int = 3,
    n_features: int = 16,
    n_train_per_class: int = 60,
    n_test_per_class: int = 100,
    *,
    cluster_std: float = 0.25,
    shuffle: bool = True,
    return_subclusters: bool = False,
    random_state: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, ...]:
    """Draw a classification problem whose classes are unions of Gaussian sub-clusters.

    Parameters
    ----------
    n_classes, n_subclusters, n_features : int
        ``C`` classes, ``d`` sub-clusters per class, ``D`` dimensions.
    n_train_per_class, n_test_per_class : int
        Rows per class in the training and test sets (spread evenly over sub-clusters).
    cluster_std : float
        Standard deviation of the isotropic Gaussian noise around each unit-norm centre.
    shuffle : bool
        Shuffle the rows of each split (with the same generator), else rows are grouped by class.
    return_subclusters : bool
        Also return the sub-cluster index of every row and the centres, shape ``(C, d, D)``.
    random_state : int, numpy Generator or None
        Seed; the same seed gives the same arrays.

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarray
        ``float32`` features and ``int64`` labels in ``0..C-1``. With ``return_subclusters``
        additionally ``s_train, s_test, centers``.
    """
    n_classes = _positive_int("n_classes", n_classes)
    d = _positive_int("n_subclusters", n_subclusters)
    dim = _positive_int("n_features", n_features)
    n_train = _positive_int("n_train_per_class", n_train_per_class)
    n_test = _positive_int("n_test_per_class", n_test_per_class)
    if not np.isfinite(cluster_std) or cluster_std < 0:
        raise ConfigError(f"cluster_std must be a finite number >= 0, got {cluster_std!r}")
    rng = np.random.default_rng(random_state)
    centers = rng.standard_normal((n_classes, d, dim))
    centers /= np.linalg.norm(centers, axis=2, keepdims=True)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sub = np.arange(n) % d
        X = centers[:, sub, :] + cluster_std * rng.standard_normal((n_classes, n, dim))
        X = X.reshape(n_classes * n, dim).astype(np.float32)
        y = np.repeat(np.arange(n_classes, dtype=np.int64), n)
        s = np.tile(sub, n_classes).astype(np.int64)
        if shuffle:
            order = rng.permutation(len(y))
            X, y, s = X[order], y[order], s[order]
        return X, y, s

    X_tr, y_tr, s_tr = draw(n_train)
    X_te, y_te, s_te = draw(n_test)
    if return_subclusters:
        return X_tr, y_tr, X_te, y_te, s_tr, s_te, centers.astype(np.float32)
    return X_tr, y_tr, X_te, y_te


# --------------------------------------------------------------------------- experiment

#: Row name -> ImprintedHead constructor spec: a preset name (str) or keyword arguments (dict).
ConfigSpec = str | Mapping[str, Any]


def default_configs(
    ks: Sequence[int] = (1, 2, 3, 5, 8, 20),
    ms: Sequence[int] = (1, 3, 10),
    mnn_k: int = 5,
) -> dict[str, ConfigSpec]:
    """The rows of the demo table: the named IMPRINT configurations, k-means(k) and mnn(m).

    ``kmeans k=K`` is ``l2 / kmeans(K) / l2 / l2 / max``; ``mnn m=M`` is
    ``l2 / kmeans(mnn_k) / l2 / l2`` with ``mnn`` aggregation over the ``M`` nearest proxies
    (cosine, uniform votes), so ``mnn m=1`` must equal the ``kmeans k=<mnn_k>`` row.
    """
    rows: dict[str, ConfigSpec] = {
        "qi2018": "qi2018",
        "hosoda2024": "hosoda2024",
        "janson2022": "janson2022",
        "imprint-best": "imprint-best",
        "oracle-ls": "oracle-ls",
    }
    for k in ks:
        rows[f"kmeans k={k}"] = {"generator": "kmeans", "n_proxies": int(k)}
    for m in ms:
        rows[f"mnn m={m}"] = {
            "generator": "kmeans",
            "n_proxies": mnn_k,
            "aggregation": "mnn",
            "n_neighbors": int(m),
            "metric": "cosine",
        }
    return rows


def _imprinted_head(spec: ConfigSpec, random_state: int) -> Any:
    from priming.heads import ImprintedHead

    if isinstance(spec, str):
        head = ImprintedHead.from_preset(spec)
        return head.set_params(random_state=random_state)
    return ImprintedHead(**{**dict(spec), "random_state": random_state})


@dataclass
class SubclusterTable:
    """Accuracies of every configuration (rows) for every ``d`` (columns) and seed.

    ``accuracy[i, j, s]`` is the test accuracy of ``rows[i]`` on data with ``d_values[j]``
    sub-clusters per class under seed ``seeds[s]``.
    """

    rows: list[str]
    d_values: list[int]
    seeds: list[int]
    accuracy: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    def median(self) -> np.ndarray:
        """Median accuracy over seeds, shape ``(n_rows, n_d)``."""
        return np.median(self.accuracy, axis=2)

    def cell(self, row: str, d: int) -> float:
        """Median accuracy of ``row`` at ``d``."""
        return float(self.median()[self.rows.index(row), self.d_values.index(d)])

    def best_k(self, d: int) -> int:
        """The ``k`` of the best ``kmeans k=K`` row at ``d`` (smallest k on ties)."""
        ks = [(int(r.split("=")[1]), r) for r in self.rows if r.startswith("kmeans k=")]
        if not ks:
            raise ConfigError("the table has no 'kmeans k=K' rows")
        scores = [self.cell(r, d) for _, r in sorted(ks)]
        return sorted(ks)[int(np.argmax(scores))][0]

    def records(self) -> list[dict[str, Any]]:
        """One dict per (config, d, seed): long format for a DataFrame or CSV."""
        return [
            {"config": r, "d": d, "seed": s, "accuracy": float(self.accuracy[i, j, t])}
            for i, r in enumerate(self.rows)
            for j, d in enumerate(self.d_values)
            for t, s in enumerate(self.seeds)
        ]

    def to_text(self, percent: bool = True, mark_best: bool = True) -> str:
        """A fixed-width table (median over seeds); ``*`` marks the best row of each column."""
        med = self.median() * (100.0 if percent else 1.0)
        best = med.max(axis=0)
        width = max(len(r) for r in self.rows + ["config"])
        head = f"{'config':<{width}} " + " ".join(f"{'d=' + str(d):>8}" for d in self.d_values)
        lines = [head, "-" * len(head)]
        for i, r in enumerate(self.rows):
            cells = []
            for j in range(len(self.d_values)):
                star = "*" if mark_best and np.isclose(med[i, j], best[j]) else " "
                cells.append(f"{med[i, j]:7.1f}{star}")
            lines.append(f"{r:<{width}} " + " ".join(cells))
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The same table in GitHub markdown (median % over seeds; best in bold)."""
        med = self.median() * 100.0
        best = med.max(axis=0)
        lines = [
            "| config | " + " | ".join(f"d={d}" for d in self.d_values) + " |",
            "|---|" + "---:|" * len(self.d_values),
        ]
        for i, r in enumerate(self.rows):
            cells = [
                f"**{v:.1f}**" if np.isclose(v, best[j]) else f"{v:.1f}"
                for j, v in enumerate(med[i])
            ]
            lines.append(f"| {r} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def run_subcluster_experiment(
    d_values: Sequence[int] = (1, 2, 3, 5),
    configs: Mapping[str, ConfigSpec] | None = None,
    *,
    seeds: Sequence[int] = (0,),
    n_classes: int = 10,
    n_features: int = 16,
    n_train_per_class: int = 60,
    n_test_per_class: int = 100,
    cluster_std: float = 0.25,
    estimator_factory: Callable[[ConfigSpec, int], Any] | None = None,
    progress: ProgressCallback | None = None,
) -> SubclusterTable:
    """Fit every configuration on sub-cluster data for every ``d`` and seed; test accuracy.

    Parameters
    ----------
    d_values : sequence of int
        Sub-clusters per class, one table column each.
    configs : mapping name -> preset name or ImprintedHead keyword arguments
        Table rows; default :func:`default_configs`.
    seeds : sequence of int
        One dataset draw and one head ``random_state`` per seed (the same for every row).
    estimator_factory : callable(spec, seed) -> estimator, optional
        Builds an estimator with ``fit``/``score`` from a row's spec; default builds a
        :class:`priming.heads.ImprintedHead`.
    progress : priming.progress.ProgressCallback, optional
        Receives one event per fit (task ``"synthetic"``, unit ``"fits"``).
    """
    configs = dict(default_configs() if configs is None else configs)
    if not configs:
        raise ConfigError("configs is empty; give at least one configuration")
    d_values = [_positive_int("d_values entry", d) for d in d_values]
    seeds = [_seed(s) for s in seeds]
    if not d_values or not seeds:
        raise ConfigError("d_values and seeds must each contain at least one value")
    factory = estimator_factory or _imprinted_head
    rows = list(configs)
    acc = np.zeros((len(rows), len(d_values), len(seeds)))
    with track(progress, "synthetic", total=acc.size, unit="fits") as tracker:
        for t, seed in enumerate(seeds):
            for j, d in enumerate(d_values):
                X_tr, y_tr, X_te, y_te = make_subclusters(
                    n_classes,
                    d,
                    n_features,
                    n_train_per_class,
                    n_test_per_class,
                    cluster_std=cluster_std,
                    random_state=[seed, d],
                )
                for i, name in enumerate(rows):
                    est = factory(configs[name], seed)
                    est.fit(X_tr, y_tr)
                    acc[i, j, t] = float(np.mean(est.predict(X_te) == y_te))
                    tracker.advance()
                log.debug("d=%d seed=%d done", d, seed)
    params = {
        "n_classes": n_classes,
        "n_features": n_features,
        "n_train_per_class": n_train_per_class,
        "n_test_per_class": n_test_per_class,
        "cluster_std": cluster_std,
    }
    return SubclusterTable(rows, d_values, seeds, acc, params)


# --------------------------------------------------------------------------- IMPRINT findings


@dataclass
class SyntheticFindings:
    """Outcome of :func:`reproduce_synthetic`: the table and each finding with its evidence."""

    table: SubclusterTable
    best_k: dict[int, int]
    peaks_near_d: bool
    max_equals_mnn1: bool
    mnn_mean_by_m: dict[int, float]
    larger_m_hurts: bool
    files: dict[str, Path]

    def summary(self) -> str:
        ok = {True: "yes", False: "NO"}
        bk = ", ".join(f"d={d}: k={k}" for d, k in self.best_k.items())
        mm = ", ".join(f"m={m}: {100 * v:.1f}%" for m, v in self.mnn_mean_by_m.items())
        return "\n".join(
            [
                f"k-means accuracy peaks near k = d ........ {ok[self.peaks_near_d]} ({bk})",
                f"max equals mnn with m = 1 ................ {ok[self.max_equals_mnn1]}",
                f"larger m hurts (mean over d) ............. {ok[self.larger_m_hurts]} ({mm})",
            ]
        )


def reproduce_synthetic(
    out_dir: str | os.PathLike[str] | None = None,
    *,
    d_values: Sequence[int] = (1, 2, 3, 5),
    ks: Sequence[int] = (1, 2, 3, 4, 5, 6, 8, 10, 20),
    ms: Sequence[int] = (1, 2, 3, 5, 10),
    mnn_k: int = 5,
    seeds: Sequence[int] = (0, 1, 2),
    progress: ProgressCallback | None = None,
) -> SyntheticFindings:
    """Run the sub-cluster benchmark and check the IMPRINT findings; optionally write files.

    Rows: the named presets, ``kmeans k=K`` (``l2/kmeans(K)/l2/l2/max``) for every ``K`` in
    ``ks`` and ``mnn m=M`` (``l2/kmeans(mnn_k)/l2/l2/mnn(M)``) for every ``M`` in ``ms``.
    With ``out_dir``: ``synthetic.md``, ``synthetic.csv``, ``acc_vs_k.png``, ``acc_vs_m.png``.
    """
    if out_dir is not None:  # an unusable folder fails before the experiment runs
        make_dir(out_dir, "output folder")
    ks = sorted({int(k) for k in ks} | {int(mnn_k)})
    configs = default_configs(ks=ks, ms=ms, mnn_k=mnn_k)
    table = run_subcluster_experiment(d_values, configs, seeds=seeds, progress=progress)
    best_k = {d: table.best_k(d) for d in table.d_values}
    peaks = all(abs(best_k[d] - d) <= 1 for d in table.d_values)
    med = table.median()
    ref = med[table.rows.index(f"kmeans k={mnn_k}")]
    m1 = med[table.rows.index("mnn m=1")] if 1 in ms else None
    max_eq = m1 is not None and bool(np.array_equal(ref, m1))
    by_m = {int(m): float(med[table.rows.index(f"mnn m={m}")].mean()) for m in ms}
    vals = [by_m[m] for m in sorted(by_m)]
    hurts = (
        len(vals) >= 2
        and vals[-1] < vals[0]
        and all(b <= a + 0.005 for a, b in zip(vals, vals[1:]))
    )
    files: dict[str, Path] = {}
    if out_dir is not None:
        files = _write_synthetic(Path(out_dir), table, ks, ms, mnn_k)
    res = SyntheticFindings(table, best_k, peaks, max_eq, by_m, hurts, files)
    if out_dir is not None:
        text = (
            "# Synthetic sub-cluster benchmark (IMPRINT findings)\n\n"
            f"Parameters: {table.params}, seeds {table.seeds}. Cells: median test accuracy % "
            "over seeds (best per column in bold).\n\n"
            f"{table.to_markdown()}\n\n## Findings\n\n```\n{res.summary()}\n```\n\n"
            "![accuracy vs k](acc_vs_k.png)\n\n![accuracy vs m](acc_vs_m.png)\n"
        )
        write_bytes_atomic(Path(out_dir) / "synthetic.md", text.encode())
        files["markdown"] = Path(out_dir) / "synthetic.md"
    return res


def _write_synthetic(out: Path, table: SubclusterTable, ks, ms, mnn_k) -> dict[str, Path]:
    import pandas as pd

    from priming.eval.plots import plot_lines

    make_dir(out, "output folder")
    csv = out / "synthetic.csv"
    write_bytes_atomic(csv, pd.DataFrame(table.records()).to_csv(index=False).encode())
    acc = table.accuracy * 100
    series_k = {}
    for j, d in enumerate(table.d_values):
        idx = [table.rows.index(f"kmeans k={k}") for k in ks]
        a = acc[idx, j, :]
        series_k[f"d = {d}"] = (ks, np.median(a, axis=1), a.min(axis=1), a.max(axis=1))
    pk = plot_lines(
        series_k,
        out / "acc_vs_k.png",
        xlabel="k (k-means proxies per class)",
        ylabel="test accuracy %",
        title="k-means imprinting on classes made of d sub-clusters: the peak sits at k = d",
        logx=True,
        xticks=ks,
        marks={f"k={d}": d for d in table.d_values if d > 1},
    )
    series_m = {}
    for j, d in enumerate(table.d_values):
        idx = [table.rows.index(f"mnn m={m}") for m in ms]
        a = acc[idx, j, :]
        series_m[f"d = {d}"] = (list(ms), np.median(a, axis=1), a.min(axis=1), a.max(axis=1))
    pm = plot_lines(
        series_m,
        out / "acc_vs_m.png",
        xlabel="m (nearest proxies voting)",
        ylabel="test accuracy %",
        title=f"mnn aggregation over k-means({mnn_k}) proxies: larger m hurts",
        logx=True,
        xticks=list(ms),
    )
    return {"csv": csv, "acc_vs_k": pk, "acc_vs_m": pm}
