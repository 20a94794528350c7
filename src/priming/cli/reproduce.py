"""``priming reproduce {synthetic,imprint}``: reproduction recipes (see docs/evaluation.md)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="reproduce published findings (synthetic, imprint)",
        description="Reproduction recipes: 'synthetic' (offline IMPRINT findings on sub-cluster "
        "data) and 'imprint' (IMPRINT Table 1 over embeddings you provide).",
    )
    rsub = p.add_subparsers(dest="recipe", metavar="RECIPE", required=True)
    s = rsub.add_parser("synthetic", help="k-means peaks near k=d, max == mnn m=1, larger m hurts")
    s.add_argument("--out", default="reproduce-synthetic", help="output folder")
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    s.add_argument("--d", type=int, nargs="+", default=[1, 2, 3, 5], metavar="D")
    s.set_defaults(func=run_synthetic)
    i = rsub.add_parser(
        "imprint",
        help="IMPRINT Table 1 over your embeddings",
        description="Expects EMBEDDINGS/<backbone>/<dataset>_train.npz and _test.npz (arrays "
        "'embeddings' and 'labels' 0-9) for datasets mnist, fashionmnist, cifar10.",
    )
    i.add_argument(
        "--embeddings", required=True, help="folder of <backbone>/<dataset>_{train,test}.npz"
    )
    i.add_argument("--out", default="reproduce-imprint", help="output folder")
    i.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    i.add_argument("--shots", type=int, default=None, help="shots per class (default: all)")
    i.add_argument("--workers", type=int, default=1)
    i.set_defaults(func=run_imprint)


def _bar(desc: str):
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, unit="fit")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return bar, progress


def run_synthetic(args: argparse.Namespace) -> int:
    from priming.eval.reproduce import reproduce_synthetic

    bar, progress = _bar("synthetic")
    try:
        res = reproduce_synthetic(args.out, d_values=args.d, seeds=args.seeds, progress=progress)
    finally:
        bar.close()
    print(res.table.to_text())
    print()
    print(res.summary())
    print(f"\nwritten: {', '.join(str(p) for p in res.files.values())}")
    return 0 if (res.peaks_near_d and res.max_equals_mnn1 and res.larger_m_hurts) else 1


def run_imprint(args: argparse.Namespace) -> int:
    from priming.eval.reproduce import reproduce_imprint

    bar, progress = _bar("imprint")
    try:
        res = reproduce_imprint(
            args.embeddings, args.out, seeds=args.seeds, shots=args.shots,
            workers=args.workers, progress=progress,
        )  # fmt: skip
    finally:
        bar.close()
    print(res["text"])
    print(f"\nresults: {res['results']}\nreport: {res['report']['markdown']}")
    return 0
