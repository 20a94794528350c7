"""Reproduction recipes: the synthetic IMPRINT findings and the IMPRINT Table 1 grid.

``reproduce_synthetic`` runs offline in seconds and checks the three IMPRINT findings on
sub-cluster data. ``reproduce_imprint`` runs the named configurations of IMPRINT Table 1 over
embeddings the user provides and prints our averages beside the published ones
(METHODS.md §2).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from priming._fs import make_dir
from priming.errors import ConfigError, DataError
from priming.eval.synthetic import SubclusterTable, run_subcluster_experiment

__all__ = [
    "SyntheticFindings",
    "reproduce_synthetic",
    "IMPRINT_TABLE1",
    "IMPRINT_TASKS",
    "IMPRINT_DATASETS",
    "find_imprint_embeddings",
    "reproduce_imprint",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- synthetic


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
    progress: Callable[[int, int], None] | None = None,
) -> SyntheticFindings:
    """Run the sub-cluster benchmark and check the IMPRINT findings; optionally write files.

    Rows: the named presets, ``kmeans k=K`` (``l2/kmeans(K)/l2/l2/max``) for every ``K`` in
    ``ks`` and ``mnn m=M`` (``l2/kmeans(mnn_k)/l2/l2/mnn(M)``) for every ``M`` in ``ms``.
    With ``out_dir``: ``synthetic.md``, ``synthetic.csv``, ``acc_vs_k.png``, ``acc_vs_m.png``.
    """
    from priming.eval.synthetic import default_configs

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
        from priming._fs import write_bytes_atomic

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

    from priming._fs import write_bytes_atomic
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


# --------------------------------------------------------------------------- IMPRINT Table 1

#: Named configurations of IMPRINT Table 1 -> (preset, published average accuracy %).
IMPRINT_TABLE1: dict[str, tuple[str, float]] = {
    "Qi et al. 2018": ("qi2018", 86.79),
    "Hosoda et al. 2024": ("hosoda2024", 82.90),
    "Janson et al. 2022": ("janson2022", 86.64),
    "IMPRINT best": ("imprint-best", 91.06),
    "oracle (ls)": ("oracle-ls", 94.54),
}
IMPRINT_DATASETS = ("mnist", "fashionmnist", "cifar10")
#: Class subsets of the IMPRINT tasks (labels 0..9).
IMPRINT_TASKS: dict[str, list[int] | None] = {
    "all": None,
    "even": [0, 2, 4, 6, 8],
    "odd": [1, 3, 5, 7, 9],
    "first-three": [0, 1, 2],
}


def find_imprint_embeddings(
    root: str | os.PathLike[str],
) -> dict[tuple[str, str], tuple[Path, Path]]:
    """Find ``root/<backbone>/<dataset>_{train,test}.{npz,npy}`` for the IMPRINT datasets.

    Returns ``{(backbone, dataset): (train_file, test_file)}``; missing pairs are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        state = "is not a folder" if root.exists() else "does not exist"
        raise DataError(f"embeddings folder {root} {state}")
    found = {}
    for bdir in sorted(p for p in root.iterdir() if p.is_dir()):
        for ds in IMPRINT_DATASETS:
            pair = []
            for split in ("train", "test"):
                cands = [bdir / f"{ds}_{split}{ext}" for ext in (".npz", ".npy")]
                hit = next((c for c in cands if c.is_file()), None)
                pair.append(hit)
            if all(pair):
                found[(bdir.name, ds)] = (pair[0], pair[1])
    if not found:
        raise DataError(
            f"no embeddings found under {root}; expected <backbone>/<dataset>_train.npz and "
            f"<dataset>_test.npz for datasets {', '.join(IMPRINT_DATASETS)}"
        )
    return found


def reproduce_imprint(
    embeddings: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    shots: int | None = None,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """IMPRINT Table 1: the named configurations over every backbone × task found.

    Returns ``{"table": rows (name, preset, ours %, paper %, n_groups), "results": path,
    "report": paths}`` and writes ``results.csv`` plus a report into ``out_dir``.
    """
    from priming.eval.report import write_report
    from priming.eval.sweep import parse_sweep_config, read_results, run_sweep

    pairs = find_imprint_embeddings(embeddings)
    out = Path(out_dir)
    datasets = [
        {
            "backbone": b,
            "dataset": ds,
            "train": str(tr.resolve()),
            "test": str(te.resolve()),
            "tasks": dict(IMPRINT_TASKS),
        }
        for (b, ds), (tr, te) in pairs.items()
    ]
    heads = [{"name": name, "preset": preset} for name, (preset, _) in IMPRINT_TABLE1.items()]
    cfg = parse_sweep_config(
        {
            "name": "IMPRINT Table 1",
            "datasets": datasets,
            "heads": heads,
            "shots": [shots],
            "seeds": list(seeds),
            "output": str((out / "results.csv").resolve()),
            "workers": workers,
        }
    )
    if cfg.rejected:
        raise ConfigError(f"a Table 1 configuration was rejected: {cfg.rejected}")
    make_dir(out, "output folder")
    info = run_sweep(cfg, progress=progress)
    df = read_results(info["output"])
    med = df.groupby(["config", "backbone", "dataset", "task"])["top1"].median()
    rows = []
    for name, (preset, paper) in IMPRINT_TABLE1.items():
        vals = med.loc[name] if name in med.index.get_level_values(0) else None
        ours = float(vals.mean() * 100) if vals is not None else float("nan")
        rows.append((name, preset, ours, paper, 0 if vals is None else len(vals)))
    text = format_imprint_table(rows)
    rep = write_report(
        info["output"], out / "report", title="IMPRINT Table 1 reproduction",
        extra_sections=[("Ours vs paper (average accuracy %)", text)],
    )  # fmt: skip
    return {"table": rows, "results": info["output"], "report": rep, "text": text}


def format_imprint_table(rows: Sequence[tuple[str, str, float, float, int]]) -> str:
    """Fixed-width table: name, preset, ours, paper, difference, number of groups."""
    lines = [
        f"{'configuration':<20} {'preset':<14} {'ours %':>8} {'paper %':>8} {'diff':>7} {'groups':>7}",
        "-" * 69,
    ]
    for name, preset, ours, paper, n in rows:
        diff = ours - paper
        lines.append(f"{name:<20} {preset:<14} {ours:8.2f} {paper:8.2f} {diff:+7.2f} {n:7d}")
    lines.append(
        "paper: average over ResNet-18/50, ViT-B/16, Swin-B × 12 tasks, median over 3 seeds; "
        "ours: mean over the backbone × task groups found."
    )
    return "\n".join(lines)
