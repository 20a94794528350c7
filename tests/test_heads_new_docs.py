"""The Python example in docs/heads.md runs against the real API."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_heads_doc_example_runs(capsys):
    text = (ROOT / "docs" / "heads.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    exec(compile(block, "docs/heads.md", "exec"), {})
    out = capsys.readouterr().out
    assert "stratified" in out  # GDA's selection rule was printed
    assert out.count("[") >= 4
