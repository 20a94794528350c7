"""Encoding throughput: the full pipeline against its parts, measured in one run.

A randomly initialised open_clip ViT-B-32 (no download) embeds N synthetic JPEG files:

- decode-only:  decode + EXIF/RGB + the model's preprocessing, serially, one thread;
- forward-only: the model on pre-decoded tensors, batch 64;
- pipeline:     ``priming.data.embed`` (threaded decode overlapped with the forward pass).

Target: pipeline <= 1.2 x (decode-only + forward-only). Prints images/s and ratios.
Usage: python benchmarks/bench_encode.py [--n 128] [--batch-size 64] [--device cpu]
       [--arch ViT-B-32] [--precision fp32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default=None)
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--precision", default=None)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()

    import open_clip
    import torch
    from PIL import Image

    from priming.data import embed
    from priming.encoders.open_clip import OpenClipEncoder
    from priming.images import load_image

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(args.arch)
    enc = OpenClipEncoder.from_model(
        model,
        preprocess,
        open_clip.get_tokenizer(args.arch),
        name=f"open_clip:{args.arch}<random>",
        device=args.device,
        precision=args.precision,
    )
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "imgs"
        root.mkdir()
        for i in range(args.n):  # smooth-ish photos of typical web size
            small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize((480, 360), Image.BICUBIC)
            img.save(root / f"{i:05d}.jpg", quality=90)
        paths = sorted(root.iterdir())

        # warm-up (allocations, lazy init)
        enc.encode_images(paths[:8], batch_size=8)

        t = time.perf_counter()
        tensors = [enc._prepare_image(load_image(p)) for p in paths]
        t_decode = time.perf_counter() - t

        t = time.perf_counter()
        for a in range(0, len(tensors), args.batch_size):
            enc._encode_image_batch(tensors[a : a + args.batch_size])
        t_forward = time.perf_counter() - t

        t = time.perf_counter()
        res = embed(enc, root, batch_size=args.batch_size, workers=args.workers)
        t_pipe = time.perf_counter() - t
        assert len(res) == args.n and not res.skipped

    n = args.n
    serial = t_decode + t_forward
    print(
        f"device {enc.device}, {enc.precision}, {args.arch} (random weights), "
        f"{n} JPEGs 480x360, batch {args.batch_size}, torch threads {torch.get_num_threads()}"
    )
    print(f"decode-only : {t_decode:7.2f} s  {n / t_decode:8.1f} img/s")
    print(f"forward-only: {t_forward:7.2f} s  {n / t_forward:8.1f} img/s")
    print(f"pipeline    : {t_pipe:7.2f} s  {n / t_pipe:8.1f} img/s")
    ratio = t_pipe / serial
    print(
        f"pipeline / (decode + forward) = {ratio:.2f}  (target <= 1.20: "
        f"{'PASS' if ratio <= 1.2 else 'FAIL'})"
    )
    print(
        f"pipeline / forward-only       = {t_pipe / t_forward:.2f}  (1.00 = decoding fully hidden)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
