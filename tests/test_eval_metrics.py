import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score, f1_score

from priming.errors import ConfigError, DataError
from priming.eval.metrics import classification_report, report_to_json, save_predictions
from priming.eval.protocol import sample_few_shot, summarize


def test_known_answer_by_hand():
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    r = classification_report(y_true, y_pred)
    assert r["labels"] == ["a", "b", "c"]
    assert r["top1"] == pytest.approx(4 / 6)
    # recalls: a 2/3, b 1/2, c 1/1
    assert r["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert r["per_class"] == pytest.approx({"a": 2 / 3, "b": 0.5, "c": 1.0})
    # precisions: a 1, b 1/2, c 1/2 -> f1 a 0.8, b 0.5, c 2/3
    assert r["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert r["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert r["confusion"].tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert r["top5"] is None


def test_top5_and_ties():
    labels = list(range(7))
    scores = np.array(
        [
            [7, 6, 5, 4, 3, 2, 1],  # true 4: 4 higher -> rank 5 -> hit
            [7, 6, 5, 4, 3, 2, 1],  # true 5: rank 6 -> miss
            [1, 1, 1, 1, 1, 1, 1],  # all tied -> counted as a miss
        ],
        dtype=float,
    )
    r = classification_report([4, 5, 0], [0, 0, 0], scores=scores, labels=labels)
    assert r["top5"] == pytest.approx(1 / 3)
    assert np.isnan(r["per_class"][1])  # class absent from y_true


@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=60),
)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_matches_sklearn(pairs):
    yt = np.array([p[0] for p in pairs])
    yp = np.array([p[1] for p in pairs])
    r = classification_report(yt, yp)
    assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(yt, yp))
    assert r["macro_f1"] == pytest.approx(f1_score(yt, yp, average="macro", zero_division=0))
    assert r["weighted_f1"] == pytest.approx(f1_score(yt, yp, average="weighted", zero_division=0))
    assert r["confusion"].sum() == len(yt)


def test_bad_inputs():
    with pytest.raises(DataError, match="rows"):
        classification_report([1, 2], [1])
    with pytest.raises(DataError, match="labels"):
        classification_report([1, 2], [1, 2], scores=np.zeros((2, 2)))
    with pytest.raises(DataError, match="not in labels"):
        classification_report([1, 3], [1, 2], labels=[1, 2])
    with pytest.raises(DataError, match="shape"):
        classification_report([1, 2], [1, 2], scores=np.zeros((2, 3)), labels=[1, 2])


def test_save_predictions_and_json(tmp_path):
    p = save_predictions(tmp_path / "sub" / "pred.npz", [1, 2], [1, 1], np.eye(2), [1, 2])
    with np.load(p) as z:
        assert z["y_pred"].tolist() == ["1", "1"] and z["scores"].shape == (2, 2)
    assert [f.name for f in p.parent.iterdir()] == ["pred.npz"]
    js = report_to_json(classification_report([0, 1], [0, 0], labels=[0, 1, 2]))
    assert '"2": null' in js


def test_few_shot_same_seed_same_shots_and_nested():
    y = np.repeat(["x", "y", "z"], [10, 3, 7])
    a = sample_few_shot(y, 2, 5)
    assert np.array_equal(a, sample_few_shot(y, 2, 5))
    assert np.array_equal(np.unique(y[a], return_counts=True)[1], [2, 2, 2])
    b = sample_few_shot(y, 4, 5)
    assert set(a) <= set(b)
    assert np.array_equal(np.unique(y[b], return_counts=True)[1], [4, 3, 4])
    assert not np.array_equal(a, sample_few_shot(y, 2, 6))
    assert len(sample_few_shot(y, None, 0)) == 20
    # a class's shots do not depend on the rows of other classes
    y2 = np.concatenate([y, ["z"] * 5])
    assert np.array_equal(sample_few_shot(y2, 2, 5)[:4], a[:4])
    with pytest.raises(DataError, match="fewer than"):
        sample_few_shot(y, 4, 0, strict=True)
    with pytest.raises(ConfigError):
        sample_few_shot(y, 0, 0)


def test_summarize():
    s = summarize([3.0, 1.0, 2.0])
    assert s["median"] == 2.0 and s["min"] == 1.0 and s["max"] == 3.0 and s["n"] == 3
