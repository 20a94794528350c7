"""Progress reporting for the library: a callback, never a drawn bar.

A long step calls ``progress(event)`` with a :class:`ProgressEvent`; the CLI turns
events into bars (``priming.cli`` draws them), a notebook or a service can log them, and
``None`` (the default everywhere) reports nothing. Library code uses :func:`track`::

    with track(progress, "embed captions", total=len(rows), unit="rows") as t:
        for batch in batches:
            ...
            t.advance(len(batch))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["ProgressEvent", "ProgressCallback", "Tracker", "track"]


@dataclass(frozen=True)
class ProgressEvent:
    """One report: ``done`` of ``total`` (None: unknown) ``unit`` of task ``task``.

    ``state`` is ``"start"``, ``"advance"`` or ``"end"``; ``task_id`` tells concurrent
    tasks with the same name apart."""

    task: str
    done: int
    total: int | None
    unit: str
    state: str
    task_id: int


ProgressCallback = Callable[[ProgressEvent], None]


class Tracker:
    """Counts the work of one task and forwards it to a callback (or nowhere)."""

    _next_id = 0

    def __init__(self, callback: ProgressCallback | None, task: str, total: int | None, unit: str):
        self.callback = callback
        self.task = task
        self.total = None if total is None else int(total)
        self.unit = unit
        self.done = 0
        Tracker._next_id += 1
        self.task_id = Tracker._next_id

    def _emit(self, state: str) -> None:
        if self.callback is not None:
            self.callback(
                ProgressEvent(self.task, self.done, self.total, self.unit, state, self.task_id)
            )

    def start(self) -> Tracker:
        self._emit("start")
        return self

    def advance(self, n: int = 1) -> None:
        self.done += int(n)
        self._emit("advance")

    def set_total(self, total: int | None) -> None:
        self.total = None if total is None else int(total)
        self._emit("advance")

    def close(self) -> None:
        self._emit("end")


@contextlib.contextmanager
def track(
    progress: ProgressCallback | None, task: str, total: int | None = None, unit: str = "items"
) -> Iterator[Tracker]:
    """Report a task to ``progress`` from start to end (also when it fails)."""
    t = Tracker(progress, task, total, unit).start()
    try:
        yield t
    finally:
        t.close()
