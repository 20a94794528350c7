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


def test_cli_search_prints_a_header_and_the_total(tmp_path, capsys):
    write_laion(tmp_path / "a.parquet", [f"a dog {i}" for i in range(7)] + ["a cat"])
    write_laion(tmp_path / "b.parquet", [f"hot dog {i}" for i in range(5)])
    out = tmp_path / "c"
    argv = ["corpus", "build", "--metadata", str(tmp_path / "a.parquet")]
    assert main([*argv, "--metadata", str(tmp_path / "b.parquet"), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["corpus", "search", str(out), "dog", "--limit", "3", "--no-progress"]) == 0
    got = capsys.readouterr()
    rows = got.out.splitlines()  # stdout: the rows alone, pipeable
    assert [r.split("\t")[1] for r in rows] == ["a dog 0", "a dog 1", "a dog 2"]
    err = got.err.splitlines()
    assert err[0] == "row_id\tcaption\turl"
    assert err[-1].startswith("3 of 12 matching rows shown (limit 3, mode phrase")
    assert "--limit 12 shows all" in err[-1]
    assert main(["corpus", "search", str(out), "dog", "hot dog", "--limit", "50"]) == 0
    got = capsys.readouterr()
    assert len(got.out.splitlines()) == 12
    assert got.err.splitlines()[-1] == "12 of 12 matching rows shown (limit 50, mode phrase)"
    assert main(["corpus", "search", str(out), "cat", "--json"]) == 0
    got = capsys.readouterr()
    assert json.loads(got.out)["caption"] == "a cat"
    assert "row_id\t" not in got.err and "1 of 1 matching rows" in got.err  # no header in JSON


def test_cli_export_urls_skips_nsfw_rows_by_default(tmp_path, capsys):
    write_laion(
        tmp_path / "m.parquet",
        ["a fox", "a fox at night", "a fox in snow"],
        NSFW=["UNLIKELY", "NSFW", "UNSURE"],
    )
    out = tmp_path / "c"
    assert (
        main(["corpus", "build", "--metadata", str(tmp_path / "m.parquet"), "--out", str(out)]) == 0
    )
    base = ["corpus", "export-urls", str(out), "fox"]
    assert main([*base, "--out", str(tmp_path / "u.parquet")]) == 0
    assert "2 flagged NSFW" in capsys.readouterr().out
    assert pq.read_table(tmp_path / "u.parquet").column("row_id").to_pylist() == [0]
    assert main([*base, "--include-nsfw", "--out", str(tmp_path / "all.parquet")]) == 0
    assert "wrote 3 urls" in capsys.readouterr().out
    assert pq.read_table(tmp_path / "all.parquet").column("row_id").to_pylist() == [0, 1, 2]


def test_cli_index_nlist_zero_is_an_error_like_minus_one(tmp_path, capsys):
    clip_retrieval_layout(tmp_path / "l", [[f"row {i}" for i in range(80)]], dim=8)
    out = tmp_path / "c"
    argv = [
        "corpus",
        "build",
        "--metadata",
        str(tmp_path / "l"),
        "--embeddings",
        str(tmp_path / "l"),
    ]
    assert main([*argv, "--out", str(out)]) == 0
    capsys.readouterr()
    for bad in ("0", "-1"):
        assert main(["corpus", "index", str(out), "--nlist", bad, "--nbits", "4"]) == 2
        assert f"nlist must be between 1 and the number of rows (80), got {bad}" in (
            capsys.readouterr().err
        )
    assert not (out / "index").exists() or not any((out / "index").iterdir())
