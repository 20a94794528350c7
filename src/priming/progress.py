"""Progress reporting for the library: a callback, never a drawn bar.

A long step calls ``progress(event)`` with a :class:`ProgressEvent`; the CLI turns
events into bars (``priming.cli`` draws them), a notebook or a service can log them, and
``None`` (the default everywhere) reports nothing. Library code uses :func:`track`::

    with track(progress, "embed captions", total=len(rows), unit="rows") as t:
        for batch in batches:
            ...
            t.advance(len(batch))

Public functions take ``progress=`` in any form :func:`as_callback` accepts and turn it
into a callback (or None) with it: the one adapter.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from priming.errors import ConfigError

__all__ = ["ProgressEvent", "ProgressCallback", "Tracker", "as_callback", "track"]


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


def _required_positional(fn: Callable[..., Any]) -> int | None:
    """How many positional parameters ``fn`` requires (None: no signature to read)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return sum(
        1
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    )


def as_callback(progress: Any) -> ProgressCallback | None:
    """What a caller passed as ``progress=`` as a :data:`ProgressCallback`, or None.

    - ``None``, ``False`` and ``True``: None (report nothing; the library never draws a
      bar, ``priming.cli.progress_bars.progress_callback`` builds a drawing callback);
    - a callable taking one :class:`ProgressEvent`: returned as is;
    - a legacy ``progress(done, total)`` callable (two required positional
      parameters): wrapped, called with each event's ``done`` and ``total``.

    Anything else is a :class:`~priming.errors.ConfigError`.
    """
    if progress is None or isinstance(progress, bool):
        return None
    if not callable(progress):
        raise ConfigError(
            f"progress must be a ProgressCallback, a (done, total) callable or None, "
            f"got {progress!r}"
        )
    if _required_positional(progress) == 2:
        legacy = progress

        def forward(ev: ProgressEvent) -> None:
            legacy(ev.done, ev.total)

        return forward
    return progress


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
    progress: Any, task: str, total: int | None = None, unit: str = "items"
) -> Iterator[Tracker]:
    """Report a task to ``progress`` (anything :func:`as_callback` accepts) from start
    to end (also when it fails)."""
    t = Tracker(as_callback(progress), task, total, unit).start()
    try:
        yield t
    finally:
        t.close()
