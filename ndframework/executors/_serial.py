"""Runs every block in the calling thread: for debugging, profiling and tiny runs."""

from __future__ import annotations

from concurrent import futures
from typing import Any, Callable

import attrs

from ._base import Executor, run_into
from ._session import WorkerSession
from ._board import LocalBoard

__all__ = ["SerialExecutor"]


class _InlinePool(futures.Executor):
    """A `concurrent.futures.Executor` that runs each call at once and returns it done; its
    shutdown tears down the worker run session ``session`` set up in the calling thread."""

    def __init__(self, session: str) -> None:
        self._session = session
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future:
        if self._shutdown:
            raise RuntimeError("cannot submit to a pool that was shut down")
        future: futures.Future = futures.Future()
        run_into(future, fn, args, kwargs)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if not self._shutdown:
            self._shutdown = True
            from .._worker import end_worker

            end_worker(self._session)


@attrs.frozen
class SerialExecutor(Executor):
    """One worker: the calling thread. Errors surface with a plain traceback, and a
    debugger's breakpoints in ``process`` work.

    >>> SerialExecutor().describe()
    'serial (1 worker)'
    """

    name = "serial"
    shares_memory = True
    batches = True
    batch_seconds = 0.005  # a task costs only a call here: batches spread the coordinator's
    # own bookkeeping (a future, a wait, a claim) and keep a stopping run quick to stop

    @property
    def workers(self) -> int:  # type: ignore[override]
        return 1

    @property
    def default_in_flight(self) -> int:
        return 1  # a block submitted runs at once: one at a time keeps the order exact

    def make_board(self) -> LocalBoard:
        """A board that carries only the run's halt (a block here cannot be stopped)."""
        return LocalBoard()

    def start(self, session: WorkerSession) -> futures.Executor:
        return _InlinePool(session.id)
