"""Plots for reports (matplotlib, Agg backend, written atomically as PNG)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from priming._fs import atomic_path
from priming._optional import require

__all__ = ["pyplot", "atomic_savefig", "plot_lines"]


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


def plot_lines(
    series: dict[
        str, tuple[Sequence[float], Sequence[float], Sequence[float] | None, Sequence[float] | None]
    ],
    path: str | os.PathLike[str],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    logx: bool = False,
    xticks: Sequence[float] | None = None,
    marks: dict[str, float] | None = None,
) -> Path:
    """One line per series: ``name -> (x, median, low, high)``; low/high draw a shaded band.

    ``marks`` draws labelled vertical dashed lines (e.g. ``{"k = d": 3}``).
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for name, (x, y, lo, hi) in series.items():
        x = np.asarray(x, dtype=float)
        (line,) = ax.plot(x, y, marker="o", lw=1.8, ms=4, label=name)
        if lo is not None and hi is not None:
            band = 0.15 if len(series) <= 4 else 0.07
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=band, lw=0)
    for label, xv in (marks or {}).items():
        ax.axvline(xv, color="0.4", ls="--", lw=0.9)
        ax.text(xv, ax.get_ylim()[1], f" {label}", va="top", fontsize=8, color="0.3")
    if logx:
        from matplotlib.ticker import NullFormatter, NullLocator

        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
    if xticks is not None:
        ax.set_xticks(list(xticks))
        ax.set_xticklabels([f"{t:g}" for t in xticks])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    n = len(series)
    if n > 8:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return atomic_savefig(fig, path)
