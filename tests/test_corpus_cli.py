import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from corpus_helpers import clip_retrieval_layout, write_laion

from priming.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_cli_build_info_search_index_export(tmp_path, capsys):
    clip_retrieval_layout(
        tmp_path / "l",
        [[f"golden retriever {i}" for i in range(300)], ["a cat", "T-Shirt"]],
        dim=16,
    )
    out = tmp_path / "c"
    assert (
        main(
            [
                "corpus",
                "build",
                "--metadata",
                str(tmp_path / "l"),
                "--embeddings",
                str(tmp_path / "l"),
                "--out",
                str(out),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert "302 rows in 2 shards" in capsys.readouterr().out
    assert main(["corpus", "info", str(out), "--verify"]) == 0
    o = capsys.readouterr().out
    assert "rows        302" in o and "checksums   ok" in o
    assert main(["corpus", "search", str(out), "Golden Retriever", "--limit", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split("\t")[1] for ln in lines] == [
        "golden retriever 0",
        "golden retriever 1",
        "golden retriever 2",
    ]
    assert main(["corpus", "search", str(out), "t-shirt", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["caption"] == "T-Shirt"
    assert main(["corpus", "index", str(out), "--nlist", "4", "--m", "4", "--nbits", "4"]) == 0
    capsys.readouterr()
    classes = tmp_path / "classes.txt"
    classes.write_text("dog|golden retriever\ncat\n")
    assert (
        main(
            [
                "corpus",
                "export-urls",
                str(out),
                "--classes",
                str(classes),
                "--out",
                str(tmp_path / "u.parquet"),
            ]
        )
        == 0
    )
    t = pq.read_table(tmp_path / "u.parquet")
    assert sorted(set(t.column("label").to_pylist())) == ["cat", "dog"] and t.num_rows == 301


def test_cli_errors_are_one_line(tmp_path, capsys):
    write_laion(tmp_path / "m.parquet", ["x"])
    assert main(["corpus", "info", str(tmp_path)]) == 2
    assert "not a corpus" in capsys.readouterr().err
    assert (
        main(
            [
                "corpus",
                "build",
                "--metadata",
                str(tmp_path / "m.parquet"),
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["corpus", "search", str(tmp_path / "c"), "!!"]) == 2
    assert "no searchable words" in capsys.readouterr().err


def test_cli_embed_calls_create_encoder(tmp_path, capsys, monkeypatch):
    import types

    from test_corpus_vectors import FakeEncoder

    fake = types.ModuleType("priming.encoders")
    fake.create_encoder = lambda name, device=None, precision=None: FakeEncoder(tag=name)
    monkeypatch.setitem(sys.modules, "priming.encoders", fake)
    write_laion(tmp_path / "m.parquet", ["a dog", "a cat"])
    main(
        ["corpus", "build", "--metadata", str(tmp_path / "m.parquet"), "--out", str(tmp_path / "c")]
    )
    assert main(["corpus", "embed", str(tmp_path / "c"), "--model", "toy"]) == 0
    m = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert m["has_embeddings"] and m["embedding_model"] == "fake:toy" and m["dim"] == 16


def test_cli_subprocess_build(tmp_path):
    write_laion(tmp_path / "m.parquet", ["hello world"])
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "priming",
            "corpus",
            "build",
            "--metadata",
            str(tmp_path / "m.parquet"),
            "--out",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "priming", "corpus", "search", str(tmp_path / "c"), "WORLD"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.stdout.split("\t")[1] == "hello world"
