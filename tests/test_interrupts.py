"""Stopping and being stopped: SIGINT and SIGTERM end a run with its journal committed, a
second signal at once; SIGKILL leaves no process behind; and the rerun finishes the volume
exactly as an uninterrupted run would, voxel for voxel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

import ndframework as ndf
from processors import Announcements
from test_orphans import _command, _descendants, _wait_for_exit, _wait_until

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

SHAPE, BLOCK = (6, 32, 32), (1, 16, 16)  # 24 blocks

COORDINATOR = textwrap.dedent("""
    import json, os, signal, sys, time
    import numpy as np
    import ndframework as ndf

    def announce(line):
        # on the test's pipe, when it listens
        if os.environ["ANNOUNCE"]:
            with open(os.environ["ANNOUNCE"], "w") as pipe:
                pipe.write(line + "\\n")

    class Double(ndf.BlockProcessor):
        def process(self, data, block):
            if block.key == os.environ["HANG"]:
                announce(f"hangs {block.key}")
                time.sleep(600)
            time.sleep(float(os.environ["SLEEP"]))
            owned = block.crop(data["em"])
            open(os.path.join(os.environ["MARKS"], block.key), "w").close()
            return ndf.BlockOutput({"out": owned.astype(np.uint16) * 2},
                                   value=int(owned.astype(np.int64).sum()))

        def reduce(self, results):
            return sum(results.values())

    class Announce:
        # each block the coordinator has recorded done
        @ndf.hookimpl
        def ndf_after_block(self, run, block, outcome):
            announce(f"done {block.key}")

    def announce_signals():
        # Tell the test when the run has handled a signal, so that it sends another only
        # then: two that come before Python runs the handler are one.
        install = signal.signal

        def installing(signum, handler):
            if not callable(handler):
                return install(signum, handler)

            def handle(number, frame):
                try:
                    return handler(number, frame)
                finally:
                    announce(f"handled {signal.Signals(number).name}")

            return install(signum, handle)

        signal.signal = installing

    if __name__ == "__main__":
        announce_signals()
        workdir, executor = sys.argv[1], sys.argv[2]
        em = np.random.default_rng(7).integers(0, 256, %(shape)r, dtype=np.uint8)
        out = os.path.join(workdir, "out.zarr")
        if os.path.exists(out):
            sink = ndf.ZarrSink(out)
        else:
            sink = ndf.ZarrSink.create(out, {"out": "uint16"}, ndf.Box((0, 0, 0), %(shape)r),
                                       chunk_shape=%(block)r)
        os.makedirs(os.environ["MARKS"])
        executor = ndf.get_executor(executor, **({} if executor == "serial" else {"workers": 2}))
        pipeline = ndf.Pipeline(ndf.InMemorySource({"em": em}), Double(),
                                tiler=ndf.RegularTiler(%(block)r), executor=executor, sink=sink,
                                journal=os.path.join(workdir, "run.sqlite"),
                                plugins=[Announce()])
        try:
            result = pipeline.run()
        except ndf.RunInterrupted as error:
            result = error.result
            print(json.dumps({"signal": error.signal, "done": list(result.done),
                              "not_run": len(result.not_run), "stopped": result.stopped}))
            sys.exit(error.exit_status)
        print(json.dumps({"ok": result.ok, "done": list(result.done),
                          "skipped": list(result.skipped), "reduced": result.reduced}))
""") % {"shape": SHAPE, "block": BLOCK}


def _expected():
    em = np.random.default_rng(7).integers(0, 256, SHAPE, dtype=np.uint8)
    return em.astype(np.uint16) * 2, int(em.astype(np.int64).sum())


def _start(workdir: Path, executor: str, name: str, announcements: Announcements | None = None,
           sleep: float = 0.12, hang: str = "") -> subprocess.Popen:
    """Run the coordinator script: each block sleeps ``sleep`` s (block ``hang`` for good)
    and leaves a mark in ``marks-{name}``; on ``announcements``, the coordinator announces
    each block it has recorded done, and each signal it has handled."""
    script = workdir / "coordinator.py"
    script.write_text(COORDINATOR)
    return subprocess.Popen([sys.executable, str(script), str(workdir), executor],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MARKS": str(workdir / f"marks-{name}"),
                                 "SLEEP": str(sleep), "HANG": hang,
                                 "ANNOUNCE": announcements.path if announcements else ""},
                            start_new_session=True)


def _recorded(journal: Path) -> set[str]:
    """The blocks ``journal`` records done, as far as it has committed them."""
    try:
        reader = ndf.Journal.read(journal)
    except ndf.ConfigError:  # not there yet
        return set()
    try:
        return {record.key for record in reader.records(status="done")}
    finally:
        reader.close()


def _finish(workdir: Path, executor: str) -> dict:
    """Rerun to the end and check the output against numpy."""
    rerun = _start(workdir, executor, "rerun", sleep=0)
    try:
        stdout, stderr = rerun.communicate(timeout=60)
    finally:
        rerun.kill()
    assert rerun.returncode == 0, stderr
    report = json.loads(stdout)
    expected, total = _expected()
    assert report["ok"] and report["reduced"] == total
    np.testing.assert_array_equal(zarr.open_group(str(workdir / "out.zarr"), mode="r")["out"][:],
                                  expected)
    # the rerun ran exactly the blocks the journal did not record done
    assert sorted(os.listdir(workdir / "marks-rerun")) == sorted(report["done"])
    assert len(report["done"]) + len(report["skipped"]) == 24
    return report


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("signum", "executor"), [
    (signal.SIGTERM, "processes"), (signal.SIGINT, "processes"), (signal.SIGTERM, "serial"),
    (signal.SIGINT, "threads"),
])
def test_a_signal_ends_the_run_and_a_rerun_resumes(tmp_path, signum, executor):
    with Announcements(tmp_path / "announcements") as announcements:
        process = _start(tmp_path, executor, "first", announcements)
        try:
            announcements.wait(3, process)  # three blocks recorded done
            tree = _descendants(process.pid)
            # Ctrl-C reaches the whole process group; a scheduler's SIGTERM the coordinator
            os.killpg(process.pid, signum) if signum == signal.SIGINT else \
                process.send_signal(signum)
            stdout, stderr = process.communicate(timeout=20)
        finally:
            process.kill()
        behind = _wait_for_exit(tree, 5)
    assert process.returncode == 128 + signum, stderr
    report = json.loads(stdout)
    assert report["signal"] == signum
    assert report["stopped"] == f"interrupted by {signal.Signals(signum).name}"
    assert 3 <= len(report["done"]) < 24 and report["not_run"] == 24 - len(report["done"])
    assert not behind, [_command(pid) for pid in behind]
    final = _finish(tmp_path, executor)
    assert set(report["done"]) <= set(final["skipped"])


@pytest.mark.timeout(120)
def test_a_coordinator_killed_part_way_leaves_nothing_behind_and_the_rerun_completes(tmp_path):
    journal = tmp_path / "run.sqlite"
    with Announcements(tmp_path / "announcements") as announcements:
        # 24 blocks of 0.4 s on two workers: about 5 s
        process = _start(tmp_path, "processes", "first", announcements, sleep=0.4)
        try:
            announcements.wait(4, process)
            # the coordinator commits the blocks done every second: kill it after a commit
            assert _wait_until(lambda: _recorded(journal), 30), "the journal recorded nothing"
            tree = _descendants(process.pid)
            assert process.poll() is None, "the run ended before it could be killed"
            assert len(tree) >= 2  # the workers (and multiprocessing's helpers)
            process.kill()
            process.wait(10)
        finally:
            process.kill()
        behind = _wait_for_exit(tree, 10)
    assert not behind, [_command(pid) for pid in behind]
    recorded = _recorded(journal)
    assert recorded, "the journal recorded nothing before the kill"
    final = _finish(tmp_path, "processes")
    assert set(final["skipped"]) == recorded
    assert set(final["done"]) == {f"{z}_{y}_{x}" for z in range(6) for y in (0, 16)
                                  for x in (0, 16)} - recorded


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_stops_at_once_and_fails_no_block(tmp_path, signum):
    name = signal.Signals(signum).name
    with Announcements(tmp_path / "announcements") as announcements:
        process = _start(tmp_path, "serial", "first", announcements, sleep=0, hang="0_0_16")
        try:
            assert announcements.wait(2, process) == ["done 0_0_0", "hangs 0_0_16"]
            os.killpg(process.pid, signum)
            assert announcements.wait(3, process)[2] == f"handled {name}"
            os.killpg(process.pid, signum)
            _, stderr = process.communicate(timeout=20)  # not the block's 600 s
        finally:
            process.kill()
    assert process.returncode == 128 + signum, stderr
    records = list(ndf.Journal.read(tmp_path / "run.sqlite").records())
    assert [r.status for r in records] == [ndf.BlockStatus.DONE]  # the block cut short
    _finish(tmp_path, "serial")                                   # is simply run again


_CALLS: list[str] = []


class _InterruptAt(ndf.BlockProcessor):
    """The ``at``-th call sends SIGINT to this process, as Ctrl-C would."""

    def __init__(self, at, seconds=0.0):
        self.at = at
        self.seconds = seconds

    def process(self, data, block):
        _CALLS.append(block.key)
        if len(_CALLS) == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(self.seconds)
        return 1


class _LongBatches(ndf.ThreadExecutor):
    batch_seconds = 1.0  # batches of many 1 ms blocks: the GIL lets the signal in


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("executor", "seconds", "slack"), [
    (ndf.SerialExecutor(), 0.0, 1), (_LongBatches(2), 0.001, 2),
])
def test_in_process_workers_leave_the_rest_of_their_batch_when_the_run_stops(
        executor, seconds, slack):
    _CALLS.clear()
    source = ndf.InMemorySource({"em": np.zeros((16, 64, 64), np.uint8)})  # 4096 blocks
    with pytest.raises(ndf.RunInterrupted) as raised:
        ndf.Pipeline(source, _InterruptAt(300, seconds), tiler=ndf.RegularTiler((1, 4, 4)),
                     executor=executor, load_entrypoints=False).run()
    counts = raised.value.result.counts
    # the blocks running when the run stopped end; no other block of their batches (up to
    # 256 blocks each, a few batches in flight) starts
    assert 300 <= len(_CALLS) <= 300 + slack
    assert counts.done == len(_CALLS) and counts.not_run == 4096 - len(_CALLS)
