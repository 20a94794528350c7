"""``priming demo``: the offline demonstration run by ``make demo``.

Runs the synthetic sub-cluster experiment (``priming.eval.synthetic``): classes made of ``d``
Gaussian sub-clusters, the named IMPRINT configurations and k-means / mnn variants as rows,
accuracy for d = 1, 2, 3, 5 as columns.
"""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the offline demo (what `make demo` runs)",
        description="Synthetic IMPRINT experiment: accuracy of imprinted heads on classes "
        "made of d Gaussian sub-clusters.",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (data and heads)")
    p.add_argument(
        "--d", type=int, nargs="+", default=[1, 2, 3, 5], metavar="D", help="sub-clusters per class"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from priming.eval.synthetic import run_subcluster_experiment

    t0 = time.perf_counter()
    table = run_subcluster_experiment(d_values=args.d, seeds=[args.seed])
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
        f"({time.perf_counter() - t0:.1f} s)"
    )
    return 0
