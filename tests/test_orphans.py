"""A coordinator killed with SIGKILL leaves no process behind: its worker processes, the
forkserver and the resource tracker all end with it (executors/_lifeline.py), and so do the
worker processes of the Dask executor's local cluster."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ndframework as ndf
from ndframework.executors._lifeline import ORPHAN_EXIT_CODE, ProcessIdentity
from processors import Announcements

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

REPOSITORY = Path(ndf.__file__).resolve().parents[1]

COORDINATOR = """
import os, sys, time
import numpy as np
import ndframework as ndf

class Sleepy(ndf.BlockProcessor):
    def __init__(self, announcements):
        self.announcements = announcements

    def setup(self):
        with open(self.announcements, "w") as pipe:  # the test waits for two of these
            pipe.write(f"{os.getpid()}\\n")

    def process(self, data, block):
        time.sleep(0.5)
        return 1

if __name__ == "__main__":
    announcements, start_method = sys.argv[1], sys.argv[2]
    source = ndf.InMemorySource({"em": np.zeros((64, 8, 8), np.uint8)})
    executor = (ndf.DaskExecutor(workers=2) if start_method == "dask"
                else ndf.ProcessExecutor(2, start_method=start_method))
    ndf.Pipeline(source, Sleepy(announcements), tiler=ndf.RegularTiler((1, 8, 8)),
                 executor=executor).run()
"""


def _stat(pid: int) -> tuple[str, int, int] | None:
    """State, parent pid and start time of ``pid``; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[19])


def _descendants(root: int) -> dict[int, int]:
    """Every process below ``root``, with its start time."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := _stat(int(name))) is not None:
            children.setdefault(stat[1], []).append(int(name))
    found, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if (stat := _stat(child)) is not None:
                found[child] = stat[2]
                todo.append(child)
    return found


def _running(processes: dict[int, int]) -> list[int]:
    """The pids of ``processes`` that still run (a zombie has ended; a reused pid is not
    theirs)."""
    return [pid for pid, started in processes.items()
            if (stat := _stat(pid)) is not None and stat[0] != "Z" and stat[2] == started]


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "?"


def _environment() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _wait_for_exit(processes: dict[int, int], seconds: float) -> list[int]:
    """Wait for ``processes`` to end, on their pidfds (ready once a process has ended,
    reaped or not), until none has ended for ``seconds``; the pids of those still running."""
    watched = {}
    try:
        for pid in _running(processes):
            try:
                watched[os.pidfd_open(pid)] = pid
            except ProcessLookupError:  # ended meanwhile
                pass
        theirs = set(_running(processes))  # not a process that took the pid of one that ended
        waiting = [pidfd for pidfd, pid in watched.items() if pid in theirs]
        while waiting:
            ended, _, _ = select.select(waiting, [], [], seconds)
            if not ended:
                break
            waiting = [pidfd for pidfd in waiting if pidfd not in ended]
    finally:
        for pidfd in watched:
            os.close(pidfd)
    return _running(processes)


def _kill_all(processes: dict[int, int]) -> None:
    for pid in _running(processes):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.timeout(60)
@pytest.mark.parametrize("start_method", ["forkserver", "spawn", "fork", "dask"])
def test_no_process_outlives_a_coordinator_killed_with_sigkill(start_method, tmp_path):
    if start_method == "dask":  # the local cluster's nannies and workers
        pytest.importorskip("distributed")
    script = tmp_path / "coordinator.py"
    script.write_text(COORDINATOR)
    errors = tmp_path / "stderr"
    left: dict[int, int] = {}
    with Announcements(tmp_path / "announcements") as announcements:
        with errors.open("w") as stderr:
            coordinator = subprocess.Popen(
                [sys.executable, str(script), announcements.path, start_method],
                env=_environment(), stderr=stderr)
        try:
            try:
                workers = {int(pid) for pid in announcements.wait(2, coordinator)}
            except AssertionError as error:
                raise AssertionError(f"the run did not get going: {error}\n"
                                     f"{errors.read_text()[-2000:]}") from None
            left = _descendants(coordinator.pid)
            assert workers <= set(left)
            coordinator.kill()
            coordinator.wait()
            behind = _wait_for_exit(left, 10)
            assert not behind, (
                f"{len(behind)} of {len(left)} processes outlived their coordinator: "
                + "; ".join(f"{pid}: {_command(pid)}" for pid in behind)
            )
        finally:
            coordinator.kill()
            coordinator.wait()
            _kill_all(left or _descendants(coordinator.pid))


WATCHER = """
import os, sys, time
from ndframework.executors._lifeline import ProcessIdentity, exit_when_gone
if sys.argv[3] == "poll":
    del os.pidfd_open
exit_when_gone(ProcessIdentity(int(sys.argv[1]), int(sys.argv[2])))
print("watching", flush=True)
time.sleep(30)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["pidfd", "poll"])
def test_a_watcher_exits_when_its_coordinator_dies_even_as_an_unreaped_zombie(how):
    coordinator = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    watcher = None
    try:
        identity = ProcessIdentity.of(coordinator.pid)
        watcher = subprocess.Popen(
            [sys.executable, "-c", WATCHER, str(identity.pid), str(identity.start_time), how],
            env=_environment(), stdout=subprocess.PIPE, text=True,
        )
        assert watcher.stdout.readline() == "watching\n"
        assert watcher.poll() is None
        os.kill(coordinator.pid, signal.SIGKILL)  # not reaped: a zombie, still in /proc
        assert watcher.wait(timeout=10) == ORPHAN_EXIT_CODE
    finally:
        coordinator.kill()
        coordinator.wait()
        if watcher is not None:
            watcher.kill()
            watcher.wait()


@pytest.mark.timeout(60)
def test_a_worker_whose_coordinator_pid_was_reused_exits_at_once():
    parent = ProcessIdentity.current()
    impostor = ProcessIdentity(parent.pid, parent.start_time - 1)  # same pid, another process
    watcher = subprocess.run(
        [sys.executable, "-c", WATCHER, str(impostor.pid), str(impostor.start_time), "pidfd"],
        env=_environment(), capture_output=True, text=True, timeout=30,
    )
    assert watcher.returncode == ORPHAN_EXIT_CODE and watcher.stdout == ""


def test_a_living_process_is_alive_and_a_reaped_one_is_not():
    assert ProcessIdentity.current().is_alive()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = ProcessIdentity.of(child.pid)
    child.wait()
    assert not identity.is_alive()
