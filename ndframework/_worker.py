"""What runs in a worker: read a block, process it, write its outputs, report an outcome.

Only a block's coordinates go in and a small `BlockOutcome` comes out; voxel data stay in
the worker. A worker is set up by the first task a thread runs for a run session, whatever
pool the thread belongs to, and torn down by `end_worker` in the same thread (or as its
process exits): it loads its own copy of the processor (cloudpickled, so classes defined in
``__main__`` or a notebook travel too) and runs its ``setup``. Worker processes also receive
the source and sink cloudpickled and open their own; worker threads share the coordinator's.
Workers are kept per thread and per run session, so a pipeline run inside ``process`` (a
nested run) does not disturb the run around it.
"""

from __future__ import annotations

import atexit
import copy
import logging
import os
import sys
import threading
import time
import traceback
from typing import Any, Callable, Mapping

import attrs
import cloudpickle
import numpy as np

from ._padding import read_padded
from .errors import ChannelError, OutputError
from .geometry import Block
from .executors._session import WorkerSession, find_session
from .processor import BlockOutput, BlockProcessor
from .result import BlockOutcome, BlockStatus, BlockTimings
from .storage import DataSink, DataSource

__all__ = ["WorkerContext", "run_block", "run_blocks", "end_worker", "end_session"]

logger = logging.getLogger("ndframework.worker")

@attrs.frozen
class WorkerContext:
    """What a worker reads from and writes to: the same for every worker of a run."""

    source: DataSource
    """Where the worker reads its blocks."""
    channels: tuple[str, ...]
    """Channels to read."""
    sink: DataSink | None = None
    """Where outputs go, if anywhere."""
    log_level: int = logging.WARNING
    """The coordinator's level for the ``ndframework`` loggers, which worker processes
    show on standard error too."""


class ForcedInterrupt(KeyboardInterrupt):
    """A second Ctrl-C (or SIGTERM) during a run: raised by the coordinator's signal handler wherever
    the main thread is, also inside a block run by the serial executor, which must let it
    through rather than record the block as failed."""


class _Worker:
    """One worker's state for one run session: its context, its own processor, and how
    setup went. Made by the first task the session's blocks give the thread, and kept in
    that thread until `end_worker` (or the process's exit)."""

    def __init__(self, session: WorkerSession) -> None:
        self.name = f"{os.getpid()}/{threading.current_thread().name}"
        self.session_id = session.id
        self.pid = os.getpid()
        self.thread = threading.current_thread()
        self.board = session.board
        self.row = -1 if self.board is None else self.board.claim()
        self.setup_error: tuple[str, str] | None = None
        self.processor: BlockProcessor | None = None
        self.ended = False
        try:
            context, processor = session.context, session.processor
            self.context: WorkerContext = (
                cloudpickle.loads(context) if isinstance(context, bytes) else context
            )
            if self.pid != session.coordinator:
                _log_like_the_coordinator(self.context.log_level)
            self.processor = (cloudpickle.loads(processor) if isinstance(processor, bytes)
                              else copy.deepcopy(processor))
            self.processor.setup()
        except Exception as error:
            self.setup_error = (_describe(error), "".join(traceback.format_exception(error)))

    def teardown(self) -> None:
        """Run the processor's ``teardown``, once, in the process that set it up."""
        if self.ended or self.pid != os.getpid():  # a forked child keeps its parent's
            return
        self.ended = True
        if self.setup_error is not None or self.processor is None:
            return
        try:
            self.processor.teardown()
        except Exception:  # the blocks are done: report, and let the other workers stop
            logger.warning("teardown() failed in worker %s", self.name, exc_info=True)


WORKER_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [worker %(process)d]: %(message)s"
"""How a worker process shows a log record on standard error."""


def _log_like_the_coordinator(level: int) -> None:
    """In a worker process: show the ``ndframework`` records at the coordinator's
    ``level`` and above on standard error (a BOSS request retried, a teardown that failed),
    unless the process has handlers already (a forked worker inherits the coordinator's)."""
    package = logging.getLogger("ndframework")
    package.setLevel(level)
    if not package.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(WORKER_LOG_FORMAT))
        package.addHandler(handler)


_local = threading.local()
"""Per thread: its workers, by session id."""
_every: dict[str, list[_Worker]] = {}
"""Per session id: its workers in this process, whatever their thread."""
_every_lock = threading.Lock()
_exit_registered: set[int] = set()
"""The processes (pids) whose exit ends the workers left in them."""


class _ThreadWorkers(dict):
    """A thread's workers by session id. Workers still here when the thread ends are torn
    down as CPython clears the thread's locals, which it does in the ending thread before a
    ``join`` of it returns: so a pool that gives no chance to call `end_worker` (the
    standard ``ThreadPoolExecutor``) still has ``teardown`` run in the thread of ``setup``.
    (``threading.current_thread()`` is a dummy by then; the OS thread is the same.)"""

    def __del__(self) -> None:
        pid = os.getpid()
        for worker in [worker for worker in self.values() if worker.pid == pid]:
            _end(worker)


def _after_fork_in_child() -> None:
    """A forked process starts with none of its parent's workers, and with fresh locks: a
    lock some other thread of the parent held as it forked would stay held for ever."""
    global _every_lock
    _every_lock = threading.Lock()
    _every.clear()
    _exit_registered.clear()
    _local.workers = _ThreadWorkers()  # the parent's, dropped: theirs to tear down


os.register_at_fork(after_in_child=_after_fork_in_child)


def _workers() -> dict[str, _Worker]:
    try:
        return _local.workers  # type: ignore[no-any-return]
    except AttributeError:
        _local.workers = _ThreadWorkers()
        return _local.workers  # type: ignore[no-any-return]


def _worker(session: WorkerSession | str) -> _Worker:
    """This thread's worker for ``session``, set up now if it has none yet."""
    workers = _workers()
    key = session if isinstance(session, str) else session.id
    worker = workers.get(key)
    if worker is None:
        found = find_session(session)
        worker = workers[key] = _Worker(found)
        with _every_lock:
            _every.setdefault(key, []).append(worker)
        if worker.pid != found.coordinator and worker.pid not in _exit_registered:
            _exit_registered.add(worker.pid)
            _at_process_exit(_end_every_worker)
    return worker


def end_worker(session: str | None = None) -> None:
    """Tear down this thread's worker for run session ``session`` (every session's when
    None): its processor's ``teardown`` runs here, in the thread that ran its ``setup``.

    A pool that can run code in each worker thread as it stops calls this there (the
    built-in thread pools do). Otherwise a worker is torn down as its thread ends, or as
    its process exits.
    """
    workers = _workers()
    for key in [session] if session is not None else list(workers):
        worker = workers.pop(key, None)
        if worker is not None:
            _end(worker)


def end_session(session: str) -> None:
    """Tear down run session ``session``'s workers left in this process by threads that
    have ended: the coordinator's last word on a pool it shut down. (Threads that live on
    tear theirs down as they end.)"""
    with _every_lock:
        workers = [w for w in _every.get(session, []) if not w.thread.is_alive()]
    for worker in workers:
        _end(worker)


def _end(worker: _Worker) -> None:
    """Tear ``worker`` down, and forget it."""
    with _every_lock:
        kept = [w for w in _every.get(worker.session_id, []) if w is not worker]
        if kept:
            _every[worker.session_id] = kept
        else:
            _every.pop(worker.session_id, None)
    worker.teardown()


def _end_every_worker() -> None:
    """Tear down every worker left in this process (it exits), this thread's first."""
    end_worker()
    with _every_lock:
        left = [worker for workers in _every.values() for worker in workers]
        _every.clear()
    for worker in left:
        worker.teardown()


def _at_process_exit(function: Callable[[], None]) -> None:
    """Call ``function`` as this process exits normally.

    Processes started by `multiprocessing` (the workers of a process pool) leave through
    ``os._exit``, which skips `atexit`; before that they run `multiprocessing`'s own exit
    finalizers, in their main thread, which is the thread that ran their tasks. Both are
    registered: the function must be idempotent.
    """
    from multiprocessing import util

    util.Finalize(None, function, exitpriority=10)
    atexit.register(function)


def run_block(session: WorkerSession | str, block: Block, ticket: int = 0) -> BlockOutcome:
    """Read, process and write one block in this thread's worker for ``session``; report
    what happened. ``ticket`` names this try of the block on the worker board."""
    outcome = run_blocks(session, [(block, ticket)])[0]
    assert outcome is not None
    return outcome


def run_blocks(session: WorkerSession | str,
               blocks: list[tuple[Block, int]]) -> list[BlockOutcome | None]:
    """`run_block` for each ``(block, ticket)`` of a batch, one after the other: one task
    and one message for several blocks, each with its own outcome, each shown on the
    worker board while it runs.

    The batch ends early, its other blocks given back as None (not run), after a block
    that is not done, so that a failure costs one block, not a batch, and the coordinator
    hears of it at once; and when the coordinator has halted the board (the run stops).
    """
    worker = _worker(session)
    board = worker.board
    outcomes: list[BlockOutcome | None] = []
    for block, ticket in blocks:
        if board is not None:
            if board.halted():
                break
            board.begin(worker.row, ticket)
        try:
            outcome = _run_block(worker, block)
        finally:
            if board is not None:
                board.end(worker.row)
        outcomes.append(outcome)
        if not outcome.ok:
            break
    return outcomes + [None] * (len(blocks) - len(outcomes))


def _run_block(worker: _Worker, block: Block) -> BlockOutcome:
    if worker.setup_error is not None:
        error, trace = worker.setup_error
        return BlockOutcome(block.key, BlockStatus.SETUP_ERROR, error=error, traceback=trace,
                            worker=worker.name)
    context, processor = worker.context, worker.processor
    assert processor is not None
    clock = time.perf_counter
    started = clock()
    try:
        data = read_padded(context.source, block, context.channels, processor.halo_mode,
                           processor.halo_cval)
    except Exception as error:
        return _failure(block, BlockStatus.DATA_ERROR, error, worker,
                        BlockTimings(read=clock() - started))
    read_done = clock()
    try:
        arrays, value = _split(processor.process(data, block), context.sink, block)
    except BaseException as error:  # sys.exit() and KeyboardInterrupt in a block fail it too
        if isinstance(error, (GeneratorExit, ForcedInterrupt)):
            raise
        timings = BlockTimings(read_done - started, clock() - read_done)
        retry = isinstance(error, processor.retry_on) if processor.retry_on else False
        outcome = _failure(block, BlockStatus.FAILED, error, worker, timings, retryable=retry)
        return attrs.evolve(outcome, stops_run=True) if isinstance(error, _NoSink) else outcome
    del data
    processed = clock()
    if context.sink is not None and arrays:
        try:
            context.sink.write(block.box, arrays)
        except (OutputError, ChannelError) as error:
            timings = BlockTimings(read_done - started, processed - read_done)
            return _failure(block, BlockStatus.FAILED, error, worker, timings)
        except Exception as error:
            timings = BlockTimings(read_done - started, processed - read_done, clock() - processed)
            return _failure(block, BlockStatus.DATA_ERROR, error, worker, timings)
    timings = BlockTimings(read_done - started, processed - read_done, clock() - processed)
    return BlockOutcome(block.key, BlockStatus.DONE, value=value, timings=timings,
                        worker=worker.name)


class _NoSink(OutputError):
    """``process`` returned arrays of the block's shape, and the pipeline has no sink."""


def _split(result: Any, sink: DataSink | None,
           block: Block) -> tuple[Mapping[str, Any], Any]:
    """Separate a processor's return value into sink arrays and the per-block value."""
    if isinstance(result, BlockOutput):
        if result.arrays and sink is None:
            raise _NoSink(
                f"the processor returned arrays {sorted(result.arrays)} but the pipeline has "
                f"no sink to write them to"
            )
        return result.arrays, result.value
    if sink is not None:
        if result is None:
            return {}, None
        if not isinstance(result, Mapping):
            raise OutputError(
                f"with a sink, process() must return {{channel: array}} or a BlockOutput, "
                f"got {type(result).__name__}"
            )
        return result, None
    voxels = _voxel_arrays(result, block)
    if voxels:
        raise _NoSink(
            f"process() returned {voxels} of the block's shape but the pipeline has no sink "
            f"to write them to: give the pipeline a sink (ndframework run: --output PATH), "
            f"or return BlockOutput(value=...) to send them back as the block's value"
        )
    return {}, result


def _voxel_arrays(result: Any, block: Block) -> str:
    """What in ``result`` is a 3-D array of the block's owned or read shape (meant for a
    sink, not to be sent back as a value), described; empty when nothing is."""
    shapes = (block.box.shape, block.read_box.shape)

    def voxels(value: Any) -> bool:
        return isinstance(value, np.ndarray) and value.ndim == 3 and value.shape in shapes

    if voxels(result):
        return f"a 3-D array of shape {result.shape}"
    if isinstance(result, Mapping):
        found = {name: value.shape for name, value in result.items() if voxels(value)}
        if found:
            listed = ", ".join(f"{name!r}: {shape}" for name, shape in found.items())
            return f"3-D arrays ({listed})"
    return ""


def _describe(error: BaseException) -> str:
    name = "OutputError" if isinstance(error, _NoSink) else type(error).__name__
    return f"{name}: {error}"


def _failure(
    block: Block, status: BlockStatus, error: BaseException, worker: _Worker,
    timings: BlockTimings, *, retryable: bool = False,
) -> BlockOutcome:
    return BlockOutcome(
        block.key,
        status,
        error=_describe(error),
        traceback="".join(traceback.format_exception(error)),
        timings=timings,
        worker=worker.name,
        retryable=retryable,
    )
