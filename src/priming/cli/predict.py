"""``priming predict``: apply a saved head to data."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify data with a saved head (e.g. RUN_DIR/head)",
        description="Embed --data with the head's model (or read embeddings) and write "
        "id,prediction,confidence as CSV to --out (default: standard output).",
    )
    p.add_argument("--head", required=True, help="head folder written by priming prime")
    p.add_argument("--data", required=True, help="image folder, manifest, .tar shards or .npy/.npz")
    p.add_argument("--model", help="encoder (default: the one recorded with the head)")
    p.add_argument("--out", help="CSV file to write")
    p.add_argument("--cache-dir", help="embedding cache (default ~/.cache/priming/embeddings)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import csv
    import io
    import sys
    from pathlib import Path

    import numpy as np

    from priming.errors import ConfigError
    from priming.eval.prime import _default_cache
    from priming.heads import load_head

    if args.out:
        from priming._fs import make_dir

        if Path(args.out).is_dir():
            raise ConfigError(f"--out {args.out!r} is a folder; give the path of a CSV file")
        make_dir(Path(args.out).parent, "folder of --out")
    head = load_head(args.head)
    data = Path(args.data)
    if data.suffix.lower() in (".npy", ".npz"):
        from priming.data import load_embeddings

        emb = load_embeddings(data)
    else:
        from priming.data import embed
        from priming.encoders import create_encoder

        model = args.model or (getattr(head, "metadata_", {}) or {}).get("model", {}).get("name")
        if not model:
            raise ConfigError("the head records no model; pass --model")
        encoder = create_encoder(model, device=args.device)
        emb = embed(
            encoder,
            str(data),
            cache_dir=args.cache_dir or _default_cache(),
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )
    X = np.asarray(emb.embeddings, np.float32)
    proba = head.predict_proba(X)
    pred = head.classes_[proba.argmax(axis=1)]
    msg = f"{len(pred)} predictions"
    if emb.labels is not None:
        from priming.errors import DataError
        from priming.eval.prime import match_labels
        from priming.heads import parse_class_names

        try:
            y = match_labels(emb.labels, parse_class_names([str(c) for c in head.classes_]), "data")
        except DataError as exc:  # labels of another task: predictions still stand
            msg += f"; no accuracy ({exc})"
        else:
            msg += f"; accuracy {100 * float(np.mean(head.classes_[y] == pred)):.2f} %"
    if emb.skipped:
        msg += f"; {len(emb.skipped)} item(s) skipped"
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "prediction", "confidence"])
    for i, p, c in zip(emb.ids, pred, proba.max(axis=1)):
        w.writerow([i, p, f"{c:.4f}"])
    if args.out:
        from priming._fs import write_text_atomic

        write_text_atomic(args.out, buf.getvalue())
    else:
        sys.stdout.write(buf.getvalue())
    print(msg + (f" -> {args.out}" if args.out else ""), file=sys.stderr)
    return 0
