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
    "open_executor",
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


def _local(max_workers: int | None, kind: str) -> Executor:
    if max_workers == 1:
        return InlineExecutor()
    if kind == "process":
        return ProcessPoolExecutor(max_workers=max_workers)
    return ThreadPoolExecutor(max_workers=max_workers)


EXECUTORS.register("local", _local)
EXECUTORS.register("inline", lambda max_workers, kind: InlineExecutor())


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
