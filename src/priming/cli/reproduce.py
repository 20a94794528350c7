"""``priming reproduce {synthetic,imprint,neural-priming}``: reproduction recipes (see docs/evaluation.md)."""

from __future__ import annotations

import argparse

from priming.cli._args import add_executor_options, executor_spec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="reproduce published findings (synthetic, imprint, neural-priming)",
        description="Reproduction recipes: 'synthetic' (offline IMPRINT findings on sub-cluster "
        "data), 'imprint' (IMPRINT Table 1 over embeddings you provide) and 'neural-priming' "
        "(the Neural Priming paper's runs on one benchmark).",
    )
    rsub = p.add_subparsers(dest="recipe", metavar="RECIPE", required=True)
    s = rsub.add_parser("synthetic", help="k-means peaks near k=d, max == mnn m=1, larger m hurts")
    s.add_argument("--out", default="reproduce-synthetic", help="output folder")
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    s.add_argument("--d", type=int, nargs="+", default=[1, 2, 3, 5], metavar="D")
    _no_progress(s)
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
    add_executor_options(i, "the runs")
    _no_progress(i)
    i.set_defaults(func=run_imprint)
    _register_np(rsub)


def _no_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def _alpha(text: str):
    if text in ("reference", "schedule", "auto"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give reference, schedule, auto or a number in [0, 1]"
        )
    return value


def _register_np(rsub) -> None:
    from priming.recipes.neural_priming import DEFAULT_MODEL

    n = rsub.add_parser(
        "neural-priming",
        help="Neural Priming: zero-shot, priming, transductive, few-shot beside the paper",
        description="Zero-shot vs priming, transductive priming and few-shot priming on one "
        "benchmark, beside the Neural Priming paper's numbers and the baseline measured in the "
        "same run (same label space). Needs a corpus with image embeddings from --model and "
        "either the dataset (--data) or precomputed embeddings (--embeddings).",
    )
    n.add_argument("--dataset", required=True, help="benchmark name, e.g. flowers102, imagenet-r")
    n.add_argument("--corpus", required=True, help="corpus folder (priming corpus build)")
    src = n.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="dataset root (see --layout)")
    src.add_argument(
        "--embeddings",
        help="folder with test.npz [train.npz] [text.npz] (precomputed; see docs/evaluation.md)",
    )
    n.add_argument("--layout", choices=("imagefolder", "wds", "torchvision"), default=None)
    n.add_argument("--model", default=DEFAULT_MODEL, help=f"encoder (default {DEFAULT_MODEL})")
    n.add_argument(
        "--shots", type=int, nargs="*", default=[], help="few-shot settings, e.g. 1 2 5 10"
    )
    n.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    n.add_argument(
        "--alpha", type=_alpha, default="reference",
        help="reference (default: the reference's per-dataset values), schedule, auto or a number",
    )  # fmt: skip
    n.add_argument("--no-transductive", dest="transductive", action="store_false")
    n.add_argument("--k", type=int, default=10, help="neighbours per test image (transductive)")
    n.add_argument("--per-class", type=int, default=1000, help="pool cap per class")
    n.add_argument(
        "--leakage-threshold", type=float, default=0.95,
        help="drop pool items with cosine above this to any test/train image",
    )  # fmt: skip
    n.add_argument("--dedup-threshold", type=float, default=0.995)
    n.add_argument(
        "--no-agreement", dest="agreement", action="store_false",
        help="keep pool items the zero-shot head disagrees with",
    )  # fmt: skip
    n.add_argument("--templates", default=None, help="template set or file (default: reference's)")
    n.add_argument("--descriptions", default=None, help="CuPL descriptions JSON")
    n.add_argument("--test-split", default="test")
    n.add_argument("--train-split", default="train")
    n.add_argument("--cache-dir", default=None, help="embedding cache folder")
    n.add_argument("--batch-size", type=int, default=64)
    n.add_argument("--device", default=None)
    n.add_argument("--out", default="reproduce-neural-priming", help="output folder")
    _no_progress(n)
    n.set_defaults(func=run_neural_priming)


def run_synthetic(args: argparse.Namespace) -> int:
    from priming.cli.progress_bars import progress_callback
    from priming.recipes.synthetic import reproduce_synthetic

    res = reproduce_synthetic(
        args.out, d_values=args.d, seeds=args.seeds, progress=progress_callback(args.progress)
    )
    print(res.table.to_text())
    print()
    print(res.summary())
    print(f"\nwritten: {', '.join(str(p) for p in res.files.values())}")
    return 0 if (res.peaks_near_d and res.max_equals_mnn1 and res.larger_m_hurts) else 1


def run_imprint(args: argparse.Namespace) -> int:
    from priming.cli.progress_bars import progress_callback
    from priming.recipes.imprint import reproduce_imprint

    res = reproduce_imprint(
        args.embeddings, args.out, seeds=args.seeds, shots=args.shots,
        workers=args.workers, progress=progress_callback(args.progress),
        executor=executor_spec(args),
    )  # fmt: skip
    print(res.text)
    print(f"\nresults: {res.results}\nreport: {res.report['markdown']}")
    return 0


def run_neural_priming(args: argparse.Namespace) -> int:
    from priming.cli.progress_bars import progress_callback
    from priming.recipes.neural_priming import reproduce_neural_priming

    res = reproduce_neural_priming(
        args.dataset, args.corpus, args.out, data=args.data, layout=args.layout,
        embeddings=args.embeddings, model=args.model, shots=args.shots, seeds=args.seeds,
        alpha=args.alpha, transductive=args.transductive, transductive_k=args.k,
        per_class=args.per_class, leakage_threshold=args.leakage_threshold,
        dedup_threshold=args.dedup_threshold, agreement=args.agreement,
        templates=args.templates, descriptions=args.descriptions,
        test_split=args.test_split, train_split=args.train_split, cache_dir=args.cache_dir,
        batch_size=args.batch_size, device=args.device,
        progress=progress_callback(args.progress),
    )  # fmt: skip
    print(res.text)
    print(f"\nreport: {res.files['report']}\nmetrics: {res.files['metrics']}")
    return 0
