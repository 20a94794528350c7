"""The "Where to add things" examples of docs/architecture.md run as written against the
real API, and what they add really plugs in: the head passes the head contract, the
recall method and the filter step shape the pool, the encoder is created by name, the
executor is used by name. Each test removes what its example registered."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests._fakes import FakeCorpus

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


def example(heading: str) -> str:
    """The first python block after ``heading`` (and before the next heading)."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"### {heading}\n")
    end = text.find("\n### ", start + 1)
    section = text[start : end if end > 0 else len(text)]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m, f"no python block under {heading!r} in docs/architecture.md"
    return m.group(1)


def run(heading: str, ns: dict | None = None) -> dict:
    ns = {} if ns is None else ns
    exec(compile(example(heading), f"docs/architecture.md ({heading})", "exec"), ns)
    return ns


@pytest.fixture
def unregister():
    """Names to remove from a registry after the test: (registry, name) pairs."""
    added: list = []
    yield added
    for registry, name in added:
        registry._items.pop(name, None)


def test_every_where_to_add_section_has_an_example():
    for heading in ("A head", "A recall method", "A filter step", "An encoder", "An executor"):
        assert example(heading).strip()


def test_head_example_registers_a_kind_that_passes_the_head_contract(
    tmp_path, monkeypatch, capsys, unregister
):
    from sklearn.utils.estimator_checks import check_estimator

    from priming.heads import HEADS, load_head

    monkeypatch.chdir(tmp_path)
    unregister.append((HEADS, "text-and-means"))
    ns = run("A head")
    assert float(capsys.readouterr().out) >= 0.9
    cls = ns["TextAndMeansHead"]
    assert HEADS.get("text-and-means") is cls
    back = load_head(tmp_path / "my-head")
    assert type(back) is cls
    np.testing.assert_allclose(back.means_, ns["head"].means_)
    # the score is what the docstring says, computed by hand
    X, T = ns["X"], ns["head"].text_weights
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    M = np.stack([Xn[ns["y"] == c].mean(0) for c in range(3)])
    M /= np.linalg.norm(M, axis=1, keepdims=True)
    np.testing.assert_allclose(
        back.decision_function(X), 0.5 * Xn @ T.T + 0.5 * Xn @ M.T, rtol=1e-5, atol=1e-6
    )

    # the contract test covers the new kind as the doc says
    import tests.test_head_contract as contract

    kind = "text-and-means"
    contract.test_registered_kind_is_a_base_head_with_its_kind(kind)
    contract.test_unknown_parameter_is_refused(kind)
    contract.test_clone_gives_an_unfitted_equal_copy(kind)
    contract.test_grid_search_and_cross_val_score_on_a_separable_problem(kind)
    contract.test_fit_predict_invariants_on_the_heads_own_width(kind)
    contract.test_not_fitted_is_a_clear_error(kind, tmp_path)
    contract.test_string_labels(kind)
    contract.test_save_load_round_trip_through_the_registry(kind, tmp_path / "rt")
    est = contract._example(kind)
    check_estimator(est, expected_failed_checks=contract._expected_failures(est))


CLASSES = ["cat", "dog", "sea lion|sealion"]
D = 8


def pool_corpus():
    """Captions per class (one naming two classes, one naming a class inside a word),
    embeddings near each class's axis, and one low caption-image similarity per class."""
    captions = [
        "a cat on a mat",  # 0 cat
        "the dog barks",  # 1 dog
        "a sealion on a rock",  # 2 sea lion (synonym)
        "catalogue of tools",  # 3 cat, inside a word
        "cat and dog",  # 4 two classes: not recalled
        "hotdog stand",  # 5 dog, inside a word
        "sea lion pup",  # 6 sea lion
        "nothing here",  # 7 no class
    ]
    axis = [0, 1, 2, 0, 0, 1, 2, 3]
    rng = np.random.default_rng(0)
    E = np.eye(D)[axis] + 0.05 * rng.standard_normal((len(axis), D))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    similarity = [0.30, 0.31, 0.35, 0.10, 0.30, 0.20, np.nan, 0.30]
    return FakeCorpus(captions, E, similarity=similarity)


def test_recall_and_filter_step_examples_shape_the_pool(unregister, capsys):
    from priming.pool import RECALLS

    T = np.eye(3, D, dtype=np.float32)
    ns = {"corpus": pool_corpus(), "classes": CLASSES, "T": T}
    unregister.append((RECALLS, "substring"))
    run("A recall method", ns)
    pool = ns["pool"]
    assert "substring" in RECALLS
    assert sorted(pool.row_ids.tolist()) == [0, 1, 2, 3, 5, 6]
    assert pool.stats()["substring"] == {"cat": 2, "dog": 2, "sea lion": 2}

    run("A filter step", ns)
    pool = ns["pool"]
    # rows 3 and 5 have similarity < 0.28; row 6 (NaN) stays
    assert sorted(pool.row_ids.tolist()) == [0, 1, 2, 6]
    assert capsys.readouterr().out.strip() == str({"cat": 1, "dog": 1, "sea lion": 2})
    d = pool.dropped
    mine = d["step"] == "min-similarity"
    assert sorted(d["row_id"][mine].tolist()) == [3, 5]
    assert set(d["reason"][mine].tolist()) == {"caption-image similarity below 0.28"}
    # the step runs where it was put: after the agreement filter, before the cap
    names = list(pool.stats())
    assert names[0] == "substring" and names.index("min-similarity") > names.index("agreement")


def test_encoder_example_is_created_by_name(unregister):
    from priming.encoders import ENCODERS, Encoder

    unregister.append((ENCODERS, "hashing"))
    ns = run("An encoder")
    enc, T = ns["enc"], ns["T"]
    assert isinstance(enc, Encoder) and enc.dim == 32 and enc.name == "hashing:32"
    E = enc.encode_texts(["cat", "Cat", "sea lion"])
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(E[0], E[1])  # case-folded words
    assert T.shape == (2, 32)
    np.testing.assert_allclose(T[0], E[0], atol=1e-6)  # identity template: the name itself
    # two synonyms averaged then normalised: the "sea lion" and "sealion" directions
    E2 = enc.encode_texts(["sea lion", "sealion"])
    m = E2.mean(0)
    np.testing.assert_allclose(T[1], m / np.linalg.norm(m), atol=1e-6)
    assert enc.fingerprint != ns["HashingEncoder"](16).fingerprint


def test_executor_example_is_used_by_name(unregister):
    from priming.exec import EXECUTORS, open_executor

    unregister.append((EXECUTORS, "two-threads"))
    ns = run("An executor")
    assert ns["squares"] == [0, 1, 4, 9, 16]
    assert ns["made"] == [(8, "process")]
    assert "two-threads" in EXECUTORS
    with open_executor("two-threads", max_workers=3, kind="thread") as ex:
        assert ex.submit(sum, [1, 2]).result() == 3
    assert ns["made"][-1] == (3, "thread")


def test_readme_imprinting_example_runs_and_saves_a_folder(tmp_path, monkeypatch):
    """README's first Python example (the head folder format, load_head)."""
    from tests.test_doc_examples import python_block

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((5, 16))

    def data(classes, n):
        y = np.repeat(classes, n)
        return centres[y] + 0.2 * rng.standard_normal((len(y), 16)), y

    X_train, y_train = data([0, 1, 2], 40)
    X_test, y_test = data([0, 1, 2], 10)
    X_new, y_new = data([3, 4], 10)
    ns = {"X_train": X_train, "y_train": y_train, "X_test": X_test, "y_test": y_test}
    ns.update(X_new=X_new, y_new=y_new)
    code = python_block(ROOT / "README.md", "Imprinting on embeddings you already have")
    exec(compile(code, "README.md", "exec"), ns)
    assert (tmp_path / "head" / "head.json").is_file()
    assert (tmp_path / "head" / "arrays.npz").is_file()
    head = ns["head"]
    assert head.classes_.tolist() == [0, 1, 2, 3, 4]  # partial_fit added the new classes
    X_all, y_all = data([0, 1, 2, 3, 4], 10)
    assert head.score(X_all, y_all) >= 0.9
