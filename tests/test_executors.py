"""Executors: the registry, worker counts, and the serial pool's futures."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
from concurrent import futures

import attrs
import numpy as np
import pytest

import ndframework as ndf


def test_get_executor_by_name():
    assert isinstance(ndf.get_executor("serial"), ndf.SerialExecutor)
    assert ndf.get_executor("threads", workers=3).workers == 3
    assert ndf.get_executor("processes", workers=2) == ndf.ProcessExecutor(2)
    given = ndf.ThreadExecutor(2)
    assert ndf.get_executor(given) is given


def test_an_unknown_executor_lists_the_valid_ones():
    with pytest.raises(ndf.ConfigError, match=r"unknown executor 'mpi'; valid executors: "
                                              r"'dask', 'processes', 'serial', 'threads'"):
        ndf.get_executor("mpi")


@pytest.mark.parametrize("workers", [0, -2, 1.5, "4", True])
def test_bad_worker_counts_are_refused(workers):
    with pytest.raises(ndf.ConfigError, match=r"workers must be a positive integer, got "):
        ndf.ThreadExecutor(workers)
    with pytest.raises(ndf.ConfigError, match=r"workers must be a positive integer"):
        ndf.get_executor("processes", workers=workers)


def test_serial_with_several_workers_is_refused():
    with pytest.raises(ndf.ConfigError, match=r"bad options for the 'serial' executor"):
        ndf.get_executor("serial", workers=4)


def test_unknown_options_are_refused():
    with pytest.raises(ndf.ConfigError, match=r"bad options for the 'threads' executor"):
        ndf.get_executor("threads", cores=4)


def test_a_bad_start_method_lists_the_valid_ones():
    with pytest.raises(ndf.ConfigError, match=r"start_method must be one of .*'spawn'.*got 'clone'"):
        ndf.ProcessExecutor(2, start_method="clone")


def test_default_workers_is_every_cpu_the_process_may_use():
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert ndf.default_workers() == cpus
    assert ndf.ProcessExecutor().workers == ndf.default_workers()
    assert ndf.ThreadExecutor().workers == ndf.default_workers()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_default_workers_follow_the_cpus_the_process_is_allowed(tmp_path):
    # as under Slurm or taskset: one CPU allowed, one worker
    code = ("import os, ndframework as ndf; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "print(ndf.default_workers(), ndf.ProcessExecutor().workers)")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=60)
    assert completed.stdout.split() == ["1", "1"], completed.stderr


def _session():
    return ndf.WorkerSession("a-session", None, None)


def test_the_serial_pool_returns_done_futures_and_refuses_work_once_shut_down():
    pool = ndf.SerialExecutor().start(_session())
    first = pool.submit(pow, 2, 5)
    second = pool.submit(divmod, 1, 0)
    assert first.done() and first.result() == 32
    assert isinstance(second.exception(), ZeroDivisionError)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(pow, 2, 2)


def test_a_process_pool_starts_every_worker_with_its_first_task():
    """Regression: workers started one per submit raced with the pool's handling of a dead
    worker: a worker started as the pool terminated the others escaped, and the pool waited
    for it forever (about one run in eight). Every worker must exist once the first task is
    submitted, and no later submit may start one."""
    pool = ndf.ProcessExecutor(2).start(_session())
    try:
        assert multiprocessing.active_children() == []
        first = pool.submit(os.getpid)
        workers = {process.pid for process in multiprocessing.active_children()}
        assert len(workers) == 2
        pids = {first.result(timeout=60)}
        pids |= {pool.submit(os.getpid).result(timeout=60) for _ in range(8)}
        assert pids <= workers
        assert {process.pid for process in multiprocessing.active_children()} == workers
    finally:
        pool.shutdown(wait=True)


def test_a_thread_pool_shut_down_with_cancel_cancels_queued_work():
    started, gate = threading.Event(), threading.Event()

    def hold():
        started.set()
        return gate.wait(30)

    pool = ndf.ThreadExecutor(1).start(_session())
    running = pool.submit(hold)
    queued = [pool.submit(pow, 2, 2) for _ in range(5)]
    assert started.wait(30)
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert running.result(timeout=60) is True
    assert all(future.cancelled() for future in queued)


# -- the conformance kit, passed by every built-in executor ------------------------------

from ndframework.testing.executors import ExecutorConformance  # noqa: E402


class TestSerialExecutor(ExecutorConformance):
    def make_executor(self):
        return ndf.SerialExecutor()


class TestThreadExecutor(ExecutorConformance):
    def make_executor(self):
        return ndf.ThreadExecutor(2)


class TestProcessExecutor(ExecutorConformance):
    def make_executor(self):
        return ndf.ProcessExecutor(2)


class TestDaskExecutor(ExecutorConformance):
    def make_executor(self):
        return ndf.DaskExecutor(workers=2)


# -- executors published by other packages -------------------------------------------------

_LAB_MODULE = '''
from concurrent import futures

import attrs
import ndframework as ndf

LOADED = []


@attrs.frozen
class LabExecutor(ndf.Executor):
    name = "lab"
    shares_memory = True
    workers: int = 1

    def start(self, session):
        LOADED.append(session.id)
        return futures.ThreadPoolExecutor(self.workers)
'''

_LAB_SCRIPT = '''
import numpy as np
import ndframework as ndf

print(ndf.executor_names())
executor = ndf.get_executor("lab", workers=2)
volume = np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8)
result = ndf.Pipeline(ndf.InMemorySource({"em": volume}), lambda data: int(data["em"].sum()),
                      tiler=ndf.RegularTiler((2, 4, 4)), executor="lab").run()
import lab_executors
print(type(executor).__name__, executor.workers, result.counts.done,
      sum(result.values.values()) == int(volume.sum()), len(lab_executors.LOADED))
try:
    ndf.get_executor("broken")
except ndf.ConfigError as error:
    print(error)
'''


def test_executors_published_as_entry_points_are_found_by_name(tmp_path):
    """A distribution on the path that publishes executors in the ``ndframework.executors``
    group: one that loads, one whose module is missing."""
    site = tmp_path / "site"
    info = site / "lab_executors-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "lab_executors.py").write_text(_LAB_MODULE)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lab-executors\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[ndframework.executors]\nlab = lab_executors:LabExecutor\n"
        "broken = lab_missing:Executor\n")
    environment = dict(os.environ, PYTHONPATH=str(site))
    completed = subprocess.run([sys.executable, "-c", _LAB_SCRIPT], capture_output=True,
                               text=True, timeout=120, env=environment, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    names, run, broken = completed.stdout.strip().splitlines()
    assert names == "('broken', 'dask', 'lab', 'processes', 'serial', 'threads')"
    assert run == "LabExecutor 2 8 True 1"
    assert broken.startswith("the executor 'broken' published by entry point "
                             "'lab_missing:Executor' (group 'ndframework.executors') cannot be "
                             "loaded: ModuleNotFoundError")


def test_registering_an_executor_checks_its_name_and_factory(monkeypatch):
    import ndframework.executors as executors

    monkeypatch.setattr(executors, "_factories", dict(executors._factories))  # leave no trace
    with pytest.raises(ndf.ConfigError, match=r"exists already \(ThreadExecutor\); pass "
                                              r"replace=True"):
        ndf.register_executor("threads", ndf.ProcessExecutor)
    with pytest.raises(ndf.ConfigError, match=r"must be an identifier such as 'slurm_gpu', "
                                              r"got 'my executor'"):
        ndf.register_executor("my executor", ndf.ThreadExecutor)
    with pytest.raises(ndf.ConfigError, match=r"must be callable .* got 3"):
        ndf.register_executor("three", 3)
    ndf.register_executor("not_an_executor", lambda **options: object())
    with pytest.raises(ndf.ConfigError, match=r"returned <object object at .*>, not an "
                                              r"Executor"):
        ndf.get_executor("not_an_executor")
    assert "not_an_executor" in ndf.executor_names()


# -- a third party's executor, through the public API alone --------------------------------


@attrs.frozen
class StdlibProcesses(ndf.Executor):
    """The standard library's process pool as it is: no initializer, so every task carries
    the run session; a dead worker breaks the pool with `BrokenProcessPool`."""

    name = "stdlib_processes"
    shares_memory = False
    workers: int = 2

    def start(self, session):
        return futures.ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("forkserver"))


class TestAThirdPartysExecutor(ExecutorConformance):
    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def registered(cls):
        import ndframework.executors as executors

        with pytest.MonkeyPatch.context() as patch:  # registered for this class only
            patch.setattr(executors, "_factories", dict(executors._factories))
            ndf.register_executor("stdlib_processes", StdlibProcesses)
            yield

    def make_executor(self):
        return ndf.get_executor("stdlib_processes", workers=2)


class _Inline(futures.Executor):
    """Runs each task at once, in the calling thread, and never ends a worker itself."""

    def submit(self, fn, /, *args, **kwargs):
        future = futures.Future()
        future.set_result(fn(*args, **kwargs))
        return future


_notes = []
"""What `_Noting`'s copies did, and in which thread."""


class _Noting(ndf.BlockProcessor):
    def setup(self):
        _notes.append(("setup", threading.get_ident()))

    def teardown(self):
        _notes.append(("teardown", threading.get_ident()))

    def process(self, data, block):
        return 1


def test_workers_a_pool_left_in_the_coordinators_thread_or_sessions_it_opened_there_end_with_it():
    from ndframework.executors import _session

    @attrs.frozen
    class InlineOpening(ndf.Executor):
        name = "inline_opening"
        shares_memory = True
        opens_sessions = True
        workers: int = 1

        def start(self, session):
            session.open()  # as an initializer in this process would
            return _Inline()

    _notes.clear()
    result = ndf.Pipeline(ndf.InMemorySource({"em": np.zeros((4, 8, 8), np.uint8)}),
                          _Noting(), tiler=ndf.RegularTiler((2, 4, 4)),
                          executor=InlineOpening()).run()
    assert result.ok and result.counts.done == 8
    here = threading.get_ident()
    assert _notes == [("setup", here), ("teardown", here)]  # torn down with the pool, here
    assert result.run.session not in _session._open  # the session was closed
