"""benchmarks/real_tasks.py: the task builders on tiny fabricated inputs, and one tiny run."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "real_tasks.py"
_spec = importlib.util.spec_from_file_location("real_tasks", _PATH)
rt = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("real_tasks", rt)
_spec.loader.exec_module(rt)

BLOCKS = """# Blocks
0000..007F; Basic Latin
0370..03FF; Greek and Coptic
2190..21FF; Arrows
"""
UDATA = """0041;LATIN CAPITAL LETTER A;Lu;0;L;;;;;N;;;;0061;
0042;LATIN CAPITAL LETTER B;Lu;0;L;;;;;N;;;;0062;
0061;LATIN SMALL LETTER A;Ll;0;L;;;;;N;;;0041;;0041
0001;<control>;Cc;0;BN;;;;;N;START OF HEADING;;;;
0391;GREEK CAPITAL LETTER ALPHA;Lu;0;L;;;;;N;;;;03B1;
03B1;GREEK SMALL LETTER ALPHA;Ll;0;L;;;;;N;;;0391;;0391
2190;LEFTWARDS ARROW;Sm;0;ON;;;;;N;LEFT ARROW;;;;
2191;UPWARDS ARROW;Sm;0;ON;;;;;N;UP ARROW;;;;
"""
ALIASES = """gc ; Ll                               ; Lowercase_Letter                 # Ll | Lt | Lu
gc ; Lu                               ; Uppercase_Letter
gc ; Sm                               ; Math_Symbol
sc ; Latn                             ; Latin
"""
EMOJI = """# group: Smileys & Emotion
# subgroup: face-smiling
1F600 ; fully-qualified # 😀 E1.0 grinning face
1F603 ; fully-qualified # 😃 E0.6 grinning face with big eyes
263A ; unqualified # ☺ E0.6 smiling face
# subgroup: hand-fingers-open
1F44B ; fully-qualified # 👋 E0.6 waving hand
1F44B 1F3FB ; fully-qualified # 👋🏻 E1.0 waving hand: light skin tone
1F91A ; fully-qualified # 🤚 E3.0 raised back of hand
"""
WHATIS = [
    "ls (1)               - list directory contents",
    "cp (1)               - copy files and directories",
    "open (2)             - open and possibly create a file",
    "read (2)             - read from a file descriptor",
    "Foo::Bar (3perl)     - parse foo bars",
    "printf (3)           - formatted output conversion",
    "dup (1)              - list directory contents",  # the same text under two sections …
    "dup2 (2)             - list directory contents",  # … is dropped
    "weird (9)            - not a standard section",
    "garbage line without a section",
]
TAGS = """alpha: role::program, use::converting
beta: use::converting, works-with::audio
gamma: use::editing
delta: use::editing, use::viewing
eps: use::editing
zeta: use::TODO, use::viewing
"""
VOCAB = """Facet: use
Description: Purpose

Tag: use::converting
Description: Data Conversion

Tag: use::editing
Description: Editing

Tag: use::viewing
Description: Viewing

Tag: use::TODO
Description: Need an extra tag
"""
CATALOGUE = [
    ("alpha", "utils", "convert a to b", "It converts."),
    ("beta", "sound", "audio converter", ""),
    ("gamma", "editors", "an editor", "Edits text files."),
    ("delta", "editors", "edit and view", ""),
    ("eps", "editors", "another editor", ""),
    ("zeta", "graphics", "an image viewer", ""),
]


def test_unicode_blocks_assigns_each_name_its_block():
    t = rt.unicode_blocks_task(UDATA, BLOCKS, n_blocks=3, min_per_class=1)
    got = {(x, t.class_names[c]) for x, c in zip(t.texts, t.labels)}
    assert got == {
        ("latin capital letter a", "Basic Latin"), ("latin capital letter b", "Basic Latin"),
        ("latin small letter a", "Basic Latin"), ("greek capital letter alpha", "Greek and Coptic"),
        ("greek small letter alpha", "Greek and Coptic"), ("leftwards arrow", "Arrows"),
        ("upwards arrow", "Arrows"),
    }  # fmt: skip
    assert t.class_names == sorted(t.class_names)
    t2 = rt.unicode_blocks_task(UDATA, BLOCKS, n_blocks=2, min_per_class=2, seed=3)
    assert len(t2.class_names) == 2  # n_blocks drawn among the eligible blocks
    with pytest.raises(ValueError, match="fewer than 2 classes"):  # only Basic Latin has 3
        rt.unicode_blocks_task(UDATA, BLOCKS, n_blocks=3, min_per_class=3)


def test_unicode_categories_uses_the_long_alias():
    t = rt.unicode_categories_task(UDATA, ALIASES, min_per_class=2)
    assert t.class_names == ["lowercase letter", "math symbol", "uppercase letter"]
    pairs = {(x, t.class_names[c]) for x, c in zip(t.texts, t.labels)}
    assert ("leftwards arrow", "math symbol") in pairs
    assert ("greek small letter alpha", "lowercase letter") in pairs
    assert len(t.texts) == 7  # <control> has no name


def test_emoji_keeps_fully_qualified_without_skin_tones():
    t = rt.emoji_task(EMOJI, min_per_class=1)
    assert t.class_names == ["face smiling", "hand fingers open"]
    assert sorted(t.texts) == sorted(
        ["grinning face", "grinning face with big eyes", "waving hand", "raised back of hand"]
    )
    assert [t.class_names[c] for c in t.labels[t.texts.index("waving hand") : None][:1]] == [
        "hand fingers open"
    ]


def test_man_sections_text_is_the_description_and_ambiguous_texts_drop():
    t = rt.man_task(WHATIS, min_per_class=1)
    assert t.class_names == ["user commands", "system calls", "library functions"]
    pairs = {(x, t.class_names[c]) for x, c in zip(t.texts, t.labels)}
    assert pairs == {
        ("copy files and directories", "user commands"),
        ("open and possibly create a file", "system calls"),
        ("read from a file descriptor", "system calls"),
        ("parse foo bars", "library functions"),
        ("formatted output conversion", "library functions"),
    }


def test_debtags_facet_keeps_packages_with_one_tag_of_the_facet():
    t = rt.debtags_task(TAGS, VOCAB, CATALOGUE, "use", min_per_class=1)
    assert t.class_names == ["Data Conversion", "Editing", "Viewing"]
    pairs = {(x, t.class_names[c]) for x, c in zip(t.texts, t.labels)}
    assert pairs == {
        ("convert a to b. It converts.", "Data Conversion"),
        ("audio converter.", "Data Conversion"),
        ("an editor. Edits text files.", "Editing"),
        ("another editor.", "Editing"),
        ("an image viewer.", "Viewing"),  # the placeholder tag is ignored
    }


def test_cap_limits_per_class_and_too_few_classes_is_an_error():
    rows = [(f"t{i}", "a") for i in range(10)] + [(f"u{i}", "b") for i in range(3)]
    t = rt._cap(rows, "x", "src", per_class=4, min_per_class=2, seed=0)
    assert np.bincount(t.labels).tolist() == [4, 3]
    assert rt._cap(rows, "x", "src", 4, 2, seed=0).texts == t.texts  # deterministic
    with pytest.raises(ValueError, match="fewer than 2 classes"):
        rt._cap(rows, "x", "src", per_class=4, min_per_class=5, seed=0)


def test_split_and_shots_are_disjoint_stratified():
    y = np.repeat(np.arange(3), [10, 7, 4])
    train, test = rt.split(y)
    assert not set(train) & set(test) and len(train) + len(test) == len(y)
    assert np.bincount(y[train]).tolist() == [5, 3, 2]
    shots = rt.sample_shots(y, train, 4, seed=1)
    assert set(shots) <= set(train)
    assert np.bincount(y[shots]).tolist() == [4, 3, 2]  # a class with fewer gives them all


class _WordEncoder:
    """Bag of hashed words (numpy only): texts sharing words embed close together."""

    name, fingerprint, modality, dim = "test:words", "words-v1", "text", 64

    def encode_texts(self, texts, batch_size=None, progress=False):
        X = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().replace(".", " ").split():
                X[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        X += 1e-3
        return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_a_tiny_run_writes_the_table(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    words = {"cat": ["whiskers", "meow", "purr"], "dog": ["bark", "leash", "fetch"],
             "owl": ["hoot", "feather", "night"]}  # fmt: skip
    texts, labels = [], []
    for c, (name, ws) in enumerate(words.items()):
        for i in range(12):
            texts.append(f"{name} {' '.join(rng.choice(ws, 2))} item{c}{i}")
            labels.append(c)
    task = rt.Task("tiny", texts, np.array(labels), list(words), "fabricated")
    summary = rt.run_all([task], _WordEncoder(), tmp_path, shots=(2,), seeds=(0, 1))
    md = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "| zero-shot |" in md and "| gda@2 |" in md and "| ceiling-ncm |" in md
    recs = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    configs = {r["config"] for r in recs}
    assert {
        "zero-shot",
        "transclip@0",
        "zlap@0",
        "tda@0",
        "primed-auto@2",
        "imprinted@2",
    } <= configs
    # inductive heads without shots are the zero-shot head
    zs = summary["table"]["zero-shot"]["tiny"][0]
    assert summary["table"]["gda@0"]["tiny"][0] == zs
    assert summary["table"]["tip-adapter@0"]["tiny"][0] == zs
    # the test split is the same for every method: 18 rows, so accuracies are multiples of 1/18
    for r in recs:
        if not r["config"].startswith("ceiling"):
            assert abs(r["top1"] * 18 / 100 - round(r["top1"] * 18 / 100)) < 1e-6
    # every shot head records which rule chose its hyperparameters
    gda = next(r for r in recs if r["config"] == "gda@2")
    assert "rule" in gda["selection"]["selection"]
    primed = next(r for r in recs if r["config"] == "primed-auto@2")
    assert primed["selection"]["selection"]["rule"] == "cv-shots"
    # a rerun reads the embeddings from the cache
    enc = _WordEncoder()
    calls = []
    orig = enc.encode_texts
    monkeypatch.setattr(enc, "encode_texts", lambda t, **k: calls.append(len(t)) or orig(t, **k))
    rt.run_all([task], enc, tmp_path, shots=(2,), seeds=(0,))
    assert sum(calls) < len(texts)  # only the class-name prompts were encoded
