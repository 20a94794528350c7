import numpy as np
import pytest
from scipy import stats as sps

from priming.errors import DataError
from priming.eval.stats import cd_cliques, compare_configs, holm, plot_cd_diagram, rank_matrix


def _records(values, seeds=(0, 1, 2)):
    """values: dict config -> list over groups of accuracies (same for every seed)."""
    out = []
    for cfg, vals in values.items():
        for g, v in enumerate(vals):
            for s in seeds:
                out.append({"backbone": "b", "dataset": f"d{g}", "task": "all", "config": cfg,
                            "seed": s, "top1": v})  # fmt: skip
    return out


def test_holm_by_hand():
    # sorted p: .01 .02 .04 -> *3, *2, *1 = .03 .04 .04 (monotone)
    np.testing.assert_allclose(holm([0.04, 0.01, 0.02]), [0.04, 0.03, 0.04])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])


def test_rank_matrix_ties_average():
    R = rank_matrix(np.array([[0.9, 0.8, 0.9], [0.1, 0.2, 0.3]]))
    np.testing.assert_allclose(R, [[1.5, 3, 1.5], [3, 2, 1]])


def test_median_over_seeds_is_used():
    recs = _records({"a": [0.5] * 6, "b": [0.6] * 6})
    # one outlier seed must not move the median
    recs.append(
        {"backbone": "b", "dataset": "d0", "task": "all", "config": "a", "seed": 9, "top1": 0.99}
    )
    recs.append(
        {"backbone": "b", "dataset": "d0", "task": "all", "config": "a", "seed": 8, "top1": 0.99}
    )
    res = compare_configs(recs)
    assert res.medians[0, res.configs.index("a")] == 0.5


def test_identical_vectors_not_significant_and_clear_winner_is():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.7, size=12)
    res = compare_configs(_records({"a": base, "a_copy": base.copy(), "better": base + 0.1}))
    assert not res.significant("a", "a_copy")
    assert res.significant("a", "better") and res.significant("a_copy", "better")
    assert res.ranking()[0][0] == "better"
    assert res.friedman_p < 0.05
    row = next(r for r in res.pairwise if {r["a"], r["b"]} == {"a", "a_copy"})
    assert row["p"] == 1.0
    # raw p of a vs better equals scipy's exact Wilcoxon on the medians
    exp = sps.wilcoxon(base, base + 0.1, zero_method="pratt").pvalue
    row = next(r for r in res.pairwise if {r["a"], r["b"]} == {"a", "better"})
    assert row["p"] == pytest.approx(exp)
    assert sorted(map(sorted, cd_cliques(res))) == [["a", "a_copy"]]


def test_all_identical_configs():
    res = compare_configs(
        _records({"x": [0.5, 0.6, 0.7], "y": [0.5, 0.6, 0.7], "z": [0.5, 0.6, 0.7]})
    )
    assert res.friedman_p == 1.0
    assert not any(r["significant"] for r in res.pairwise)
    assert cd_cliques(res) == [[c for c, _ in res.ranking()]]


def test_incomplete_groups_dropped_and_too_few_rejected():
    recs = _records({"a": [0.1, 0.2, 0.3], "b": [0.2, 0.3, 0.4]})
    recs = [r for r in recs if not (r["config"] == "b" and r["dataset"] == "d2")]
    res = compare_configs(recs)
    assert len(res.groups) == 2
    with pytest.raises(DataError, match="at least 2"):
        compare_configs(_records({"a": [0.1, 0.2]}))
    with pytest.raises(DataError, match="no column"):
        compare_configs([{"config": "a"}])


def test_cd_diagram_png(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.uniform(0.5, 0.7, size=10)
    vals = {f"cfg{i}": base + 0.02 * i + rng.normal(0, 0.005, 10) for i in range(6)}
    vals["cfg0_copy"] = vals["cfg0"].copy()
    res = compare_configs(_records(vals))
    p = plot_cd_diagram(res, tmp_path / "cd.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [f.name for f in tmp_path.iterdir()] == ["cd.png"]
