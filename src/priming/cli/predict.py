"""``priming predict``: apply a saved head to data (calls :func:`priming.job.predict`)."""

from __future__ import annotations

import argparse

from priming.cli._args import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify data with a saved head (e.g. RUN_DIR/head)",
        description="Embed --data with the head's model (or read embeddings) and write "
        "id,prediction,confidence as CSV to --out (default: standard output); confidence is "
        "the head's probability of the predicted class. A head saved from Python without "
        "model metadata needs --model.",
    )
    p.add_argument("--head", required=True, help="head folder written by priming prime")
    p.add_argument("--data", required=True, help="image folder, manifest, .tar shards or .npy/.npz")
    p.add_argument(
        "--model",
        help="encoder of the data (default: the one recorded with the head; needed for a head "
        "saved without metadata)",
    )
    p.add_argument("--out", help="CSV file to write (never the --data file)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--cache-dir", help="embedding cache (default ~/.cache/priming/embeddings)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true", help="draw no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from priming.cli.progress_bars import progress_callback
    from priming.job import predict

    res = predict(
        args.head,
        args.data,
        model=args.model,
        out=args.out,
        cache_dir=args.cache_dir,
        batch_size=args.batch_size,
        device=args.device,
        overwrite=args.overwrite,
        progress=progress_callback(not args.no_progress),
    )
    if not args.out:
        sys.stdout.write(res.to_csv())
    print(res.summary() + (f" -> {args.out}" if args.out else ""), file=sys.stderr)
    return 0
