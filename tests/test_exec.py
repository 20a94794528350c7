"""The executor seam: names, caller-owned executors, and workers that die with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from priming.errors import ConfigError
from priming.exec import EXECUTORS, InlineExecutor, open_executor, process_pool


def _square(x: int) -> int:
    return x * x


def _pid(_: int) -> int:
    return os.getpid()


@pytest.mark.parametrize("spec", [None, "local", "inline"])
def test_named_executors_give_the_same_results(spec):
    with open_executor(spec, max_workers=2, kind="thread") as ex:
        assert [f.result() for f in [ex.submit(_square, i) for i in range(6)]] == [
            0, 1, 4, 9, 16, 25
        ]  # fmt: skip


def test_caller_owned_executor_is_left_running():
    pool = ThreadPoolExecutor(2)
    try:
        with open_executor(pool) as ex:
            assert ex is pool
            assert ex.submit(_square, 3).result() == 9
        assert pool.submit(_square, 4).result() == 16  # not shut down by open_executor
    finally:
        pool.shutdown()


def test_inline_runs_in_the_calling_thread_and_delivers_errors():
    ex = InlineExecutor()
    assert ex.submit(_pid, 0).result() == os.getpid()
    fut = ex.submit(int, "x")
    with pytest.raises(ValueError):
        fut.result()


def test_bad_specs_are_config_errors():
    with pytest.raises(ConfigError, match="executor must be None"):
        with open_executor(3):
            pass
    with pytest.raises(ConfigError, match="kind"):
        with open_executor(None, kind="gpu"):
            pass
    with pytest.raises(Exception, match="local"):  # an unknown name lists the valid ones
        with open_executor("nonesuch"):
            pass
    assert {"local", "inline"} <= set(EXECUTORS.names())


def test_local_process_pool_runs_in_other_processes():
    with open_executor("local", max_workers=2, kind="process") as ex:
        pids = {f.result() for f in [ex.submit(_pid, i) for i in range(4)]}
    assert os.getpid() not in pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # pragma: no cover - no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    line = next((ln for ln in state.splitlines() if ln.startswith("State:")), "")
    return "Z" not in line.split(":", 1)[-1]  # a zombie has exited already


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL semantics")
@pytest.mark.parametrize("use_pdeathsig", [True, False])
def test_workers_die_when_the_parent_is_sigkilled(tmp_path, use_pdeathsig):
    """The parent is SIGKILLed while its workers are busy: every worker exits within
    seconds (by PR_SET_PDEATHSIG, or without it by the getppid() polling fallback)."""
    src = Path(__file__).resolve().parents[1] / "src"
    script = textwrap.dedent(
        f"""
        import os, sys, time
        sys.path.insert(0, {str(src)!r})
        import priming.exec as pe
        if not {use_pdeathsig!r}:
            pe.sys = type("S", (), {{"platform": "fallback"}})()  # skip prctl
        def busy(_):
            time.sleep(60)
        def pid(_):
            return os.getpid()
        pool = pe.process_pool(2)
        pids = {{pool.submit(pid, i).result() for i in range(8)}}
        for i in range(2):
            pool.submit(busy, i)
        print(" ".join(map(str, sorted(pids))), flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert pids, "the child printed no worker pids"
        assert all(_alive(p) for p in pids)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    left = [p for p in pids if _alive(p)]
    for p in left:  # do not leak them even when the test fails
        os.kill(p, signal.SIGKILL)
    assert not left, f"workers {left} outlived their SIGKILLed parent"


def test_process_pool_workers_know_their_parent():
    with process_pool(1) as pool:
        assert pool.submit(os.getppid).result() == os.getpid()
