"""The executor seam: where work fans out.

Every function that fans work out (corpus build, corpus embed, caption search over
shards, k-NN over embedding shards, sweeps) takes ``executor=``: ``None`` or a name
from :data:`EXECUTORS` (``"local"``: today's in-process behaviour — a process or thread
pool as the function prefers; ``"inline"``: run in the calling thread, one by one), or
any :class:`concurrent.futures.Executor` the caller owns (then the caller shuts it down).
A distributed backend (Ray) registers itself here as another name.

Functions use :func:`open_executor`::

    with open_executor(executor, max_workers=n, kind="process") as ex:
        futures = [ex.submit(work, item) for item in items]
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import (
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
)
from typing import Any

from priming.errors import ConfigError
from priming.registry import Registry

__all__ = [
    "EXECUTORS",
    "ExecutorSpec",
    "InlineExecutor",
    "die_with_parent",
    "open_executor",
    "process_pool",
    "register_executor",
]

#: what ``executor=`` accepts
ExecutorSpec = None | str | Executor

#: name -> factory(max_workers: int | None, kind: "process" | "thread") -> Executor
EXECUTORS: Registry[Callable[[int | None, str], Executor]] = Registry("executor")


class InlineExecutor(Executor):
    """Runs each submitted call at once in the calling thread (no parallelism)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        f: Future = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # delivered through the future, like a pool does
            f.set_exception(exc)
        return f


_PR_SET_PDEATHSIG = 1
_PARENT_POLL_S = 0.5


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(_PARENT_POLL_S)
        if os.getppid() != parent:
            os._exit(1)  # the parent is gone: nothing would collect our results


def die_with_parent(parent: int | None = None) -> None:
    """Make the calling (worker) process exit when its parent process dies.

    A process-pool initializer: on Linux the kernel sends SIGKILL at the parent's death
    (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon thread also polls ``os.getppid()``
    and exits once the parent is gone (the portable fallback). ``parent``: the pid the
    worker was started by (default: its current parent).
    """
    parent = os.getppid() if parent is None else int(parent)
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no usable libc
            pass
    if os.getppid() != parent:  # the parent died before the guard was in place
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _mp_context():
    import multiprocessing as mp

    # fork needs no ``if __name__ == "__main__"`` guard in the caller's script; elsewhere
    # (macOS, Windows) spawn is the only safe choice
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def process_pool(max_workers: int | None = None) -> ProcessPoolExecutor:
    """A local process pool whose workers exit when this process dies (even by SIGKILL)."""
    return ProcessPoolExecutor(
        max_workers=max_workers,
        mp_context=_mp_context(),
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )


def _local(max_workers: int | None, kind: str) -> Executor:
    if max_workers == 1:
        return InlineExecutor()
    if kind == "process":
        return process_pool(max_workers)
    return ThreadPoolExecutor(max_workers=max_workers)


EXECUTORS.register("local", _local)
EXECUTORS.register("inline", lambda max_workers, kind: InlineExecutor())


def _ray(max_workers: int | None, kind: str) -> Executor:
    from priming.exec.ray import ray_executor  # lazy: ray is an optional extra (priming[ray])

    return ray_executor(max_workers, kind)


EXECUTORS.register("ray", _ray)


def register_executor(name: str, factory: Callable[[int | None, str], Executor]) -> None:
    """Make ``executor=name`` (and ``--executor name``) create executors with ``factory``."""
    EXECUTORS.register(name, factory)


@contextlib.contextmanager
def open_executor(
    executor: ExecutorSpec, max_workers: int | None = None, kind: str = "process"
) -> Iterator[Executor]:
    """The executor to use for one fan-out: one we create (and shut down afterwards) from
    a name, or the caller's own (left running)."""
    if kind not in ("process", "thread"):
        raise ConfigError(f"executor kind must be 'process' or 'thread', got {kind!r}")
    if isinstance(executor, Executor):
        yield executor
        return
    if executor is not None and not isinstance(executor, str):
        raise ConfigError(
            f"executor must be None, a name ({', '.join(EXECUTORS.names())}) or a "
            f"concurrent.futures.Executor, got {type(executor).__name__}"
        )
    ex = EXECUTORS.get(executor or "local")(max_workers, kind)
    try:
        yield ex
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
