"""The one place that draws progress bars: library progress events → tqdm bars on stderr.

Every command builds its callback with :func:`progress_callback` (``None`` when the user
asked for ``--no-progress`` / ``-q``, or when tqdm is absent) and passes it to the
library as ``progress=``.
"""

from __future__ import annotations

import sys

from priming.progress import ProgressCallback, ProgressEvent

__all__ = ["progress_callback", "TqdmProgress"]


class TqdmProgress:
    """A callable that keeps one tqdm bar per running task."""

    def __init__(self, tqdm_cls) -> None:
        self._tqdm = tqdm_cls
        self._bars: dict[int, object] = {}

    def __call__(self, ev: ProgressEvent) -> None:
        bar = self._bars.get(ev.task_id)
        if ev.state == "start" or bar is None:
            if ev.state == "end":
                return
            bar = self._tqdm(
                total=ev.total,
                desc=ev.task,
                unit=ev.unit[:-1] if ev.unit.endswith("s") else ev.unit,
                file=sys.stderr,
                leave=False,
                dynamic_ncols=True,
            )
            self._bars[ev.task_id] = bar
        if ev.total != bar.total:
            bar.total = ev.total
        bar.n = ev.done
        if ev.state == "end":
            bar.close()
            self._bars.pop(ev.task_id, None)
        else:
            bar.refresh()


def progress_callback(enabled: bool = True) -> ProgressCallback | None:
    """A bar-drawing callback, or None when disabled or tqdm is not installed."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return TqdmProgress(tqdm)
