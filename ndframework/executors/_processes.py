"""Runs blocks in a pool of worker processes: the default for CPU-bound Python code."""

from __future__ import annotations

import logging
import multiprocessing
import sys
from multiprocessing import util
from concurrent import futures
from typing import Any

import attrs

from ..errors import ConfigError
from ._base import Executor, WorkerLifecycle, check_workers
from ._board import WorkerBoard
from ._lifeline import ProcessIdentity, exit_when_gone
from ._main_script import guard_advice, unguarded_script

__all__ = ["ProcessExecutor"]

logger = logging.getLogger(__name__)


def _default_start_method() -> str:
    # fork copies whatever threads hold locks at the time (progress bars, loggers, Dask);
    # forkserver avoids that and still starts workers quickly. Windows and macOS spawn.
    return "forkserver" if sys.platform.startswith("linux") else "spawn"


def _check_start_method(instance: Any, attribute: Any, value: str | None) -> None:
    valid = multiprocessing.get_all_start_methods()
    if value is not None and value not in valid:
        raise ConfigError(
            f"start_method must be one of {', '.join(map(repr, valid))}, got {value!r}", value
        )


@attrs.frozen
class ProcessExecutor(Executor):
    """``workers`` worker processes, each reading, processing and writing its own blocks.

    A worker that dies (killed, crashed, out of memory) breaks the pool; the pipeline starts
    a new one and retries the blocks it held. Workers end within moments of the process that
    started the pool if it dies, even by SIGKILL, and the forkserver and resource tracker of
    `multiprocessing` then exit too.

    Parameters
    ----------
    workers:
        Number of processes; default: every CPU this process may use.
    start_method:
        ``"forkserver"`` (default on Linux), ``"spawn"`` or ``"fork"``. A script that
        starts its run at module level, without ``if __name__ == "__main__":``, forks by
        default on Linux, as Nd-Multicore did: workers started otherwise would run the
        script again. Elsewhere, or with another ``start_method``, such a script gets a
        `ConfigError` saying to add the guard, before any worker starts.
    """

    name = "processes"
    shares_memory = False
    workers: int = attrs.field(default=None, converter=check_workers)
    """Number of worker processes."""
    start_method: str | None = attrs.field(default=None, validator=_check_start_method)
    """How worker processes start (see `multiprocessing`)."""

    can_stop_blocks = True
    batches = True

    def make_board(self) -> WorkerBoard:
        """A board on which this executor's workers show which block they run."""
        return WorkerBoard(self._context(announce=False), self.workers)

    def _context(self, announce: bool = True) -> Any:
        return multiprocessing.get_context(self._start_method(announce))

    def _start_method(self, announce: bool = True) -> str:
        """``start_method``, or the default: forkserver on Linux, except for a script that
        starts its run at module level without the ``__main__`` guard, which forks as
        Nd-Multicore's pool did (forkserver and spawn workers would run the script again)."""
        script = unguarded_script()
        if script is None:
            return self.start_method or _default_start_method()
        if self.start_method == "fork" or (
                self.start_method is None and sys.platform.startswith("linux")):
            if self.start_method is None and announce:
                logger.info("%s starts its run without the __main__ guard: worker processes "
                            "are forked", script)
            return "fork"
        method = self.start_method or _default_start_method()
        raise ConfigError(guard_advice(script, f"worker processes started with {method!r}"),
                          script)

    def start(self, lifecycle: WorkerLifecycle) -> futures.Executor:
        context = self._context()
        pool = futures.ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(lifecycle, ProcessIdentity.current(), self.workers),
        )
        # Start every worker with the first task, as CPython does for "fork". Workers
        # spawned one submit at a time race with the pool's handling of a dead worker: a
        # submit can add a worker after the pool terminated the others, and the pool then
        # waits for it forever (seen on CPython 3.11 with forkserver and spawn).
        pool._safe_to_dynamically_spawn_children = False  # type: ignore[attr-defined]
        return pool


def _start_worker(
    lifecycle: WorkerLifecycle, coordinator: ProcessIdentity, workers: int
) -> None:
    """Start a worker process, one of ``workers``, and have it stop as it exits normally
    (the pool's workers return from their loop at shutdown and run multiprocessing's exit
    finalizers), or at once if the ``coordinator`` that started its pool dies."""
    # Before setup(), which may take long (loading a model) and the coordinator die meanwhile.
    exit_when_gone(coordinator)
    # The run's default budget of decoded chunks is shared: memory must not grow with the
    # number of workers.
    from ..storage._chunk_cache import share_default_chunk_cache

    share_default_chunk_cache(workers)
    lifecycle.start()
    util.Finalize(None, lifecycle.stop, exitpriority=10)
