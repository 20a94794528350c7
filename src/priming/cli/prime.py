"""``priming prime``: the main job (class names + corpus → primed head, pool, report)."""

from __future__ import annotations

import argparse

_PATH_OPTS = (
    "classes",
    "corpus",
    "out",
    "shots",
    "eval",
    "unlabelled",
    "descriptions",
    "cache_dir",
)


def _bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {v!r}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prime",
        help="adapt a model to your classes with a priming pool from a corpus",
        description="Build a priming pool for your class names from a corpus, fit a primed "
        "head (text head + imprinted pool/shots), evaluate it when labels are given and write "
        "head/, pool/, metrics.json and report.md into --out. All options can also come "
        "from a TOML file (--config); options given on the command line win.",
    )
    p.add_argument("--config", help="TOML run file (keys = option names with underscores)")
    p.add_argument("--model", help="encoder, e.g. open_clip:ViT-B-16/laion2b_s34b_b88k")
    p.add_argument("--classes", help="class-name file (one per line, '|' between synonyms)")
    p.add_argument("--corpus", help="corpus folder (priming corpus build), with embeddings")
    p.add_argument("--out", help="run folder to write")
    p.add_argument("--shots", help="labelled few-shot data (folder, manifest or embeddings)")
    p.add_argument("--eval", help="labelled evaluation data (also guards the pool against leakage)")
    p.add_argument("--unlabelled", help="unlabelled target data for --transductive")
    p.add_argument(
        "--transductive",
        action="store_const",
        const=True,
        default=None,
        help="narrow the pool to the k nearest items of each unlabelled/eval sample",
    )
    p.add_argument(
        "--guided",
        action="store_const",
        const=True,
        default=None,
        help="narrow the pool to each shot's k nearest items of the same class",
    )
    p.add_argument("--transductive-k", type=int, help="neighbours per sample (10)")
    p.add_argument("--head", help="imprinting preset for the pool/shot part (neural-priming)")
    p.add_argument("--n-proxies", type=int, help="proxies per class for multi-proxy presets")
    p.add_argument(
        "--compare", action="append", help="also fit and evaluate this preset (repeatable)"
    )
    p.add_argument("--alpha", help="text-head weight: a number in [0,1], 'schedule' or 'auto'")
    p.add_argument("--empty-class", choices=["text", "zero"], help="score of a class with no items")
    p.add_argument(
        "--templates",
        help="template set name or file (default: imagenet7; identity for text models)",
    )
    p.add_argument("--descriptions", help="CuPL-style JSON class -> sentences")
    p.add_argument("--per-class", type=int, help="cap per class (1000)")
    p.add_argument("--recall", choices=["search", "knn", "both"], help="how to find pool items")
    p.add_argument("--search-mode", choices=["phrase", "all_tokens"], help="caption search mode")
    p.add_argument("--search-limit", type=int, help="stop searching after N hits per class")
    p.add_argument("--ambiguous", choices=["drop", "longest"], help="rows matching several classes")
    p.add_argument("--nsfw", type=_bool, help="drop NSFW-flagged rows (true)")
    p.add_argument("--dedup-threshold", type=float, help="near-duplicate cosine (0.995)")
    p.add_argument("--leakage-threshold", type=float, help="test-leakage cosine (0.95)")
    p.add_argument("--agreement", type=_bool, help="zero-shot agreement filter (true)")
    p.add_argument("--min-probability", type=float, help="minimum zero-shot probability")
    p.add_argument("--score", choices=["zero-shot", "similarity"], help="ranking for the cap")
    p.add_argument(
        "--balance", action="store_const", const=True, default=None, help="equal counts per class"
    )
    p.add_argument("--cache-dir", help="embedding cache (default ~/.cache/priming/embeddings)")
    p.add_argument("--batch-size", type=int, help="encoding batch size (64)")
    p.add_argument("--device", help="cpu, cuda[:N], mps")
    p.add_argument("--seed", type=int, help="random seed (0)")
    p.add_argument(
        "--overwrite", action="store_const", const=True, default=None, help="replace --out"
    )
    p.add_argument(
        "--no-progress", dest="progress", action="store_const", const=False, default=None
    )
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
    from priming.eval.prime import PrimeConfig, load_config, run_prime

    opts = options(args)
    cfg = (
        load_config(args.config, opts) if args.config else PrimeConfig.from_mapping(opts, "options")
    )
    res = run_prime(cfg)
    m = res.metrics
    print(
        f"pool: {m['pool']['size']} items for {m['n_classes']} classes "
        f"({len(m['pool']['empty_classes'])} without items keep their text weight)"
    )
    print(f"alpha: {m['alpha']['value']:.2f} ({m['alpha']['source']})")
    if m["eval"]:
        for name, r in m["eval"].items():
            print(f"  {name:32s} top-1 {100 * r['top1']:6.2f} %")
    print(f"wrote {res.run_dir}/ (head/, pool/, metrics.json, report.md)")
    return 0
