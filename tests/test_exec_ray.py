"""The Ray backend of the executor seam, on a local Ray started inside the tests.

One local Ray (2 CPUs, no dashboard) serves the whole module; it is started by a
``RayExecutor`` (the path users take) and its teardown checks that the executor that
started Ray also stopped it, and that no process of that Ray outlives it.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from priming.errors import ConfigError, DataError, MissingDependencyError
from priming.exec import InlineExecutor

try:
    import ray
    from ray import cloudpickle
except ImportError:  # the tests below that need ray are skipped
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="ray is not installed (extra priming[ray])")

if ray is not None:
    # the workers cannot import this test module by name: send its functions by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])


# ---------------------------------------------------------------- helpers run remotely


def square_plus(x, k=0):
    return x * x + k


def row_norms(a):
    return np.linalg.norm(a, axis=1)


def fail_with(message):
    raise DataError(message)


def die_once(marker, how, fn, *args):
    """``fn(*args)``; the first attempt (no ``marker`` file yet) kills its own worker
    after the work is done and before the result is returned."""
    result = fn(*args)
    if not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        if how == "exit":
            os._exit(1)
        os.kill(os.getpid(), signal.SIGKILL)
    return result


def count_words_shard(src, dst):
    """A stand-in for per-shard build work: read one input, write one output file
    (temporary file + rename, as our shard writers do), return its summary."""
    counts: dict[str, int] = {}
    for line in Path(src).read_text().splitlines():
        for w in line.split():
            counts[w] = counts.get(w, 0) + 1
    tmp = Path(str(dst) + ".tmp")
    tmp.write_text(json.dumps(counts, sort_keys=True))
    os.replace(tmp, dst)
    return {"name": Path(src).name, "words": sum(counts.values())}


class Searcher:
    """An actor's state: one SQLite connection opened once, then queried many times."""

    def __init__(self, db):
        self.conn = sqlite3.connect(db)
        self.pid = os.getpid()
        self.calls = 0

    def count(self, word):
        self.calls += 1
        (n,) = self.conn.execute(
            "SELECT COUNT(*) FROM captions WHERE text LIKE ?", (f"%{word}%",)
        ).fetchone()
        return n

    def state(self):
        return self.pid, self.calls

    def die_once(self, marker):
        if not os.path.exists(marker):
            Path(marker).write_text("x")
            os._exit(1)
        return self.count("dog")


# ---------------------------------------------------------------- the local Ray


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":  # a zombie is dead, only not yet collected
            tree.setdefault(int(fields[1]), []).append(int(d))
    return tree


def _descendants(pid: int) -> set[int]:
    tree, out, todo = _children(), set(), [pid]
    while todo:
        for c in tree.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _alive(pids: set[int]) -> set[int]:
    live = set()
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            live.add(p)
    return live


@pytest.fixture(scope="module")
def cluster():
    if ray is None:
        pytest.skip("ray is not installed (extra priming[ray])")
    from priming.exec.ray import RayExecutor

    if ray.is_initialized():
        pytest.skip("a Ray runtime is already running in this process")
    before = _descendants(os.getpid())
    owner = RayExecutor(local_num_cpus=2)  # starts the local Ray
    assert ray.is_initialized()
    assert owner.submit(square_plus, 3).result(timeout=120) == 9  # workers are up
    ray_pids = _descendants(os.getpid()) - before
    assert ray_pids, "a local Ray runs as child processes of the driver"
    yield owner
    owner.shutdown()
    assert not ray.is_initialized(), "the executor that started Ray stops it"
    deadline = time.monotonic() + 30
    while _alive(ray_pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(ray_pids), f"Ray processes outlived shutdown: {sorted(_alive(ray_pids))}"


@pytest.fixture
def ex(cluster):
    from priming.exec.ray import RayExecutor

    e = RayExecutor()
    yield e
    e.shutdown()


# ---------------------------------------------------------------- without ray


def test_missing_ray_names_the_extra(monkeypatch):
    from priming.exec import ray as ray_backend

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingDependencyError, match=r"priming\[ray\]"):
        ray_backend.RayExecutor()
    with pytest.raises(MissingDependencyError, match=r"priming\[ray\]"):
        ray_backend.ray_executor(2, "process")
    with pytest.raises(MissingDependencyError, match=r"priming\[ray\]"):
        ray_backend.ActorPoolExecutor(dict)


def test_bad_parameters_are_refused_before_ray_starts():
    from priming.exec.ray import ActorPoolExecutor, RayExecutor

    with pytest.raises(ConfigError, match="num_cpus"):
        RayExecutor(num_cpus=0)
    with pytest.raises(ConfigError, match="max_retries"):
        RayExecutor(max_retries=1.5)
    with pytest.raises(ConfigError, match="max_workers"):
        RayExecutor(max_workers=0)
    with pytest.raises(ConfigError, match="n_actors"):
        ActorPoolExecutor(dict, n_actors=0)
    with pytest.raises(ConfigError, match="factory"):
        ActorPoolExecutor("dict")


# ---------------------------------------------------------------- tasks


@needs_ray
def test_results_equal_the_inline_executor(ex):
    xs = list(range(25))
    assert list(ex.map(square_plus, xs)) == list(InlineExecutor().map(square_plus, xs))
    assert ex.submit(square_plus, 4, k=1).result() == 17  # keyword arguments travel
    a = np.random.default_rng(0).normal(size=(300, 16))
    np.testing.assert_array_equal(ex.submit(row_norms, a).result(), row_norms(a))


@needs_ray
def test_errors_propagate_as_the_raised_exception(ex):
    fut = ex.submit(fail_with, "shard 3 is broken")
    with pytest.raises(DataError, match="shard 3 is broken") as info:
        fut.result(timeout=120)
    assert type(info.value) is DataError  # the remote exception itself, not a wrapper
    assert isinstance(fut.exception(), DataError)
    # and the executor keeps working afterwards
    assert ex.submit(square_plus, 2).result() == 4


@needs_ray
@pytest.mark.parametrize("how", ["kill", "exit"])
def test_a_killed_worker_is_retried_and_the_result_is_right(ex, tmp_path, how):
    marker = tmp_path / "attempted"
    assert ex.submit(die_once, str(marker), how, square_plus, 7, 1).result(timeout=120) == 50
    assert marker.is_file()  # the first attempt did die


@needs_ray
def test_no_retries_means_the_death_is_reported(cluster, tmp_path):
    from priming.exec.ray import RayExecutor

    with RayExecutor(max_retries=0) as ex0:
        fut = ex0.submit(die_once, str(tmp_path / "m"), "kill", square_plus, 1)
        with pytest.raises(ray.exceptions.RayError):
            fut.result(timeout=120)


@needs_ray
def test_shutdown_of_a_borrowed_runtime_leaves_it_running(cluster):
    from priming.exec import open_executor
    from priming.exec.ray import RayExecutor, ray_executor

    ex = RayExecutor(max_workers=2)  # a cap on tasks in flight: submit waits for a slot
    assert list(ex.map(square_plus, range(6))) == [0, 1, 4, 9, 16, 25]
    ex.shutdown()
    assert ray.is_initialized()
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square_plus, 1)
    # the registry factory's signature, used by open_executor, on the same runtime
    factory_ex = ray_executor(4, "thread")
    with open_executor(factory_ex) as e:  # a caller's executor is left running ...
        assert e.submit(square_plus, 5).result() == 25
    factory_ex.shutdown(wait=True, cancel_futures=True)  # ... and shut down by its owner
    assert ray.is_initialized()


@needs_ray
def test_per_shard_work_survives_a_killed_worker_and_stays_exact(ex, tmp_path):
    """A local simulation of a corpus build: one task per input shard, each writing its
    output file; a worker killed after writing is re-run and the outputs are exactly
    those of the inline run (no duplicate, no missing)."""
    rng = np.random.default_rng(1)
    words = ["dog", "cat", "bird", "fish"]
    srcs = []
    for s in range(4):
        p = tmp_path / "in" / f"s{s}.txt"
        p.parent.mkdir(exist_ok=True)
        p.write_text("\n".join(" ".join(rng.choice(words, 5)) for _ in range(40)))
        srcs.append(p)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    inline = [count_words_shard(p, tmp_path / "a" / p.name) for p in srcs]
    futs = [
        ex.submit(
            die_once, str(tmp_path / "dead"), "kill", count_words_shard, p, tmp_path / "b" / p.name
        )
        if i == 2
        else ex.submit(count_words_shard, p, tmp_path / "b" / p.name)
        for i, p in enumerate(srcs)
    ]
    assert [f.result(timeout=120) for f in futs] == inline
    assert (tmp_path / "dead").is_file()
    assert sorted(os.listdir(tmp_path / "b")) == sorted(os.listdir(tmp_path / "a"))
    for p in srcs:
        assert (tmp_path / "b" / p.name).read_text() == (tmp_path / "a" / p.name).read_text()


class _DieOnceExecutor:
    """Wraps every submitted call so that the chosen call kills its worker once."""

    def __init__(self, inner, marker, victim=1):
        self.inner, self.marker, self.victim, self.n = inner, marker, victim, 0

    def submit(self, fn, *args, **kwargs):
        self.n += 1
        if self.n == self.victim + 1:
            return self.inner.submit(die_once, self.marker, "kill", fn, *args)
        return self.inner.submit(fn, *args, **kwargs)


@needs_ray
def test_build_corpus_on_ray_equals_the_inline_build(ex, tmp_path):
    from priming.corpus import build_corpus, open_corpus

    if "executor" not in inspect.signature(build_corpus).parameters:
        pytest.skip("build_corpus does not take executor= on this branch yet")
    from concurrent.futures import Executor

    from corpus_helpers import write_laion

    for s in range(3):
        caps = [f"item {i} {'dog' if (i + s) % 3 == 0 else 'cat'}" for i in range(40)]
        write_laion(tmp_path / "in" / f"m{s}.parquet", caps)
    pattern = str(tmp_path / "in" / "*.parquet")
    a = open_corpus(build_corpus(pattern, out=tmp_path / "a", executor="inline"))

    class Killing(Executor):  # the second shard's worker dies after writing it
        def __init__(self):
            self.w = _DieOnceExecutor(ex, str(tmp_path / "dead"))

        def submit(self, fn, /, *args, **kwargs):
            return self.w.submit(fn, *args, **kwargs)

    b = open_corpus(build_corpus(pattern, out=tmp_path / "b", workers=3, executor=Killing()))
    assert (tmp_path / "dead").is_file()
    assert b.n_rows == a.n_rows == 120
    assert b.rows(np.arange(b.n_rows)).to_pylist() == a.rows(np.arange(a.n_rows)).to_pylist()
    assert a.fingerprint == b.fingerprint
    assert b.search_captions({"d": ["dog"]}).counts == a.search_captions({"d": ["dog"]}).counts


# ---------------------------------------------------------------- actors


@needs_ray
def test_actor_pool_keeps_state_and_answers_like_direct_sqlite(cluster, tmp_path):
    from priming.exec.ray import ActorPoolExecutor

    db = tmp_path / "captions.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE captions (text TEXT)")
        conn.executemany(
            "INSERT INTO captions VALUES (?)",
            [(f"a {'dog' if i % 3 else 'cat'} photo {i}",) for i in range(90)],
        )
    direct = Searcher(str(db))
    words = ["dog", "cat", "photo", "bird", "1"]
    with ActorPoolExecutor(Searcher, n_actors=2, args=(str(db),)) as pool:
        assert pool.n_actors == 2
        assert list(pool.map("count", words)) == [direct.count(w) for w in words]
        assert pool.submit_to(1, "count", "dog").result() == 60
        states = [f.result() for f in pool.broadcast("state")]
        assert len({pid for pid, _ in states}) == 2  # two actor processes
        assert sum(calls for _, calls in states) == len(words) + 1  # objects built once
        with pytest.raises(AttributeError):
            pool.submit("no_such_method").result(timeout=120)
        with pytest.raises(ConfigError, match="actor index"):
            pool.submit_to(2, "count", "dog")


@needs_ray
def test_a_dead_actor_is_rebuilt_and_its_call_rerun(cluster, tmp_path):
    from priming.exec.ray import ActorPoolExecutor

    db = tmp_path / "c.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE captions (text TEXT)")
        conn.executemany("INSERT INTO captions VALUES (?)", [("dog",), ("cat",), ("dog",)])
    with ActorPoolExecutor(Searcher, n_actors=1, args=(str(db),)) as pool:
        assert pool.submit("die_once", str(tmp_path / "m")).result(timeout=120) == 2
        assert (tmp_path / "m").is_file()
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit("count", "dog")


def test_cli_corpus_build_and_search_with_executor_ray(cluster, tmp_path, capsys):
    """`priming corpus build|search --executor ray` joins the running Ray (the CLI's name
    goes through the executor registry) and gives the corpus the local build gives."""
    from corpus_helpers import write_laion

    from priming.cli import main
    from priming.corpus import open_corpus

    for s in range(2):
        caps = [f"item {i} {'dog' if (i + s) % 3 == 0 else 'cat'}" for i in range(30)]
        write_laion(tmp_path / "in" / f"m{s}.parquet", caps)
    pattern = str(tmp_path / "in" / "*.parquet")
    assert main(["corpus", "build", "--metadata", pattern, "--out", str(tmp_path / "a"),
                 "--no-progress"]) == 0  # fmt: skip
    assert main(["corpus", "build", "--metadata", pattern, "--out", str(tmp_path / "b"),
                 "--executor", "ray", "--no-progress"]) == 0  # fmt: skip
    a, b = open_corpus(tmp_path / "a"), open_corpus(tmp_path / "b")
    assert a.fingerprint == b.fingerprint and a.n_rows == b.n_rows == 60
    capsys.readouterr()
    assert main(["corpus", "search", str(tmp_path / "b"), "dog", "--executor", "ray"]) == 0
    ray_out = capsys.readouterr().out
    assert main(["corpus", "search", str(tmp_path / "a"), "dog"]) == 0
    assert capsys.readouterr().out == ray_out and "dog" in ray_out
    assert ray.is_initialized()  # the borrowed runtime is left running


def test_cli_ray_address_without_ray_executor_is_a_usage_error(tmp_path, capsys):
    from priming.cli import main

    rc = main(["corpus", "search", str(tmp_path), "dog", "--ray-address", "auto"])
    err = capsys.readouterr().err
    assert rc == 2 and "--ray-address needs --executor ray" in err and "Traceback" not in err
