"""The human-readable part of a run folder: ``report.md`` and ``report.png``.

Both are made from the run's metrics as written to ``metrics.json``
(:meth:`priming.job.results.RunMetrics.to_json`) and its pool. :func:`pyplot` and
:func:`atomic_savefig` are the package's matplotlib plumbing (also used by
:mod:`priming.eval.plots`).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from priming._fs import atomic_path
from priming._optional import require

__all__ = ["plot_report", "markdown_report", "pyplot", "atomic_savefig"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    matplotlib = require("matplotlib", "eval")
    matplotlib.use("Agg", force=True)
    return require("matplotlib.pyplot", "eval")


def atomic_savefig(fig: Any, path: str | os.PathLike[str], dpi: int = 130) -> Path:
    """Save ``fig`` to ``path`` via a temporary file + rename, then close it.

    Matplotlib's "Glyph ... missing from font" warnings (a class name in a script the
    font lacks) are not passed on: the figure is written, the label shows boxes."""
    plt = pyplot()
    path = Path(path)
    try:
        with atomic_path(path, suffix=".png") as tmp, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from")
            warnings.filterwarnings("ignore", message=r"Matplotlib currently does not support")
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path


def plot_report(path: Path, metrics) -> str | None:
    """Draw ``report.png`` (pool items per class; per-class accuracy zero-shot vs primed);
    None, and no file, without matplotlib."""
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


def markdown_report(metrics, pool, plot) -> str:
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
