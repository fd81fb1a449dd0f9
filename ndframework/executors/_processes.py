"""Runs blocks in a pool of worker processes: the default for CPU-bound Python code."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import sys
from concurrent import futures
from typing import Any

import attrs

from ..errors import ConfigError
from ._base import Executor, check_workers
from ._board import WorkerBoard
from ._lifeline import ProcessIdentity, exit_when_gone
from ._main_script import guard_advice, unguarded_script
from ._session import WorkerSession

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
    opens_sessions = True

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

    def start(self, session: WorkerSession) -> futures.Executor:
        pool = futures.ProcessPoolExecutor(
            self.workers,
            mp_context=self._context(),
            initializer=_start_worker,
            initargs=(session, ProcessIdentity.current(), self.workers),
        )
        _start_every_worker_with_the_first_task(pool)
        return pool


def _start_every_worker_with_the_first_task(pool: futures.ProcessPoolExecutor) -> None:
    """Have ``pool`` start all its workers with its first task, as CPython does for the
    "fork" start method.

    Since Python 3.9, `ProcessPoolExecutor` starts workers one per ``submit`` (except with
    "fork", where gh-90622 made it start them all at once, through the private
    ``_safe_to_dynamically_spawn_children``). A worker started by a ``submit`` while the
    pool's manager thread handles a dead worker escapes its ``terminate_broken``: the
    manager then joins a worker it never terminated and waits forever, as do the run and
    the interpreter's exit (seen on CPython 3.11 with forkserver and spawn, about one run
    in eight). The fix of gh-119592 and gh-152967 (3.13 and 3.14) keeps spawned workers
    from escaping ``terminate_workers()`` the same way, with a ``_force_shutting_down``
    flag. Where the attribute is missing, the pool is left as it is.
    """
    if hasattr(pool, "_safe_to_dynamically_spawn_children"):
        pool._safe_to_dynamically_spawn_children = False


def _start_worker(session: WorkerSession, coordinator: ProcessIdentity, workers: int) -> None:
    """Start a worker process, one of ``workers``: it exits at once if the ``coordinator``
    that started its pool dies (before anything that may take long, such as a processor's
    setup), shares the run's budget of decoded chunks, leaves Ctrl-C to the coordinator
    (which ends its workers; SIGINT reaches the whole process group), and opens the run
    ``session`` that its tasks name."""
    exit_when_gone(coordinator)
    from ..storage._chunk_cache import share_default_chunk_cache

    share_default_chunk_cache(workers)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    session.open()
