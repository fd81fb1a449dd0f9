"""Progress of a run, drawn to fit where it runs: a tqdm bar in a terminal or a notebook, and
elsewhere (a batch job's log, a pipe, a file) a plain line every so often."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any, Iterator

from ..errors import ConfigError
from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..geometry import Block
    from ..result import BlockOutcome, RunInfo, RunResult

__all__ = ["ProgressBar"]

PREFIX = "ndframework"
"""What every plain progress line starts with, so that a batch log can be searched for them."""


class ProgressBar:
    """Shows the progress of a run: blocks finished, blocks failed, the rate and the time
    left.

    Where ``file`` is a terminal (or, with the default ``file``, in a Jupyter notebook), a
    tqdm bar is drawn and redrawn in place; warnings, log records and prints written to
    the same terminal while it is drawn appear on lines of their own above it. Elsewhere
    (standard error redirected to a batch job's log or a pipe) it writes one plain line
    when the run starts, at most one every ``interval`` seconds while blocks finish, and
    one when the run ends::

        ndframework: 1,204/10,000 blocks (12.0%), 3 failed, 41.2 blocks/s, 3m34s left

    The counts are of blocks finished (done or failed); a run resumed from its journal
    starts from the blocks done before.

    Parameters
    ----------
    file:
        Where to write (default: standard error, looked up when the run starts).
    disable:
        True shows nothing; None shows the bar in a terminal or notebook and nothing
        elsewhere; False (the default) shows the bar or the plain lines.
    interval:
        Least seconds between two plain lines (not the bar's redraws).
    **tqdm_options:
        Passed to `tqdm.tqdm` for the bar, e.g. ``mininterval`` or ``ncols``.

    Examples
    --------
    >>> import io, numpy as np, ndframework as ndf
    >>> log = io.StringIO()  # not a terminal: plain lines
    >>> source = ndf.InMemorySource({"em": np.zeros((4, 8, 8), np.uint8)})
    >>> result = ndf.Pipeline(source, lambda data: 1, tiler=ndf.RegularTiler((2, 8, 8)),
    ...                       executor="serial", plugins=[ndf.ProgressBar(log)]).run()
    >>> print(log.getvalue().splitlines()[0])
    ndframework: 0/2 blocks (0.0%), 0 failed, starting
    """

    def __init__(self, file: IO[str] | None = None, disable: bool | None = False,
                 interval: float = 30.0, **tqdm_options: Any) -> None:
        if disable not in (True, False, None):
            raise ConfigError(f"disable must be True, False or None, got {disable!r}", disable)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) \
                or not math.isfinite(interval) or interval <= 0:
            raise ConfigError(
                f"interval must be a positive number of seconds, got {interval!r}", interval)
        self.file = file
        self.disable = disable
        self.interval = float(interval)
        self.tqdm_options = tqdm_options
        self._view: _Bar | _Lines | None = None

    def __repr__(self) -> str:
        return (f"ProgressBar(file={self.file!r}, disable={self.disable!r}, "
                f"interval={self.interval:g})")

    @hookimpl
    def ndf_before_run(self, run: RunInfo) -> None:
        self._close()
        if self.disable is True:
            return
        file = self.file if self.file is not None else sys.stderr
        while isinstance(file, _LineWriter):  # a run inside a run drawing its bar
            file = file.target
        notebook = self.file is None and _in_notebook()
        if notebook or _isatty(file):
            self._view = _Bar(file, run.block_count, _done_before(run), notebook,
                              self.tqdm_options)
        elif self.disable is False:
            self._view = _Lines(file, run.block_count, _done_before(run), self.interval)

    @hookimpl
    def ndf_after_block(self, run: RunInfo, block: Block, outcome: BlockOutcome) -> None:
        if self._view is not None:
            self._view.finished(failed=False)

    @hookimpl
    def ndf_on_block_error(self, run: RunInfo, block: Block, outcome: BlockOutcome) -> None:
        if self._view is not None:
            self._view.finished(failed=True)

    @hookimpl
    def ndf_after_run(self, run: RunInfo, result: RunResult) -> None:
        self._close(result)

    def _close(self, result: RunResult | None = None) -> None:
        view, self._view = self._view, None
        if view is not None:
            view.close(result)


# -- the bar ---------------------------------------------------------------------------------


class _Bar:
    """A tqdm bar of the run's blocks, with the failed count beside the rate and time left."""

    def __init__(self, file: IO[str], total: int, done_before: int, notebook: bool,
                 options: dict[str, Any]) -> None:
        if notebook:
            from tqdm.auto import tqdm  # a widget in Jupyter
        else:
            from tqdm.std import tqdm
        settings = dict(desc="blocks", unit="block", file=file, initial=done_before)
        settings.update(options)
        self.bar = tqdm(total=total, **settings)
        self.failed = 0
        self.bar.set_postfix(failed=0, refresh=False)
        self.above = contextlib.ExitStack()
        if not notebook and not self.bar.disable:
            try:
                self.above.enter_context(_lines_above(self.bar, file))
            except BaseException:
                self.bar.close()
                raise

    def finished(self, *, failed: bool) -> None:
        if failed:
            self.failed += 1
            self.bar.set_postfix(failed=self.failed, refresh=False)
        self.bar.update(1)

    def close(self, result: RunResult | None) -> None:
        try:
            self.above.close()
        finally:
            self.bar.close()


class _LineWriter:
    """A text stream over ``target`` that writes whole lines at a time, clearing the bar
    drawn on the same terminal first and redrawing it after: lines never glue to the bar.
    A line not yet ended waits for its end (or for `detach`)."""

    def __init__(self, target: IO[str], bar: Any) -> None:
        self.target = target
        self.bar = bar
        self.pending = ""
        self.attached = True
        self.lock = threading.Lock()  # workers' threads may print while the bar is drawn

    def write(self, text: str) -> int:
        with self.lock:
            if not self.attached:
                return self.target.write(text)
            lines, newline, self.pending = (self.pending + text).rpartition("\n")
            if newline:
                with self.bar.get_lock():
                    self.bar.clear(nolock=True)
                    self.bar.fp.flush()  # the clearing reaches the terminal before the line
                    self.target.write(lines + "\n")
                    self.target.flush()
                    self.bar.refresh(nolock=True)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.target.flush()

    def detach(self) -> None:
        """Write straight to the target from now on, starting with any unended line."""
        with self.lock:
            self.attached = False
            if self.pending:
                self.target.write(self.pending)
                self.pending = ""

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, buffer, ...
        return getattr(self.target, name)


def _stream_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger()] + [logger for logger in
                                       list(logging.Logger.manager.loggerDict.values())
                                       if isinstance(logger, logging.Logger)]
    handlers: dict[int, logging.StreamHandler] = {}
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler):
                handlers[id(handler)] = handler
    return list(handlers.values())


@contextlib.contextmanager
def _lines_above(bar: Any, file: IO[str]) -> Iterator[None]:
    """While ``bar`` is drawn on the terminal ``file``: what the `warnings` module, log
    handlers and ``print`` write to that terminal (``file``, and standard output and error
    when they are terminals too) goes through a `_LineWriter`. Everything is put back on
    leaving, even when the run raised."""
    consoles = {id(file): file}
    for stream in (sys.stdout, sys.stderr):  # those an outer run redirects already are left
        if stream is not None and not isinstance(stream, _LineWriter) and _isatty(stream):
            consoles.setdefault(id(stream), stream)
    writers = {key: _LineWriter(stream, bar) for key, stream in consoles.items()}
    swapped_handlers: list[tuple[logging.StreamHandler, Any, _LineWriter]] = []
    swapped_streams: list[tuple[str, Any, _LineWriter]] = []
    try:
        for handler in _stream_handlers():
            writer = writers.get(id(handler.stream))
            if writer is not None:
                handler.setStream(writer)  # type: ignore[arg-type]
                swapped_handlers.append((handler, writer.target, writer))
        for name in ("stdout", "stderr"):  # warnings and logging's last resort write here
            writer = writers.get(id(getattr(sys, name)))
            if writer is not None:
                swapped_streams.append((name, getattr(sys, name), writer))
                setattr(sys, name, writer)
        yield
    finally:
        for name, stream, writer in reversed(swapped_streams):
            if getattr(sys, name) is writer:  # unless someone replaced it in the meantime
                setattr(sys, name, stream)
        for handler, stream, writer in swapped_handlers:
            if handler.stream is writer:
                handler.setStream(stream)
        for writer in writers.values():  # handlers made during the run may still hold one
            writer.detach()


def _plain_streams_in_child() -> None:
    """In a process forked while a bar is drawn (a worker of a script without the
    ``__main__`` guard): write straight to the streams, not through the parent's bar, whose
    copy here is stale and whose locks another thread of the parent may have held."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, _LineWriter):
            setattr(sys, name, stream.target)
    for handler in _stream_handlers():
        if isinstance(handler.stream, _LineWriter):
            handler.stream = handler.stream.target  # logging renewed its lock at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_plain_streams_in_child)


# -- plain lines -----------------------------------------------------------------------------


class _Lines:
    """One plain line at the start, at most one per ``interval`` as blocks finish, and one
    at the end: for logs that keep every character (no carriage-return redraws). While no
    block finishes (a slow block, a server that keeps failing and is retried), a line every
    ``interval`` says how long it has been, so that a batch log shows the run is alive."""

    def __init__(self, file: IO[str], total: int, done_before: int, interval: float) -> None:
        self.file: IO[str] | None = file
        self.total = total
        self.done_before = done_before
        self.interval = interval
        self.finished_count = 0
        self.failed = 0
        self.started = self.last_finished = time.monotonic()
        self.next_line = self.started + interval
        self.lock = threading.Lock()  # the hooks' thread, and the one that marks quiet times
        self.closed = threading.Event()
        resumed = f"resuming ({done_before:,} done before)" if done_before else "starting"
        self._write(f"{self._counts(done_before, 0)}, {resumed}")
        self.watch = threading.Thread(target=self._watch, name="ndframework-progress-lines",
                                      daemon=True)
        self.watch.start()

    def finished(self, *, failed: bool) -> None:
        with self.lock:
            self.finished_count += 1
            self.failed += failed
            now = self.last_finished = time.monotonic()
            if now < self.next_line:
                return
            self.next_line = now + self.interval
            rate = self.finished_count / max(now - self.started, 1e-9)
            left = self.total - self.done_before - self.finished_count
            line = f"{self._counts(self.done_before + self.finished_count, self.failed)}, " \
                   f"{_rate(rate)}"
            if left > 0:
                line += f", {_duration(left / rate)} left"
            self._write(line)

    def _watch(self) -> None:
        """Write a line when ``interval`` has passed with no block finished."""
        while not self.closed.wait(max(self.next_line - time.monotonic(), 0.01)):
            with self.lock:
                now = time.monotonic()
                if now < self.next_line or self.closed.is_set():
                    continue
                self.next_line = now + self.interval
                quiet = now - self.last_finished
                what = "since the start" if self.last_finished == self.started \
                    else "since the last one"
                self._write(f"{self._counts(self.done_before + self.finished_count, self.failed)}"
                            f", no block finished in {_duration(quiet)} {what}")

    def close(self, result: RunResult | None) -> None:
        self.closed.set()
        if self.watch is not threading.current_thread():
            self.watch.join()
        if result is None:  # a new run began before this one ended
            return
        counts = result.counts
        finished = counts.done + counts.failed
        line = f"{self._counts(finished + counts.skipped, counts.failed)}"
        if counts.not_run:
            line += f", {counts.not_run:,} not run"
        line += f", {_rate(finished / result.elapsed if result.elapsed > 0 else 0.0)}"
        if result.stopped:
            line += f", stopped after {_duration(result.elapsed)}: {result.stopped}"
        else:
            line += f", finished in {_duration(result.elapsed)}"
        self._write(line)

    def _counts(self, finished: int, failed: int) -> str:
        share = finished / self.total if self.total else 1.0
        return (f"{PREFIX}: {finished:,}/{self.total:,} blocks ({share:.1%}), "
                f"{failed:,} failed")

    def _write(self, line: str) -> None:
        if self.file is None:
            return
        try:  # one write per line: other output to the same file never lands inside it
            self.file.write(line + "\n")
            self.file.flush()
        except (OSError, ValueError):  # closed, or a broken pipe: the run goes on unseen
            self.file = None


# -- helpers ---------------------------------------------------------------------------------


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:  # closed, or not a real stream
        return False


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (the test tqdm.autonotebook makes)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
        return shell is not None and "IPKernelApp" in shell.config
    except Exception:
        return False


def _done_before(run: RunInfo) -> int:
    """Blocks of the run that its journal records done by earlier sessions (which this
    session skips, so no hook reports them), or 0 when that cannot be read."""
    if not run.journal:
        return 0
    from ..journal import Journal
    from ..result import BlockStatus

    try:
        journal = Journal.read(run.journal)
        try:
            return journal.count(status=BlockStatus.DONE, session=run.session,
                                 other_sessions=True)
        finally:
            journal.close()
    except (ConfigError, sqlite3.Error, OSError):
        return 0


def _rate(blocks_per_second: float) -> str:
    """``41.2 blocks/s``, or seconds per block when blocks take longer than a second.

    >>> _rate(41.23), _rate(0.08), _rate(0.0)
    ('41.2 blocks/s', '12.5 s/block', '0.0 blocks/s')
    """
    if 0 < blocks_per_second < 1:
        return f"{1 / blocks_per_second:,.1f} s/block"
    return f"{blocks_per_second:,.1f} blocks/s"


def _duration(seconds: float) -> str:
    """Seconds as the two largest units that matter.

    >>> _duration(0.42), _duration(59.6), _duration(214), _duration(7530), _duration(200000)
    ('0.4s', '1m00s', '3m34s', '2h05m', '2d07h')
    """
    if seconds < 9.95:
        return f"{max(0.0, seconds):.1f}s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
