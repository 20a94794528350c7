"""Every registered head on real text-classification tasks built from data on this machine.

The tasks are built at run time from files that ship with Debian packages nobody here
wrote (nothing is committed): Unicode character names → their block or general category
(package ``unicode-data``), emoji names → their CLDR subgroup (``unicode-data``), man-page
NAME lines → their manual section (``man -k .``), Debian package descriptions → their
debtags ``use`` / ``works-with`` facet (package ``debtags``) and → their archive section
(the demo's classes). Classes are given to the heads by their human-readable names only.

Protocol (docs/results.md): a fixed stratified half of each task is the test split; shots
(4 and 16 per class, 3 seeds) are drawn from the other half; every head runs with its
label-free defaults (its ``selection_`` records which rule chose each hyperparameter);
transductive heads run over the unlabelled test split; the supervised ceiling is 5-fold
nearest class mean / logistic regression with true labels, a ceiling only. Friedman over
methods × tasks, Wilcoxon–Holm of each method vs zero-shot.

Usage::

    PYTHONPATH=src python benchmarks/real_tasks.py --out runs/real_tasks [--tasks a,b]

writes ``records.jsonl`` (one row per task × method × shots × seed, with the selection),
``results.md`` (the tables) and ``summary.json`` under ``--out``; embeddings are cached
under ``--out/cache`` so reruns are cheap.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

MODEL = "sentence-transformers:all-MiniLM-L6-v2"
UNICODE = Path("/usr/share/unicode")
DEBTAGS = Path("/var/lib/debtags")
#: generic templates, the same for every task (no task-specific prompt engineering)
TEMPLATES = ["{}", "{}.", "this is about {}.", "an example of {}."]
SHOTS = (4, 16)
SEEDS = (0, 1, 2)
MAX_ROWS = 3000

MAN_SECTIONS = {
    "1": "user commands",
    "2": "system calls",
    "3": "library functions",
    "4": "special files and devices",
    "5": "file formats and configuration files",
    "6": "games",
    "7": "miscellaneous overviews and conventions",
    "8": "system administration commands",
}


@dataclass
class Task:
    """A labelled text task: ``labels[i]`` indexes ``class_names``."""

    name: str
    texts: list[str]
    labels: np.ndarray
    class_names: list[Any]  # a name, or a list of synonyms (first = the name)
    source: str

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


# -- task builders (pure: they take text, not paths, so tests feed them fabricated input) --


def _cap(
    rows: Iterable[tuple[str, str]],
    name: str,
    source: str,
    per_class: int,
    min_per_class: int,
    seed: int,
    max_classes: int | None = None,
    class_name: Callable[[str], Any] = lambda k: k,
) -> Task:
    """Deduplicate (a text seen under two labels is dropped), keep labels with at least
    ``min_per_class`` texts (at most ``max_classes``, the largest; ties by name), cap each
    label at ``per_class`` texts drawn with ``seed``, and stay under :data:`MAX_ROWS`."""
    by_text: dict[str, set[str]] = defaultdict(set)
    for text, label in rows:
        text = " ".join(text.split())
        if text:
            by_text[text].add(label)
    by_label: dict[str, list[str]] = defaultdict(list)
    for text, labels in by_text.items():
        if len(labels) == 1:
            by_label[next(iter(labels))].append(text)
    keep = sorted((k for k, v in by_label.items() if len(v) >= min_per_class),
                  key=lambda k: (-len(by_label[k]), k))  # fmt: skip
    if max_classes is not None:
        keep = keep[:max_classes]
    keep.sort()
    if len(keep) < 2:
        raise ValueError(f"task {name!r}: fewer than 2 classes with {min_per_class}+ texts")
    per_class = min(per_class, MAX_ROWS // len(keep))
    rng = random.Random(seed)
    texts, labels = [], []
    for c, k in enumerate(keep):
        items = sorted(by_label[k])
        rng.shuffle(items)
        for t in items[:per_class]:
            texts.append(t)
            labels.append(c)
    return Task(name, texts, np.array(labels), [class_name(k) for k in keep], source)


def _parse_blocks(blocks_txt: str) -> list[tuple[int, int, str]]:
    out = []
    for line in blocks_txt.splitlines():
        m = re.match(r"^([0-9A-F]+)\.\.([0-9A-F]+);\s*(.+?)\s*$", line)
        if m:
            out.append((int(m.group(1), 16), int(m.group(2), 16), m.group(3)))
    return out


def _unicode_names(unicode_data_txt: str) -> Iterable[tuple[int, str, str]]:
    """(code point, name, general category) of every character with a real name."""
    for line in unicode_data_txt.splitlines():
        f = line.split(";")
        if len(f) > 2 and f[1] and not f[1].startswith("<"):
            yield int(f[0], 16), f[1], f[2]


def unicode_blocks_task(
    unicode_data_txt: str, blocks_txt: str, n_blocks: int = 30, per_class: int = 80,
    min_per_class: int = 40, seed: int = 0,
) -> Task:  # fmt: skip
    """Character names → their Unicode block; ``n_blocks`` blocks drawn at random (seed)
    among those with ``min_per_class``+ named characters."""
    blocks = _parse_blocks(blocks_txt)
    starts = np.array([b[0] for b in blocks])
    rows = []
    for cp, name, _ in _unicode_names(unicode_data_txt):
        i = int(np.searchsorted(starts, cp, side="right")) - 1
        if i >= 0 and cp <= blocks[i][1]:
            rows.append((name.lower(), blocks[i][2]))
    counts = Counter(lbl for _, lbl in rows)
    eligible = sorted(k for k, v in counts.items() if v >= min_per_class)
    chosen = set(random.Random(seed).sample(eligible, min(n_blocks, len(eligible))))
    rows = [r for r in rows if r[1] in chosen]
    return _cap(rows, "unicode-blocks", "unicode-data: UnicodeData.txt, Blocks.txt",
                per_class, min_per_class, seed)  # fmt: skip


def unicode_categories_task(
    unicode_data_txt: str, aliases_txt: str, per_class: int = 100, min_per_class: int = 40,
    seed: int = 0,
) -> Task:  # fmt: skip
    """Character names → their general category, named by its long alias ("math symbol")."""
    long_name = {}
    for line in aliases_txt.splitlines():
        f = [x.strip() for x in line.split("#")[0].split(";")]
        if len(f) >= 3 and f[0] == "gc":
            long_name[f[1]] = f[2].replace("_", " ").lower()
    rows = [
        (name.lower(), long_name.get(gc, gc)) for _, name, gc in _unicode_names(unicode_data_txt)
    ]
    return _cap(rows, "unicode-categories", "unicode-data: UnicodeData.txt, PropertyValueAliases.txt",
                per_class, min_per_class, seed)  # fmt: skip


def emoji_task(
    emoji_test_txt: str, per_class: int = 60, min_per_class: int = 12, seed: int = 0
) -> Task:
    """Fully-qualified emoji names (no skin-tone variants) → their CLDR subgroup."""
    rows, sub = [], None
    for line in emoji_test_txt.splitlines():
        if line.startswith("# subgroup:"):
            sub = line.split(":", 1)[1].strip()
        elif "; fully-qualified" in line and "#" in line and sub:
            m = re.search(r"#\s*\S+\s+E\d+\.\d+\s+(.+)$", line)
            if m and "skin tone" not in m.group(1):
                rows.append((m.group(1), sub))
    return _cap(rows, "emoji-subgroups", "unicode-data: emoji/emoji-test.txt", per_class,
                min_per_class, seed, class_name=lambda k: k.replace("-", " "))  # fmt: skip


def man_task(
    whatis_lines: Sequence[str], per_class: int = 300, min_per_class: int = 30, seed: int = 0
) -> Task:
    """``man -k .`` lines ``name (section) - description`` → the manual section (its
    number's standard title); the text is the description only (the name would give the
    section away, e.g. ``Foo::Bar (3perl)``)."""
    rows = []
    for line in whatis_lines:
        m = re.match(r"^\S.*?\s\((\d)[^)]*\)\s+-\s+(.+)$", line)
        if m and m.group(1) in MAN_SECTIONS:
            rows.append((m.group(2), m.group(1)))
    return _cap(rows, "man-sections", "man-db: man -k .", per_class, min_per_class, seed,
                class_name=lambda k: MAN_SECTIONS[k])  # fmt: skip


def _describe(syn: str, long: str, max_words: int = 24) -> str:
    return f"{syn}. {' '.join(long.split()[:max_words])}".strip()


def debtags_task(
    package_tags_txt: str, vocabulary_txt: str, catalogue: Sequence[tuple[str, str, str, str]],
    facet: str, n_classes: int = 20, per_class: int = 120, min_per_class: int = 25, seed: int = 0,
) -> Task:  # fmt: skip
    """Package descriptions → the one tag they carry in ``facet`` (packages with exactly
    one tag of the facet), named by the vocabulary's description ("Data Conversion")."""
    desc = {}
    tag = None
    for line in vocabulary_txt.splitlines():
        if line.startswith("Tag:"):
            tag = line.split(":", 1)[1].strip()
        elif line.startswith("Description:") and tag:
            desc[tag] = line.split(":", 1)[1].strip()
            tag = None
    prefix = f"{facet}::"
    one_tag = {}
    for line in package_tags_txt.splitlines():
        pkg, _, tags = line.partition(":")
        mine = [t.strip() for t in tags.split(",") if t.strip().startswith(prefix)]
        mine = [t for t in mine if t != prefix and t in desc and not t.endswith("::TODO")]
        if len(mine) == 1:
            one_tag[pkg.strip()] = mine[0]
    rows = [(_describe(syn, long), one_tag[p]) for p, _, syn, long in catalogue if p in one_tag]
    return _cap(rows, f"debtags-{facet}", f"debtags: package-tags ({facet}), vocabulary",
                per_class, min_per_class, seed, n_classes, class_name=lambda k: desc[k])  # fmt: skip


def sections_task(
    catalogue: Sequence[tuple[str, str, str, str]], per_class: int = 80, seed: int = 0
) -> Task:
    """Package descriptions → archive section, the demo's 30 classes and synonyms."""
    from priming.data.debian import DEMO_CLASSES

    rows = [(_describe(syn, long), sec) for _, sec, syn, long in catalogue if sec in DEMO_CLASSES]
    return _cap(rows, "debian-sections", "apt-cache dumpavail (the demo's classes)", per_class,
                20, seed, class_name=lambda k: [k, *DEMO_CLASSES[k]])  # fmt: skip


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def build_tasks(names: Sequence[str] | None = None) -> list[Task]:
    """The real tasks available on this machine (a missing source is skipped with a note)."""
    from priming.data.debian import read_catalogue

    catalogue: list = []
    builders: dict[str, Callable[[], Task]] = {
        "unicode-blocks": lambda: unicode_blocks_task(_read(UNICODE / "UnicodeData.txt"),
                                                      _read(UNICODE / "Blocks.txt")),
        "unicode-categories": lambda: unicode_categories_task(
            _read(UNICODE / "UnicodeData.txt"), _read(UNICODE / "PropertyValueAliases.txt")),
        "emoji-subgroups": lambda: emoji_task(_read(UNICODE / "emoji" / "emoji-test.txt")),
        "man-sections": lambda: man_task(subprocess.run(
            ["man", "-k", "."], capture_output=True, text=True, check=False).stdout.splitlines()),
        "debtags-use": lambda: debtags_task(_read(DEBTAGS / "package-tags"),
                                            _read(DEBTAGS / "vocabulary"), catalogue, "use"),
        "debtags-works-with": lambda: debtags_task(_read(DEBTAGS / "package-tags"),
                                                   _read(DEBTAGS / "vocabulary"), catalogue,
                                                   "works-with"),
        "debian-sections": lambda: sections_task(catalogue),
    }  # fmt: skip
    tasks = []
    for name in names or list(builders):
        if name not in builders:
            raise SystemExit(f"unknown task {name!r}; choose from {', '.join(builders)}")
        if name.startswith("deb") and not catalogue and shutil.which("apt-cache"):
            catalogue.extend(read_catalogue())
        try:
            tasks.append(builders[name]())
        except (OSError, ValueError) as exc:
            print(f"[skip] {name}: {exc}", file=sys.stderr)
    return tasks


# -- embedding (cached) -----------------------------------------------------------------


def embed_task(task: Task, encoder: Any, out: Path) -> np.ndarray:
    """Embeddings of ``task.texts`` through the data cache (the manifest lives under ``out``)."""
    from priming.data.cache import embed
    from priming.data.datasets import ManifestDataset

    data_dir = out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    manifest = data_dir / f"{task.name}.jsonl"
    lines = [json.dumps({"id": str(i), "text": t}) for i, t in enumerate(task.texts)]
    new = "\n".join(lines) + "\n"
    if not manifest.is_file() or manifest.read_text(encoding="utf-8") != new:
        manifest.write_text(new, encoding="utf-8")
    res = embed(encoder, ManifestDataset(manifest), cache_dir=out / "cache", batch_size=128)
    order = {int(i): n for n, i in enumerate(res.ids)}
    if len(order) != len(task.texts):
        raise RuntimeError(f"{task.name}: {len(task.texts) - len(order)} texts were not embedded")
    return np.asarray(res.embeddings, dtype=np.float32)[[order[i] for i in range(len(task.texts))]]


# -- protocol ---------------------------------------------------------------------------


def split(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A stratified half/half (train, test) split of row indices, fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        half = len(idx) // 2
        train.extend(idx[:half])
        test.extend(idx[half:])
    return np.sort(train), np.sort(test)


def sample_shots(labels: np.ndarray, pool: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` row indices per class drawn from ``pool`` (all of a class when it has fewer)."""
    rng = np.random.default_rng(1000 + seed)
    out = []
    for c in np.unique(labels):
        idx = pool[labels[pool] == c]
        out.extend(rng.choice(idx, min(k, len(idx)), replace=False))
    return np.sort(np.array(out, dtype=np.int64))


INDUCTIVE = ("tip-adapter", "gda", "proker")
TRANSDUCTIVE = ("transclip", "zlap", "tda")


def _head(kind: str, T: np.ndarray, seed: int):
    from priming.heads import HEADS, ImprintedHead, PrimedHead, ZeroShotHead

    if kind == "zero-shot":
        return ZeroShotHead(T)
    if kind == "imprinted":
        return ImprintedHead.from_preset("neural-priming")
    if kind == "primed-auto":
        return PrimedHead(T, alpha="auto", random_state=seed)
    cls = HEADS.get(kind)
    if kind == "tda":
        return cls(T)
    return cls(T, random_state=seed)


def _selection(head: Any) -> dict[str, Any]:
    from priming._json import to_jsonable

    sel: dict[str, Any] = {}
    for attr in ("selection_", "last_selection_"):
        if getattr(head, attr, None) is not None:
            sel[attr.rstrip("_")] = to_jsonable(getattr(head, attr))
    if hasattr(head, "alpha_source_"):
        sel["selection"] = {"rule": head.alpha_source_, "alpha": float(head.alpha_)}
    return sel


def run_method(kind: str, T, X, y, shots, test, seed) -> tuple[float, dict[str, Any]]:
    """Top-1 % of head ``kind`` on ``X[test]`` after fitting on ``X[shots]`` (None: no shots)."""
    head = _head(kind, T, seed)
    if kind == "zero-shot":
        head.fit()
    elif kind == "primed-auto":
        head.fit(X[shots], y[shots], shots=np.ones(len(shots), dtype=bool))
    elif shots is None:
        head.fit(None)
    else:
        head.fit(X[shots], y[shots])
    pred = head.predict(X[test])  # transductive heads: over the whole unlabelled test split
    return 100.0 * float(np.mean(pred == y[test])), _selection(head)


def ceilings(X: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Supervised ceilings WITH true labels, 5-fold: nearest class mean and logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    from priming.imprint.normalize import l2_normalize

    Xn = l2_normalize(X)
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    hit = {"ncm": 0, "logreg": 0}
    for tr, te in folds.split(Xn, y):
        classes = np.unique(y[tr])
        M = l2_normalize(np.stack([Xn[tr][y[tr] == c].mean(0) for c in classes]))
        hit["ncm"] += int(np.sum(classes[(Xn[te] @ M.T).argmax(1)] == y[te]))
        lr = LogisticRegression(C=10.0, max_iter=2000).fit(Xn[tr], y[tr])
        hit["logreg"] += int(np.sum(lr.predict(Xn[te]) == y[te]))
    return {k: 100.0 * v / len(y) for k, v in hit.items()}


def methods_plan(shots: Sequence[int] = SHOTS) -> list[tuple[str, int]]:
    """(method, shots per class): zero-shot, every head at 0 shots (label-free defaults),
    then every head, PrimedHead α auto and the imprinted head at each shot count."""
    plan = [("zero-shot", 0)] + [(k, 0) for k in INDUCTIVE + TRANSDUCTIVE]
    for s in shots:
        plan += [(k, s) for k in INDUCTIVE + TRANSDUCTIVE + ("primed-auto", "imprinted")]
    return plan


def run_task(
    task: Task, X: np.ndarray, T: np.ndarray, shots=SHOTS, seeds=SEEDS, verbose: bool = False
) -> list[dict]:
    """Every (method, shots, seed) on one task; one record each (plus the two ceilings)."""
    y = task.labels
    train, test = split(y)
    records = []
    for kind, k in methods_plan(shots):
        for seed in seeds if k else seeds[:1]:
            idx = sample_shots(y, train, k, seed) if k else None
            t0 = time.perf_counter()
            top1, sel = run_method(kind, T, X, y, idx, test, seed)
            if verbose:
                print(f"  {task.name} {kind}@{k} seed {seed}: {top1:.2f} "
                      f"({time.perf_counter() - t0:.1f}s)", file=sys.stderr, flush=True)  # fmt: skip
            records.append({"task": task.name, "method": kind, "shots": k, "seed": seed,
                            "config": f"{kind}@{k}" if kind != "zero-shot" else "zero-shot",
                            "top1": top1, "seconds": time.perf_counter() - t0,
                            "selection": sel})  # fmt: skip
    for name, v in ceilings(X, y).items():
        records.append({"task": task.name, "method": f"ceiling-{name}", "shots": -1, "seed": 0,
                        "config": f"ceiling-{name}", "top1": v, "seconds": 0.0, "selection": {}})  # fmt: skip
    return records


# -- the primed pipeline (run_prime) on the package-description tasks ---------------------

PRIME_TASKS = ("debian-sections", "debtags-use")
PRIME_RUNS = {"prime-default": {}, "prime-transductive": {"transductive": True},
              "prime-alpha-auto": {"alpha": "auto"}}  # fmt: skip


def _names(entry: Any) -> list[str]:
    return [entry] if isinstance(entry, str) else list(entry)


def write_prime_inputs(
    task: Task, captions: Sequence[str], folder: Path, n_corpus: int = 6000
) -> dict:
    """``classes.txt``, ``templates.txt``, ``eval.jsonl`` (the test split) and a corpus of
    ``captions`` that are not texts of the task (``n_corpus`` drawn with seed 0)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classes.txt").write_text(
        "".join("|".join(_names(c)) + "\n" for c in task.class_names), encoding="utf-8"
    )
    (folder / "templates.txt").write_text("\n".join(TEMPLATES) + "\n", encoding="utf-8")
    _, test = split(task.labels)
    (folder / "eval.jsonl").write_text("".join(
        json.dumps({"id": str(i), "text": task.texts[i], "label": _names(task.class_names[task.labels[i]])[0]})
        + "\n" for i in test), encoding="utf-8")  # fmt: skip
    mine = set(task.texts)
    pool = sorted({c for c in captions if c and c not in mine})
    pool = [pool[i] for i in np.sort(np.random.default_rng(0).permutation(len(pool))[:n_corpus])]
    pq.write_table(pa.table({"url": [f"deb://{i}" for i in range(len(pool))], "caption": pool,
                             "key": [str(i) for i in range(len(pool))]}), folder / "corpus.parquet")  # fmt: skip
    return {"n_corpus": len(pool), "n_eval": len(test)}


def prime_task(task: Task, captions: Sequence[str], encoder: Any, out: Path) -> list[dict]:
    """``run_prime`` with its defaults, with ``--transductive`` and with α auto; one record each."""
    from priming.corpus import build_corpus, fill_embeddings
    from priming.job import PrimeConfig, run_prime

    folder = out / "prime" / task.name
    info = write_prime_inputs(task, captions, folder)
    corpus = folder / "corpus"
    stamp = folder / "corpus.done"
    if not stamp.is_file():
        shutil.rmtree(corpus, ignore_errors=True)
        build_corpus(folder / "corpus.parquet", out=corpus, workers=1)
        fill_embeddings(corpus, encoder, batch_size=256)
        stamp.write_text("ok\n", encoding="utf-8")
    records = []
    for name, extra in PRIME_RUNS.items():
        cfg = PrimeConfig.from_mapping({
            "model": getattr(encoder, "name", MODEL),
            "classes": str(folder / "classes.txt"), "corpus": str(corpus),
            "eval": str(folder / "eval.jsonl"), "out": str(folder / name),
            "cache_dir": str(out / "cache"), "templates": str(folder / "templates.txt"),
            "overwrite": True, "progress": False, **extra}, name)  # fmt: skip
        m = run_prime(cfg, encoder=encoder).metrics
        m = m.to_json() if hasattr(m, "to_json") else m
        ev = m["eval"]
        primed = next(v for k, v in ev.items() if k.startswith("primed"))
        sel = {"rule": m["alpha"].get("source"), "alpha": m["alpha"].get("value"),
               "pool": m["pool"].get("size"), "n_corpus": info["n_corpus"],
               "empty_classes": len(m["pool"].get("empty_classes", []))}  # fmt: skip
        for config, top1 in (
            (name, primed["top1"]),
            (f"{name}/zero-shot", ev["zero_shot"]["top1"]),
        ):
            records.append({"task": task.name, "method": name, "shots": 0, "seed": 0,
                            "config": config, "top1": 100.0 * float(top1),
                            "seconds": 0.0, "selection": {"selection": sel}})  # fmt: skip
    return records


# -- statistics and the report -----------------------------------------------------------


def _wilcoxon_holm(diffs: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Two-sided Wilcoxon signed-rank (Pratt) of each difference vector vs 0, Holm-adjusted."""
    from scipy import stats as sps

    from priming.eval.stats import holm

    names = list(diffs)
    raw = [
        1.0 if np.all(diffs[c] == 0) else float(sps.wilcoxon(diffs[c], zero_method="pratt").pvalue)
        for c in names
    ]
    adj = holm(raw)
    return {
        c: {"wins": int(np.sum(diffs[c] > 1e-9)), "losses": int(np.sum(diffs[c] < -1e-9)),
            "n": len(diffs[c]), "p": p, "p_holm": float(q)}
        for c, p, q in zip(names, raw, adj)
    }  # fmt: skip


def summarise(records: list[dict]) -> dict[str, Any]:
    """Mean ± sd per task × config, averages, gap closed towards the NCM ceiling, Friedman
    over the methods run on every task, Wilcoxon–Holm of each vs zero-shot (blocks: tasks;
    and, secondary, task × seed)."""
    from priming.eval.stats import compare_configs

    cell: dict[tuple[str, str], list[float]] = defaultdict(list)
    by_seed: dict[tuple[str, str, int], float] = {}
    for r in records:
        cell[(r["task"], r["config"])].append(r["top1"])
        by_seed[(r["task"], r["config"], r["seed"])] = r["top1"]
    tasks = sorted({r["task"] for r in records})
    configs = list(dict.fromkeys(r["config"] for r in records))
    table = {c: {t: (float(np.mean(cell[(t, c)])), float(np.std(cell[(t, c)], ddof=1))
                     if len(cell[(t, c)]) > 1 else 0.0) for t in tasks if (t, c) in cell}
             for c in configs}  # fmt: skip
    mean = {c: float(np.mean([v[0] for v in table[c].values()])) for c in configs}
    zs_of = table["zero-shot"]
    delta = {c: float(np.mean([v[0] - zs_of[t][0] for t, v in table[c].items()])) for c in configs}
    ceil = table.get("ceiling-ncm", {})
    gap = {c: (delta[c] / float(np.mean([ceil[t][0] - zs_of[t][0] for t in table[c]])))
           if ceil and all(t in ceil for t in table[c]) else float("nan") for c in configs}  # fmt: skip
    # the stats: methods run on every task, less the inductive heads without shots (the
    # zero-shot head by construction: they would only add ties)
    same = {f"{k}@0" for k in INDUCTIVE}
    full = [c for c in configs if not c.startswith("ceiling") and c not in same
            and len(table[c]) == len(tasks)]  # fmt: skip
    out: dict[str, Any] = {"tasks": tasks, "configs": configs, "table": table, "mean": mean,
                           "delta": delta, "gap_closed": gap, "full": full}  # fmt: skip
    if len(tasks) >= 2 and len(full) >= 2:
        recs = [{"task": t, "config": c, "top1": table[c][t][0]} for c in full for t in tasks]
        cmp = compare_configs(recs, group_cols=("task",))
        out["friedman"] = {"statistic": cmp.friedman_statistic, "p": cmp.friedman_p,
                           "n_tasks": len(tasks), "n_methods": len(cmp.configs)}  # fmt: skip
        out["mean_rank"] = dict(cmp.ranking())
        others = [c for c in full if c != "zero-shot"]
        zs = np.array([zs_of[t][0] for t in tasks])
        out["vs_zero_shot"] = _wilcoxon_holm(
            {c: np.array([table[c][t][0] for t in tasks]) - zs for c in others}
        )
        seeds = sorted({r["seed"] for r in records})
        seeded = {}
        for c in others:
            if not any((t, c, s) in by_seed for t in tasks for s in seeds[1:]):
                continue  # one run per task (no shots): the task-level test is the test
            d = [by_seed.get((t, c, s), by_seed.get((t, c, 0))) - by_seed[(t, "zero-shot", 0)]
                 for t in tasks for s in seeds]  # fmt: skip
            seeded[c] = np.array(d, dtype=float)
        out["vs_zero_shot_seeds"] = _wilcoxon_holm(seeded)
    return out


def selection_summary(records: list[dict]) -> dict[str, Counter]:
    """Per config: how often each (rule, chosen values) occurred across tasks and seeds."""
    out: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        for key, sel in r["selection"].items():
            if isinstance(sel, dict):
                rule = sel.get("rule", "?")
                vals = {k: v for k, v in sel.items()
                        if k in ("alpha", "beta", "lam", "logit_scale", "gamma", "kl_weight")}  # fmt: skip
                out[r["config"]][f"{key}: {rule} {json.dumps(vals, sort_keys=True)}"] += 1
    return out


def _fmt(v: tuple[float, float]) -> str:
    return f"{v[0]:.2f}" if v[1] == 0 else f"{v[0]:.2f} ± {v[1]:.2f}"


def render(summary: dict[str, Any], tasks_info: list[dict]) -> str:
    """The markdown tables of one run."""
    tasks, table, mean = summary["tasks"], summary["table"], summary["mean"]
    lines = ["| task | classes | rows (test) | source |", "|---|---|---|---|"]
    lines += [f"| {i['name']} | {i['classes']} | {i['rows']} ({i['test']}) | {i['source']} |"
              for i in tasks_info]  # fmt: skip
    lines += ["", "| method | " + " | ".join(tasks) + " | mean | Δ vs zero-shot | gap closed |",
              "|---|" + "---|" * (len(tasks) + 3)]  # fmt: skip
    for c in summary["configs"]:
        cells = [_fmt(table[c][t]) if t in table[c] else "–" for t in tasks]
        n = len(table[c])
        m = f"{mean[c]:.2f}" + ("" if n == len(tasks) else f" ({n} tasks)")
        g = summary["gap_closed"][c]
        gs = "–" if not np.isfinite(g) else f"{100 * g:.0f} %"
        lines.append(
            f"| {c} | " + " | ".join(cells) + f" | {m} | {summary['delta'][c]:+.2f} | {gs} |"
        )
    if "friedman" in summary:
        f = summary["friedman"]
        lines += ["", f"Friedman over {f['n_methods']} methods × {f['n_tasks']} tasks: "
                  f"χ² = {f['statistic']:.1f}, p = {f['p']:.2g}.", "",
                  "| method | mean rank | W / L vs zero-shot (tasks) | Wilcoxon p | Holm p "
                  "| W / L (task × seed) | Holm p (task × seed) |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for c, rank in summary["mean_rank"].items():
            v = summary["vs_zero_shot"].get(c)
            w = summary["vs_zero_shot_seeds"].get(c)
            ws = f"{w['wins']} / {w['losses']} | {w['p_holm']:.2g}" if w else "– | –"
            tail = (
                f"{v['wins']} / {v['losses']} | {v['p']:.3f} | {v['p_holm']:.3f} | {ws}"
                if v
                else "– | – | – | – | –"
            )
            lines.append(f"| {c} | {rank:.2f} | {tail} |")
    return "\n".join(lines) + "\n"


def run_all(
    tasks: Sequence[Task],
    encoder: Any,
    out: Path,
    shots=SHOTS,
    seeds=SEEDS,
    verbose: bool = False,
    captions: Sequence[str] | None = None,
) -> dict:
    """Run every task, write ``records.jsonl``, ``summary.json`` and ``results.md`` under ``out``."""
    from priming.heads import build_text_weights

    out.mkdir(parents=True, exist_ok=True)
    records, info = [], []
    for task in tasks:
        t0 = time.perf_counter()
        X = embed_task(task, encoder, out)
        T = build_text_weights(encoder, task.class_names, TEMPLATES)
        recs = run_task(task, X, T, shots=shots, seeds=seeds, verbose=verbose)
        if captions is not None and task.name in PRIME_TASKS:
            recs += prime_task(task, captions, encoder, out)
        records += recs
        info.append({"name": task.name, "classes": task.n_classes, "rows": len(task.texts),
                     "test": len(split(task.labels)[1]), "source": task.source})  # fmt: skip
        zs = next(r["top1"] for r in recs if r["config"] == "zero-shot")
        print(f"{task.name}: {task.n_classes} classes, {len(task.texts)} rows, zero-shot {zs:.2f}, "
              f"{time.perf_counter() - t0:.0f}s", flush=True)  # fmt: skip
    with open(out / "records.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    (out / "tasks.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    summary = write_report(out)
    return summary


def write_report(out: Path) -> dict:
    """``summary.json`` and ``results.md`` from ``records.jsonl`` and ``tasks.json`` in ``out``."""
    records = [
        json.loads(x) for x in (out / "records.jsonl").read_text(encoding="utf-8").splitlines() if x
    ]
    info = json.loads((out / "tasks.json").read_text(encoding="utf-8"))
    summary = summarise(records)
    sel = selection_summary(records)
    (out / "summary.json").write_text(json.dumps(
        {**summary, "tasks_info": info, "selection": {k: dict(v) for k, v in sel.items()}},
        indent=1, default=float), encoding="utf-8")  # fmt: skip
    (out / "results.md").write_text(render(summary, info), encoding="utf-8")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--tasks", default=None, help="comma-separated task names (default: all)")
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--seeds", type=int, default=len(SEEDS))
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per method run")
    ap.add_argument("--no-prime", action="store_true", help="skip run_prime on the package tasks")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the tables from --out/records.jsonl (no model, no runs)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.report_only:
        write_report(args.out)
        print((args.out / "results.md").read_text(encoding="utf-8"))
        return 0
    from priming.encoders import create_encoder

    tasks = build_tasks(args.tasks.split(",") if args.tasks else None)
    encoder = create_encoder(args.model, device="cpu")
    captions = None
    if not args.no_prime and any(t.name in PRIME_TASKS for t in tasks):
        from priming.data.debian import read_catalogue

        captions = [_describe(syn, long) for _, _, syn, long in read_catalogue()]
    run_all(tasks, encoder, args.out, seeds=tuple(range(args.seeds)), verbose=args.verbose,
            captions=captions)  # fmt: skip
    print((args.out / "results.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
