"""The progress plugin: plain lines in a batch log, a bar in a terminal, and output of the
`warnings` and `logging` modules never glued to either."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import textwrap
import threading

import numpy as np
import pytest

import ndframework as ndf
from processors import BrokenSource, FailOn

BLOCKS = 300
"""Blocks of the subprocess's run: 3 x 10 x 10 blocks of one voxel row each."""

SCRIPT = textwrap.dedent('''
    import logging, sys, time, warnings
    import numpy as np
    import ndframework as ndf

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    class Slow(ndf.BlockProcessor):
        def process(self, data, block):
            time.sleep(0.003)
            if block.key in ("0_0_0", "2_9_90"):
                raise ValueError("this block fails")
            return 1

    class Noisy:
        """Warns, logs and prints from the coordinator halfway through the run."""

        @ndf.hookimpl
        def ndf_after_block(self, run, block, outcome):
            if block.key == "1_5_0":
                warnings.warn("halfway there", UserWarning)
                logging.getLogger("ndframework.test").warning("a log record")
                print("a printed line")

    source = ndf.InMemorySource({"em": np.zeros((3, 10, 100), np.uint8)})
    progress = ndf.ProgressBar(interval=float(sys.argv[1]))
    result = ndf.Pipeline(source, Slow(), tiler=ndf.RegularTiler((1, 1, 10)),
                          executor="serial", plugins=[progress, Noisy()]).run()
    print(result.summary().splitlines()[0])
''')


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "progress_run.py"
    path.write_text(SCRIPT)
    return path


def test_a_batch_log_gets_a_few_plain_lines_and_warnings_on_lines_of_their_own(script,
                                                                             tmp_path):
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        subprocess.run([sys.executable, str(script), "0.3"], stdout=stdout, stderr=stderr,
                       stdin=subprocess.DEVNULL, timeout=60, check=True,
                       cwd=os.path.dirname(__file__))
    text = err.read_text()
    assert "\r" not in text
    lines = text.splitlines()
    progress = [line for line in lines if line.startswith("ndframework: ")]
    # the run lasts at least 0.9 s (300 blocks of 3 ms): a first line, one or more every
    # 0.3 s, and a last one; never one per block
    assert 3 <= len(progress) < BLOCKS / 10, progress
    assert progress[0] == f"ndframework: 0/{BLOCKS} blocks (0.0%), 0 failed, starting"
    assert re.fullmatch(r"ndframework: \d+/300 blocks \(\d+\.\d%\), [0-2] failed, "
                        r"([\d.,]+ blocks/s, [\w.]+ left|no block finished in [\w.]+ "
                        r"since the (start|last one))", progress[1]), progress[1]
    assert re.fullmatch(rf"ndframework: {BLOCKS}/{BLOCKS} blocks \(100\.0%\), 2 failed, "
                        r"[\d.,]+ blocks/s, finished in [\w.]+", progress[-1]), progress[-1]
    assert lines.index(progress[-1]) >= len(lines) - 2  # the logging plugin's line may follow
    assert all("ndframework: " not in line for line in lines if line not in progress)
    warning = [line for line in lines if "UserWarning: halfway there" in line]
    assert len(warning) == 1 and warning[0].endswith("UserWarning: halfway there")
    assert warning[0].startswith(str(script))
    assert "WARNING ndframework.test: a log record" in lines
    assert any(line.startswith("INFO ndframework.run: run ") for line in lines)
    printed = out.read_text().splitlines()
    assert printed[0] == "a printed line" and len(printed) == 2
    assert printed[1].startswith(f"NOT OK: {BLOCKS - 2} done, 2 failed, 0 skipped")


# -- terminals -------------------------------------------------------------------------------


class Terminal:
    """A pseudo-terminal of 120 columns whose output is read as it comes (so that writers
    never block on a full buffer)."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every slave end is closed
                return
            if not chunk:
                return
            self.chunks.append(chunk)

    def close_slave(self) -> None:
        if self.slave is not None:
            os.close(self.slave)
            self.slave = None

    def output(self) -> str:
        """Everything written, once every slave end is closed."""
        self.close_slave()
        self.reader.join(timeout=30)
        assert not self.reader.is_alive(), "the terminal's output did not end"
        os.close(self.master)
        return b"".join(self.chunks).decode()


def screen(raw: str) -> list[str]:
    """The lines a terminal shows for ``raw``: carriage returns move back to the start of
    the line, characters overwrite what is there."""
    raw = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    lines: list[str] = []
    for text in raw.split("\n"):
        shown: list[str] = []
        column = 0
        for char in text:
            if char == "\r":
                column = 0
                continue
            if column < len(shown):
                shown[column] = char
            else:
                shown.append(char)
            column += 1
        lines.append("".join(shown).rstrip())
    return lines


def test_a_terminal_gets_a_bar_redrawn_in_place_with_messages_above_it(script):
    terminal = Terminal()
    try:
        process = subprocess.Popen([sys.executable, str(script), "30"],
                                   stdin=subprocess.DEVNULL, stdout=terminal.slave,
                                   stderr=terminal.slave, cwd=os.path.dirname(__file__))
        terminal.close_slave()
        assert process.wait(timeout=60) == 0
    finally:
        raw = terminal.output()
    assert raw.count("\r") > 3 and raw.count("blocks:") > 3, raw  # redrawn in place
    assert "ndframework: " not in raw  # no plain lines in a terminal
    lines = screen(raw)
    bars = [line for line in lines if line.startswith("blocks:")]
    assert re.search(rf"{BLOCKS}/{BLOCKS} \[.*block/s, failed=2\]$", bars[-1]), bars[-1]
    for message in ("UserWarning: halfway there", "WARNING ndframework.test: a log record",
                    "a printed line"):
        shown = [line for line in lines if message in line]
        assert len(shown) == 1, (message, lines)
        assert "blocks:" not in shown[0] and "|" not in shown[0], shown[0]
    assert any(line.startswith("NOT OK: 298 done, 2 failed") for line in lines)


@pytest.fixture
def terminal():
    terminal = Terminal()
    file = os.fdopen(os.dup(terminal.slave), "w")
    yield file, terminal
    file.close()


def test_standard_streams_and_log_handlers_are_restored_after_a_run_that_raises(
        volume, terminal, monkeypatch):
    file, pty_terminal = terminal
    monkeypatch.setattr(sys, "stderr", file)
    handler = logging.StreamHandler(file)
    other = logging.StreamHandler(io.StringIO())  # not the terminal: left alone
    logger = logging.getLogger("ndframework.test.progress")
    logger.addHandler(handler)
    logger.addHandler(other)
    seen = {}

    class Look:
        @ndf.hookimpl
        def ndf_after_block(self, run, block, outcome):
            seen["stderr"], seen["handler"] = sys.stderr, handler.stream
            seen["other"] = other.stream

    try:
        source = BrokenSource(volume, ndf.Box((5, 0, 0), (6, 1, 1)))
        with pytest.raises(ndf.DataAccessError):
            ndf.Pipeline(source, lambda data: 1, tiler=ndf.RegularTiler(5),
                         executor="serial", plugins=[ndf.ProgressBar(), Look()]).run()
    finally:
        logger.removeHandler(handler)
        logger.removeHandler(other)
    assert seen["stderr"] is not file and seen["handler"] is not file, "redirected in the run"
    assert seen["other"] is other.stream
    assert sys.stderr is file and handler.stream is file
    file.close()
    os.close(pty_terminal.slave)
    pty_terminal.slave = None
    raw = pty_terminal.output()
    assert "blocks:" in raw and "\r" in raw


class InnerRunWithProgress(ndf.BlockProcessor):
    """Runs a small pipeline with a progress bar of its own inside ``process``."""

    def process(self, data, block):
        inner = ndf.Pipeline(ndf.InMemorySource({"x": np.ones((2, 2, 2), np.uint8)}),
                             lambda data: 1, tiler=ndf.RegularTiler(1), executor="serial",
                             plugins=[ndf.ProgressBar()], load_entrypoints=False).run()
        assert not inner.plugin_errors, inner.plugin_errors
        return inner.counts.done


def test_a_run_inside_a_run_with_bars_of_their_own_puts_the_streams_back(source, terminal,
                                                                            monkeypatch):
    file, pty_terminal = terminal
    monkeypatch.setattr(sys, "stderr", file)
    tiler = ndf.RegularTiler((5, 24, 20), origin=source.bounds.start)
    result = ndf.Pipeline(source, InnerRunWithProgress(), tiler=tiler, executor="serial",
                          plugins=[ndf.ProgressBar()], load_entrypoints=False).run()
    assert result.ok and not result.plugin_errors
    assert result.values == {"0_100_200": 8, "5_100_200": 8}
    assert sys.stderr is file
    file.close()
    pty_terminal.close_slave()
    raw = pty_terminal.output()
    assert "8/8" in raw and "2/2" in raw


def test_a_pseudo_terminal_given_as_file_gets_the_bar(source, terminal):
    file, pty_terminal = terminal
    tiler = ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)
    ndf.Pipeline(source, FailOn(["0_100_200"]), tiler=tiler, executor="threads",
                 plugins=[ndf.ProgressBar(file, mininterval=0)]).run()
    file.close()
    pty_terminal.close_slave()
    lines = screen(pty_terminal.output())
    assert re.search(r"8/8 \[.*block/s, failed=1\]$", lines[-2]), lines


# -- plain lines -----------------------------------------------------------------------------


def test_plain_lines_count_blocks_done_before_when_a_run_resumes(source, tmp_path):
    tiler = ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)
    journal = tmp_path / "run.sqlite"
    first, second = io.StringIO(), io.StringIO()
    ndf.Pipeline(source, FailOn(["0_100_200"]), tiler=tiler, executor="serial",
                 journal=journal, max_failures=0,
                 plugins=[ndf.ProgressBar(first, interval=3600)]).run()
    assert first.getvalue().splitlines() == [
        "ndframework: 0/8 blocks (0.0%), 0 failed, starting",
        first.getvalue().splitlines()[-1],
    ]
    assert first.getvalue().splitlines()[-1].startswith(
        "ndframework: 8/8 blocks (100.0%), 1 failed, ")
    result = ndf.Pipeline(source, FailOn(["0_100_200"]), tiler=tiler, executor="serial",
                          journal=journal, max_failures=0,
                          plugins=[ndf.ProgressBar(second, interval=3600)]).run()
    assert result.counts.skipped == 7
    lines = second.getvalue().splitlines()
    assert lines[0] == "ndframework: 7/8 blocks (87.5%), 0 failed, resuming (7 done before)"
    assert lines[1].startswith("ndframework: 8/8 blocks (100.0%), 1 failed, ")
    assert len(lines) == 2


def test_a_run_stopped_early_says_so_in_its_last_line(source):
    stream = io.StringIO()
    tiler = ndf.RegularTiler((5, 12, 10), origin=source.bounds.start)
    keys = [block.key for block in tiler.blocks(source.bounds)]
    ndf.Pipeline(source, FailOn(keys[:2]), tiler=tiler, executor="serial", max_failures=2,
                 plugins=[ndf.ProgressBar(stream)]).run()
    last = stream.getvalue().splitlines()[-1]
    match = re.fullmatch(r"ndframework: (\d)/8 blocks \(.*%\), 2 failed, (\d) not run, "
                         r".* blocks/s, stopped after [\d.]+s: max_failures=2 reached.*", last)
    assert match and int(match[1]) + int(match[2]) == 8, last


@pytest.mark.parametrize("disable", [True, None])
def test_nothing_is_written_when_disabled_or_when_disable_is_none_off_a_terminal(source,
                                                                                 disable):
    stream = io.StringIO()
    ndf.Pipeline(source, lambda data: 1, executor="serial",
                 plugins=[ndf.ProgressBar(stream, disable=disable)]).run()
    assert stream.getvalue() == ""


def test_disable_true_hides_the_bar_in_a_terminal_too(source, terminal):
    file, pty_terminal = terminal
    ndf.Pipeline(source, lambda data: 1, executor="serial",
                 plugins=[ndf.ProgressBar(file, disable=True)]).run()
    file.close()
    pty_terminal.close_slave()
    assert pty_terminal.output() == ""


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf"), "30", True])
def test_a_bad_interval_is_refused_naming_it(interval):
    with pytest.raises(ndf.ConfigError, match=r"interval must be a positive number of "
                                              r"seconds, got"):
        ndf.ProgressBar(interval=interval)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_process_forked_while_the_bar_is_drawn_writes_straight_to_its_streams(
        volume, terminal, monkeypatch):
    # a worker of a script without the __main__ guard is forked during the run
    file, _ = terminal
    monkeypatch.setattr(sys, "stderr", file)
    handler = logging.StreamHandler(file)
    logger = logging.getLogger("ndframework.test.fork")
    logger.addHandler(handler)
    seen = {}

    class ForkInTheRun:
        @ndf.hookimpl
        def ndf_after_block(self, run, block, outcome):
            if seen:
                return
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: report what it writes through, then leave at once
                plain = sys.stderr is file and handler.stream is file
                os.write(write, b"plain" if plain else b"wrapped")
                os._exit(0)
            os.close(write)
            seen["child"] = os.read(read, 100).decode()
            os.close(read)
            os.waitpid(pid, 0)
            seen["parent"] = sys.stderr is not file  # still drawn through the bar here

    try:
        ndf.Pipeline(ndf.InMemorySource(volume), lambda data: 1,
                     tiler=ndf.RegularTiler((5, 24, 20)), executor="serial",
                     plugins=[ndf.ProgressBar(), ForkInTheRun()]).run()
    finally:
        logger.removeHandler(handler)
    assert seen == {"child": "plain", "parent": True}


_heard = threading.Semaphore(0)
"""Released for each line a `_HeardLog` gets that says no block finished yet."""


class _HeardLog(io.StringIO):
    def write(self, text):
        if "no block finished" in text:
            _heard.release()
        return super().write(text)


def _until_heard_twice(data):
    """A block that lasts until the run's log has said twice that none finished."""
    assert _heard.acquire(timeout=30) and _heard.acquire(timeout=30)
    return 0


def test_a_batch_log_hears_from_a_run_whose_blocks_take_long(volume):
    # a slow block, or a server retried for minutes: a line every interval all the same
    global _heard
    _heard = threading.Semaphore(0)
    log = _HeardLog()
    slow = _until_heard_twice

    ndf.Pipeline(ndf.InMemorySource(volume), slow, tiler=ndf.RegularTiler((10, 24, 20)),
                 executor="serial", plugins=[ndf.ProgressBar(file=log, interval=0.25)]).run()
    lines = log.getvalue().splitlines()
    assert lines[0] == "ndframework: 0/1 blocks (0.0%), 0 failed, starting"
    quiet = lines[1:-1]
    assert len(quiet) >= 2, lines
    assert all(re.fullmatch(r"ndframework: 0/1 blocks \(0\.0%\), 0 failed, no block "
                            r"finished in \d+\.\ds since the start", line) for line in quiet)
    assert lines[-1].startswith("ndframework: 1/1 blocks (100.0%), 0 failed")
    assert not any(thread.name == "ndframework-progress-lines"
                   for thread in threading.enumerate())  # ended with the run
