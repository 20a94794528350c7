"""Hostile battery (issue 11), in subprocesses: two ``prime`` runs to the same ``--out``
(one wins, the other gets a clear error), SIGKILL of ``prime`` / ``corpus build`` /
``sweep`` mid-run (no worker left behind, a rerun succeeds and leaves no ``.tmp-*``)."""

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests._fakes import BagOfWordsEncoder, write_text_corpus
from tests.corpus_helpers import write_laion

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and flock")

REPO = Path(__file__).resolve().parents[1]
FRUITS = ["apple", "banana", "cherry"]

# A `priming prime` with the fake encoder; PRIME_SLOW_WRITE sleeps once the run's
# temporary folder is complete (before it is moved into place), so a kill lands mid-write.
PRIME = """
import os, sys, time
sys.path.insert(0, {repo!r})
from priming.encoders import register_encoder
from tests._fakes import BagOfWordsEncoder
register_encoder("fakekill")(lambda spec, device, precision: BagOfWordsEncoder(dim=32))
if os.environ.get("PRIME_SLOW_WRITE"):
    import priming._fs as fs
    real = fs.replace_dir
    def slow(src, dest):
        print("WRITING", flush=True)
        time.sleep(60)
        return real(src, dest)
    fs.replace_dir = slow
from priming.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env():
    return {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_kills")
    inp = root / "inputs"
    inp.mkdir()
    write_text_corpus(inp, [f"a ripe {FRUITS[i % 3]} number {i}" for i in range(30)],
                      BagOfWordsEncoder(dim=32))  # fmt: skip
    (inp / "classes.txt").write_text("\n".join(FRUITS) + "\n")
    script = root / "prime.py"
    script.write_text(PRIME.format(repo=str(REPO)))
    return root, inp, script


def prime_cmd(world, out):
    root, inp, script = world
    return [sys.executable, str(script), "prime", "--model", "fakekill:bow",
            "--classes", str(inp / "classes.txt"), "--corpus", str(inp / "corpus"),
            "--cache-dir", str(root / "cache"), "--templates", "identity", "--no-progress",
            "--out", str(out)]  # fmt: skip


def _leftovers(folder, name):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}.") and
                  not p.name.endswith(".lock"))  # fmt: skip


def test_two_prime_runs_to_the_same_out(world, tmp_path):
    out = tmp_path / "run"
    procs = [subprocess.Popen(prime_cmd(world, out), env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    err = next(e for rc, e in results if rc == 2)
    assert "Traceback" not in err and str(out) in err, err
    assert "another priming prime run" in err or "already exists" in err, err
    assert (out / "metrics.json").is_file() and not _leftovers(tmp_path, "run")


def test_prime_while_another_holds_the_lock(world, tmp_path):
    out = tmp_path / "run"
    with open(tmp_path / ".run.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        r = subprocess.run(prime_cmd(world, out), env=_env(), capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "another priming prime run is writing" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_sigkill_prime_mid_write_then_rerun(world, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(prime_cmd(world, out), env={**_env(), "PRIME_SLOW_WRITE": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "WRITING"
        assert _leftovers(tmp_path, "run"), "the kill must land while .run.tmp-* exists"
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert not out.exists()
    r = subprocess.run(prime_cmd(world, out), env=_env(), capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (out / "metrics.json").is_file()
    assert _leftovers(tmp_path, "run") == []
    assert not (tmp_path / ".run.lock").exists()


# -- workers die with their parent ------------------------------------------------------------
def _children(pid):
    """Every descendant of ``pid`` (from /proc): pid -> its command line."""
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, todo = {}, [pid]
    while todo:
        p = todo.pop()
        for c, pp in parents.items():
            if pp == p and c not in found:
                found[c] = _cmdline(c)
                todo.append(c)
    return found


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def _alive(pids, wait=15.0):  # generous: CI machines can be loaded
    """The processes of ``pids`` (pid -> cmdline) still running after ``wait`` seconds."""
    deadline = time.time() + wait
    while True:
        alive = []
        for pid, cmd in pids.items():
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and _cmdline(pid) == cmd:
                alive.append(pid)
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.1)


def _kill_after_workers(cmd, ready, timeout=60):
    """Start ``cmd``, wait until it has worker processes and ``ready()``, SIGKILL it; the
    workers it had (pid -> cmdline)."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = {}
    try:
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None:
            workers = _children(proc.pid)
            if len(workers) >= 2 and ready():
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert workers, "the command ended before it had workers"
    return workers


def _cleanup(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)  # processes this test started (via its child)
        except OSError:
            pass


def test_sigkill_corpus_build_leaves_no_worker_and_rerun_succeeds(tmp_path):
    for s in range(12):
        write_laion(tmp_path / "in" / f"m{s:02d}.parquet", [f"shard {s} row {i} dog"
                                                          for i in range(3000)])  # fmt: skip
    out = tmp_path / "c"
    cmd = [sys.executable, "-m", "priming", "corpus", "build", "--metadata", str(tmp_path / "in"),
           "--out", str(out), "--workers", "2", "--executor", "local", "--no-progress"]  # fmt: skip
    workers = _kill_after_workers(cmd, lambda: any((out / "shards").glob("*.sqlite")))
    alive = _alive(workers)
    _cleanup(alive)
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    assert alive == [], f"workers still alive after the parent was killed: {alive}"


def test_sigkill_sweep_leaves_no_worker(tmp_path):
    import yaml

    rng = np.random.default_rng(0)
    (tmp_path / "emb").mkdir()
    for part in ("train", "test"):
        np.savez(tmp_path / "emb" / f"toy_{part}.npz", embeddings=rng.normal(size=(400, 16)),
                 labels=np.arange(400) % 8)  # fmt: skip
    cfg = {"name": "s", "output": "out/r.csv", "seeds": list(range(40)), "workers": 2,
           "heads": ["qi2018", {"name": "km", "generator": "kmeans", "n_proxies": [1, 2, 4]}],
           "datasets": [{"backbone": "bb", "dataset": "toy", "train": "emb/toy_train.npz",
                         "test": "emb/toy_test.npz"}]}  # fmt: skip
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "priming", "sweep", "--config", str(p), "--no-progress"]
    workers = _kill_after_workers(cmd, lambda: True)
    alive = _alive(workers)
    _cleanup(alive)
    assert alive == [], f"workers still alive after the parent was killed: {alive}"
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert not [q for q in tmp_path.rglob("*") if ".tmp" in q.name]
    assert yaml.safe_load(p.read_text()) == cfg  # the config is untouched by either run
