"""Benchmark of the imprinting heads against straightforward baselines (issue 2 §5).

Run: ``python benchmarks/bench_imprint.py`` (full: 1,000 classes x 100 training rows x
512-d, 20,000 test rows; then 10,000 classes x 20 proxies vs 20,000 test rows), or with
``--quick`` for a small size while developing. Everything is measured in the same run on
the same data; the script prints accuracies, times, speed ratios and peak memory.

Baselines (written here, deliberately plain):
- fit of ``imprint-best``: a Python loop over classes calling scikit-learn ``KMeans``;
- fit of ``qi2018``: a Python loop over classes computing each class mean;
- ``max`` predict: the dense (test x proxies) score matrix, then a Python loop over
  classes taking the max over each class's columns;
- ``mnn`` predict: scikit-learn ``NearestNeighbors`` (cosine) plus a per-sample vote.
The floor for exact ``max`` aggregation is the bare score-matrix product
(test rows x proxies x D multiply-adds), timed here as one float32 BLAS product.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from priming.heads import ImprintedHead  # noqa: E402
from priming.imprint import l2_normalize  # noqa: E402
from priming.imprint.aggregate import DEFAULT_CHUNK_BYTES  # noqa: E402


def make_data(n_classes, n_train, n_test, dim, n_sub, noise, seed):
    """Classes made of ``n_sub`` Gaussian sub-clusters around a class centre."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(n_classes, 1, dim)) / np.sqrt(dim)
    subs = centre + 0.9 * rng.normal(size=(n_classes, n_sub, dim)) / np.sqrt(dim)

    def draw(n_per):
        y = np.repeat(np.arange(n_classes), n_per)
        s = rng.integers(0, n_sub, size=y.size)
        X = subs[y, s] + noise * rng.normal(size=(y.size, dim)) / np.sqrt(dim)
        return X.astype(np.float32), y

    Xtr, ytr = draw(n_train)
    Xte, yte = draw(n_test // n_classes)
    return Xtr, ytr, Xte, yte


def timed(fn, repeat=1):
    """(best wall time over ``repeat`` runs, result of the last run)."""
    best, out = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def peak_mib(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


# ------------------------------------------------------------------- baselines
def baseline_fit_kmeans(X, y, k, seed):
    from sklearn.cluster import KMeans

    Xn = l2_normalize(X)
    W, lab = [], []
    for c in np.unique(y):
        Xc = Xn[y == c]
        if len(Xc) <= k:
            cent = Xc
        else:
            cent = KMeans(n_clusters=k, random_state=seed).fit(Xc).cluster_centers_
        W.append(cent)
        lab.append(np.full(len(cent), c))
    return l2_normalize(np.concatenate(W).astype(np.float32)), np.concatenate(lab)


def baseline_fit_mean(X, y):
    Xn = l2_normalize(X)
    classes = np.unique(y)
    W = np.stack([Xn[y == c].mean(0) for c in classes])
    return l2_normalize(W.astype(np.float32)), classes


def baseline_predict_max(Xt, W, lab, n_classes):
    S = l2_normalize(Xt) @ W.T  # dense (n_test x P)
    scores = np.empty((len(Xt), n_classes), dtype=S.dtype)
    for c in range(n_classes):
        scores[:, c] = S[:, lab == c].max(1)
    return scores.argmax(1)


def baseline_predict_mnn(Xt, W, lab, n_classes, m):
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=m, metric="cosine").fit(W)
    _, idx = nn.kneighbors(l2_normalize(Xt))
    pred = np.empty(len(Xt), dtype=np.int64)
    for i in range(len(Xt)):
        pred[i] = np.bincount(lab[idx[i]], minlength=n_classes).argmax()
    return pred


def bare_product(Xt, W):
    out = np.empty((Xt.shape[0], W.shape[0]), dtype=np.float32)
    np.matmul(Xt, W.T, out=out)
    return out


def one_proxy_case(C, n_test, seed, repeat, D=64):
    """Neural Priming's head (one mean proxy per class) on ``D``-d features: the first
    ``predict`` call against the bare product + argmax, and its peak memory against the
    dense score matrix."""
    rng = np.random.default_rng(seed + 2)
    Xtr = rng.normal(size=(C * 5, D)).astype(np.float32)
    head = ImprintedHead.from_preset("neural-priming").fit(Xtr, np.repeat(np.arange(C), 5))
    X = rng.normal(size=(n_test, D)).astype(np.float32)
    print(f"neural-priming (one proxy per class): {C} classes x {n_test} rows x {D}-d")
    t_first, _ = timed(lambda: head.predict(X))
    t_pred, _ = timed(lambda: head.predict(X), repeat)
    Xn = l2_normalize(X)
    t_bare, _ = timed(lambda: bare_product(Xn, head.weights_).argmax(1), repeat)
    mem = peak_mib(lambda: head.predict(X))
    dense = n_test * C * 4 / 2**20
    print(f"  predict first call {t_first:.3f}s, best {t_pred:.3f}s; bare product + argmax "
          f"{t_bare:.3f}s -> first / bare = {t_first / t_bare:.2f}x, best / bare = "
          f"{t_pred / t_bare:.2f}x")  # fmt: skip
    print(f"  peak memory {mem:.0f} MiB vs dense scores {dense:.0f} MiB -> {mem / dense:.2f}x")


# ------------------------------------------------------------------------ main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (development)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=2, help="repeats of each predict timing")
    ap.add_argument("--skip-large", action="store_true", help="skip the 10,000-class run")
    args = ap.parse_args(argv)

    if args.quick:
        C, n_train, n_test, D, big_C = 100, 100, 2000, 512, 1000
    else:
        C, n_train, n_test, D, big_C = 1000, 100, 20000, 512, 10000
    k, m = 20, 5
    Xtr, ytr, Xte, yte = make_data(C, n_train, n_test, D, n_sub=3, noise=4.5, seed=args.seed)
    print(f"data: {C} classes x {n_train} training rows x {D}-d; {len(Xte)} test rows")
    rows = []

    def report(name, ours_t, base_t, ours_acc=None, base_acc=None, extra=""):
        acc = ""
        if ours_acc is not None:
            acc = f"acc ours {100 * ours_acc:6.2f}%  baseline {100 * base_acc:6.2f}%  "
        ratio = base_t / ours_t
        print(f"  {name:<28} ours {ours_t:8.3f}s  baseline {base_t:8.3f}s  "
              f"speed-up {ratio:6.1f}x  {acc}{extra}")  # fmt: skip
        rows.append((name, ours_t, base_t, ratio))

    # ---------------- imprint-best: l2 / kmeans(20) / l2 / l2 / max
    print("imprint-best (l2 / kmeans 20 / l2 / l2 / max)")
    head = ImprintedHead.from_preset("imprint-best", random_state=args.seed)
    t_fit, _ = timed(lambda: head.fit(Xtr, ytr))
    t_bfit, (Wb, lab_b) = timed(lambda: baseline_fit_kmeans(Xtr, ytr, k, args.seed))
    t_pred, pred = timed(lambda: head.predict(Xte), args.repeat)
    t_bpred, bpred = timed(lambda: baseline_predict_max(Xte, Wb, lab_b, C), args.repeat)
    acc, bacc = np.mean(pred == yte), np.mean(bpred == yte)
    report("fit", t_fit, t_bfit, acc, bacc)
    report("predict (max)", t_pred, t_bpred)
    Xn = l2_normalize(Xte)
    t_bare, _ = timed(lambda: bare_product(Xn, head.weights_), args.repeat)
    P = head.weights_.shape[0]
    gflop = 2 * len(Xte) * P * D / 1e9
    print(f"  bare product {len(Xte)} x {P} x {D} ({gflop:.0f} GFLOP): {t_bare:.3f}s "
          f"-> max predict / bare product = {t_pred / t_bare:.2f}x")  # fmt: skip
    mem_ours = peak_mib(lambda: head.predict(Xte))
    mem_base = peak_mib(lambda: baseline_predict_max(Xte, Wb, lab_b, C))
    print(f"  peak memory of predict: ours {mem_ours:.0f} MiB (chunk budget "
          f"{DEFAULT_CHUNK_BYTES / 2**20:.0f} MiB), baseline {mem_base:.0f} MiB "
          f"(dense {len(Xte) * P * 4 / 2**20:.0f} MiB)")  # fmt: skip

    # ---------------- qi2018: l2 / mean / l2 / l2 / max
    print("qi2018 (l2 / mean / l2 / l2 / max)")
    qi = ImprintedHead.from_preset("qi2018")
    t_fit, _ = timed(lambda: qi.fit(Xtr, ytr), args.repeat)
    t_bfit, (Wq, cls_q) = timed(lambda: baseline_fit_mean(Xtr, ytr), args.repeat)
    t_pred, pred = timed(lambda: qi.predict(Xte), args.repeat)
    t_bpred, bpred = timed(lambda: baseline_predict_max(Xte, Wq, np.arange(C), C), args.repeat)
    report("fit", t_fit, t_bfit, np.mean(pred == yte), np.mean(bpred == yte))
    report("predict (max)", t_pred, t_bpred)

    # ---------------- mnn (m=5) on the imprint-best proxies
    print(f"mnn (m={m}, cosine, uniform) on the kmeans-20 proxies")
    mnn = ImprintedHead(generator="kmeans", n_proxies=k, aggregation="mnn", n_neighbors=m,
                        random_state=args.seed).fit(Xtr, ytr)  # fmt: skip
    t_pred, pred = timed(lambda: mnn.predict(Xte), args.repeat)
    t_bpred, bpred = timed(lambda: baseline_predict_mnn(Xte, Wb, lab_b, C, m), args.repeat)
    report("predict (mnn)", t_pred, t_bpred, np.mean(pred == yte), np.mean(bpred == yte),
           extra=f"mnn / bare product = {t_pred / t_bare:.2f}x")  # fmt: skip

    one_proxy_case(C, n_test, args.seed, args.repeat)

    # ---------------- scale: many classes, where a dense matrix does not fit
    if not args.skip_large:
        rng = np.random.default_rng(args.seed + 1)
        Wbig = l2_normalize(rng.normal(size=(big_C * k, D)).astype(np.float32))
        big = ImprintedHead()
        big.classes_ = np.arange(big_C)
        big.weights_ = Wbig
        big.proxy_labels_ = np.repeat(np.arange(big_C), k)
        big.n_features_in_ = D
        Xbig = rng.normal(size=(n_test, D)).astype(np.float32)
        dense_gb = n_test * big_C * k * 4 / 1e9
        print(f"scale: {big_C} classes x {k} proxies vs {n_test} test rows "
              f"(dense score matrix would be {dense_gb:.1f} GB)")  # fmt: skip
        t_big, _ = timed(lambda: big.predict(Xbig))
        gflop = 2 * n_test * big_C * k * D / 1e9
        mem_big = peak_mib(lambda: big.predict(Xbig[: max(1, n_test // 10)]))
        print(f"  predict: {t_big:.1f}s ({gflop / t_big:.0f} GFLOP/s); peak memory on a "
              f"tenth of the rows {mem_big:.0f} MiB (bounded by the chunk, not by P x N)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
