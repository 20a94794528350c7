"""Class-name files and label matching: one module, one normalisation rule."""

import json

import numpy as np
import pytest

from priming.classnames import (
    load_class_names,
    match_labels,
    name_key,
    parse_class_names,
)
from priming.cli import main
from priming.errors import DataError


@pytest.mark.parametrize(
    "a, b",
    [
        ("sea lion", "Sea_Lion"),
        ("t-shirt", "T SHIRT"),
        ("  bell  pepper ", "bell\tpepper"),
        ("café", "cafe\u0301"),
        ("zero\u200bwidth", "zero width"),
    ],  # fmt: skip
)
def test_one_rule_says_which_spellings_are_one_name(a, b):
    assert name_key(a) == name_key(b)


def test_rule_keeps_distinct_names_apart():
    keys = {name_key(n) for n in ["apple", "apples", "pineapple", "apple pie", "a-pple"]}
    assert len(keys) == 5


def test_same_rule_for_duplicates_synonyms_and_labels():
    with pytest.raises(DataError, match="duplicate class name 'T_Shirt'"):
        parse_class_names(["t-shirt", "T_Shirt"])
    assert parse_class_names(["t-shirt|T shirt|tee", "dog"]) == [["t-shirt", "tee"], ["dog"]]
    classes = parse_class_names(["t-shirt|tee", "sea lion", "dog"])
    y = match_labels(["T_SHIRT", "Tee", "sea-lion", "dog", "sea  lion"], classes, "labels")
    assert y.tolist() == [0, 0, 1, 2, 1] and y.dtype == np.int64


def test_unknown_labels_are_listed():
    with pytest.raises(DataError, match=r"eval: 2 item\(s\).*'kiwi', 'mango'.*classes are: a, b"):
        match_labels(["kiwi", "a", "mango"], [["a"], ["b"]], "eval")


@pytest.mark.parametrize(
    "content, needle",
    [
        ("[1, 2, null]", "class 1 is 1"),
        ('["a", ["b", 3]]', "class 2 has a non-string name 3"),
        ('{"a": [null]}', "class 1 has a non-string name None"),
        ('"apple"', "JSON list or object"),
        ("[]", "no classes"),
        ('["a", " | "]', "class 2"),
        ("[unclosed", "not valid JSON"),
    ],  # fmt: skip
)
def test_bad_json_class_files_are_data_errors(tmp_path, content, needle):
    f = tmp_path / "classes.json"
    f.write_text(content)
    with pytest.raises(DataError, match="classes.json") as exc:
        load_class_names(f)
    assert needle in str(exc.value)


def test_json_class_file_forms(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps(["cat|kitty", ["dog", "hound"]]))
    assert load_class_names(f) == [["cat", "kitty"], ["dog", "hound"]]
    f.write_text(json.dumps({"cat": ["kitty"], "dog": "hound"}))
    assert load_class_names(f) == [["cat", "kitty"], ["dog", "hound"]]


def test_text_class_file(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("\ufeff# comment\ncat | kitty\n\ndog\u200b\n", encoding="utf-8")
    assert load_class_names(f) == [["cat", "kitty"], ["dog"]]
    f.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="not UTF-8"):
        load_class_names(f)


def test_prime_with_json_class_file_of_numbers_is_one_line_error(tmp_path, capsys):
    f = tmp_path / "classes.json"
    f.write_text("[1, 2, null]")
    (tmp_path / "corpus").mkdir()
    rc = main(["prime", "--model", "fake:x", "--classes", str(f), "--corpus",
               str(tmp_path / "corpus"), "--out", str(tmp_path / "run"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "class 1 is 1" in err, err
    assert not (tmp_path / "run").exists()
