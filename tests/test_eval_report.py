import numpy as np
import pandas as pd

from priming.cli import main
from priming.eval.sweep import parse_sweep_config, run_sweep
from priming.recipes.imprint import IMPRINT_TABLE1
from priming.recipes.synthetic import make_subclusters, reproduce_synthetic

PNG = b"\x89PNG\r\n\x1a\n"


def _emb(folder, stem, d=2, seed=0, n_classes=4):
    X, y, Xt, yt = make_subclusters(n_classes, d, 8, 12, 5, random_state=seed)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"{stem}_train.npz", embeddings=X, labels=y)
    np.savez(folder / f"{stem}_test.npz", embeddings=Xt, labels=yt)


def test_report_cli_from_sweep(tmp_path, capsys):
    for i in range(3):
        _emb(tmp_path, f"d{i}", d=i + 1, seed=i)
    cfg = parse_sweep_config(
        {"name": "toy", "output": "res.parquet", "seeds": [0, 1], "shots": [1, 4],
         "datasets": [{"backbone": "bb", "dataset": f"d{i}", "train": f"d{i}_train.npz",
                       "test": f"d{i}_test.npz"} for i in range(3)],
         "heads": ["qi2018", {"name": "km", "generator": "kmeans", "n_proxies": [1, 2, 4]}]},
        tmp_path,
    )  # fmt: skip
    run_sweep(cfg)
    assert main(["report", str(tmp_path / "res.parquet"), "--out", str(tmp_path / "rep")]) == 0
    assert "report written" in capsys.readouterr().out
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "# toy" in md and "| km n_proxies=4 |" in md and "Friedman" in md
    assert "NC1" in md
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "<table>" in html and "acc_vs_k.png" in html and "acc_vs_shots.png" in html
    figs = sorted(p.name for p in (tmp_path / "rep" / "figures").iterdir())
    assert figs == ["acc_vs_k.png", "acc_vs_shots.png", "cd_shots_1.png", "cd_shots_4.png"]
    for f in figs:
        assert (tmp_path / "rep" / "figures" / f).read_bytes()[:8] == PNG
    # the table cell is the median over seeds, by hand
    df = pd.read_parquet(tmp_path / "res.parquet")
    sub = df[(df.config == "qi2018") & (df.dataset == "d0") & (df.shots == 4)]
    assert f"{100 * np.median(sub.top1):.2f}" in md


def test_report_rejects_missing_file(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_reproduce_synthetic_findings(tmp_path):
    res = reproduce_synthetic(tmp_path, d_values=(1, 3), ks=(1, 2, 3, 6), ms=(1, 3, 10), seeds=(0,))
    assert res.best_k == {1: 1, 3: 3}
    assert res.peaks_near_d and res.max_equals_mnn1 and res.larger_m_hurts
    assert (tmp_path / "acc_vs_k.png").read_bytes()[:8] == PNG
    assert "Findings" in (tmp_path / "synthetic.md").read_text()


def test_reproduce_imprint_cli(tmp_path, capsys):
    for b in ("resnet18", "vitb16"):
        for ds in ("mnist", "fashionmnist", "cifar10"):
            _emb(tmp_path / "emb" / b, ds, d=2, seed=len(b) + len(ds), n_classes=10)
    rc = main(["reproduce", "imprint", "--embeddings", str(tmp_path / "emb"),
               "--out", str(tmp_path / "out"), "--seeds", "0"])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    for name, (_, paper) in IMPRINT_TABLE1.items():
        assert name in out and f"{paper:.2f}" in out
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(df) == 2 * 3 * 4 * 5  # backbones x datasets x tasks x configs
    assert set(df.task) == {"all", "even", "odd", "first-three"}
    assert (df.loc[df.task == "first-three", "n_classes"] == 3).all()
    assert (tmp_path / "out" / "report" / "report.md").is_file()
    # 'groups' column of the printed table: 2 backbones x 12 tasks
    assert " 24\n" in out or out.rstrip().count(" 24") >= 5


def test_figures_do_not_leak_missing_glyph_warnings(tmp_path):
    import warnings

    from priming.eval.plots import atomic_savefig, pyplot

    plt = pyplot()
    fig, ax = plt.subplots()
    ax.set_title("\u0f00\u0f01 \U0001f33a class")  # Tibetan and an emoji: not in DejaVu Sans
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        atomic_savefig(fig, tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:8] == PNG
    assert not [w for w in caught if "Glyph" in str(w.message)]
    # without the filter the same figure does warn (the test can fail)
    fig, ax = plt.subplots()
    ax.set_title("\u0f00\u0f01 \U0001f33a class")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(tmp_path / "h.png")
    plt.close(fig)
    assert [w for w in caught if "Glyph" in str(w.message)]
