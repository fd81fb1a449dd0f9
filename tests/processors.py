"""Processors and sources the tests run in worker processes (importable by name there), and
the named pipes through which blocks, in whatever process, tell a test what they do."""

from __future__ import annotations

import os
import select
import time
from pathlib import Path

import numpy as np

import ndframework as ndf


def neighbourhood_sum(array: np.ndarray) -> np.ndarray:
    """The executor kit's numpy oracle of `NeighbourhoodSum`, imported as it is first used:
    `ndframework.testing` brings pytest and hypothesis, which a worker process that loads
    this module for another processor need not import."""
    from ndframework.testing.executors import neighbourhood_sum as oracle

    return oracle(array)


class NeighbourhoodSum(ndf.BlockProcessor):
    """Writes the 3×3×3 neighbourhood sum of ``em``; its value is the block's voxel sum."""

    halo = 1
    channels = ("em",)

    def process(self, data, block):
        summed = neighbourhood_sum(data["em"])
        return ndf.BlockOutput({"total": block.crop(summed).astype(np.uint32)},
                               value=int(block.crop(data["em"]).astype(np.int64).sum()))

    def reduce(self, results):
        return sum(results.values())


class Identity(ndf.BlockProcessor):
    """Copies every channel of the owned box to the sink."""

    def process(self, data, block):
        return {name: block.crop(array) for name, array in data.items()}


class FailOn(ndf.BlockProcessor):
    """Raises for the given block keys; otherwise returns the owned ``em`` sum."""

    def __init__(self, keys):
        self.keys = set(keys)

    def process(self, data, block):
        if block.key in self.keys:
            raise ValueError(f"cannot handle block {block.key}")
        return int(data["em"].astype(np.int64).sum())


class RecordWorkers(ndf.BlockProcessor):
    """Appends a line to files in ``folder`` at setup, at each block and at teardown."""

    def __init__(self, folder, setup_error=None):
        self.folder = str(folder)
        self.setup_error = setup_error

    def _note(self, what):
        with open(os.path.join(self.folder, what), "a") as file:
            file.write(f"{os.getpid()}-{id(self)}\n")

    def setup(self):
        if self.setup_error:
            raise RuntimeError(self.setup_error)
        self._note("setup")

    def process(self, data, block):
        self._note("process")
        return os.getpid()

    def teardown(self):
        self._note("teardown")


class CrashOn(ndf.BlockProcessor):
    """Kills its worker process on ``always`` blocks every time, and on ``once`` blocks
    the first time only (a marker file remembers)."""

    def __init__(self, folder, once=(), always=()):
        self.folder = str(folder)
        self.once = set(once)
        self.always = set(always)

    def process(self, data, block):
        marker = Path(self.folder, f"crashed-{block.key}")
        if block.key in self.always or (block.key in self.once and not marker.exists()):
            marker.touch()
            os._exit(3)
        return block.key


class Rendezvous(ndf.BlockProcessor):
    """Blocks ``first`` and ``second`` wait for each other at the named pipe ``pipe``: each
    opens its own end, which blocks until the other end is open too, so both pass only
    when they run at once (and hang, for the test's timeout to end, otherwise)."""

    def __init__(self, pipe, first, second):
        self.pipe = str(pipe)
        self.first = first
        self.second = second

    def process(self, data, block):
        if block.key in (self.first, self.second):
            end = os.O_WRONLY if block.key == self.first else os.O_RDONLY
            os.close(os.open(self.pipe, end))
        return True


class BrokenSource(ndf.InMemorySource):
    """An in-memory source whose reads touching ``bad_box`` fail with an OSError, as a
    lost connection or a missing file would."""

    def __init__(self, arrays, bad_box, origin=(0, 0, 0)):
        super().__init__(arrays, origin)
        self.bad_box = bad_box

    def read_box(self, box, channels):
        if not box.intersect(self.bad_box).empty:
            raise ConnectionResetError(f"connection reset while reading {box}")
        return super().read_box(box, channels)


class NestedRun(ndf.BlockProcessor):
    """Runs a small serial pipeline of its own inside ``process``."""

    def process(self, data, block):
        inner = ndf.Pipeline(ndf.InMemorySource({"x": np.ones((2, 2, 2), np.uint8)}),
                             lambda d: int(d["x"].sum()), executor="serial",
                             tiler=ndf.RegularTiler(2), load_entrypoints=False).run()
        return ("outer", int(data["em"].astype(np.int64).sum()), inner.reduced)


class ThreadBoundResource(ndf.BlockProcessor):
    """Opens an SQLite connection in setup and closes it in teardown: both must run in the
    same thread, as SQLite insists."""

    def setup(self):
        import sqlite3

        self.connection = sqlite3.connect(":memory:")

    def process(self, data, block):
        return self.connection.execute("select 1").fetchone()[0]

    def teardown(self):
        self.connection.execute("select 1")
        self.connection.close()


class FailingTeardown(ndf.BlockProcessor):
    def process(self, data, block):
        return 1

    def teardown(self):
        raise RuntimeError("could not release the model")


class BrokenSink(ndf.InMemorySink):
    """An in-memory sink whose writes fail like a full disk."""

    def write_box(self, box, arrays):
        raise OSError(28, "No space left on device")


class FailUntilMarked(ndf.BlockProcessor):
    """Fails the blocks in ``keys`` until a file named after the block exists in
    ``marks``; its value is the owned ``em`` sum."""

    def __init__(self, marks, keys):
        self.marks = str(marks)
        self.keys = set(keys)

    def process(self, data, block):
        if block.key in self.keys and not os.path.exists(os.path.join(self.marks, block.key)):
            raise RuntimeError(f"block {block.key} is not ready")
        return int(block.crop(data["em"]).astype(np.int64).sum())

    def reduce(self, results):
        return sum(results.values())


class FoldSum(ndf.BlockProcessor):
    """Folds (blocks, owned em sum); with ``fail_without``, blocks whose x start is 200 and
    y start is not 100 fail until ``fail_without/go`` exists."""

    initial = (0, 0)

    def __init__(self, fail_without=None):
        self.fail_without = None if fail_without is None else str(fail_without)

    def process(self, data, block):
        if self.fail_without is not None and block.key != "0_100_200" and \
                block.box.start[2] == 200 and not os.path.exists(
                    os.path.join(self.fail_without, "go")):
            raise RuntimeError("not yet")
        return int(block.crop(data["em"]).astype(np.int64).sum())

    def fold(self, accumulator, key, value):
        return accumulator[0] + 1, accumulator[1] + value


class KeySum(ndf.BlockProcessor):
    """The owned em sum times ``scale``."""

    def __init__(self, scale):
        self.scale = scale

    def process(self, data, block):
        return self.scale * int(block.crop(data["em"]).astype(np.int64).sum())


class SleepForever(ndf.BlockProcessor):
    """Sleeps for good on the blocks in ``keys``; otherwise the owned em sum."""

    def __init__(self, keys):
        self.keys = set(keys)

    def process(self, data, block):
        if block.key in self.keys:
            while True:
                time.sleep(60)
        return int(block.crop(data["em"]).astype(np.int64).sum())


class DieOnce(ndf.BlockProcessor):
    """Kills its own worker process on block ``key`` the first time (every time with
    ``always``); otherwise the owned em sum.

    With ``beside``, the first death waits for block ``beside`` to run beside it, and that
    block runs until the death: both open a named pipe in ``marks``, which blocks until the
    other end is open too, and the dying block's end closes as its process ends.
    """

    def __init__(self, marks, key, always=False, beside=None):
        self.marks = str(marks)
        self.key = key
        self.always = always
        self.beside = beside

    def process(self, data, block):
        mark = os.path.join(self.marks, f"died-{block.key}")
        if block.key == self.key and (self.always or not os.path.exists(mark)):
            if self.beside is not None and not os.path.exists(mark):
                with open(self._pipe(), "wb"):  # until the block beside it has it open
                    Path(mark).touch()
                    os._exit(70)
            Path(mark).touch()
            os._exit(70)
        if block.key == self.beside and not os.path.exists(
                os.path.join(self.marks, f"died-{self.key}")):
            with open(self._pipe(), "rb") as pipe:  # until the dying block has it open
                pipe.read()  # until it dies
        return int(block.crop(data["em"]).astype(np.int64).sum())

    def _pipe(self):
        path = os.path.join(self.marks, "beside")
        try:
            os.mkfifo(path)
        except FileExistsError:
            pass
        return path


class AlwaysFails(ndf.BlockProcessor):
    """Raises on the blocks in ``keys`` (every block when None); otherwise 1."""

    def __init__(self, keys):
        self.keys = None if keys is None else set(keys)

    def process(self, data, block):
        if self.keys is None or block.key in self.keys:
            raise ValueError(f"poison in block {block.key}")
        return 1


class FlakyOnce(ndf.BlockProcessor):
    """Raises ``error`` on the first try of the blocks in ``keys`` (a marker file in
    ``marks`` remembers the try); the owned em sum otherwise. Retries ``TimeoutError``."""

    retry_on = (TimeoutError,)

    def __init__(self, marks, keys, error):
        self.marks = str(marks)
        self.keys = set(keys)
        self.error = error

    def process(self, data, block):
        mark = os.path.join(self.marks, f"tried-{block.key}")
        if block.key in self.keys and not os.path.exists(mark):
            Path(mark).touch()
            raise self.error(f"first try of {block.key}")
        return int(block.crop(data["em"]).astype(np.int64).sum())


class CountCalls(ndf.BlockProcessor):
    """Records ``key pid`` for every call of ``process`` (one file per call, so that
    worker processes never share a file), sleeps ``seconds``, and kills its worker process
    on the ``crash`` block the first time it meets it."""

    def __init__(self, folder, seconds=0.0, crash=None):
        self.folder = str(folder)
        self.seconds = seconds
        self.crash = crash

    def process(self, data, block):
        Path(self.folder, f"call-{block.key}-{os.getpid()}-{time.monotonic_ns()}").touch()
        time.sleep(self.seconds)
        marker = Path(self.folder, f"crashed-{block.key}")
        if block.key == self.crash and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(3)
        return block.key

    @staticmethod
    def calls(folder):
        """``{key: [pid, ...]}`` of every call recorded in ``folder``."""
        calls = {}
        for name in os.listdir(folder):
            if name.startswith("call-"):
                _, key, pid, _ = name.split("-")
                calls.setdefault(key, []).append(int(pid))
        return calls


class DieInSetup(ndf.BlockProcessor):
    """Kills its worker process in ``setup()``, as a model too large for memory would."""

    def setup(self):
        os._exit(3)

    def process(self, data, block):
        return 1


class Announcements:
    """A named pipe at ``path`` on which blocks, and the processes a test starts, announce
    what they do, and on which the test waits for them: a wait on an event, not a poll.

    An announcement is a line written at once (``open(path, "w").write(line + "\\n")``,
    which pipes keep whole). Make the pipe before anything announces, and keep it open
    while anything may: an announcement blocks while the pipe has no reader.
    """

    def __init__(self, path):
        self.path = str(path)
        os.mkfifo(self.path)
        self._reader = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        # a writer of its own: the pipe never reads as ended between two announcements
        self._writer = os.open(self.path, os.O_WRONLY)
        self._partial = b""
        self.lines: list[str] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.close(self._writer)
        os.close(self._reader)

    def wait(self, count, process=None, timeout=30.0):
        """Every line announced so far, once there are ``count``; an AssertionError when
        ``process`` (a `subprocess.Popen`) ends first, or when no line comes for
        ``timeout`` seconds."""
        watched = [self._reader]
        if process is not None:
            watched.append(os.pidfd_open(process.pid))  # ready once the process ends
        try:
            while len(self.lines) < count:
                ready, _, _ = select.select(watched, [], [], timeout)
                if self._reader in ready:
                    self._partial += os.read(self._reader, 65536)
                    *whole, self._partial = self._partial.split(b"\n")
                    self.lines.extend(line.decode() for line in whole)
                elif ready:
                    raise AssertionError(f"the process ended after {len(self.lines)} of "
                                         f"{count} announcements {self.lines}: "
                                         f"{process.communicate()}")
                else:
                    raise AssertionError(f"{len(self.lines)} of {count} announcements "
                                         f"{self.lines}, then none for {timeout} s")
        finally:
            for pidfd in watched[1:]:
                os.close(pidfd)
        return list(self.lines)

