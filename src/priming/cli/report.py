"""``priming report RESULTS``: markdown + HTML report with tables, plots and statistics."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write a markdown/HTML report of a results table",
        description="Tables (median over seeds with min-max), accuracy vs shots, accuracy vs k, "
        "ranks, Friedman and Wilcoxon-Holm statistics and a critical-difference diagram.",
    )
    p.add_argument("results", help="results table (.parquet or .csv) from `priming sweep`")
    p.add_argument("--out", help="output folder (default: <results stem>_report)")
    p.add_argument("--metric", default="top1", help="metric column to report (default: top1)")
    p.add_argument("--title", help="report title")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from priming.eval.report import write_report

    res = Path(args.results)
    out = Path(args.out) if args.out else res.with_name(res.stem + "_report")
    paths = write_report(res, out, metric=args.metric, title=args.title)
    print(f"report written: {paths['markdown']} and {paths['html']}")
    for name, p in paths.items():
        if name not in ("markdown", "html"):
            print(f"  figure {name}: {p}")
    return 0
