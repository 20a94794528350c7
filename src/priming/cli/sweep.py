"""``priming sweep --config sweep.yaml``: head configurations × shots × seeds on cached embeddings."""

from __future__ import annotations

import argparse

from priming.cli._args import add_executor_options, executor_spec
from priming.cli._args import positive_int as _positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a sweep of head configurations over cached embeddings",
        description="Run every (dataset × head configuration × shots × seed) of a sweep file; "
        "invalid head combinations are reported and skipped, finished runs are reused "
        "(the sweep resumes), results go to one parquet/CSV table. See docs/evaluation.md.",
    )
    p.add_argument("--config", required=True, help="sweep description (YAML or JSON)")
    p.add_argument("--output", help="override the results table path (.parquet or .csv)")
    p.add_argument(
        "--workers", type=_positive_int, help="parallel processes (default: from the config)"
    )
    add_executor_options(p, "the runs (local: a process pool of --workers processes)")
    p.add_argument("--limit", type=_positive_int, help="stop after this many new runs")
    p.add_argument("--dry-run", action="store_true", help="validate and list the grid, run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from priming.errors import ConfigError
    from priming.eval.sweep import expand_runs, load_sweep_config, run_sweep

    cfg = load_sweep_config(args.config)
    if args.output:
        cfg.output = Path(args.output)
        if cfg.output.suffix not in (".parquet", ".csv"):
            raise ConfigError(f"--output {args.output!r} must end in .parquet or .csv")
    for where, reason in cfg.rejected:
        print(f"rejected {where}: {reason}")
    runs = expand_runs(cfg)
    print(
        f"sweep {cfg.name!r}: {len(cfg.datasets)} dataset/task(s) × {len(cfg.heads)} head(s) × "
        f"{len(cfg.shots)} shot setting(s) × {len(cfg.seeds)} seed(s) = {len(runs)} runs"
        + (f"; {len(cfg.rejected)} combination(s) rejected" if cfg.rejected else "")
    )
    if args.dry_run:
        for h in cfg.heads:
            print(f"  head: {h.label}" + (f" (alpha={h.alpha})" if h.alpha is not None else ""))
        return 0
    from priming.cli.progress_bars import progress_callback

    res = run_sweep(
        cfg,
        workers=args.workers,
        progress=progress_callback(not args.no_progress),
        limit=args.limit,
        executor=executor_spec(args),
    )
    print(
        f"{res.n_new} new run(s), {res.n_done_before} reused; "
        f"{res.n_rows} row(s) written to {res.output}"
    )
    if res.nc1_output is not None:
        print(f"NC1 per dataset/task written to {res.nc1_output}")
    return 0
