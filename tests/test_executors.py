"""Executors: the registry, worker counts, and the serial pool's futures."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent import futures

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
                                              r"'serial', 'threads', 'processes'"):
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


def test_the_serial_pool_initialises_once_returns_done_futures_and_finalises():
    calls = []
    pool = ndf.SerialExecutor().start(
        ndf.WorkerLifecycle(calls.append, ("init",), calls.append, ("final",)))
    first = pool.submit(pow, 2, 5)
    second = pool.submit(divmod, 1, 0)
    assert calls == ["init"]
    assert first.done() and first.result() == 32
    assert isinstance(second.exception(), ZeroDivisionError)
    pool.shutdown()
    assert calls == ["init", "final"]
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(pow, 2, 2)


@pytest.mark.parametrize("executor", [ndf.ThreadExecutor(2), ndf.ProcessExecutor(2)],
                         ids=lambda e: e.name)
def test_pools_are_standard_futures_executors(executor):
    pool = executor.start(ndf.WorkerLifecycle(_noop))
    with pool:
        assert isinstance(pool, futures.Executor)
        assert pool.submit(pow, 3, 3).result(timeout=60) == 27


def _noop():
    pass


def test_worker_threads_initialise_and_finalise_in_their_own_thread():
    seen = []
    lock = threading.Lock()

    def note(what):
        with lock:
            seen.append((what, threading.current_thread().name))

    pool = ndf.ThreadExecutor(3).start(ndf.WorkerLifecycle(note, ("init",), note, ("final",)))
    results = [pool.submit(lambda: threading.current_thread().name) for _ in range(30)]
    names = {future.result(timeout=60) for future in results}
    pool.shutdown(wait=True)
    inits = sorted(name for what, name in seen if what == "init")
    finals = sorted(name for what, name in seen if what == "final")
    assert len(inits) == 3 and inits == finals
    assert names <= set(inits)


def test_a_thread_pool_shut_down_with_cancel_cancels_queued_work():
    started, gate = threading.Event(), threading.Event()

    def hold():
        started.set()
        return gate.wait(30)

    pool = ndf.ThreadExecutor(1).start(ndf.WorkerLifecycle(_noop))
    running = pool.submit(hold)
    queued = [pool.submit(pow, 2, 2) for _ in range(5)]
    assert started.wait(30)
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert running.result(timeout=60) is True
    assert all(future.cancelled() for future in queued)
