"""``priming embed``: embed a dataset with a model, through the resumable cache."""

from __future__ import annotations

import argparse
import time

from priming.cli._args import add_executor_options, executor_spec
from priming.cli._args import positive_int as _positive_int
from priming.cli.progress_bars import progress_callback


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="embed images or texts with a model into the embedding cache",
        description="Embed a dataset (image folder, CSV/JSONL manifest, webdataset tars) "
        "with a model. Results are cached under --out by model and file fingerprints; "
        "an interrupted run resumes where it stopped.",
    )
    p.add_argument(
        "--model",
        required=True,
        help="encoder name, e.g. open_clip:ViT-B-16/laion2b_s34b_b88k, hf:DIR, "
        "sentence-transformers:all-MiniLM-L6-v2",
    )
    p.add_argument("--data", required=True, help="image folder, manifest, .tar shards or pattern")
    p.add_argument("--out", required=True, help="cache directory")
    p.add_argument(
        "--batch-size", type=_positive_int, default=64, help="items per forward pass (64)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda[:N], mps (default: best available)")
    p.add_argument(
        "--precision",
        default=None,
        choices=["fp32", "fp16", "bf16"],
        help="model precision (fp16 needs a GPU; default fp32)",
    )
    p.add_argument("--workers", type=_positive_int, default=None, help="image decoding threads")
    p.add_argument("--shard-size", type=_positive_int, default=None, help="items per cache shard")
    p.add_argument(
        "--cache-dtype",
        default="float32",
        choices=["float32", "float16"],
        help="storage dtype of the cached embeddings",
    )
    p.add_argument(
        "--fingerprint",
        default="stat",
        choices=["stat", "content"],
        help="identify files by size+mtime (stat) or by hashing their bytes",
    )
    add_executor_options(p, "image decoding ahead of the model")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from priming._fs import make_dir
    from priming.data import embed, open_dataset
    from priming.encoders import create_encoder

    t0 = time.perf_counter()
    dataset = open_dataset(args.data, fingerprint=args.fingerprint)
    if dataset.kind != "embeddings":  # check --out before spending time on the model
        make_dir(args.out, "cache folder (--out)")
    encoder = create_encoder(args.model, device=args.device, precision=args.precision)
    print(
        f"{encoder.name}: dim {encoder.dim} on {encoder.device} ({encoder.precision}); "
        f"{len(dataset)} {dataset.kind} items in {args.data}"
    )
    result = embed(
        encoder,
        dataset,
        cache_dir=args.out,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=progress_callback(not args.no_progress),
        shard_size=args.shard_size,
        cache_dtype=args.cache_dtype,
        executor=executor_spec(args),
    )
    elapsed = time.perf_counter() - t0
    if result.cache_path is None:  # embedding files: used as they are
        print(
            f"{len(result)} precomputed embeddings (dim {result.dim}) read from {args.data}; "
            "nothing to compute or write"
        )
        return 0
    if result.from_cache:
        state = "cache hit"
    elif result.n_computed < len(dataset):
        state = f"resumed: computed {result.n_computed} of {len(dataset)} items"
    else:
        state = f"computed {result.n_computed} items"
    print(
        f"embedded {len(result)} items, skipped {len(result.skipped)}, "
        f"{state}, {elapsed:.1f}s -> {result.cache_path}"
    )
    for item_id, reason in result.skipped[:10]:
        print(f"  skipped {item_id}: {reason}")
    if len(result.skipped) > 10:
        print(
            f"  ... and {len(result.skipped) - 10} more (all listed in "
            f"{result.cache_path}/meta.json)"
        )
    return 0
