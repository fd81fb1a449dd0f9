"""A run session as its workers see it: what the thread that runs a task needs to set up
the worker state that runs it, whatever pool the thread belongs to."""

from __future__ import annotations

import os
import threading
from typing import Any

import attrs

from ..errors import WorkerError

__all__ = ["WorkerSession", "find_session"]

_open: dict[str, "WorkerSession"] = {}
"""Sessions opened in this process, by id."""
_lock = threading.Lock()


@attrs.frozen(eq=False)
class WorkerSession:
    """One session of a run, as every task of it carries it (or its `id`, see `open`).

    The first task a thread runs for a session sets up that thread's worker: its own copy
    of the processor (``setup()`` runs then, in that thread) and the source and sink to
    read and write. Nothing has to run in a worker before its first task, so any
    `concurrent.futures.Executor` can run the blocks; see `Executor.start`.
    """

    id: str
    """The run session's id (``RunInfo.session``)."""
    processor: Any = attrs.field(repr=False)
    """The processor, cloudpickled for workers in other processes; the object itself
    (copied by each worker) for executors that share the coordinator's memory."""
    context: Any = attrs.field(repr=False)
    """The source, channels and sink (a ``WorkerContext``), cloudpickled likewise."""
    board: Any = attrs.field(default=None, repr=False)
    """Where workers show which block they run (`Executor.make_board`), or None."""
    coordinator: int = attrs.field(factory=os.getpid)
    """The coordinating process's pid: a worker elsewhere is a process of its own."""

    def open(self) -> None:
        """Keep this session in the current process, so that tasks carrying only its `id`
        find it. An executor whose `start` has every worker call this before its first
        task (as its pool's initializer, or a cluster's worker plugin) sets
        `Executor.opens_sessions`; its tasks then carry the id, not the session."""
        with _lock:
            _open[self.id] = self

    def close(self) -> None:
        """Forget this session in the current process (a long-lived worker's plugin
        teardown)."""
        with _lock:
            _open.pop(self.id, None)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread of the parent may have held it


os.register_at_fork(after_in_child=_after_fork_in_child)


def find_session(session: WorkerSession | str) -> WorkerSession:
    """``session`` itself, or the session opened in this process under that id."""
    if isinstance(session, WorkerSession):
        return session
    with _lock:
        found = _open.get(session)
    if found is None:
        raise WorkerError(
            f"run session {session} was never opened in worker process {os.getpid()}: an "
            f"executor with opens_sessions = True must call session.open() in every worker "
            f"before its first task (e.g. as its pool's initializer)"
        )
    return found
