"""Markdown / HTML reports of a results table (from ``priming sweep`` or a reproduction).

:func:`write_report` writes ``report.md``, ``report.html`` and PNG figures into a folder:
a table of median accuracy (with min–max over seeds) per configuration and dataset, accuracy
versus shots, accuracy versus k (number of proxies), the statistics (mean ranks, Friedman,
Wilcoxon–Holm) and a critical-difference diagram.
"""

from __future__ import annotations

import html
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from priming._fs import make_dir, write_bytes_atomic
from priming.errors import DataError
from priming.eval.stats import _join_cols

__all__ = ["write_report", "summary_table"]

log = logging.getLogger(__name__)

GROUP = ["backbone", "dataset", "task"]
METRIC_HINTS = ("top1", "top5", "balanced_accuracy", "macro_f1", "weighted_f1")


def _fmt(v: float) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{100 * v:.2f}"


def summary_table(df: Any, metric: str = "top1") -> tuple[list[str], list[str], list[list[str]]]:
    """Rows = configurations, columns = groups (+ average); cells ``median [min–max]`` in %."""
    gcols = [c for c in GROUP if c in df.columns]
    df = df.assign(_group=_join_cols(df, gcols))
    agg = df.groupby(["config", "_group"])[metric].agg(["median", "min", "max"]).reset_index()
    groups = sorted(agg["_group"].unique())
    configs = list(dict.fromkeys(df["config"]))
    cells: list[list[str]] = []
    for c in configs:
        sub = agg[agg["config"] == c].set_index("_group")
        row, meds = [], []
        for g in groups:
            if g in sub.index:
                r = sub.loc[g]
                meds.append(r["median"])
                spread = f" [{_fmt(r['min'])}–{_fmt(r['max'])}]" if r["min"] != r["max"] else ""
                row.append(f"{_fmt(r['median'])}{spread}")
            else:
                row.append("–")
        row.append(_fmt(float(np.mean(meds))) if len(meds) == len(groups) else "–")
        cells.append(row)
    return configs, groups + ["average"], cells


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _shots_label(s: int) -> str:
    return "all" if int(s) < 0 else str(int(s))


def _acc_vs_shots(df: Any, fig_dir: Path, metric: str) -> Path | None:
    from priming.eval.plots import plot_lines

    if "shots" not in df.columns or df["shots"].nunique() < 2 or (df["shots"] < 0).all():
        return None
    d = df[df["shots"] > 0]
    if d["shots"].nunique() < 2:
        return None
    gcols = [c for c in GROUP if c in d.columns]
    per = d.groupby(["config", *gcols, "shots"])[metric].agg(["median", "min", "max"]).reset_index()
    series = {}
    for cfg, sub in per.groupby("config", sort=False):
        m = sub.groupby("shots")[["median", "min", "max"]].mean().sort_index()
        series[str(cfg)] = (m.index.to_numpy(), 100 * m["median"], 100 * m["min"], 100 * m["max"])
    xt = sorted(d["shots"].unique())
    return plot_lines(
        series,
        fig_dir / "acc_vs_shots.png",
        xlabel="shots per class",
        ylabel=f"{metric} accuracy % (mean over datasets)",
        title="Accuracy vs shots (median over seeds; band: min–max)",
        logx=True,
        xticks=xt,
    )


def _acc_vs_k(df: Any, fig_dir: Path, metric: str) -> Path | None:
    from priming.eval.plots import plot_lines

    if "n_proxies" not in df.columns or "generator" not in df.columns:
        return None
    d = df[~df["generator"].isin(["mean", "ls", "all", "none"])]
    if d.empty:
        return None
    fam_cols = [
        c
        for c in ("norm_pre", "generator", "norm_post", "norm_inf", "aggregation", "n_neighbors")
        if c in d.columns
    ]
    d = d.assign(_family=_join_cols(d, fam_cols, skip_missing=True))
    if "shots" in d.columns:
        top = d["shots"].max() if (d["shots"] > 0).any() else -1
        top = -1 if (d["shots"] < 0).any() else top
        d = d[d["shots"] == top]
    series = {}
    gcols = [c for c in GROUP if c in d.columns]
    for fam, sub in d.groupby("_family", sort=False):
        if sub["n_proxies"].nunique() < 2:
            continue
        per = sub.groupby([*gcols, "n_proxies"])[metric].agg(["median", "min", "max"])
        m = per.groupby("n_proxies").mean().sort_index()
        series[str(fam).replace("/None", "")] = (
            m.index.to_numpy(),
            100 * m["median"],
            100 * m["min"],
            100 * m["max"],
        )
    if not series:
        return None
    ks = sorted(d["n_proxies"].unique())
    return plot_lines(
        series,
        fig_dir / "acc_vs_k.png",
        xlabel="k (proxies per class)",
        ylabel=f"{metric} accuracy % (mean over datasets)",
        title="Accuracy vs k (median over seeds; band: min–max)",
        logx=max(ks) / max(min(ks), 1) > 8,
        xticks=ks,
    )


def _read_results_input(results: Any, metric: str) -> tuple[Any, str, Any]:
    """``(table, source name, NC1 table or None)``, validated for ``metric``."""
    import pandas as pd

    nc1 = None
    if isinstance(results, pd.DataFrame):
        df = results.copy()
        src = "DataFrame"
    else:
        from priming.eval.sweep import read_results

        src = str(results)
        df = read_results(results)
        p = Path(results)
        nc1_path = p.with_name(p.stem + ".nc1" + p.suffix)
        if nc1_path.is_file():
            nc1 = read_results(nc1_path)
    for col in ("config", metric):
        if col not in df.columns:
            raise DataError(
                f"results {src} have no column {col!r}; columns: {', '.join(map(str, df.columns))}"
            )
    if df.empty:
        raise DataError(f"results table {src} is empty")
    if not pd.api.types.is_numeric_dtype(df[metric]):
        raise DataError(
            f"results column {metric!r} is not numeric ({df[metric].dtype}); give a metric "
            f"column such as {', '.join(c for c in METRIC_HINTS if c in df.columns) or 'top1'}"
        )
    return df, src, nc1


def _stats_section(df, s, metric: str, fig_dir: Path, md: list, htm: list, figures: dict) -> None:
    """Friedman / Wilcoxon-Holm statistics and a CD diagram for one shots setting."""
    from priming.eval.stats import compare_configs, plot_cd_diagram

    sub = df if s is None else df[df["shots"] == s]
    suffix = "" if s is None else f" ({_shots_label(s)} shots)"
    try:
        res = compare_configs(sub, metric=metric)
    except DataError as exc:
        note = f"Statistics{suffix}: not computed ({exc})."
        md += [note, ""]
        htm.append(f"<p>{html.escape(note)}</p>")
        return
    name = "cd" if s is None else f"cd_shots_{_shots_label(s)}"
    cd = plot_cd_diagram(res, fig_dir / f"{name}.png", title=f"Mean rank{suffix}")
    figures[name] = cd
    rank_rows = [[c, f"{r:.2f}"] for c, r in res.ranking()]
    sig = [
        f"{r['a']} vs {r['b']} (p_holm={r['p_holm']:.3g})" for r in res.pairwise if r["significant"]
    ]
    heading = f"Statistics{suffix}"
    text = (
        f"{len(res.groups)} groups (backbone × dataset × task). Friedman χ² = "
        f"{res.friedman_statistic:.3g}, p = {res.friedman_p:.3g}. Pairwise Wilcoxon "
        f"signed-rank (Pratt), Holm-corrected at {res.alpha:g}: "
        f"{len(sig)} of {len(res.pairwise)} pairs significantly different."
    )
    md += [f"## {heading}", "", text, "", _md_table(["config", "mean rank"], rank_rows), ""]
    if sig:
        md += ["Significant pairs: " + "; ".join(sig), ""]
    md += [f"![critical-difference diagram](figures/{cd.name})", ""]
    htm += [
        f"<h2>{html.escape(heading)}</h2>",
        f"<p>{html.escape(text)}</p>",
        _html_table(["config", "mean rank"], rank_rows),
    ]
    if sig:
        htm.append(f"<p>Significant pairs: {html.escape('; '.join(sig))}</p>")
    htm.append(f'<img src="figures/{cd.name}" alt="critical-difference diagram">')


def _nc1_section(nc1, md: list, htm: list) -> None:
    rows = [
        [f"{r.backbone}/{r.dataset}/{r.task}", f"{r.nc1:.4g}", f"{r.nc1_reference:.4g}"]
        for r in nc1.itertuples()
    ]
    header = ["backbone/dataset/task", "NC1 (textbook)", "NC1 (reference-compatible)"]
    md += [
        "## NC1 (neural collapse) of the training embeddings",
        "",
        _md_table(header, rows),
        "",
    ]
    htm += ["<h2>NC1</h2>", _html_table(header, rows)]


def _write_pages(out: Path, title: str, md: list, htm: list, figures: dict) -> tuple[Path, Path]:
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(htm)}</body></html>"
    )
    md_path, html_path = out / "report.md", out / "report.html"
    write_bytes_atomic(md_path, "\n".join(md).encode("utf-8"))
    write_bytes_atomic(html_path, page.encode("utf-8"))
    write_bytes_atomic(
        out / "figures.json", json.dumps({k: str(v) for k, v in figures.items()}).encode()
    )
    return md_path, html_path


def write_report(
    results: str | os.PathLike[str] | Any,
    out_dir: str | os.PathLike[str],
    *,
    metric: str = "top1",
    title: str | None = None,
    extra_sections: list[tuple[str, str]] | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and figures for a results table.

    Parameters
    ----------
    results : path or DataFrame
        A results table with at least ``config`` and ``metric`` columns (``backbone``,
        ``dataset``, ``task``, ``shots``, ``seed``, ``generator``, ``n_proxies`` are used when
        present). A sibling ``<stem>.nc1.<ext>`` table is included when it exists.
    out_dir : path
        Output folder (created).
    extra_sections : list of (heading, markdown text), optional
        Appended verbatim (used by the reproduction recipes).
    """
    df, src, nc1 = _read_results_input(results, metric)
    out = make_dir(out_dir, "report folder")
    fig_dir = make_dir(out / "figures", "report figures folder")
    title = title or (str(df["sweep"].iloc[0]) if "sweep" in df.columns else "priming results")
    md: list[str] = [f"# {title}", ""]
    htm: list[str] = [f"<h1>{html.escape(title)}</h1>"]
    n_seeds = df["seed"].nunique() if "seed" in df.columns else 1
    intro = (
        f"Source: `{src}` — {len(df)} runs, {df['config'].nunique()} configurations, "
        f"{n_seeds} seed(s). Cells: median {metric} % over seeds [min–max]."
    )
    md += [intro, ""]
    htm.append(f"<p>{html.escape(intro)}</p>")
    figures: dict[str, Path] = {}
    shots_values = sorted(df["shots"].unique()) if "shots" in df.columns else [None]
    for s in shots_values:
        sub = df if s is None else df[df["shots"] == s]
        configs, header, cells = summary_table(sub, metric)
        heading = "Accuracy" if s is None else f"Accuracy, {_shots_label(s)} shot(s) per class"
        rows = [[c, *r] for c, r in zip(configs, cells)]
        md += [f"## {heading}", "", _md_table(["config", *header], rows), ""]
        htm += [f"<h2>{html.escape(heading)}</h2>", _html_table(["config", *header], rows)]
    for name, fn, caption in (
        ("acc_vs_shots", _acc_vs_shots, "Accuracy vs shots"),
        ("acc_vs_k", _acc_vs_k, "Accuracy vs k"),
    ):
        path = fn(df, fig_dir, metric)
        if path is not None:
            figures[name] = path
            rel = f"figures/{path.name}"
            md += [f"## {caption}", "", f"![{caption}]({rel})", ""]
            htm += [f"<h2>{caption}</h2>", f'<img src="{rel}" alt="{caption}">']
    for s in shots_values:
        _stats_section(df, s, metric, fig_dir, md, htm, figures)
    if nc1 is not None and not nc1.empty:
        _nc1_section(nc1, md, htm)
    for heading, text in extra_sections or []:
        md += [f"## {heading}", "", text, ""]
        htm += [f"<h2>{html.escape(heading)}</h2>", f"<pre>{html.escape(text)}</pre>"]
    md_path, html_path = _write_pages(out, title, md, htm, figures)
    return {"markdown": md_path, "html": html_path, **figures}
