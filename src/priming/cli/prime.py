"""``priming prime``: the main job (class names + corpus → primed head, pool, report).

The options are generated from :class:`priming.job.config.PrimeConfig`'s fields (names,
help); the command only parses, calls :func:`priming.job.run_prime` and prints.
"""

from __future__ import annotations

import argparse

from priming.cli._args import boolean


def register(sub: argparse._SubParsersAction) -> None:
    from priming.job.config import cli_options

    p = sub.add_parser(
        "prime",
        help="adapt a model to your classes with a priming pool from a corpus",
        description="Build a priming pool for your class names from a corpus, fit a primed "
        "head (text head + imprinted pool/shots), evaluate it when labels are given and write "
        "head/, pool/, metrics.json, report.md (and predictions.csv with --eval) into --out. "
        "All options can also come from a TOML file (--config); options given on the command "
        "line win. --overwrite replaces only an earlier run folder, never an input.",
    )
    p.add_argument("--config", help="TOML run file (keys = option names with underscores)")
    for o in cli_options():
        if o.kind == "switch":
            p.add_argument(o.flag, action="store_const", const=True, default=None, help=o.help)
        elif o.kind == "negate":
            p.add_argument(
                o.flag, dest=o.name, action="store_const", const=False, default=None, help=o.help
            )
        elif o.kind == "bool":
            p.add_argument(o.flag, type=boolean, metavar="true|false", help=o.help)
        elif o.kind == "append":
            p.add_argument(o.flag, action="append", metavar=o.metavar, help=o.help)
        else:
            p.add_argument(o.flag, type=o.type, metavar=o.metavar, help=o.help)
    p.set_defaults(func=run)


def options(args: argparse.Namespace) -> dict:
    """The run settings given on the command line (unset options left out)."""
    skip = {"config", "func", "command", "verbose"}
    out = {k: v for k, v in vars(args).items() if k not in skip and v is not None}
    if "alpha" in out and out["alpha"] not in ("auto", "schedule"):
        try:
            out["alpha"] = float(out["alpha"])
        except ValueError:
            pass  # reported by the config validation
    return out


def run(args: argparse.Namespace) -> int:
    from priming.cli.progress_bars import progress_callback
    from priming.job import PrimeConfig, load_config, run_prime

    opts = options(args)
    cfg = (
        load_config(args.config, opts) if args.config else PrimeConfig.from_mapping(opts, "options")
    )
    res = run_prime(cfg, progress=progress_callback(cfg.progress))
    r = res.report
    print(
        f"pool: {r.pool.size} items for {r.n_classes} classes "
        f"({len(r.pool.empty_classes)} without items keep their text weight)"
    )
    print(f"alpha: {r.alpha.value:.2f} ({r.alpha.source})")
    for name, m in (r.eval or {}).items():
        print(f"  {name:32s} top-1 {100 * m.top1:6.2f} %")
    if cfg.eval and r.eval is None:
        print(f"no accuracy: the eval data {cfg.eval!r} has no labels")
    extra = ", predictions.csv" if (res.run_dir / "predictions.csv").exists() else ""
    print(f"wrote {res.run_dir}/ (head/, pool/, metrics.json, report.md{extra})")
    return 0
