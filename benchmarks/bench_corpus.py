"""Benchmark of priming.corpus on a synthetic LAION-like corpus.

Captions are drawn from a Zipf word distribution; 1,000 class names (1-3 words) are
injected at known, log-uniform rates. Reports in one run:

* build rows/s (and per worker core) and bytes/row on disk;
* phrase-query latency p50/p95 over the class names, with exact hit counts;
* the same queries as a full scan of the caption column (pyarrow regex, word
  boundaries) - the baseline; hits must be identical, and the per-query speed ratio;
* exact ``knn`` queries/s.

    python benchmarks/bench_corpus.py                 # 1M rows
    python benchmarks/bench_corpus.py --rows 100000   # quick
    python benchmarks/bench_corpus.py --10m           # 10M rows
    python benchmarks/bench_corpus.py --workdir W --reuse   # queries again on W's corpus
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from priming.corpus import build_corpus, open_corpus  # noqa: E402

LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))


def _words(rng, n, lo, hi, exclude=frozenset()):
    out: list[str] = []
    seen = set(exclude)
    while len(out) < n:
        w = "".join(rng.choice(LETTERS, size=rng.integers(lo, hi + 1)))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def make_corpus(root: Path, n_rows: int, n_shards: int, n_names: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    vocab = np.array(_words(rng, 30000, 3, 9))
    class_vocab = _words(rng, int(n_names * 1.2), 4, 10, exclude=set(vocab.tolist()))
    names = []
    seen = set()
    while len(names) < n_names:
        k = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
        name = " ".join(rng.choice(class_vocab, size=k, replace=False))
        if name not in seen:
            seen.add(name)
            names.append(name)
    rates = np.exp(rng.uniform(np.log(2e-5), np.log(2e-3), size=n_names))
    inject: dict[int, list[str]] = {}
    injected = {}
    for name, r in zip(names, rates):
        rows = np.unique(rng.integers(0, n_rows, size=rng.binomial(n_rows, r)))
        injected[name] = int(rows.size)
        for i in rows.tolist():
            inject.setdefault(i, []).append(name)
    seps = np.array([" ", " ", " ", " ", ", ", " - ", " / ", " (", ") "])
    bounds = np.linspace(0, n_rows, n_shards + 1).astype(int)
    (root / "metadata").mkdir(parents=True)
    (root / "img_emb").mkdir()
    import pyarrow as pa
    import pyarrow.parquet as pq

    for s in range(n_shards):
        a, b = bounds[s], bounds[s + 1]
        n = b - a
        lens = rng.integers(4, 21, size=n)
        w = vocab[np.minimum(rng.zipf(1.15, size=int(lens.sum())) - 1, len(vocab) - 1)]
        sp = seps[rng.integers(0, len(seps), size=int(lens.sum()))]
        toks = np.char.add(sp, w)
        caps = []
        pos = 0
        for j, ln in enumerate(lens.tolist()):
            parts = toks[pos : pos + ln].tolist()
            pos += ln
            for name in inject.get(a + j, ()):
                parts.insert(int(rng.integers(0, len(parts) + 1)), " " + name)
            caps.append("".join(parts).strip(" ,-/()"))
        t = pa.table(
            {
                "url": [f"https://img.example.com/{i}.jpg" for i in range(a, b)],
                "caption": caps,
                "NSFW": np.where(rng.random(n) < 0.02, "NSFW", "UNLIKELY"),
                "similarity": rng.uniform(0.28, 0.4, n).astype(np.float32),
                "WIDTH": rng.integers(200, 2000, n),
                "HEIGHT": rng.integers(200, 2000, n),
                "key": [f"{i:09d}" for i in range(a, b)],
            }
        )
        pq.write_table(t, root / "metadata" / f"metadata_{s}.parquet")
        e = rng.standard_normal((n, dim), dtype=np.float32)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        np.save(root / "img_emb" / f"img_emb_{s}.npy", e.astype(np.float16))
    return names, injected


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--10m", dest="ten_m", action="store_true", help="10M rows")
    ap.add_argument(
        "--shards",
        type=int,
        default=None,
        help="input files = shards (default rows/125k, >= workers)",
    )
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument(
        "--executor",
        default=None,
        help="executor for the build and the shard fan-out of search (priming.exec names)",
    )
    ap.add_argument("--names", type=int, default=1000)
    ap.add_argument(
        "--baseline-names", type=int, default=None, help="scan only this many names (default all)"
    )
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="where to write (default a temp dir, deleted)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="with --workdir: reuse the corpus an earlier run built there (queries only)",
    )
    args = ap.parse_args(argv)
    n_rows = 10_000_000 if args.ten_m else args.rows
    n_shards = args.shards or max(args.workers, int(np.ceil(n_rows / 125_000)))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_corpus_"))
    res: dict = {"rows": n_rows, "shards": n_shards, "workers": args.workers, "dim": args.dim}
    try:
        saved = work / "names.json"
        if args.reuse and saved.is_file() and (work / "corpus" / "manifest.json").is_file():
            got = json.loads(saved.read_text())
            names, injected = got["names"], got["injected"]
            build_s = float(got["build_seconds"])
            print(f"reusing the corpus in {work} (built {build_s:.1f}s)", flush=True)
        else:
            t = time.perf_counter()
            names, injected = make_corpus(
                work / "laion", n_rows, n_shards, args.names, args.dim, args.seed
            )
            print(f"generated {n_rows} rows in {time.perf_counter() - t:.1f}s", flush=True)

            t = time.perf_counter()
            build_corpus(
                work / "laion",
                embeddings=work / "laion",
                out=work / "corpus",
                workers=args.workers,
                executor=args.executor,
            )
            build_s = time.perf_counter() - t
            if args.workdir:
                saved.write_text(
                    json.dumps({"names": names, "injected": injected, "build_seconds": build_s})
                )
        c = open_corpus(work / "corpus", executor=args.executor)
        assert c.n_rows == n_rows, "the synthetic corpus has no bad rows"
        db = sum(s["db_bytes"] for s in c.shards)
        emb = sum(s["embeddings_bytes"] for s in c.shards)
        res.update(
            build_seconds=round(build_s, 2),
            build_rows_per_s=round(n_rows / build_s),
            build_rows_per_s_per_core=round(n_rows / build_s / min(args.workers, n_shards)),
            # CPU seconds spent in the shard workers: per-core throughput even on a busy machine
            build_rows_per_cpu_s=round(n_rows / sum(s["build_cpu_seconds"] for s in c.shards)),
            db_bytes_per_row=round(db / n_rows, 1),
            embedding_bytes_per_row=round(emb / n_rows, 1),
            bytes_per_row=round((db + emb) / n_rows, 1),
        )
        print(json.dumps(res), flush=True)

        # ---- phrase queries through the index
        c.search_captions({"warm": [names[0]]})
        idx_t, idx_hits = [], {}
        for name in names:
            t = time.perf_counter()
            h = c.search_captions({name: [name]})
            idx_t.append(time.perf_counter() - t)
            ids = h.row_ids if hasattr(h, "row_ids") else h.table.column("row_id").to_numpy()
            idx_hits[name] = np.sort(ids)
        idx_t = np.array(idx_t)
        counts = np.array([idx_hits[n].size for n in names])
        res.update(
            query_p50_ms=round(float(np.percentile(idx_t, 50)) * 1e3, 3),
            query_p95_ms=round(float(np.percentile(idx_t, 95)) * 1e3, 3),
            hits_total=int(counts.sum()),
            hits_min_median_max=[int(counts.min()), int(np.median(counts)), int(counts.max())],
            hits_at_least_injected=bool(all(idx_hits[n].size >= injected[n] for n in names)),
        )
        if hasattr(h, "select"):  # ids first: the metadata costs only when read
            with_pool, with_table = [], []
            for name in names[:200]:
                t = time.perf_counter()
                c.search_captions({name: [name]}).select(["nsfw", "similarity"])
                with_pool.append(time.perf_counter() - t)
                t = time.perf_counter()
                _ = c.search_captions({name: [name]}).table
                with_table.append(time.perf_counter() - t)
            res.update(
                query_with_nsfw_similarity_p50_ms=round(float(np.median(with_pool)) * 1e3, 3),
                query_with_table_p50_ms=round(float(np.median(with_table)) * 1e3, 3),
            )
        print(json.dumps(res), flush=True)

        # ---- baseline: full scan of the caption column, word-boundary regex
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        files = sorted(
            (work / "laion" / "metadata").glob("*.parquet"), key=lambda p: int(p.stem.split("_")[1])
        )
        captions = pa.concat_arrays(
            [
                pq.read_table(f, columns=["caption"]).column("caption").combine_chunks()
                for f in files
            ]
        )
        lower = pc.utf8_lower(captions)
        sub = names[: args.baseline_names] if args.baseline_names else names
        base_t, mismatches = [], 0
        for name in sub:
            pattern = r"\b" + r"[^a-z0-9]+".join(map(re.escape, name.split())) + r"\b"
            t = time.perf_counter()
            hits = pc.indices_nonzero(pc.match_substring_regex(lower, pattern)).to_numpy()
            base_t.append(time.perf_counter() - t)
            if not np.array_equal(np.sort(hits), idx_hits[name]):
                mismatches += 1
        base_t = np.array(base_t)
        ratio = base_t / idx_t[: len(sub)]
        res.update(
            baseline_names=len(sub),
            baseline_p50_ms=round(float(np.percentile(base_t, 50)) * 1e3, 2),
            baseline_p95_ms=round(float(np.percentile(base_t, 95)) * 1e3, 2),
            hit_mismatches=mismatches,
            speedup_per_query_median=round(float(np.median(ratio)), 1),
            speedup_per_query_p5=round(float(np.percentile(ratio, 5)), 1),
            speedup_per_query_min=round(float(ratio.min()), 1),
            fraction_queries_100x=round(float(np.mean(ratio >= 100)), 3),
        )
        print(json.dumps(res), flush=True)

        # ---- exact knn
        rng = np.random.default_rng(1)
        q = rng.standard_normal((256, args.dim), dtype=np.float32)
        t = time.perf_counter()
        c.knn(q, 10)
        knn_s = time.perf_counter() - t
        res.update(
            knn_batch=256, knn_seconds=round(knn_s, 2), knn_queries_per_s=round(256 / knn_s, 1)
        )
        print(json.dumps(res), flush=True)
        print("\n".join(f"{k:32s} {v}" for k, v in res.items()))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1))
        return 0 if mismatches == 0 else 1
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
