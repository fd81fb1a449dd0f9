"""What runs in a worker: read a block, process it, write its outputs, report an outcome.

Only a block's coordinates go in and a small `BlockOutcome` comes out; voxel data stay in
the worker. A worker is set up once per run by `initialize` and torn down by `finalize`, in
the same thread: it loads its own copy of the processor (cloudpickled, so classes defined in
``__main__`` or a notebook travel too) and runs its ``setup``. Worker processes also receive
the source and sink cloudpickled and open their own; worker threads share the coordinator's.
Workers are kept per thread and per run, so a pipeline run inside ``process`` (a nested run)
does not disturb the run around it.
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Mapping

import attrs
import cloudpickle
import numpy as np

from ._padding import read_padded
from .errors import ChannelError, OutputError, WorkerError
from .geometry import Block
from .executors import WorkerBoard
from .processor import BlockOutput, BlockProcessor
from .result import BlockOutcome, BlockStatus, BlockTimings
from .storage import DataSink, DataSource

__all__ = ["WorkerContext", "initialize", "finalize", "run_block", "run_blocks"]

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
    """One worker's state for one run: its context, its own processor, and how setup went."""

    def __init__(self, processor: bytes | BlockProcessor, context: WorkerContext | bytes,
                 board: WorkerBoard | None = None) -> None:
        self.name = f"{os.getpid()}/{threading.current_thread().name}"
        self.board = board
        self.row = -1 if board is None else board.claim()
        self.setup_error: tuple[str, str] | None = None
        self.processor: BlockProcessor | None = None
        try:
            self.context: WorkerContext = (
                cloudpickle.loads(context) if isinstance(context, bytes) else context
            )
            if board is not None and not board.in_process:
                _log_like_the_coordinator(self.context.log_level)
            self.processor = (cloudpickle.loads(processor) if isinstance(processor, bytes)
                              else copy.deepcopy(processor))
            self.processor.setup()
        except Exception as error:
            self.setup_error = (_describe(error), "".join(traceback.format_exception(error)))

    def teardown(self) -> None:
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


def _workers() -> dict[str, _Worker]:
    try:
        return _local.workers  # type: ignore[no-any-return]
    except AttributeError:
        _local.workers = {}
        return _local.workers  # type: ignore[no-any-return]


def initialize(run_id: str, processor: bytes | BlockProcessor,
               context: WorkerContext | bytes, board: WorkerBoard | None = None) -> None:
    """Set this worker up for run session ``run_id`` (an executor's initializer).

    ``processor`` is the cloudpickled processor for worker processes, the coordinator's
    own for worker threads: each worker makes its own copy and runs its ``setup``.
    ``context`` is cloudpickled for worker processes and the coordinator's own object for
    worker threads. ``board``, for worker processes, is where the worker shows
    which block it runs, so that the coordinator can stop it. A failure is kept and
    reported by `run_block`.
    """
    if (board is not None and not board.in_process
            and threading.current_thread() is threading.main_thread()):
        # A worker process: Ctrl-C reaches the whole process group, but stopping is the
        # coordinator's call (it ends its workers), not a failure of the block at hand.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _workers()[run_id] = _Worker(processor, context, board)


def finalize(run_id: str) -> None:
    """Run ``teardown`` for this worker's run ``run_id`` (an executor's finalizer)."""
    worker = _workers().pop(run_id, None)
    if worker is not None:
        worker.teardown()


def run_block(run_id: str, block: Block, ticket: int = 0) -> BlockOutcome:
    """Read, process and write one block in the current worker; report what happened.
    ``ticket`` names this try of the block on the worker board."""
    outcome = run_blocks(run_id, [(block, ticket)])[0]
    assert outcome is not None
    return outcome


def run_blocks(run_id: str, blocks: list[tuple[Block, int]]) -> list[BlockOutcome | None]:
    """`run_block` for each ``(block, ticket)`` of a batch, one after the other: one task
    and one message for several blocks, each with its own outcome, each shown on the
    worker board while it runs.

    The batch ends early, its other blocks given back as None (not run), after a block
    that is not done, so that a failure costs one block, not a batch, and the coordinator
    hears of it at once; and when the coordinator has halted the board (the run stops).
    """
    worker = _workers().get(run_id)
    if worker is None:
        raise WorkerError(f"no worker was set up for run {run_id} in this thread")
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
