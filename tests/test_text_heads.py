import json

import numpy as np
import pytest

from priming.errors import ConfigError, DataError, NotFittedError, UnknownNameError
from priming.heads import (
    TEMPLATE_SETS,
    ZeroShotHead,
    build_text_weights,
    get_templates,
    load_class_names,
    load_descriptions,
    load_templates,
    parse_class_names,
)
from tests._fakes import FakeEncoder, text_vector


def unit(v):
    return v / np.linalg.norm(v)


def test_builtin_template_sets():
    assert len(TEMPLATE_SETS.get("imagenet80")) == 80
    assert len(TEMPLATE_SETS.get("imagenet7")) == 7
    assert "itap of a {}." in TEMPLATE_SETS.get("imagenet7")
    for name in ["flowers102", "cars", "aircraft", "food101", "pets", "sun397", "dtd", "eurosat"]:
        tmpl = TEMPLATE_SETS.get(name)
        assert tmpl and all(t.count("{}") == 1 for t in tmpl)
    assert set(TEMPLATE_SETS.get("imagenet7")) <= set(TEMPLATE_SETS.get("imagenet80"))
    with pytest.raises(UnknownNameError, match="imagenet80"):
        get_templates("imagenet81")


def test_template_file_and_errors(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("# comment\na photo of {}.\n\n  art of {}  \n")
    assert load_templates(f) == ("a photo of {}.", "art of {}")
    assert get_templates(str(f)) == ("a photo of {}.", "art of {}")
    bad = tmp_path / "bad.txt"
    bad.write_text("a photo of {}.\nno placeholder here\n")
    with pytest.raises(DataError, match="template 2 'no placeholder here'"):
        load_templates(bad)
    with pytest.raises(DataError, match="does not exist"):
        load_templates(tmp_path / "missing.txt")
    j = tmp_path / "t.json"
    j.write_text(json.dumps(["x {}", "y {}"]))
    assert load_templates(j) == ("x {}", "y {}")


def test_class_name_file_blank_lines_odd_chars_synonyms(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_bytes(
        "\ufeffcat | kitty\n\n   \n# not a class\ndog\u200b\r\nsea\tlion|\nmac'n'cheese \"x\"\n".encode()
    )
    assert load_class_names(f) == [["cat", "kitty"], ["dog"], ["sea lion"], ["mac'n'cheese \"x\""]]


def test_class_name_duplicates_are_errors(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_text("cat\ndog\nCat\n")
    with pytest.raises(DataError, match="duplicate class name 'Cat'.*class 1 'cat' and class 3"):
        load_class_names(f)
    with pytest.raises(DataError, match="duplicate class name 'kitty'"):
        parse_class_names(["cat|kitty", "kitty"])
    assert parse_class_names(["db|DB|sql", "x"]) == [["db", "sql"], ["x"]]  # repeats in a class
    with pytest.raises(DataError, match="no usable name"):
        parse_class_names(["cat", " | "])
    with pytest.raises(DataError, match="no classes"):
        parse_class_names([])


def test_class_name_json(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"cat": ["kitty"], "dog": []}))
    assert load_class_names(f) == [["cat", "kitty"], ["dog"]]


def test_build_text_weights_known_answer():
    enc = FakeEncoder(dim=8)
    tmpl = ["a {}.", "the {}!"]
    T = build_text_weights(enc, ["cat|kitty", "dog"], templates=tmpl)
    exp0 = unit(
        np.mean([text_vector(s, 8) for s in ["a cat.", "the cat!", "a kitty.", "the kitty!"]], 0)
    )
    exp1 = unit(np.mean([text_vector(s, 8) for s in ["a dog.", "the dog!"]], 0))
    np.testing.assert_allclose(T, np.stack([exp0, exp1]), atol=1e-6)
    assert T.dtype == np.float32
    # every distinct prompt encoded once, in one call
    assert len(enc.calls) == 1 and len(enc.calls[0]) == 6


def test_build_text_weights_with_descriptions(tmp_path, caplog):
    enc = FakeEncoder(dim=8)
    desc = tmp_path / "d.json"
    desc.write_text(json.dumps({"Kitty": ["small furry pet", "meows"], "horse": ["neighs"]}))
    T = build_text_weights(enc, ["cat|kitty", "dog"], templates="identity", descriptions=desc)
    t_cat = unit(np.mean([text_vector("cat", 8), text_vector("kitty", 8)], 0))
    d_cat = unit(np.mean([text_vector("small furry pet", 8), text_vector("meows", 8)], 0))
    np.testing.assert_allclose(T[0], (t_cat + d_cat) / 2, atol=1e-6)  # not re-normalised
    np.testing.assert_allclose(T[1], text_vector("dog", 8), atol=1e-6)
    assert "unknown class" in caplog.text and "horse" in caplog.text
    assert load_descriptions(desc)["Kitty"] == ["small furry pet", "meows"]


def test_encoder_without_text_tower():
    with pytest.raises(ConfigError, match="encode_texts"):
        build_text_weights(object(), ["a"], templates="identity")


def test_zero_shot_head(tmp_path):
    rng = np.random.default_rng(0)
    T = unit(rng.standard_normal((3, 5)).T).T
    T = T / np.linalg.norm(T, axis=1, keepdims=True)
    head = ZeroShotHead(T, classes=["a", "b", "c"]).fit()
    X = 3.0 * T[[2, 0, 1]] + 0.01 * rng.standard_normal((3, 5))
    assert head.predict(X).tolist() == ["c", "a", "b"]
    P = head.predict_proba(X)
    np.testing.assert_allclose(P.sum(1), 1, rtol=1e-6)
    np.testing.assert_allclose(
        head.decision_function(X), (X / np.linalg.norm(X, axis=1, keepdims=True)) @ T.T, atol=1e-6
    )
    head.save(tmp_path / "h")
    back = ZeroShotHead.load(tmp_path / "h")
    assert back.predict(X).tolist() == ["c", "a", "b"]
    with pytest.raises(
        DataError, match="5 features.*expects|has 4 features but the head expects 5"
    ):
        head.predict(X[:, :4])
    with pytest.raises(NotFittedError):
        ZeroShotHead(T).predict(X)
    with pytest.raises(ConfigError, match="2 names but text_weights has 3 rows"):
        ZeroShotHead(T, classes=["a", "b"]).fit()


def test_zero_shot_from_encoder():
    enc = FakeEncoder(dim=12)
    head = ZeroShotHead.from_encoder(enc, ["red", "green|lime"], templates="identity")
    assert head.classes_.tolist() == ["red", "green"]
    assert head.predict(text_vector("lime", 12)[None]).tolist() == ["green"]
