"""The recipes package: typed results, progress through callbacks, one pipeline."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from priming.progress import ProgressEvent
from priming.recipes.synthetic import make_subclusters

SRC = Path(__file__).resolve().parents[1] / "src" / "priming"


def _emb(folder: Path, ds: str, seed: int) -> None:
    X, y, Xt, yt = make_subclusters(10, 2, 6, 4, 6, random_state=seed)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"{ds}_train.npz", embeddings=X, labels=y)
    np.savez(folder / f"{ds}_test.npz", embeddings=Xt, labels=yt)


def test_reproduce_imprint_returns_a_typed_result_matching_its_files(tmp_path):
    from priming.recipes.imprint import IMPRINT_TABLE1, ImprintResult, reproduce_imprint

    for ds in ("mnist", "cifar10"):
        _emb(tmp_path / "emb" / "bb", ds, seed=len(ds))
    events: list[ProgressEvent] = []
    res = reproduce_imprint(
        tmp_path / "emb", tmp_path / "out", seeds=[0], progress=events.append, executor="inline"
    )
    assert isinstance(res, ImprintResult)
    assert [r[0] for r in res.table] == list(IMPRINT_TABLE1)
    df = pd.read_csv(res.results)
    assert len(df) == 2 * 4 * 5  # datasets x tasks x configurations
    # "ours" is the mean over (dataset, task) groups of the median over seeds
    med = df.groupby(["config", "dataset", "task"])["top1"].median()
    for name, _preset, ours, _paper, n in res.table:
        assert n == 8 and ours == pytest.approx(100 * med.loc[name].mean())
    assert res.report["markdown"].is_file()
    js = res.to_json()
    json.dumps(js)
    assert js["results"] == str(res.results) and len(js["table"]) == len(IMPRINT_TABLE1)
    assert events[0].state == "start" and events[-1].state == "end"
    assert events[-1].done == events[-1].total == len(df)


def test_reproduce_synthetic_reports_progress_per_fit(tmp_path):
    from priming.recipes.synthetic import reproduce_synthetic

    events: list[ProgressEvent] = []
    res = reproduce_synthetic(None, d_values=[1, 2], ks=[1, 2], ms=[1, 2], seeds=[0],
                              progress=events.append)  # fmt: skip
    n_fits = len(res.table.rows) * 2
    assert [e.state for e in events] == ["start", *["advance"] * n_fits, "end"]
    assert events[-1].done == events[-1].total == n_fits and events[0].unit == "fits"


def test_imprint_demo_recipe_equals_the_experiment():
    from priming.recipes.demo import run_imprint_demo
    from priming.recipes.synthetic import run_subcluster_experiment

    res = run_imprint_demo([1, 3], seed=2)
    ref = run_subcluster_experiment(d_values=[1, 3], seeds=[2])
    assert res.table.rows == ref.rows
    np.testing.assert_array_equal(res.table.accuracy, ref.accuracy)
    assert res.seconds >= 0


def test_priming_demo_is_skipped_without_a_catalogue_and_refuses_a_bad_one(tmp_path, monkeypatch):
    import priming.data.debian as debian
    from priming.errors import DataError
    from priming.recipes.demo import run_priming_demo

    monkeypatch.setattr(debian.shutil, "which", lambda name: None)  # no apt-cache here
    res = run_priming_demo(tmp_path / "w")
    assert res.skipped is not None and "apt-cache not found" in res.skipped
    assert res.rows == [] and not (tmp_path / "w").exists()
    with pytest.raises(DataError, match="missing.txt' does not exist"):
        run_priming_demo(tmp_path / "w", catalogue=str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("no packages here\n")
    with pytest.raises(DataError, match="holds no packages"):
        run_priming_demo(tmp_path / "w", catalogue=str(tmp_path / "empty.txt"))


def test_demo_cli_with_a_missing_catalogue_is_a_one_line_error(tmp_path, capsys):
    from priming.cli import main

    rc = main(["demo", "--part", "priming", "--workdir", str(tmp_path / "w"),
               "--catalogue", str(tmp_path / "nope.txt")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc != 0 and "nope.txt' does not exist" in err and "Traceback" not in err


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize(
    "path",
    sorted((SRC / "recipes").glob("*.py"))
    + [SRC / "eval" / "sweep.py", SRC / "data" / "loaders.py", SRC / "data" / "debian.py"],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_recipes_draw_no_bars_and_import_no_private_names_across_packages(path):
    names = _imports(path)
    assert not any(n == "tqdm" or n.startswith("tqdm.") for n in names)
    own = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:2])
    shared = ("priming._fs", "priming._json", "priming._optional")
    private = [
        n for n in names
        if n.startswith("priming.") and not n.startswith(own) and not n.startswith(shared)
        and any(part.startswith("_") for part in n.split(".")[1:])
    ]  # fmt: skip
    assert private == []


def test_one_primed_score_no_copy_of_the_mix_in_recipes_or_sweep():
    # the mix a·(x̂·T) + (1−a)·agg lives in PrimedHead only
    for path in [*sorted((SRC / "recipes").glob("*.py")), SRC / "eval" / "sweep.py"]:
        text = path.read_text(encoding="utf-8")
        assert "(1 - a)" not in text and "(1.0 - a" not in text, path
        assert "def _l2" not in text and "np.linalg.norm(X, axis=1" not in text, path


def _catalogue(path: Path) -> Path:
    rng = np.random.default_rng(0)
    words = {
        "python": "Python module library for scripting",
        "games": "game arcade puzzle player fun",
        "science": "scientific simulation physics data",
        "misc": "assorted utility helper",  # not a demo class: corpus only
    }
    blocks = []
    for sec, text in words.items():
        for i in range(40):
            extra = " ".join(rng.choice(text.split(), size=3))
            blocks.append(
                f"Package: {sec}-pkg{i}\nSection: {sec}\nDescription: {text.split()[0]} {i}\n"
                f" {text} {extra}\n"
            )
    path.write_text("\n".join(blocks))
    return path


@pytest.mark.slow
def test_priming_demo_recipe_end_to_end_with_a_small_encoder(tmp_path):
    from priming.recipes.demo import run_priming_demo
    from tests._fakes import BagOfWordsEncoder

    cat = _catalogue(tmp_path / "dumpavail.txt")
    events: list[ProgressEvent] = []
    res = run_priming_demo(
        tmp_path / "w", catalogue=str(cat), corpus_size=90, eval_size=30,
        encoder=BagOfWordsEncoder(), progress=events.append,
    )  # fmt: skip
    assert res.skipped is None and res.rate is None
    assert events and events[0].state == "start"  # corpus embedding reported its progress
    assert res.n_classes == 3 and res.n_eval == 30 and res.n_corpus == 90
    names = [r[0] for r in res.rows]
    assert names[0].startswith("zero-shot") and len(names) == 3
    m = json.loads((tmp_path / "w" / "run" / "metrics.json").read_text())
    ev = m["eval"]
    assert res.rows[0][1] == pytest.approx(ev["zero_shot"]["top1"])
    assert res.rows[1][1] == pytest.approx(ev["primed (neural-priming)"]["top1"])
    assert res.pool_size == m["pool"]["size"] > 0 and res.alpha == m["alpha"]["value"]
    assert res.report == tmp_path / "w" / "run" / "report.md" and res.report.is_file()
    # a second run reuses the corpus (same stamp) and gives the same numbers
    again = run_priming_demo(
        tmp_path / "w", catalogue=str(cat), corpus_size=90, eval_size=30,
        encoder=BagOfWordsEncoder(),
    )  # fmt: skip
    assert again.rows == res.rows
