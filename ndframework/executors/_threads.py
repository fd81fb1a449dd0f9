"""Runs blocks in a pool of threads: for processors that release the GIL (numpy, scipy)."""

from __future__ import annotations

import queue
import threading
from concurrent import futures
from typing import Any, Callable

import attrs

from ._base import Executor, check_workers, run_into
from ._session import WorkerSession
from ._board import LocalBoard

__all__ = ["ThreadExecutor"]


class _WorkerThreadPool(futures.Executor):
    """A `concurrent.futures.Executor` of threads that each end their worker of run session
    ``session`` after their last task, in that thread.

    `concurrent.futures.ThreadPoolExecutor` has no finalizer, and a processor's ``teardown``
    must run in the thread that ran its ``setup`` (thread-bound handles such as SQLite
    connections). All threads start at once.
    """

    def __init__(self, workers: int, session: str) -> None:
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._shutdown = False
        self._threads = [
            threading.Thread(
                target=self._work,
                args=(session,),
                name=f"ndframework-worker-{number}",
                daemon=True,
            )
            for number in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self, session: str) -> None:
        from .._worker import end_worker

        try:
            while (task := self._tasks.get()) is not None:
                run_into(*task)
        finally:
            end_worker(session)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a pool that was shut down")
            future: futures.Future = futures.Future()
            self._tasks.put((future, fn, args, kwargs))
            return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if not self._shutdown:
                self._shutdown = True
                if cancel_futures:
                    while True:
                        try:
                            task = self._tasks.get_nowait()
                        except queue.Empty:
                            break
                        if task is not None:
                            task[0].cancel()
                for _ in self._threads:
                    self._tasks.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


@attrs.frozen
class ThreadExecutor(Executor):
    """``workers`` threads in this process, each with its own copy of the processor.

    Parameters
    ----------
    workers:
        Number of threads; default: every CPU this process may use.
    """

    name = "threads"
    shares_memory = True
    batches = True
    batch_seconds = 0.005  # a task costs a queue hand-off and a wake-up, no message
    workers: int = attrs.field(default=None, converter=check_workers)
    """Number of worker threads."""

    def make_board(self) -> LocalBoard:
        """A board that carries only the run's halt (a block here cannot be stopped)."""
        return LocalBoard()

    def start(self, session: WorkerSession) -> futures.Executor:
        return _WorkerThreadPool(self.workers, session.id)
