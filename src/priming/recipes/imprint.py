"""Reproduction recipe: IMPRINT Table 1 over embeddings the user provides.

``reproduce_imprint`` runs the named configurations of IMPRINT Table 1 as one sweep
(:func:`priming.eval.sweep.run_sweep`, the one definition of a run) and prints our averages
beside the published ones (METHODS.md §2).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from priming._fs import make_dir
from priming._json import to_jsonable
from priming.errors import ConfigError, DataError
from priming.exec import ExecutorSpec
from priming.progress import ProgressCallback

__all__ = [
    "IMPRINT_TABLE1",
    "IMPRINT_TASKS",
    "IMPRINT_DATASETS",
    "ImprintResult",
    "find_imprint_embeddings",
    "format_imprint_table",
    "reproduce_imprint",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- IMPRINT Table 1

#: Named configurations of IMPRINT Table 1 -> (preset, published average accuracy %).
IMPRINT_TABLE1: dict[str, tuple[str, float]] = {
    "Qi et al. 2018": ("qi2018", 86.79),
    "Hosoda et al. 2024": ("hosoda2024", 82.90),
    "Janson et al. 2022": ("janson2022", 86.64),
    "IMPRINT best": ("imprint-best", 91.06),
    "oracle (ls)": ("oracle-ls", 94.54),
}
IMPRINT_DATASETS = ("mnist", "fashionmnist", "cifar10")
#: Class subsets of the IMPRINT tasks (labels 0..9).
IMPRINT_TASKS: dict[str, list[int] | None] = {
    "all": None,
    "even": [0, 2, 4, 6, 8],
    "odd": [1, 3, 5, 7, 9],
    "first-three": [0, 1, 2],
}


def find_imprint_embeddings(
    root: str | os.PathLike[str],
) -> dict[tuple[str, str], tuple[Path, Path]]:
    """Find ``root/<backbone>/<dataset>_{train,test}.{npz,npy}`` for the IMPRINT datasets.

    Returns ``{(backbone, dataset): (train_file, test_file)}``; missing pairs are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        state = "is not a folder" if root.exists() else "does not exist"
        raise DataError(f"embeddings folder {root} {state}")
    found = {}
    for bdir in sorted(p for p in root.iterdir() if p.is_dir()):
        for ds in IMPRINT_DATASETS:
            pair = []
            for split in ("train", "test"):
                cands = [bdir / f"{ds}_{split}{ext}" for ext in (".npz", ".npy")]
                hit = next((c for c in cands if c.is_file()), None)
                pair.append(hit)
            if all(pair):
                found[(bdir.name, ds)] = (pair[0], pair[1])
    if not found:
        raise DataError(
            f"no embeddings found under {root}; expected <backbone>/<dataset>_train.npz and "
            f"<dataset>_test.npz for datasets {', '.join(IMPRINT_DATASETS)}"
        )
    return found


@dataclass(frozen=True)
class ImprintResult:
    """Outcome of :func:`reproduce_imprint`.

    ``table``: one row ``(name, preset, ours %, paper %, n_groups)`` per configuration;
    ``results``: the sweep's results table; ``report``: the report files by kind;
    ``text``: the fixed-width comparison table."""

    table: list[tuple[str, str, float, float, int]]
    results: Path
    report: dict[str, Path]
    text: str

    def to_json(self) -> dict[str, Any]:
        return to_jsonable(
            {
                "table": [list(r) for r in self.table],
                "results": self.results,
                "report": dict(self.report),
                "text": self.text,
            }
        )


def _table1_config(pairs, out: Path, seeds, shots, workers) -> dict[str, Any]:
    datasets = [
        {
            "backbone": b,
            "dataset": ds,
            "train": str(tr.resolve()),
            "test": str(te.resolve()),
            "tasks": dict(IMPRINT_TASKS),
        }
        for (b, ds), (tr, te) in pairs.items()
    ]
    heads = [{"name": name, "preset": preset} for name, (preset, _) in IMPRINT_TABLE1.items()]
    return {
        "name": "IMPRINT Table 1",
        "datasets": datasets,
        "heads": heads,
        "shots": [shots],
        "seeds": list(seeds),
        "output": str((out / "results.csv").resolve()),
        "workers": workers,
    }


def reproduce_imprint(
    embeddings: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    shots: int | None = None,
    workers: int = 1,
    progress: ProgressCallback | None = None,
    executor: ExecutorSpec = None,
) -> ImprintResult:
    """IMPRINT Table 1: the named configurations over every backbone × task found.

    Writes ``results.csv`` plus a report into ``out_dir``; ``executor`` and ``progress``
    are passed to the sweep.
    """
    from priming.eval.report import write_report
    from priming.eval.sweep import parse_sweep_config, read_results, run_sweep

    pairs = find_imprint_embeddings(embeddings)
    out = Path(out_dir)
    cfg = parse_sweep_config(_table1_config(pairs, out, seeds, shots, workers))
    if cfg.rejected:
        raise ConfigError(f"a Table 1 configuration was rejected: {cfg.rejected}")
    make_dir(out, "output folder")
    sweep = run_sweep(cfg, progress=progress, executor=executor)
    df = read_results(sweep.output)
    med = df.groupby(["config", "backbone", "dataset", "task"])["top1"].median()
    rows = []
    for name, (preset, paper) in IMPRINT_TABLE1.items():
        vals = med.loc[name] if name in med.index.get_level_values(0) else None
        ours = float(vals.mean() * 100) if vals is not None else float("nan")
        rows.append((name, preset, ours, paper, 0 if vals is None else len(vals)))
    text = format_imprint_table(rows)
    rep = write_report(
        sweep.output, out / "report", title="IMPRINT Table 1 reproduction",
        extra_sections=[("Ours vs paper (average accuracy %)", text)],
    )  # fmt: skip
    return ImprintResult(rows, Path(sweep.output), dict(rep), text)


def format_imprint_table(rows: Sequence[tuple[str, str, float, float, int]]) -> str:
    """Fixed-width table: name, preset, ours, paper, difference, number of groups."""
    lines = [
        f"{'configuration':<20} {'preset':<14} {'ours %':>8} {'paper %':>8} {'diff':>7} {'groups':>7}",
        "-" * 69,
    ]
    for name, preset, ours, paper, n in rows:
        diff = ours - paper
        lines.append(f"{name:<20} {preset:<14} {ours:8.2f} {paper:8.2f} {diff:+7.2f} {n:7d}")
    lines.append(
        "paper: average over ResNet-18/50, ViT-B/16, Swin-B × 12 tasks, median over 3 seeds; "
        "ours: mean over the backbone × task groups found."
    )
    return "\n".join(lines)
