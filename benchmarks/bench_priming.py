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


def _data(n_pool: int, n_queries: int, dim: int, seed: int, clusters: int = 1000):
    """Unit vectors; with ``clusters`` > 0 a class-structured pool like a real priming
    pool (each item at cosine ~0.8 from its class centre), else uniform on the sphere."""
    rng = np.random.default_rng(seed)
    mu = None
    if clusters:
        mu = rng.standard_normal((clusters, dim), dtype=np.float32)
        mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    spread = 0.75 / np.sqrt(dim)

    def draw(n):
        if mu is None:
            x = rng.standard_normal((n, dim), dtype=np.float32)
        else:
            x = mu[rng.integers(0, clusters, n)] + spread * rng.standard_normal(
                (n, dim), dtype=np.float32
            )
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    P = np.empty((n_pool, dim), np.float32)
    for a in range(0, n_pool, 100_000):  # generate in blocks (bounded temporaries)
        b = min(n_pool, a + 100_000)
        P[a:b] = draw(b - a)
    return P, draw(n_queries)


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ours(args, q, method="exact"):
    from priming.pool import pool_neighbors

    P, Q = _data(args.rows, args.queries, args.dim, args.seed, args.clusters)
    base = _rss_mib()
    t = time.perf_counter()
    _, rows = pool_neighbors(P, Q, args.k, method=method, nprobe=args.nprobe)
    union = np.unique(rows[rows >= 0])
    dt = time.perf_counter() - t
    q.put({"time": dt, "base_mib": base, "peak_mib": _peak_mib(), "union": union, "disk_gib": 0.0})


def _ours_ivf(args, q):
    _ours(args, q, method="ivf")


def _reference(args, q):
    from numpy.lib.format import open_memmap

    P, Q = _data(args.rows, args.queries, args.dim, args.seed, args.clusters)
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
    ivf = _in_child(_ours_ivf, args)
    ref = _in_child(_reference, args)
    same = np.array_equal(ours["union"], ref["union"])
    recall = len(np.intersect1d(ivf["union"], ref["union"])) / max(1, len(ref["union"]))
    for name, r in (
        ("chunked exact top-k (ours)", ours),
        (f"faiss IVF, nprobe={args.nprobe} (ours)", ivf),
        ("memmap + argpartition (reference)", ref),
    ):
        print(
            f"   {name:36s} {r['time']:8.1f} s   peak RSS {r['peak_mib']:8.0f} MiB "
            f"(data {r['base_mib']:.0f} MiB, +{r['peak_mib'] - r['base_mib']:.0f})   "
            f"disk {r['disk_gib']:.1f} GiB"
        )
    print(
        f"   union size {len(ref['union']):,}; exact identical to reference: {same}; "
        f"IVF union recall {100 * recall:.2f} %"
    )
    print(
        f"   speed-up vs reference: exact {ref['time'] / ours['time']:.1f}x, "
        f"IVF {ref['time'] / ivf['time']:.1f}x (target >= 5x)"
    )


def bench_pool_building(args) -> None:
    """build_pool for ``--classes`` class names on a synthetic corpus (bench_corpus's
    generator: Zipf captions with the names injected at log-uniform rates)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_corpus import make_corpus

    from priming.corpus import build_corpus, open_corpus
    from priming.pool import build_pool

    print(f"== pool building: {args.classes:,} classes on a {args.rows:,}-row corpus, D={args.dim}")
    work = Path(tempfile.mkdtemp(dir=args.tmpdir))
    try:
        t = time.perf_counter()
        names, injected = make_corpus(
            work / "src", args.rows, max(1, args.rows // 250_000), args.classes, args.dim, args.seed
        )
        build_corpus(
            work / "src" / "metadata",
            embeddings=work / "src" / "img_emb",
            out=work / "corpus",
            embedding_model="synthetic",
        )
        print(f"   corpus generated and built in {time.perf_counter() - t:.1f} s")
        corpus = open_corpus(work / "corpus")
        rng = np.random.default_rng(args.seed)
        T = rng.standard_normal((len(names), args.dim)).astype(np.float32)
        T /= np.linalg.norm(T, axis=1, keepdims=True)
        for label, kw in (
            ("all filters, cap 1000", dict(per_class=1000)),
            ("no agreement filter, cap 1000", dict(per_class=1000, agreement=False)),
        ):
            t = time.perf_counter()
            pool = build_pool(corpus, names, T, **kw)
            dt = time.perf_counter() - t
            st = pool.stats()
            found = sum(st["search"].values())
            print(
                f"   {label:32s} {dt:7.1f} s  = {1000 * dt / len(names):6.1f} ms/class; "
                f"{found:,} caption hits -> pool {len(pool):,}"
            )
        exp = sum(injected.values())
        print(f"   (names injected into {exp:,} rows; hits exclude rows matching several names)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="pool / corpus rows")
    ap.add_argument("--queries", type=int, default=10_000, help="transductive queries")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument(
        "--clusters",
        type=int,
        default=1000,
        help="class clusters in the synthetic pool (0: uniform on the sphere)",
    )
    ap.add_argument("--nprobe", type=int, default=16, help="IVF lists scanned per query")
    ap.add_argument("--classes", type=int, default=1000, help="classes for pool building")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmpdir", default=None, help="where the reference writes its matrix")
    ap.add_argument("--only", choices=["narrow", "pool"], default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    import logging

    logging.getLogger("priming").setLevel(logging.ERROR)  # empty-class warnings
    if args.only in (None, "narrow"):
        bench_narrowing(args)
    if args.only in (None, "pool"):
        bench_pool_building(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
