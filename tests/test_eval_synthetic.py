import numpy as np
import pytest
from sklearn.neighbors import NearestCentroid

from priming.cli import main
from priming.errors import ConfigError
from priming.recipes.synthetic import (
    default_configs,
    make_subclusters,
    run_subcluster_experiment,
)


def test_shapes_dtypes_and_balance():
    X, y, Xt, yt = make_subclusters(4, 3, 7, 12, 9, random_state=0)
    assert X.shape == (48, 7) and Xt.shape == (36, 7)
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert np.array_equal(np.bincount(y), [12] * 4)
    assert np.array_equal(np.bincount(yt), [9] * 4)


def test_deterministic_and_seed_dependent():
    a = make_subclusters(5, 2, 8, 10, 10, random_state=3)
    b = make_subclusters(5, 2, 8, 10, 10, random_state=3)
    c = make_subclusters(5, 2, 8, 10, 10, random_state=4)
    for u, v in zip(a, b):
        assert np.array_equal(u, v)
    assert not np.array_equal(a[0], c[0])


def test_subcluster_geometry():
    C, d, D, n = 6, 4, 12, 400
    X, y, Xt, yt, s, st, centers = make_subclusters(
        C, d, D, n, 8, cluster_std=0.1, return_subclusters=True, random_state=1
    )
    assert centers.shape == (C, d, D)
    np.testing.assert_allclose(np.linalg.norm(centers, axis=2), 1.0, atol=1e-6)
    # every sub-cluster holds n/d training rows
    counts = np.zeros((C, d), int)
    np.add.at(counts, (y, s), 1)
    assert np.all(counts == n // d)
    # rows scatter around their own centre with the requested std
    resid = X - centers[y, s]
    assert abs(resid.std() - 0.1) < 0.005
    for c in range(C):
        for j in range(d):
            m = X[(y == c) & (s == j)].mean(axis=0)
            assert np.linalg.norm(m - centers[c, j]) < 0.05
    # with small noise, the nearest of all C*d centres is the row's own centre
    flat = centers.reshape(C * d, D)
    nearest = np.argmin(((Xt[:, None, :] - flat[None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(nearest, yt * d + st)


def test_unshuffled_rows_grouped_by_class():
    _, y, _, _ = make_subclusters(3, 2, 4, 4, 2, shuffle=False, random_state=0)
    assert np.array_equal(y, np.repeat([0, 1, 2], 4))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_classes": 0},
        {"n_subclusters": -1},
        {"n_features": 2.5},
        {"n_train_per_class": True},
        {"cluster_std": -0.1},
        {"cluster_std": float("nan")},
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ConfigError):
        make_subclusters(**kwargs)


def test_experiment_with_custom_estimator_mean_fails_when_d_grows():
    # machinery check with an independent estimator: nearest centroid is one mean per class
    tab = run_subcluster_experiment(
        d_values=[1, 4],
        configs={"centroid": "x"},
        seeds=[0, 1],
        estimator_factory=lambda spec, seed: NearestCentroid(),
    )
    assert tab.accuracy.shape == (1, 2, 2)
    assert tab.cell("centroid", 1) > 0.9
    assert tab.cell("centroid", 4) < 0.7
    assert len(tab.records()) == 4
    assert "centroid" in tab.to_text() and "| centroid |" in tab.to_markdown()


def test_experiment_rejects_empty():
    with pytest.raises(ConfigError):
        run_subcluster_experiment(configs={})
    with pytest.raises(ConfigError):
        run_subcluster_experiment(d_values=[])


# --- with the real ImprintedHead -------------------------------------------------------


@pytest.fixture(scope="module")
def table():
    configs = default_configs(ks=(1, 2, 3, 5, 8), ms=(1, 3, 10))
    configs["mean"] = {"generator": "mean"}
    return run_subcluster_experiment(d_values=(1, 2, 3, 5), configs=configs, seeds=(0, 1, 2))


def test_kmeans_beats_mean_when_d_gt_1_and_peaks_near_d(table):
    for d in (2, 3, 5):
        assert table.cell(f"kmeans k={d}", d) > table.cell("mean", d) + 0.1
        assert abs(table.best_k(d) - d) <= 1
    # at d = 1 one mean proxy is (near) optimal
    assert table.cell("mean", 1) >= table.cell("kmeans k=8", 1)


def test_max_equals_mnn_m1_and_larger_m_hurts(table):
    med = table.median()
    assert np.array_equal(med[table.rows.index("mnn m=1")], med[table.rows.index("kmeans k=5")])
    m1, m3, m10 = (med[table.rows.index(f"mnn m={m}")].mean() for m in (1, 3, 10))
    assert m1 > m3 > m10


def test_demo_cli_prints_table(capsys):
    assert main(["demo", "--part", "imprint", "--d", "1", "3"]) == 0
    out = capsys.readouterr().out
    assert "imprint-best" in out and "d=3" in out and "kmeans k=3" in out
