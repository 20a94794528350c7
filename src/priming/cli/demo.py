"""``priming demo``: the offline demonstration run by ``make demo``.

The recipes live in :mod:`priming.recipes.demo` (part 1: Neural Priming on the Debian
package catalogue with MiniLM; part 2: the synthetic IMPRINT sub-cluster table); this
command parses its options, calls them and prints their results.
"""

from __future__ import annotations

import argparse

from priming.recipes.demo import MODEL


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the offline demo (what `make demo` runs)",
        description="Neural Priming on the Debian package catalogue with MiniLM, then the "
        "synthetic IMPRINT sub-cluster table.",
    )
    p.add_argument("--part", choices=["all", "priming", "imprint"], default="all")
    p.add_argument("--seed", type=int, default=0, help="random seed (data and heads)")
    p.add_argument("--workdir", default="demo-out", help="where data, corpus and run go (demo-out)")
    p.add_argument("--catalogue", help="a dumpavail-format file instead of `apt-cache dumpavail`")
    p.add_argument(
        "--corpus-size",
        type=int,
        default=None,
        help="packages in the corpus (default: what MiniLM encodes in ~--budget s)",
    )
    p.add_argument("--budget", type=float, default=60.0, help="seconds of corpus encoding (60)")
    p.add_argument("--eval-size", type=int, default=1200, help="held-out evaluation packages")
    p.add_argument(
        "--d",
        type=int,
        nargs="+",
        default=[1, 2, 3, 5],
        metavar="D",
        help="sub-clusters per class (imprint part)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.part in ("all", "priming"):
        run_priming(args)
    if args.part in ("all", "imprint"):
        if args.part == "all":
            print("\n" + "=" * 78 + "\n")
        run_imprint(args)
    return 0


def _own_data_hint() -> str:
    return (
        "To run on your own data instead:\n"
        "  priming corpus build --metadata 'laion/*.parquet' --embeddings laion/img_emb --out corpus\n"
        "  priming prime --model open_clip:ViT-B-16/laion2b_s34b_b88k --classes classes.txt \\\n"
        "      --corpus corpus --eval my_test_folder --alpha auto --out run\n"
        "(see docs/priming.md)"
    )


def run_priming(args: argparse.Namespace) -> None:
    from priming.cli.progress_bars import progress_callback
    from priming.recipes.demo import run_priming_demo

    print("Neural Priming demo: Debian package sections as classes, package descriptions as corpus")
    res = run_priming_demo(
        args.workdir,
        seed=args.seed,
        catalogue=args.catalogue,
        corpus_size=args.corpus_size,
        budget=args.budget,
        eval_size=args.eval_size,
        progress=progress_callback(args.progress),
    )
    if res.skipped is not None:
        print(f"skipped: {res.skipped}\n{_own_data_hint()}")
        return
    if res.rate is not None:
        print(
            f"model {MODEL}: {res.rate:.0f} texts/s on this machine -> corpus of {res.n_corpus} packages"
        )
    print(
        f"{res.n_classes} classes (sections), {res.n_corpus} corpus packages, "
        f"{res.n_eval} held-out evaluation packages"
    )
    print(
        f"\npool: {res.pool_size} descriptions found by caption search for "
        f"{res.pool_classes} classes; alpha = {res.alpha:.2f} (chosen on held-out "
        "pool items, no test labels)\n"
    )
    print(f"{'head':44s} {'top-1 %':>8s} {'balanced %':>11s}")
    for name, top1, bal in res.rows:
        print(f"{name:44s} {100 * top1:8.2f} {100 * bal:11.2f}")
    print(f"\nreport: {res.report}  ({res.seconds:.0f} s)")


def run_imprint(args: argparse.Namespace) -> None:
    from priming.recipes.demo import run_imprint_demo

    res = run_imprint_demo(args.d, seed=args.seed)
    table = res.table
    p = table.params
    print(
        f"Synthetic sub-cluster benchmark: {p['n_classes']} classes, each a union of d "
        f"Gaussian sub-clusters in {p['n_features']}-d\n"
        f"({p['n_train_per_class']} training / {p['n_test_per_class']} test rows per class, "
        f"noise std {p['cluster_std']}, seed {args.seed}). Test accuracy %, * = best per column.\n"
    )
    print(table.to_text())
    best = ", ".join(f"d={d}: k={table.best_k(d)}" for d in table.d_values)
    print(
        f"\nbest k-means k per d -> {best}\n"
        "rows: named IMPRINT configurations; 'kmeans k=K' = l2/kmeans(K)/l2/l2/max; "
        "'mnn m=M' = l2/kmeans(5)/l2/l2/mnn(M, cosine).\n"
        f"({res.seconds:.1f} s)"
    )
