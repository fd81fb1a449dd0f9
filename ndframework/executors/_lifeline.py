"""A worker process's lifeline to its coordinator: when the coordinating process dies, even
by SIGKILL, its workers end within moments instead of living on under init.

Nothing else would end them: a worker waits on a task queue whose write end it holds
itself, so it never sees the coordinator go. Once the workers are gone, multiprocessing's
own helpers follow: the forkserver exits when the last holder of its "alive" pipe (the
coordinator and every worker it forked) is gone, and the resource tracker when the last
holder of its pipe (the same processes and the forkserver) is.

Each worker watches from one daemon thread that costs nothing per block: on Linux it waits
on a pidfd, which becomes readable the moment the coordinator exits; elsewhere, or where
pidfds are refused, it looks every half second. The coordinator is told apart from a later
process that reuses its pid by its start time.
"""

from __future__ import annotations

import os
import select
import threading
import time

import attrs

__all__ = ["ProcessIdentity", "exit_when_gone"]

POLL_SECONDS = 0.5
"""How often a worker looks for its coordinator where it cannot wait on a pidfd."""

ORPHAN_EXIT_CODE = 1
"""The exit status of a worker ended because its coordinator died."""


def _stat(pid: int) -> tuple[str, int] | None:
    """The state letter and start time (clock ticks after boot) of process ``pid`` from
    ``/proc``, or None when ``/proc`` has no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after its
    # closing parenthesis are plain: state is field 3 and starttime field 22.
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


_HAS_PROC = _stat(os.getpid()) is not None


@attrs.frozen
class ProcessIdentity:
    """A process, told apart from a later one that reuses its pid."""

    pid: int
    """Its process id."""
    start_time: int | None
    """When it started, in clock ticks after boot (``/proc/PID/stat``); None without
    ``/proc``, where only the pid is compared."""

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity:
        """The process ``pid`` as it is now."""
        stat = _stat(pid) if _HAS_PROC else None
        return cls(pid, None if stat is None else stat[1])

    @classmethod
    def current(cls) -> ProcessIdentity:
        """This process."""
        return cls.of(os.getpid())

    def is_alive(self) -> bool:
        """True while this process runs; False once it has exited (a zombie counts as
        exited) or its pid belongs to another process."""
        if self.start_time is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        stat = _stat(self.pid)
        return stat is not None and stat[0] not in "ZXx" and stat[1] == self.start_time


def exit_when_gone(coordinator: ProcessIdentity) -> None:
    """End this process with `os._exit` as soon as ``coordinator`` is gone; at once if it is
    gone already. Returns right away; a daemon thread keeps watch.

    `os._exit` skips ``teardown`` and exit handlers: nobody waits for this process's results
    any more, and the operating system frees what it held.
    """
    pidfd = _open_pidfd(coordinator.pid)
    # Opened first, checked second: a pidfd of a process that reused the pid is refused here.
    if not coordinator.is_alive():
        os._exit(ORPHAN_EXIT_CODE)
    if pidfd is not None:
        watch, args = _wait_for_exit, (pidfd,)
    else:
        watch, args = _poll_for_exit, (coordinator, os.getppid())
    threading.Thread(target=watch, args=args, name="ndframework-lifeline", daemon=True).start()


def _open_pidfd(pid: int) -> int | None:
    """A pidfd of process ``pid``, or None where pidfds are missing (not Linux 5.3+) or
    refused (a sandbox), or the process is gone already."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _wait_for_exit(pidfd: int) -> None:
    # poll, not select: select refuses a file descriptor above 1023.
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    while not poller.poll():
        pass
    os._exit(ORPHAN_EXIT_CODE)


def _poll_for_exit(coordinator: ProcessIdentity, parent: int) -> None:
    # A worker whose parent is the coordinator ("spawn", "fork") is re-parented when the
    # coordinator dies: that tells even without /proc, where a zombie still answers kill().
    while coordinator.is_alive() and not (parent == coordinator.pid != os.getppid()):
        time.sleep(POLL_SECONDS)
    os._exit(ORPHAN_EXIT_CODE)
