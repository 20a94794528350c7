"""The Ray backend behind the executor seam (extra ``priming[ray]``).

:class:`RayExecutor` is a :class:`concurrent.futures.Executor`: every ``submit`` becomes
one Ray remote task, and its result comes back through an ordinary
:class:`concurrent.futures.Future`, so any function that takes ``executor=`` runs on a
Ray cluster unchanged (``executor=RayExecutor(address=...)`` or ``executor="ray"`` once
the name is registered). The submitted function and its arguments travel by
(cloud)pickle to the workers: they must not hold open files, SQLite connections or
locks; paths to shared storage travel well.

:class:`ActorPoolExecutor` keeps a few long-lived Ray actors, each holding one object
built once (for example a searcher keeping its SQLite connections open); calls name a
method of that object.

Where the cluster comes from: an ``address`` (or ``RAY_ADDRESS``) connects to a running
cluster; a Ray already initialised in this process is used as it is; otherwise a local
Ray is started (``num_cpus`` CPUs, no dashboard, worker logs kept out of the driver's
output) and stopped again when the last executor that uses it shuts down. A cluster we
did not start is never stopped, only disconnected from when we connected to it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future
from concurrent.futures import wait as wait_futures
from typing import Any

from priming._optional import require
from priming.errors import ConfigError

__all__ = ["ActorPoolExecutor", "RayExecutor", "ray_executor"]

log = logging.getLogger(__name__)

#: CPUs a task or actor asks for by default: fractional, so that a 2-core machine runs
#: 4 at a time and a 2-actor pool never waits for a core held by the driver's tasks
DEFAULT_NUM_CPUS = 0.5
#: re-runs of a task whose worker process died (killed, out of memory, node lost)
DEFAULT_MAX_RETRIES = 3


# ---------------------------------------------------------------- the Ray runtime


class _Session:
    """Which Ray runtime our executors use, and whether we must stop it at the end.

    ``owned``: we called ``ray.init`` (a local cluster we started, or a connection we
    opened), so the last of our executors to shut down calls ``ray.shutdown``. A runtime
    someone else initialised is used and left alone."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.owned = False

    def acquire(self, address: str | None, num_cpus: float | None) -> Any:
        ray = require("ray", extra="ray")
        with self.lock:
            if ray.is_initialized():
                if self.users == 0:  # initialised by the caller, not by us
                    self.owned = False
            else:
                _init(ray, address, num_cpus)
                self.owned = True
            self.users += 1
            return ray

    def release(self) -> None:
        ray = require("ray", extra="ray")
        with self.lock:
            self.users = max(0, self.users - 1)
            if self.users == 0 and self.owned:
                self.owned = False
                if ray.is_initialized():
                    log.info("stopping the Ray runtime this process started")
                    ray.shutdown()


_SESSION = _Session()


def _init(ray: Any, address: str | None, num_cpus: float | None) -> None:
    address = address or os.environ.get("RAY_ADDRESS") or None
    common = {"log_to_driver": False, "configure_logging": False}
    if address:
        if num_cpus is not None:
            raise ConfigError(
                f"num_cpus={num_cpus!r} only sizes a local Ray; the cluster at "
                f"{address!r} has its own resources (leave num_cpus unset)"
            )
        log.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, **common)
        return
    n = (os.cpu_count() or 1) if num_cpus is None else num_cpus
    log.info("starting a local Ray with %s CPUs", n)
    ray.init(num_cpus=n, include_dashboard=False, **common)


def _check_resources(num_cpus: float, num_gpus: float, max_retries: int) -> None:
    if not (isinstance(num_cpus, (int, float)) and num_cpus > 0):
        raise ConfigError(f"num_cpus per task must be a number > 0, got {num_cpus!r}")
    if not (isinstance(num_gpus, (int, float)) and num_gpus >= 0):
        raise ConfigError(f"num_gpus per task must be a number >= 0, got {num_gpus!r}")
    if not (isinstance(max_retries, int) and max_retries >= -1):
        raise ConfigError(f"max_retries must be an int >= -1 (-1: forever), got {max_retries!r}")


# ---------------------------------------------------------------- futures


def _unwrap(ray: Any, exc: BaseException) -> BaseException:
    """The exception the remote code raised (a ``RayTaskError`` carries it as ``cause``),
    with the remote traceback attached as a note; Ray's own errors (a worker that died
    more often than allowed, a cancelled task) pass through."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            remote_tb = vars(exc).get("traceback_str")
            if remote_tb and hasattr(cause, "add_note"):
                cause.add_note(f"raised in a Ray worker:\n{remote_tb}")
            return cause
    return exc


class _RayFuture(Future):
    """A Future fed by one Ray object ref; cancelling it also cancels the Ray task."""

    def __init__(self, ray: Any, ref: Any) -> None:
        super().__init__()
        self._ray = ray
        self._ref = ref

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        try:
            self._ray.cancel(self._ref)
        except Exception:  # an actor task, or already finished: nothing left to stop
            log.debug("could not cancel Ray task", exc_info=True)
        return True


def _future_of(ray: Any, ref: Any, on_done: Callable[[Future], None]) -> _RayFuture:
    fut = _RayFuture(ray, ref)
    fut.add_done_callback(on_done)

    def transfer(src: Future) -> None:
        if not fut.set_running_or_notify_cancel():
            return  # cancelled by the caller meanwhile
        exc = src.exception()
        if exc is None:
            fut.set_result(src.result())
            return
        try:
            exc = _unwrap(ray, exc)
        except Exception:  # never leave the future unresolved
            log.debug("could not unwrap a Ray error", exc_info=True)
        fut.set_exception(exc)

    ref.future().add_done_callback(transfer)
    return fut


class _Outstanding:
    """The futures an executor handed out and that have not finished yet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: set[Future] = set()

    def add(self, fut: Future) -> None:
        with self._lock:
            self._futures.add(fut)

    def discard(self, fut: Future) -> None:
        with self._lock:
            self._futures.discard(fut)

    def snapshot(self) -> list[Future]:
        with self._lock:
            return list(self._futures)

    def finish(self, wait: bool, cancel: bool, release: Callable[[], None]) -> None:
        """Cancel (if asked) what has not started, wait (if asked), then ``release``;
        without ``wait`` the release happens in the background once all is done."""
        if cancel:
            for f in self.snapshot():
                f.cancel()
        if wait or not self.snapshot():
            wait_futures(self.snapshot())
            release()
            return

        def later() -> None:
            wait_futures(self.snapshot())
            release()

        threading.Thread(target=later, name="ray-executor-release", daemon=True).start()


# ---------------------------------------------------------------- tasks


def _call(fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """What each Ray task runs: the submitted call, as it was submitted."""
    return fn(*args, **kwargs)


class RayExecutor(Executor):
    """Run each submitted call as a Ray remote task.

    Parameters
    ----------
    address : str, optional
        A running cluster (``"ray://head:10001"``, ``"head:6379"`` or ``"auto"``); default
        ``RAY_ADDRESS``, else a Ray already initialised here, else a new local one.
    num_cpus : float
        CPUs each task asks for (default 0.5: fractional, so small machines run 2 tasks
        per core and long tasks never starve each other).
    num_gpus : float
        GPUs each task asks for (default 0).
    max_retries : int
        Times a task is re-run when its worker process dies (-1: forever). Exceptions
        raised by the function itself are not retried unless ``retry_exceptions``.
    retry_exceptions : bool
        Also re-run a task that raised.
    max_workers : int, optional
        At most this many tasks in flight (``submit`` blocks for a free slot). Default:
        no cap; Ray's scheduler runs as many as the cluster's CPUs allow.
    local_num_cpus : float, optional
        CPUs of a local Ray started by this executor (default: all of this machine's).
    runtime_env : dict, optional
        Ray runtime environment of the tasks (e.g. ``{"env_vars": {...}}``).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: float = DEFAULT_NUM_CPUS,
        num_gpus: float = 0,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_exceptions: bool = False,
        max_workers: int | None = None,
        local_num_cpus: float | None = None,
        runtime_env: dict | None = None,
    ) -> None:
        _check_resources(num_cpus, num_gpus, max_retries)
        if max_workers is not None and not (isinstance(max_workers, int) and max_workers >= 1):
            raise ConfigError(f"max_workers must be an int >= 1 or None, got {max_workers!r}")
        self._ray = _SESSION.acquire(address, local_num_cpus)
        options: dict[str, Any] = {
            "num_cpus": num_cpus,
            "num_gpus": num_gpus,
            "max_retries": max_retries,
            "retry_exceptions": bool(retry_exceptions),
        }
        if runtime_env:
            options["runtime_env"] = runtime_env
        self._remote = self._ray.remote(_call).options(**options)
        self._slots = threading.BoundedSemaphore(max_workers) if max_workers else None
        self._outstanding = _Outstanding()
        self._shutdown_lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if not callable(fn):
            raise ConfigError(f"submit needs a callable, got {type(fn).__name__}")
        with self._shutdown_lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        if self._slots is not None:
            self._slots.acquire()
        try:
            ref = self._remote.remote(fn, args, kwargs)
        except BaseException:
            if self._slots is not None:
                self._slots.release()
            raise
        fut = _future_of(self._ray, ref, self._done)
        self._outstanding.add(fut)
        return fut

    def _done(self, fut: Future) -> None:
        self._outstanding.discard(fut)
        if self._slots is not None:
            self._slots.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._shutdown_lock:
            if self._shutdown:
                return
            self._shutdown = True
        self._outstanding.finish(wait, cancel_futures, _SESSION.release)


def ray_executor(max_workers: int | None, kind: str) -> RayExecutor:
    """The registry factory behind ``executor="ray"``.

    ``max_workers`` is the caller's local sizing (CPUs of the driver machine) and is not
    used as a cap: on a cluster Ray's scheduler decides how many tasks run. ``kind``
    ("process" or "thread") makes no difference either: every call becomes a Ray task.
    The address comes from ``RAY_ADDRESS``; to name one, create ``RayExecutor(address)``
    and pass it as ``executor=``.
    """
    del max_workers, kind
    return RayExecutor()


# ---------------------------------------------------------------- actors


class _Holder:
    """The body of each pool actor: one object, built once, whose methods are called."""

    def __init__(self, factory: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        self.obj = factory(*args, **kwargs)

    def call(self, method: str, args: tuple, kwargs: dict) -> Any:
        return getattr(self.obj, method)(*args, **kwargs)


class ActorPoolExecutor:
    """A few long-lived Ray actors, each holding ``factory(*args, **kwargs)`` built once.

    ``submit(method, *a, **kw)`` calls ``obj.method(*a, **kw)`` on the actor with the
    fewest calls in flight and returns a :class:`concurrent.futures.Future`;
    ``submit_to(i, ...)`` picks actor ``i`` (e.g. the one holding shard ``i``);
    ``broadcast(...)`` calls every actor once. Calls to one actor run one at a time, in
    the order submitted. An actor whose process dies is rebuilt (``max_restarts``) and
    its interrupted call re-run (``max_task_retries``).

    Not an ``Executor`` on purpose: its ``submit`` takes a method name, not a function,
    so it cannot be passed where ``executor=`` is expected by mistake.
    """

    def __init__(
        self,
        factory: Callable[..., Any],
        n_actors: int = 2,
        *,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        num_cpus: float = DEFAULT_NUM_CPUS,
        num_gpus: float = 0,
        max_restarts: int = 1,
        max_task_retries: int = 1,
        address: str | None = None,
        local_num_cpus: float | None = None,
    ) -> None:
        if not callable(factory):
            raise ConfigError(f"factory must be callable, got {type(factory).__name__}")
        if not (isinstance(n_actors, int) and n_actors >= 1):
            raise ConfigError(f"n_actors must be an int >= 1, got {n_actors!r}")
        _check_resources(num_cpus, num_gpus, max_task_retries)
        if not (isinstance(max_restarts, int) and max_restarts >= -1):
            raise ConfigError(f"max_restarts must be an int >= -1, got {max_restarts!r}")
        self._ray = _SESSION.acquire(address, local_num_cpus)
        cls = self._ray.remote(_Holder).options(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            max_restarts=max_restarts,
            max_task_retries=max_task_retries,
        )
        self._actors = [
            cls.remote(factory, tuple(args), dict(kwargs or {})) for _ in range(n_actors)
        ]
        self._load = [0] * n_actors
        self._lock = threading.Lock()
        self._outstanding = _Outstanding()
        self._shutdown = False

    @property
    def n_actors(self) -> int:
        return len(self._actors)

    def submit_to(self, index: int, method: str, /, *args: Any, **kwargs: Any) -> Future:
        """Call ``method`` on actor ``index`` (0 ≤ index < n_actors)."""
        if not isinstance(method, str) or not method:
            raise ConfigError(f"method must be a method name (str), got {method!r}")
        if not (isinstance(index, int) and 0 <= index < len(self._actors)):
            raise ConfigError(f"actor index must be in 0..{len(self._actors) - 1}, got {index!r}")
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new calls after shutdown")
            self._load[index] += 1
        ref = self._actors[index].call.remote(method, args, kwargs)

        def done(fut: Future) -> None:
            self._outstanding.discard(fut)
            with self._lock:
                self._load[index] -= 1

        fut = _future_of(self._ray, ref, done)
        self._outstanding.add(fut)
        return fut

    def submit(self, method: str, /, *args: Any, **kwargs: Any) -> Future:
        """Call ``method`` on the least busy actor."""
        with self._lock:
            index = min(range(len(self._load)), key=self._load.__getitem__)
        return self.submit_to(index, method, *args, **kwargs)

    def broadcast(self, method: str, /, *args: Any, **kwargs: Any) -> list[Future]:
        """Call ``method`` once on every actor; the futures in actor order."""
        return [self.submit_to(i, method, *args, **kwargs) for i in range(len(self._actors))]

    def map(self, method: str, *iterables: Iterable[Any]) -> Iterator[Any]:
        """``obj.method(*items)`` for each item tuple, spread over the actors; results in
        input order."""
        futures = [self.submit(method, *items) for items in zip(*iterables)]
        return (f.result() for f in futures)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the actors (after their calls finished when ``wait``)."""
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True

        def release() -> None:
            for actor in self._actors:
                try:
                    self._ray.kill(actor)
                except Exception:  # already gone
                    log.debug("could not kill actor", exc_info=True)
            _SESSION.release()

        self._outstanding.finish(wait, cancel_futures, release)

    def __enter__(self) -> ActorPoolExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True)
