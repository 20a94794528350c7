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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from priming.errors import ConfigError

__all__ = [
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
    progress: Callable[[int, int], None] | None = None,
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
    progress : callable(done, total), optional
        Called after every fit (for a progress bar).
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
    total, done = acc.size, 0
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
                done += 1
                if progress is not None:
                    progress(done, total)
            log.debug("d=%d seed=%d done", d, seed)
    params = {
        "n_classes": n_classes,
        "n_features": n_features,
        "n_train_per_class": n_train_per_class,
        "n_test_per_class": n_test_per_class,
        "cluster_std": cluster_std,
    }
    return SubclusterTable(rows, d_values, seeds, acc, params)
