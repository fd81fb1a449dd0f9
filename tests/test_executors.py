"""Executors: the registry, worker counts, and the serial pool's futures."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading

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
