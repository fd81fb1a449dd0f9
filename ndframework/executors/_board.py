"""Which task each worker process is running, and since when: a small table in shared
memory that workers write and the coordinator reads, with no message per task.

The coordinator uses it to stop a task that runs too long (it ends that worker's process)
and, when a worker dies, to tell the task that was running on it from the tasks that were
merely queued.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent import futures
from typing import Any

__all__ = ["WorkerBoard", "LocalBoard", "worker_processes"]

_PID, _TICKET, _STARTED = range(3)
_WIDTH = 3


class WorkerBoard:
    """One row per worker process: its pid, the ticket of the task it runs (0: none), and
    when the task started (``time.monotonic``, which all processes of a machine share).

    Parameters
    ----------
    context:
        The `multiprocessing` context the workers are started with.
    rows:
        How many workers will claim a row.
    """

    in_process = False
    """Workers are processes of their own."""

    def __init__(self, context: Any, rows: int) -> None:
        self.rows = rows
        self._slots = context.RawArray("d", rows * _WIDTH)
        self._claimed = context.RawValue("i", 0)
        self._halted = context.RawValue("b", 0)
        self._lock = context.Lock()

    # -- in the worker -------------------------------------------------------------------

    def claim(self) -> int:
        """Take a row for this process (once, as it starts); -1 when none is left."""
        with self._lock:
            row = self._claimed.value
            if row >= self.rows:
                return -1
            self._claimed.value = row + 1
        self._slots[row * _WIDTH + _PID] = os.getpid()
        return row

    def begin(self, row: int, ticket: int) -> None:
        """Row ``row`` starts task ``ticket`` now."""
        if row >= 0:
            base = row * _WIDTH
            self._slots[base + _STARTED] = time.monotonic()
            self._slots[base + _TICKET] = ticket  # written last: a reader sees a start time

    def end(self, row: int) -> None:
        """Row ``row`` finished its task."""
        if row >= 0:
            self._slots[row * _WIDTH + _TICKET] = 0

    def halted(self) -> bool:
        """True once the coordinator wants no more tasks started."""
        return bool(self._halted.value)

    # -- in the coordinator --------------------------------------------------------------

    def halt(self) -> None:
        """Have workers start no more tasks of the batches they hold."""
        self._halted.value = 1

    def forget(self, tickets: list[int]) -> None:
        """Nothing to drop: a row shows only the task its worker runs now."""

    def running(self) -> dict[int, tuple[int, float]]:
        """``{ticket: (pid, started)}`` of the tasks being run now."""
        slots = self._slots[:]
        table = {}
        for base in range(0, len(slots), _WIDTH):
            ticket = int(slots[base + _TICKET])
            if ticket:
                table[ticket] = (int(slots[base + _PID]), slots[base + _STARTED])
        return table


class LocalBoard:
    """The board of workers that run in the coordinator's own process (the serial and
    thread executors). It carries only the coordinator's halt, so that a worker holding a
    batch starts none of its other blocks once the run stops; no block can be stopped
    there, so none is shown as running."""

    in_process = True
    """Workers run in the coordinator's process: they leave its signals alone."""

    def __init__(self) -> None:
        self._halted = threading.Event()

    def claim(self) -> int:
        return -1

    def begin(self, row: int, ticket: int) -> None:
        pass

    def end(self, row: int) -> None:
        pass

    def halted(self) -> bool:
        return self._halted.is_set()

    def forget(self, tickets: list[int]) -> None:
        pass  # shows nothing running

    def halt(self) -> None:
        self._halted.set()

    def running(self) -> dict[int, tuple[int, float]]:
        return {}


def worker_processes(pool: futures.Executor) -> dict[int, Any] | None:
    """``{pid: Process}`` of a `ProcessPoolExecutor`'s workers, taken before the pool is
    shut down (it forgets them then); read each ``exitcode`` after the shutdown. None when
    the pool does not expose them.

    `concurrent.futures` does not say which worker of a broken pool died: this reads the
    pool's private ``_processes`` table (CPython 3.8 to 3.13), and callers fall back to
    treating every running task as a suspect when it is not there.
    """
    processes = getattr(pool, "_processes", None)
    if not isinstance(processes, dict):
        return None
    return dict(processes)
