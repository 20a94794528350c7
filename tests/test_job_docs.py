"""The README's whole-run example (priming.run_prime / priming.predict) runs as written."""

import json
from pathlib import Path

from tests._fakes import BagOfWordsEncoder, write_text_corpus
from tests.test_doc_examples import python_block

ROOT = Path(__file__).resolve().parents[1]


def test_readme_whole_run_example(tmp_path, monkeypatch, capsys):
    import priming.encoders

    enc = BagOfWordsEncoder(dim=32, name="fake:bow")
    monkeypatch.setattr(priming.encoders, "create_encoder", lambda *a, **k: enc)
    monkeypatch.setenv("PRIMING_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    names = ["golden retriever", "tabby cat", "red fox"]
    write_text_corpus(tmp_path, [f"a photo of a {names[i % 3]} {i}" for i in range(30)], enc)
    Path("classes.txt").write_text("golden retriever\ntabby cat|tabby\nred fox\n")
    Path("data").mkdir()
    rows = [{"text": f"the {n} in the park", "label": n} for n in names]
    Path("data/test.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    code = python_block(ROOT / "README.md", "Whole runs, as `priming prime`")
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("3 predictions; accuracy")
    size, alpha, top1 = out[-2].split()
    assert int(size) > 0 and 0 <= float(alpha) <= 1 and 0 <= float(top1) <= 1
    assert (tmp_path / "runs/pets/metrics.json").is_file()
    assert Path("predictions.csv").read_text().startswith("id,prediction,confidence")
