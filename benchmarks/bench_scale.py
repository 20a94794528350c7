"""Local vs Ray through the executor seam, with 1 and 2 workers, printed as ratios.

Usage: ``python benchmarks/bench_scale.py [--shards 8] [--work 0.4] [--rows 20000]``

Measures, in one run on this machine:

* a CPU-bound per-shard function (a stand-in for building one shard): local process
  pool vs ``RayExecutor`` at 1 and 2 workers (Ray overhead at 1 worker, speed-up at 2);
* ``build_corpus`` on generated LAION-style parquet shards, local vs Ray, when it takes
  ``executor=`` (skipped otherwise), as rows/s.

Ray start-up (a local cluster) is measured once and reported apart: a cluster is started
once per command, not per fan-out.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def shard_work(seed: int, seconds: float) -> float:
    """Burn about ``seconds`` of one core on small GEMMs; returns a checksum."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(96, 96))
    acc = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a = np.tanh(a @ a.T / 96.0)
        acc += float(a[0, 0])
    return acc


def run(ex, shards: int, seconds: float, in_flight: int) -> float:
    """Wall time for ``shards`` tasks with at most ``in_flight`` running (like build)."""
    t = time.perf_counter()
    futs = []
    for s in range(shards):
        futs.append(ex.submit(shard_work, s, seconds))
        if len(futs) >= in_flight:
            futs.pop(0).result()
    for f in futs:
        f.result()
    return time.perf_counter() - t


def bench_tasks(args, ray_ex) -> None:
    print(f"\nper-shard CPU task: {args.shards} shards x {args.work:.2f} s of work")
    base = None
    for w in (1, 2):
        with ProcessPoolExecutor(max_workers=w) as pool:
            run(pool, w, 0.01, w)  # start the workers
            t_local = run(pool, args.shards, args.work, w)
        run(ray_ex, 2, 0.01, 2)
        t_ray = run(ray_ex, args.shards, args.work, w)
        base = base or t_local
        print(
            f"  {w} worker(s): local {t_local:6.2f} s  ray {t_ray:6.2f} s  "
            f"ray/local {t_ray / t_local:5.2f}x  speed-up vs local-1: "
            f"local {base / t_local:4.2f}x ray {base / t_ray:4.2f}x"
        )


def bench_build(args, ray_ex) -> None:
    from priming.corpus import build_corpus

    if "executor" not in inspect.signature(build_corpus).parameters:
        print("\nbuild_corpus: no executor= parameter on this branch; skipped")
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    words = np.array("a dog cat photo of the red blue bird car house tree on in".split())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        for s in range(args.shards):
            caps = [" ".join(rng.choice(words, 8)) for _ in range(args.rows)]
            n = len(caps)
            table = pa.table({"URL": [f"http://x/{s}/{i}.jpg" for i in range(n)], "TEXT": caps})
            pq.write_table(table, tmp / "in" / f"m{s}.parquet")
        total = args.shards * args.rows
        print(f"\nbuild_corpus: {args.shards} shards x {args.rows} rows")
        base = None
        for w in (1, 2):
            res = {}
            for name, ex in (("local", "local"), ("ray", ray_ex)):
                out = tmp / f"out-{name}-{w}"
                t = time.perf_counter()
                build_corpus(str(tmp / "in" / "*.parquet"), out=out, workers=w, executor=ex)
                res[name] = time.perf_counter() - t
            base = base or res["local"]
            print(
                f"  {w} worker(s): local {total / res['local']:8.0f} rows/s  "
                f"ray {total / res['ray']:8.0f} rows/s  ray/local time "
                f"{res['ray'] / res['local']:5.2f}x  local-1/ray-{w} {base / res['ray']:4.2f}x"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--work", type=float, default=0.4, help="seconds of CPU per shard task")
    p.add_argument("--rows", type=int, default=20000, help="rows per parquet shard (build)")
    p.add_argument("--address", default=None, help="a Ray cluster (default: start a local one)")
    args = p.parse_args()

    from priming.exec.ray import RayExecutor

    print(f"machine: {os.cpu_count()} CPUs")
    t = time.perf_counter()
    ray_ex = RayExecutor(address=args.address, num_cpus=1)  # 1 CPU a task: no oversubscription
    ray_ex.submit(shard_work, 0, 0.0).result()
    print(f"Ray start-up (cluster + first task): {time.perf_counter() - t:.1f} s")
    try:
        bench_tasks(args, ray_ex)
        bench_build(args, ray_ex)
    finally:
        ray_ex.shutdown()


if __name__ == "__main__":
    main()
