"""Real data for the offline demo: the Debian package catalogue (``apt-cache dumpavail``).

Each package has a section (``python``, ``games``, ``science`` ...) and a description.
Sections become classes, descriptions of one part of the packages become the
"pretraining corpus" (captions), and packages never in the corpus become the labelled
evaluation set. Nobody here wrote this text; it ships with the operating system.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from priming._fs import atomic_path, make_dir, write_text_atomic
from priming.errors import DataError

__all__ = ["DEMO_CLASSES", "read_catalogue", "write_demo_data", "DemoData"]

#: section -> extra names (synonyms) searched in the descriptions and used in the text head
DEMO_CLASSES: dict[str, list[str]] = {
    "python": ["Python"],
    "perl": ["Perl"],
    "haskell": ["Haskell"],
    "rust": ["Rust crate"],
    "golang": ["Go library", "Go package"],
    "javascript": ["JavaScript", "Node.js"],
    "java": ["Java library"],
    "ruby": ["Ruby"],
    "gnu-r": ["GNU R", "R package"],
    "ocaml": ["OCaml"],
    "php": ["PHP"],
    "lisp": ["Emacs Lisp", "Common Lisp"],
    "science": ["scientific"],
    "math": ["mathematics", "mathematical"],
    "admin": ["system administration"],
    "net": ["network"],
    "games": ["game"],
    "x11": ["X11", "X Window"],
    "text": ["text processing"],
    "sound": ["audio"],
    "graphics": ["image editing", "graphics"],
    "fonts": ["font"],
    "web": ["web server", "web application"],
    "gnome": ["GNOME"],
    "kde": ["KDE"],
    "mail": ["email", "e-mail"],
    "editors": ["text editor"],
    "database": ["database", "SQL"],
    "video": ["video"],
    "electronics": ["electronics", "circuit"],
}


def _parse(text: str):
    for block in text.split("\n\n"):
        pkg = sec = syn = None
        long: list[str] = []
        in_desc = False
        for line in block.splitlines():
            if line.startswith("Package:"):
                pkg = line.split(":", 1)[1].strip()
                in_desc = False
            elif line.startswith("Section:"):
                sec = line.split(":", 1)[1].strip().split("/")[-1]
                in_desc = False
            elif line.startswith("Description:"):
                syn = line.split(":", 1)[1].strip()
                in_desc = True
            elif in_desc and line.startswith(" "):
                s = line.strip()
                if s != ".":
                    long.append(s)
            else:
                in_desc = False
        if pkg and sec and syn:
            yield pkg, sec, syn, " ".join(long)


def read_catalogue(path: str | Path | None = None) -> list[tuple[str, str, str, str]]:
    """``(package, section, synopsis, long description)`` for every package, from a
    dumpavail-format file or, by default, from ``apt-cache dumpavail``."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            state = "is not a file" if p.exists() else "does not exist"
            raise DataError(f"package catalogue {str(p)!r} {state}")
        try:
            text = p.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise DataError(f"cannot read package catalogue {str(p)!r}: {exc}") from None
    else:
        exe = shutil.which("apt-cache")
        if exe is None:
            raise DataError(
                "no Debian package catalogue here (apt-cache not found); run the demo with "
                "--catalogue FILE (apt-cache dumpavail format), or run `priming prime` on "
                "your own data (see docs/priming.md)"
            )
        out = subprocess.run([exe, "dumpavail"], capture_output=True, text=True, check=False)
        text = out.stdout
    seen: set[str] = set()
    rows = []
    for pkg, sec, syn, long in _parse(text):
        if pkg not in seen:
            seen.add(pkg)
            rows.append((pkg, sec, syn, long))
    if not rows:
        where = "" if path is None else f" {str(path)!r}"
        raise DataError(f"the package catalogue{where} holds no packages (dumpavail format)")
    return rows


def _describe(pkg: str, syn: str, long: str, max_words: int) -> str:
    words = long.split()
    return f"{syn}. {' '.join(words[:max_words])}".strip()


@dataclass
class DemoData:
    folder: Path
    classes_file: Path
    corpus_parquet: Path
    eval_file: Path
    n_corpus: int
    n_eval: int
    classes: list[str]


def write_demo_data(
    folder: str | Path,
    n_corpus: int = 6000,
    n_eval: int = 1200,
    max_words: int = 24,
    catalogue: str | Path | None = None,
    random_state: int = 0,
) -> DemoData:
    """Write ``classes.txt``, ``corpus.parquet`` (url, caption) and ``eval.jsonl``
    (text, label). Corpus and evaluation packages are disjoint; the corpus is drawn from
    all sections (most of them not classes, as in a real pretraining corpus), the
    evaluation set from the class sections, stratified."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = read_catalogue(catalogue)
    rng = np.random.default_rng(random_state)
    counts = Counter(sec for _, sec, _, _ in rows)
    classes = [c for c in DEMO_CLASSES if counts.get(c, 0) >= 20]
    if len(classes) < 2:
        raise DataError("the package catalogue has too few of the demo sections")
    order = rng.permutation(len(rows))
    in_class = [i for i in order if rows[i][1] in classes]
    per = max(1, n_eval // len(classes))
    taken: Counter = Counter()
    eval_idx = []
    for i in in_class:
        sec = rows[i][1]
        if taken[sec] < per:
            taken[sec] += 1
            eval_idx.append(i)
    eval_set = set(eval_idx)
    corpus_idx = [i for i in order if i not in eval_set][:n_corpus]
    folder = make_dir(folder, "demo data folder")
    classes_file = folder / "classes.txt"
    write_text_atomic(classes_file, "".join(f"{c}|{'|'.join(DEMO_CLASSES[c])}\n" for c in classes))
    table = pa.table(
        {
            "url": [f"deb://{rows[i][0]}" for i in corpus_idx],
            "caption": [
                _describe(rows[i][0], rows[i][2], rows[i][3], max_words) for i in corpus_idx
            ],
            "key": [rows[i][0] for i in corpus_idx],
        }
    )
    with atomic_path(folder / "corpus.parquet", suffix=".parquet") as tmp:
        pq.write_table(table, tmp)
    eval_file = folder / "eval.jsonl"
    write_text_atomic(
        eval_file,
        "\n".join(
            json.dumps(
                {
                    "id": rows[i][0],
                    "text": _describe(rows[i][0], rows[i][2], rows[i][3], max_words),
                    "label": rows[i][1],
                }
            )
            for i in eval_idx
        )
        + "\n",
    )
    return DemoData(
        folder,
        classes_file,
        folder / "corpus.parquet",
        eval_file,
        len(corpus_idx),
        len(eval_idx),
        classes,
    )
