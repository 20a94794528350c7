import json
import os

import pytest

from priming._fs import atomic_output, atomic_path, write_json_atomic, write_text_atomic


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_atomic_output_publishes_complete_file(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    with atomic_output(target, fsync=True) as fh:
        fh.write(b"abc")
        assert not target.exists()  # invisible until the block completes
    assert target.read_bytes() == b"abc"
    assert _leftovers(target.parent) == []


def test_failure_keeps_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_output(target) as fh:
        fh.write(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_atomic_path_for_name_based_writers(tmp_path):
    target = tmp_path / "fig.png"
    with atomic_path(target, suffix=".png") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png"
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_bytes(b"broken")
        raise ValueError
    assert target.read_bytes() == b"png" and _leftovers(tmp_path) == []


def test_write_json_atomic_round_trip(tmp_path):
    p = write_json_atomic(tmp_path / "m.json", {"b": 1, "a": [1, 2]}, sort_keys=True)
    assert json.loads(p.read_text()) == {"a": [1, 2], "b": 1}
    assert os.path.getsize(p) > 0


def test_replace_dir_swaps_whole_folder(tmp_path):
    from priming._fs import replace_dir

    dest = tmp_path / "run"
    new = tmp_path / ".new1"
    new.mkdir()
    (new / "a.txt").write_text("1")
    replace_dir(new, dest)
    assert (dest / "a.txt").read_text() == "1"
    newer = tmp_path / ".new2"
    newer.mkdir()
    (newer / "b.txt").write_text("2")
    replace_dir(newer, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["b.txt"]  # old contents gone, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no leftovers
