"""Plots for reports (matplotlib, Agg backend, written atomically as PNG).

:func:`pyplot` and :func:`atomic_savefig` live in :mod:`priming.job.report` (the run
report draws with them and the job sits below :mod:`priming.eval`); they are named here
too for the evaluation layer's plots.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from priming.job.report import atomic_savefig, pyplot

__all__ = ["pyplot", "atomic_savefig", "plot_lines"]


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
