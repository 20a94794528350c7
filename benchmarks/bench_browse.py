"""Benchmark of ``priming browse`` class pages on a synthetic 1M-item pool.

Writes a pool folder (``pool.parquet`` + ``pool.json``) of ``--rows`` items over
``--classes`` classes, rows of a class contiguous as ``build_pool`` writes them, and
requests random class pages through the real app (Starlette test client, templates
rendered): p50/p95 page load. The baseline reads the whole pool parquet on every request,
filters the class and slices the page (what a naive server does); its rows must equal
the paged rows. Printed: start-up time (the class index), p50/p95 of both, and the
p95 ratio. Run for several row-group sizes (``--row-groups``; pyarrow's default is 1M rows).

    python benchmarks/bench_browse.py                 # 1M rows
    python benchmarks/bench_browse.py --rows 100000   # quick
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from priming.browse import create_app  # noqa: E402

WORDS = np.array("a photo of the small big red blue dog cat on in with at near old new".split())


def write_pool(root: Path, n_rows: int, n_classes: int, row_group_size: int | None, seed=0):
    rng = np.random.default_rng(seed)
    names = [f"class{j:04d}" for j in range(n_classes)]
    labels = np.sort(rng.integers(0, n_classes, n_rows))
    words = WORDS[rng.integers(0, len(WORDS), (n_rows, 8))]
    captions = [" ".join(w) + f" {i}" for i, w in enumerate(words)]
    table = pa.table(
        {
            "row_id": pa.array(np.arange(n_rows, dtype=np.int64) * 7),
            "label": pa.array(labels.astype(np.int64)),
            "class_name": pa.array(np.asarray(names)[labels].tolist(), pa.string()),
            "caption": pa.array(captions, pa.string()),
            "url": pa.array([f"http://img.example/{i}.jpg" for i in range(n_rows)], pa.string()),
            "score": pa.array(rng.random(n_rows).astype(np.float32)),
        }
    )
    root.mkdir(parents=True, exist_ok=True)
    kw = {} if row_group_size is None else {"row_group_size": row_group_size}
    pq.write_table(table, root / "pool.parquet", **kw)
    (root / "pool.json").write_text(json.dumps({"class_names": names, "steps": [], "meta": {}}))
    return names, np.bincount(labels, minlength=n_classes)


def requests(names, counts, n, per_page, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        j = int(rng.integers(0, len(names)))
        pages = max(1, -(-int(counts[j]) // per_page))
        out.append((names[j], int(rng.integers(1, pages + 1))))
    return out


def baseline_rows(path: Path, name: str, page: int, per_page: int):
    t = pq.read_table(path)
    t = t.filter(pc.equal(t["class_name"], name))
    return t.slice((page - 1) * per_page, per_page).column("row_id").to_pylist()


def pct(a, q):
    return float(np.percentile(np.asarray(a) * 1000, q))


def run(root: Path, args, row_group_size):
    names, counts = write_pool(root, args.rows, args.classes, row_group_size)
    n_groups = pq.ParquetFile(root / "pool.parquet").num_row_groups
    t0 = time.perf_counter()
    client = TestClient(create_app(root))
    startup = time.perf_counter() - t0
    reqs = requests(names, counts, args.requests, args.per_page)
    paged, base = [], []
    for k, (name, page) in enumerate(reqs):
        t0 = time.perf_counter()
        r = client.get("/class", params={"name": name, "page": page, "per_page": args.per_page})
        paged.append(time.perf_counter() - t0)
        assert r.status_code == 200
        if k < args.baseline_requests:
            t0 = time.perf_counter()
            want = baseline_rows(root / "pool.parquet", name, page, args.per_page)
            base.append(time.perf_counter() - t0)
            got = [int(x) for x in _row_ids(r.text)]
            assert got == want, (name, page)
    label = f"row groups of {row_group_size or 'default'} rows ({n_groups} groups)"
    print(f"{args.rows} items, {args.classes} classes, {label}")
    print(
        f"  start-up (class index): {startup * 1000:.0f} ms, "
        f"first page (cold cache): {paged[0] * 1000:.0f} ms"
    )
    print(
        f"  paged    p50 {pct(paged, 50):7.1f} ms   p95 {pct(paged, 95):7.1f} ms  "
        f"({len(paged)} requests)"
    )
    print(
        f"  baseline p50 {pct(base, 50):7.1f} ms   p95 {pct(base, 95):7.1f} ms  "
        f"({len(base)} requests, whole parquet read per request)"
    )
    print(f"  p95 ratio baseline / paged: {pct(base, 95) / pct(paged, 95):.1f}x")


def _row_ids(html: str):
    import re

    return re.findall(r'<tr data-row-id="(-?\d+)">', html)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--baseline-requests", type=int, default=20)
    ap.add_argument("--per-page", type=int, default=50)
    ap.add_argument(
        "--row-groups",
        default="8192,65536,default",
        help="comma-separated row-group sizes to write the pool with ('default': pyarrow's)",
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-browse-"))
    try:
        for size in args.row_groups.split(","):
            rg = None if size.strip() == "default" else int(size)
            run(tmp / f"rg-{size.strip()}", args, rg)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
