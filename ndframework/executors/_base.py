"""The executor ABC: a named way of running blocks, speaking ``concurrent.futures``."""

from __future__ import annotations

import abc
import os
import signal
from concurrent import futures
from typing import Any, Callable, ClassVar

import attrs

from ..errors import ConfigError

__all__ = ["Executor", "WorkerLifecycle", "default_workers", "check_workers", "run_into"]


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
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}", workers)
    return workers


def _nothing() -> None:
    pass


@attrs.frozen
class WorkerLifecycle:
    """What every worker of a pool runs once as it starts and once as it stops, in its own
    thread. The functions must pickle for worker processes (module-level functions do)."""

    initializer: Callable[..., None]
    """Called as ``initializer(*initargs)`` before the worker's first task."""
    initargs: tuple[Any, ...] = ()
    """Arguments of ``initializer``."""
    finalizer: Callable[..., None] = _nothing
    """Called as ``finalizer(*finalargs)`` after the worker's last task."""
    finalargs: tuple[Any, ...] = ()
    """Arguments of ``finalizer``."""

    def start(self) -> None:
        """Run the initializer."""
        self.initializer(*self.initargs)

    def stop(self) -> None:
        """Run the finalizer."""
        self.finalizer(*self.finalargs)


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
    pool. The pipeline submits one call per block and keeps a bounded number in flight.
    """

    name: ClassVar[str]
    """The registry name (``"serial"``, ``"threads"``, ...)."""
    shares_memory: ClassVar[bool]
    """True when workers run in the coordinating process (in-memory sinks work)."""
    workers: int

    @abc.abstractmethod
    def start(self, lifecycle: WorkerLifecycle) -> futures.Executor:
        """A running pool whose every worker runs ``lifecycle.start()`` once before its
        first task and ``lifecycle.stop()`` once when it stops, in the same thread. The
        caller shuts the pool down. A worker that dies (a killed process) does not stop."""

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
