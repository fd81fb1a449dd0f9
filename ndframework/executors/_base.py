"""The executor ABC: a named way of running blocks, speaking ``concurrent.futures``."""

from __future__ import annotations

import abc
import os
import signal
from concurrent import futures
from typing import Any, Callable, ClassVar

from .._numbers import as_int
from ._session import WorkerSession

__all__ = ["Executor", "default_workers", "check_workers", "run_into"]


def default_workers() -> int:
    """The number of CPUs this process may use (its affinity mask, as a Slurm allocation
    sets it; the CPU count where there is none).

    Every one of them: the coordinating process waits on its workers and uses little CPU
    itself. ``run_parallel(cpus=None)`` keeps Nd-Multicore's CPU count minus one.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_workers(workers: int | None) -> int:
    """``workers``, or the default when None; a clear error when it is not a positive int."""
    if workers is None:
        return default_workers()
    return as_int(workers, "workers", minimum=1)


def run_into(future: futures.Future, fn: Callable[..., Any], args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> None:
    """Run ``fn(*args, **kwargs)`` for a pending ``future`` and settle it with the result or
    the error, as the standard pools do; a cancelled future is left alone."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args, **kwargs)
    except BaseException as error:  # the future carries it to whoever waits
        future.set_exception(error)
    else:
        future.set_result(result)


class Executor(abc.ABC):
    """Runs blocks in workers through a `concurrent.futures.Executor`.

    An executor is a description (how many workers, of what kind); `start` makes the running
    pool. The pipeline submits one call per batch of blocks and keeps a bounded number in
    flight. A task sets up the worker that runs it (the processor's ``setup``) the first
    time its thread meets the run session, so any `concurrent.futures.Executor` can run
    them: a new executor is a thin adapter, registered by name with `register_executor`::

        @attrs.frozen
        class LoopExecutor(Executor):
            name = "loop"
            shares_memory = True
            workers: int = 2

            def start(self, session):
                return futures.ThreadPoolExecutor(self.workers)
    """

    name: ClassVar[str]
    """The registry name (``"serial"``, ``"threads"``, ...)."""
    shares_memory: ClassVar[bool]
    """True when workers run in the coordinating process (in-memory sinks work)."""
    workers: int

    @abc.abstractmethod
    def start(self, session: WorkerSession) -> futures.Executor:
        """A running pool for run session ``session``; the caller shuts it down.

        Its tasks carry the session (or, with `opens_sessions`, only its id) and set up
        their worker themselves: a pool needs no initializer. A pool that can run code in
        each worker thread as it stops should call `ndframework.executors.end_worker`
        there, so that the processor's ``teardown`` runs in the thread that ran its
        ``setup``; otherwise workers in processes of their own are torn down as the process
        exits, and workers in this process once the pool is shut down.
        """

    opens_sessions: ClassVar[bool] = False
    """True when `start` has every worker call ``session.open()`` before its first task
    (as its pool's initializer, say): tasks then carry the session's id, not the session,
    so that the processor and the source travel to each worker process once."""

    batches: ClassVar[bool] = False
    """True when blocks are handed out several to a task, as many as make about
    `batch_seconds` of work by their measured durations, so that the cost of a task (a
    future, a wake-up of the coordinator, a message to another process or machine) is
    spread over them."""
    batch_seconds: ClassVar[float] = 0.05
    """Work per batch to aim at: enough to make a task's cost small against it, little
    enough to keep workers evenly loaded and a stopping run quick to stop."""
    breaks_whole: ClassVar[bool] = True
    """True when one worker's death breaks the whole pool (a process pool), which the
    pipeline then replaces; False when only the tasks the lost worker held fail, with
    `concurrent.futures.BrokenExecutor`, and the pool goes on (a Dask cluster)."""
    can_stop_blocks: ClassVar[bool] = False
    """True when a running block can be stopped (its worker ended), so that
    ``block_timeout`` is enforced."""

    def is_worker_death(self, error: BaseException) -> bool:
        """True when ``error``, raised by a task's future or by ``submit``, means the
        worker (or the whole pool, see `breaks_whole`) was lost, not that the task failed:
        its blocks are then given back or judged, not failed. By default a
        `concurrent.futures.BrokenExecutor`, as the standard pools raise."""
        return isinstance(error, futures.BrokenExecutor)

    def make_board(self) -> Any:
        """A board for a new pool's workers: where they show which block they run (for
        executors that can stop a block) and see that the run stops (so that a batch in
        hand ends early); None for none."""
        return None

    def stop_worker(self, pid: int) -> None:
        """End the worker process ``pid`` (it runs a block past its timeout); its pool
        breaks and is replaced."""
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        """Release what `start` keeps across pools (a cluster, a client); the pipeline
        calls it when a run ends. The built-in pools keep nothing."""

    @property
    def default_in_flight(self) -> int:
        """Blocks to keep handed out at once: enough to keep every worker busy while the
        coordinator collects results, few enough to bound memory."""
        return 2 * self.workers

    def describe(self) -> str:
        """``name`` and worker count, for reports."""
        return f"{self.name} ({self.workers} worker{'s' if self.workers != 1 else ''})"
