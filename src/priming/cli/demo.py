"""``priming demo``: the offline demonstration run by ``make demo``.

Part 1 (``--part priming``): the main job on a real model and real data nobody here
wrote — ``sentence-transformers:all-MiniLM-L6-v2`` and the Debian package catalogue
(``apt-cache dumpavail``): package sections are the classes, descriptions of one part of
the packages are the "pretraining corpus", packages never in the corpus are the labelled
evaluation set. Prints zero-shot vs primed vs multi-proxy primed accuracy.

Part 2 (``--part imprint``): the synthetic IMPRINT sub-cluster experiment
(``priming.eval.synthetic``): classes made of ``d`` Gaussian sub-clusters, named IMPRINT
configurations as rows, accuracy for each ``d`` as columns.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

MODEL = "sentence-transformers:all-MiniLM-L6-v2"


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
    from priming.corpus import build_corpus, fill_embeddings
    from priming.errors import PrimingError
    from priming.eval.debian import read_catalogue, write_demo_data
    from priming.eval.prime import PrimeConfig, run_prime

    t0 = time.perf_counter()
    work = Path(args.workdir).resolve()
    print("Neural Priming demo: Debian package sections as classes, package descriptions as corpus")
    try:
        catalogue = read_catalogue(args.catalogue)
    except PrimingError as exc:
        print(f"skipped: {exc}\n{_own_data_hint()}")
        return
    try:
        from priming.encoders import create_encoder

        encoder = create_encoder(MODEL, device="cpu")
    except PrimingError as exc:
        print(f"skipped: the demo model {MODEL} is not available here ({exc})\n{_own_data_hint()}")
        return
    n_corpus = args.corpus_size
    if n_corpus is None:
        probe = [
            f"{syn}. {long}"[:200]
            for _, _, syn, long in catalogue[:: max(1, len(catalogue) // 256)]
        ]
        t = time.perf_counter()
        encoder.encode_texts(probe, batch_size=256)
        rate = len(probe) / (time.perf_counter() - t)
        n_corpus = int(min(10000, max(3000, rate * args.budget)))
        print(f"model {MODEL}: {rate:.0f} texts/s on this machine -> corpus of {n_corpus} packages")
    data = write_demo_data(
        work / "data",
        n_corpus=n_corpus,
        n_eval=args.eval_size,
        catalogue=args.catalogue,
        random_state=args.seed,
    )
    print(
        f"{len(data.classes)} classes (sections), {data.n_corpus} corpus packages, "
        f"{data.n_eval} held-out evaluation packages"
    )
    corpus_dir = work / "corpus"
    stamp = work / "corpus.stamp.json"
    want = {
        "n_corpus": data.n_corpus,
        "seed": args.seed,
        "model": encoder.fingerprint,
        "catalogue": args.catalogue,
    }
    if not (stamp.is_file() and json.loads(stamp.read_text()) == want):
        import shutil

        shutil.rmtree(corpus_dir, ignore_errors=True)
        build_corpus(data.corpus_parquet, out=corpus_dir, workers=1)
        bar = _bar("embedding corpus")
        fill_embeddings(
            corpus_dir,
            encoder,
            batch_size=256,
            progress=None if bar is None else (lambda d, n: _tick(bar, d, n)),
        )
        if bar is not None:
            bar.close()
        stamp.write_text(json.dumps(want))
    cfg = PrimeConfig.from_mapping(
        {
            "model": MODEL,
            "classes": str(data.classes_file),
            "corpus": str(corpus_dir),
            "eval": str(data.eval_file),
            "out": str(work / "run"),
            "cache_dir": str(work / "cache"),
            "templates": "identity",
            "per_class": 300,
            "alpha": "auto",
            "head": "neural-priming",
            "compare": ["imprint-best"],
            "seed": args.seed,
            "overwrite": True,
        },
        "demo",
    )
    res = run_prime(cfg, encoder=encoder)
    m = res.metrics
    ev = m["eval"]
    print(
        f"\npool: {m['pool']['size']} descriptions found by caption search for "
        f"{m['n_classes']} classes; alpha = {m['alpha']['value']:.2f} (chosen on held-out "
        "pool items, no test labels)\n"
    )
    print(f"{'head':44s} {'top-1 %':>8s} {'balanced %':>11s}")
    rows = [
        ("zero-shot (class names only)", ev["zero_shot"]),
        ("primed, Neural Priming (centroid)", ev["primed (neural-priming)"]),
        ("primed, multi-proxy (k-means, imprint-best)", ev["primed (imprint-best)"]),
    ]
    for name, r in rows:
        print(f"{name:44s} {100 * r['top1']:8.2f} {100 * r['balanced_accuracy']:11.2f}")
    print(f"\nreport: {res.run_dir / 'report.md'}  ({time.perf_counter() - t0:.0f} s)")


def _bar(desc):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=1, desc=desc, leave=False)


def _tick(bar, done, total):
    bar.total = total
    bar.n = done
    bar.refresh()


def run_imprint(args: argparse.Namespace) -> None:
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
