import json

import numpy as np
import pandas as pd
import pytest
import yaml

from priming.cli import main
from priming.errors import ConfigError
from priming.eval.protocol import sample_few_shot
from priming.eval.sweep import load_sweep_config, parse_sweep_config, run_sweep
from priming.heads import ImprintedHead
from priming.recipes.synthetic import make_subclusters


def _write_embeddings(folder, stem, seed=0, n_classes=4, d=2):
    X, y, Xt, yt = make_subclusters(n_classes, d, 8, 6, 5, random_state=seed)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"{stem}_train.npz", embeddings=X, labels=y)
    np.savez(folder / f"{stem}_test.npz", embeddings=Xt, labels=yt)
    return X, y, Xt, yt


@pytest.fixture
def sweep_file(tmp_path):
    _write_embeddings(tmp_path / "emb", "toy")
    cfg = {
        "name": "toy sweep",
        "output": "out/results.csv",
        "seeds": [0, 1],
        "shots": [2, None],
        "datasets": [
            {
                "backbone": "bb",
                "dataset": "toy",
                "train": "emb/toy_train.npz",
                "test": "emb/toy_test.npz",
                "tasks": {"all": None, "first-two": [0, 1]},
            },
        ],  # fmt: skip
        "heads": [
            "qi2018",
            {"name": "km", "generator": "kmeans", "n_proxies": [1, 3]},
            {"aggregation": "mnn"},  # invalid: mnn needs n_neighbors
        ],
    }
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_sweep_cli_end_to_end_and_resume(sweep_file, capsys):
    assert main(["sweep", "--config", str(sweep_file), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "rejected" in out and "n_neighbors" in out
    assert "2 dataset/task(s) × 3 head(s) × 2 shot setting(s) × 2 seed(s) = 24 runs" in out
    res = sweep_file.parent / "out" / "results.csv"
    df = pd.read_csv(res)
    assert len(df) == 24 and df["key"].is_unique
    assert set(df["config"]) == {"qi2018", "km n_proxies=1", "km n_proxies=3"}
    assert set(df["shots"]) == {2, -1}
    assert (df.loc[df.task == "first-two", "n_classes"] == 2).all()
    assert (df.loc[(df.shots == 2) & (df.task == "all"), "n_train"] == 8).all()
    nc1 = pd.read_csv(sweep_file.parent / "out" / "results.nc1.csv")
    assert len(nc1) == 2 and (nc1["nc1"] > 0).all()
    # resume: nothing new; after deleting one part exactly one run is redone, same numbers
    assert main(["sweep", "--config", str(sweep_file), "--no-progress"]) == 0
    assert "0 new run(s), 24 reused" in capsys.readouterr().out
    parts = sorted((sweep_file.parent / "out" / "results.csv.parts").glob("*.json"))
    parts[3].unlink()
    assert main(["sweep", "--config", str(sweep_file), "--no-progress"]) == 0
    assert "1 new run(s), 23 reused" in capsys.readouterr().out
    df2 = pd.read_csv(res)
    pd.testing.assert_frame_equal(
        df.drop(columns=["fit_seconds", "predict_seconds"]),
        df2.drop(columns=["fit_seconds", "predict_seconds"]),
    )


def test_run_matches_direct_fit(tmp_path):
    X, y, Xt, yt = _write_embeddings(tmp_path, "d", seed=3)
    cfg = parse_sweep_config(
        {"datasets": [{"dataset": "d", "train": "d_train.npz", "test": "d_test.npz"}],
         "heads": [{"generator": "kmeans", "n_proxies": 2}], "shots": [3], "seeds": [7],
         "output": "r.csv", "nc1": False},
        tmp_path,
    )  # fmt: skip
    run_sweep(cfg)
    row = pd.read_csv(tmp_path / "r.csv").iloc[0]
    idx = sample_few_shot(y.astype(str), 3, 7)
    head = ImprintedHead(generator="kmeans", n_proxies=2, random_state=7).fit(
        X[idx], y[idx].astype(str)
    )
    assert row["top1"] == pytest.approx(np.mean(head.predict(Xt) == yt.astype(str)))
    assert row["config"] == "l2/kmeans(2)/l2/l2/max"


def test_alpha_one_is_the_text_head(tmp_path):
    X, y, Xt, yt = _write_embeddings(tmp_path, "d", seed=1)
    rng = np.random.default_rng(0)
    T = rng.standard_normal((4, 8)).astype(np.float32)
    # non-unit rows: the primed score uses T as given (PrimedHead's definition), not T/|T|
    T *= np.array([[1.0], [5.0], [0.2], [3.0]], dtype=np.float32)
    np.savez(tmp_path / "text.npz", weights=T[::-1], labels=np.array(["3", "2", "1", "0"]))
    cfg = parse_sweep_config(
        {"datasets": [{"dataset": "d", "train": "d_train.npz", "test": "d_test.npz",
                       "text_weights": "text.npz"}],
         "heads": [{"preset": "qi2018", "alpha": [0.0, 1.0]}], "seeds": [0],
         "output": "r.csv", "nc1": False},
        tmp_path,
    )  # fmt: skip
    run_sweep(cfg)
    df = pd.read_csv(tmp_path / "r.csv").set_index("alpha")
    zero_shot = np.argmax(Xt @ T.T, axis=1)  # test-row norms do not change the argmax
    assert df.loc[1.0, "top1"] == pytest.approx(np.mean(zero_shot == yt))
    head = ImprintedHead.from_preset("qi2018").fit(X, y.astype(str))
    assert df.loc[0.0, "top1"] == pytest.approx(np.mean(head.predict(Xt) == yt.astype(str)))


def test_parallel_equals_serial(tmp_path):
    _write_embeddings(tmp_path, "d")
    base = {"datasets": [{"dataset": "d", "train": "d_train.npz", "test": "d_test.npz"}],
            "heads": ["qi2018", "imprint-best"], "shots": [1, 2], "seeds": [0, 1], "nc1": False}  # fmt: skip
    run_sweep(parse_sweep_config({**base, "output": "a.csv"}, tmp_path))
    run_sweep(parse_sweep_config({**base, "output": "b.csv", "workers": 2}, tmp_path))
    a, b = (
        pd.read_csv(tmp_path / f).drop(columns=["fit_seconds", "predict_seconds"])
        for f in ("a.csv", "b.csv")
    )
    pd.testing.assert_frame_equal(a, b)


def test_config_errors_reported_together(tmp_path):
    bad = {
        "datasets": [{"dataset": "d", "train": "missing.npz", "test": "missing.npz", "colour": 1}],
        "heads": [{"preset": "nope"}, {"generator": "kmeans", "bogus": 1}],
        "shots": [0],
        "workers": 0,
        "extra": True,
    }
    with pytest.raises(ConfigError) as exc:
        parse_sweep_config(bad, tmp_path)
    msg = str(exc.value)
    for part in (
        "missing.npz",
        "colour",
        "unknown preset 'nope'",
        "bogus",
        "shots",
        "workers",
        "extra",
    ):
        assert part in msg
    _write_embeddings(tmp_path, "d")
    only_bad = {"datasets": [{"dataset": "d", "train": "d_train.npz", "test": "d_test.npz"}],
                "heads": [{"aggregation": "mnn"}]}  # fmt: skip
    with pytest.raises(ConfigError, match="every head combination is invalid"):
        parse_sweep_config(only_bad, tmp_path)
    p = tmp_path / "s.yaml"
    p.write_text("heads: [\n")
    assert main(["sweep", "--config", str(p)]) == 2


def test_sweep_config_json_and_dry_run(tmp_path, capsys):
    _write_embeddings(tmp_path, "d")
    cfg = {"datasets": [{"dataset": "d", "train": "d_train.npz", "test": "d_test.npz"}],
           "heads": [{"generator": "kmeans", "n_proxies": [2, 4], "norm_post": ["l2", "quantile"]}]}  # fmt: skip
    p = tmp_path / "s.json"
    p.write_text(json.dumps(cfg))
    assert len(load_sweep_config(p).heads) == 4
    assert main(["sweep", "--config", str(p), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "l2/kmeans(4)/quantile/l2/max" in out
    assert not (tmp_path / "results.parquet").exists()


def _primed_sweep(tmp_path, alphas, **extra):
    X, y, Xt, yt = _write_embeddings(tmp_path, "d", seed=2)
    rng = np.random.default_rng(5)
    T = rng.standard_normal((4, 8)).astype(np.float32)
    Td = rng.standard_normal((4, 8)).astype(np.float32)
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    Td /= np.linalg.norm(Td, axis=1, keepdims=True)
    T = (T + Td) / 2  # CuPL-like: the mean of two unit heads is not unit
    np.savez(tmp_path / "text.npz", weights=T, labels=np.array(["0", "1", "2", "3"]))
    cfg = parse_sweep_config(
        {"datasets": [{"dataset": "d", "train": "d_train.npz", "test": "d_test.npz",
                       "text_weights": "text.npz"}],
         "heads": [{"generator": "kmeans", "n_proxies": 2, "alpha": alphas}], "seeds": [4],
         "shots": [3], "output": "r.csv", "nc1": False, "save_predictions": True, **extra},
        tmp_path,
    )  # fmt: skip
    return cfg, (X, y, Xt, yt, T)


def test_sweep_primed_scores_are_primed_head_scores_on_non_unit_text(tmp_path):
    from priming.heads import PrimedHead

    cfg, (X, y, Xt, yt, T) = _primed_sweep(tmp_path, [0.3])
    assert not np.allclose(np.linalg.norm(T, axis=1), 1.0)
    run_sweep(cfg)
    row = pd.read_csv(tmp_path / "r.csv").iloc[0]
    with np.load(tmp_path / "r.predictions" / f"{row['key']}.npz") as z:
        scores, y_pred = z["scores"], z["y_pred"]
    idx = sample_few_shot(y.astype(str), 3, 4)
    classes = np.unique(y.astype(str))
    head = PrimedHead(
        T, classes=classes, alpha=0.3,
        imprint=ImprintedHead(generator="kmeans", n_proxies=2, random_state=4),
    ).fit(X[idx], y[idx].astype(str))  # fmt: skip
    expected = head.decision_function(Xt)
    np.testing.assert_array_equal(scores, expected.astype(np.float32))
    np.testing.assert_array_equal(y_pred, head.predict(Xt))
    assert row["top1"] == pytest.approx(np.mean(head.predict(Xt) == yt.astype(str)))
    # the old copy (re-normalised T) differs on this T: the test can tell them apart
    Tn = T / np.linalg.norm(T, axis=1, keepdims=True)
    Xn = Xt / np.linalg.norm(Xt, axis=1, keepdims=True)
    imp = head.imprint_.decision_function(Xt)
    assert not np.allclose(0.3 * Xn @ Tn.T + 0.7 * imp, expected)


def test_inline_and_local_executors_give_the_same_table(tmp_path):
    from priming.eval.sweep import SweepResult

    _write_embeddings(tmp_path, "d")
    base = {"datasets": [{"dataset": "d", "train": "d_train.npz", "test": "d_test.npz"}],
            "heads": ["qi2018", {"generator": "kmeans", "n_proxies": 2}], "shots": [1, 2],
            "seeds": [0, 1], "nc1": False, "workers": 2}  # fmt: skip
    res = run_sweep(parse_sweep_config({**base, "output": "a.csv"}, tmp_path), executor="inline")
    run_sweep(parse_sweep_config({**base, "output": "b.csv"}, tmp_path), executor="local")
    a, b = (
        pd.read_csv(tmp_path / f).drop(columns=["fit_seconds", "predict_seconds"])
        for f in ("a.csv", "b.csv")
    )
    pd.testing.assert_frame_equal(a, b)
    assert isinstance(res, SweepResult)
    assert (res.n_runs, res.n_new, res.n_done_before, res.n_rows) == (8, 8, 0, 8)
    js = res.to_json()
    assert js["output"] == str(tmp_path / "a.csv") and js["nc1_output"] is None
    json.dumps(js)


def test_sweep_reports_progress_events_per_run(tmp_path):
    cfg, _ = _primed_sweep(tmp_path, [0.0, 0.5, 1.0])
    events = []
    run_sweep(cfg, progress=events.append, executor="inline")
    assert [e.state for e in events] == ["start", "advance", "advance", "advance", "end"]
    assert events[-1].done == 3 and events[-1].total == 3 and events[0].unit == "runs"


@pytest.mark.parametrize("alpha", [["nan"], [float("nan")], [2], [True], [0.5, float("inf")]])
def test_bad_alpha_is_a_config_error(tmp_path, alpha):
    with pytest.raises(ConfigError, match="alpha must be a number in"):
        _primed_sweep(tmp_path, alpha)


def test_bad_alpha_in_yaml_is_a_clear_cli_error(tmp_path, capsys):
    _write_embeddings(tmp_path, "d")
    np.savez(tmp_path / "t.npz", weights=np.eye(4, 8, dtype=np.float32), labels=np.arange(4))
    (tmp_path / "s.yaml").write_text(
        "datasets: [{dataset: d, train: d_train.npz, test: d_test.npz, text_weights: t.npz}]\n"
        "heads: [{preset: qi2018, alpha: [2, nan]}]\noutput: r.csv\n"
    )
    assert main(["sweep", "--config", str(tmp_path / "s.yaml"), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "alpha must be a number in [0, 1]" in err and "2, 'nan'" in err
    assert "Traceback" not in err


def test_a_warning_of_every_run_is_logged_once(tmp_path, caplog):
    _write_embeddings(tmp_path, "d")
    cfg = parse_sweep_config(
        {"datasets": [{"dataset": "d", "train": "d_train.npz", "test": "d_test.npz"}],
         "heads": [{"generator": "kmeans", "n_proxies": 2, "aggregation": "mnn",
                    "n_neighbors": 50}],
         "shots": [1, 2], "seeds": [0, 1, 2], "output": "r.csv", "nc1": False},
        tmp_path,
    )  # fmt: skip
    caplog.clear()  # validating the config fits a dummy head, which may warn once
    with caplog.at_level("WARNING", logger="priming"):
        res = run_sweep(cfg, executor="inline")
    hits = [r for r in caplog.records if "n_neighbors=50 exceeds" in r.getMessage()]
    assert len(hits) == len(res.warnings) >= 1
    assert all("of 6 runs)" in r.getMessage() for r in hits)
    assert sum(res.warnings.values()) == 6


def test_sweep_cli_executor_option(sweep_file, capsys):
    args = ["sweep", "--config", str(sweep_file), "--no-progress", "--limit", "2"]
    with pytest.raises(SystemExit) as exc:  # a usage error: argparse lists the choices
        main([*args, "--executor", "nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "nope" in err and "inline" in err and "local" in err and "Traceback" not in err
    assert not (sweep_file.parent / "out").exists()  # refused before anything is written
    assert main([*args, "--executor", "inline"]) == 0
    assert "2 new run(s), 0 reused" in capsys.readouterr().out


def test_warnings_are_counted_per_run_also_on_a_thread_pool(tmp_path, caplog):
    import logging
    from concurrent.futures import ThreadPoolExecutor

    _write_embeddings(tmp_path, "d")
    cfg = parse_sweep_config(
        {"datasets": [{"dataset": "d", "train": "d_train.npz", "test": "d_test.npz"}],
         "heads": [{"generator": "kmeans", "n_proxies": 2, "aggregation": "mnn",
                    "n_neighbors": 50}, "qi2018"],
         "shots": [1, 2], "seeds": [0, 1, 2], "output": "r.csv", "nc1": False},
        tmp_path,
    )  # fmt: skip
    caplog.clear()
    with ThreadPoolExecutor(max_workers=4) as pool, caplog.at_level("WARNING", logger="priming"):
        res = run_sweep(cfg, executor=pool)
    assert sum(res.warnings.values()) == 6  # the 6 mnn runs, not the 6 qi2018 runs
    assert not [r for r in caplog.records if r.name == "priming.heads.imprinted"]
    assert logging.getLogger("priming").propagate is True
    assert not [h for h in logging.getLogger("priming").handlers if "ListHandler" in repr(h)]
