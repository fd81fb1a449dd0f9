"""What runs in a worker: read a block, process it, write its outputs, report an outcome.

Only a block's coordinates go in and a small `BlockOutcome` comes out; voxel data stay in
the worker. Each worker gets its payload once, when it starts: worker processes receive it
cloudpickled (so classes defined in ``__main__`` or a notebook travel too) and open their
own source and sink; worker threads share the coordinator's source and sink. Either way each
worker has its own copy of the processor, runs its ``setup`` first and its ``teardown`` when
it stops, so a processor behaves the same on every executor.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from typing import Any, Mapping

import attrs
import cloudpickle

from .errors import ChannelError, OutputError, SetupError, WorkerError
from .geometry import Block
from .processor import BlockOutput, BlockProcessor
from .storage import DataSink, DataSource

__all__ = ["WorkerPayload", "BlockOutcome", "BlockTimings", "initialize", "run_block"]

DONE = "done"
FAILED = "failed"
DATA_ERROR = "data_error"


@attrs.frozen
class WorkerPayload:
    """Everything a worker needs, sent once per worker."""

    source: DataSource
    """Where the worker reads its blocks."""
    processor: BlockProcessor
    """The worker's own copy of the processor."""
    channels: tuple[str, ...]
    """Channels to read."""
    sink: DataSink | None = None
    """Where outputs go, if anywhere."""


@attrs.frozen
class BlockTimings:
    """Seconds spent on one block in the worker."""

    read: float = 0.0
    """Reading the block's data (with its halo) from the source."""
    process: float = 0.0
    """In the processor's ``process``."""
    write: float = 0.0
    """Writing outputs to the sink."""

    @property
    def total(self) -> float:
        """Read, process and write together."""
        return self.read + self.process + self.write


@attrs.frozen
class BlockOutcome:
    """What a worker reports for one block: small, and picklable."""

    key: str
    """The block's key."""
    status: str
    """``"done"``, ``"failed"`` (the processor or its outputs) or ``"data_error"``."""
    value: Any = None
    """The per-block value, for blocks done."""
    error: str | None = None
    """The error's type and message, for blocks not done."""
    traceback: str | None = None
    """The error's formatted traceback, for blocks not done."""
    timings: BlockTimings = BlockTimings()
    """Where the time went."""
    worker: str = ""
    """Which worker ran the block: ``pid`` or ``pid/thread``."""

    @property
    def ok(self) -> bool:
        """True when the block is done."""
        return self.status == DONE


class _Worker:
    def __init__(self, payload: WorkerPayload) -> None:
        self.payload = payload
        self.name = f"{os.getpid()}/{threading.current_thread().name}"
        self.setup_error: str | None = None
        try:
            payload.processor.setup()
        except Exception as error:
            self.setup_error = _describe(error) + "\n" + traceback.format_exc()

    def teardown(self) -> None:
        if self.setup_error is None:
            self.payload.processor.teardown()


_local = threading.local()
_workers_by_run: dict[str, list[_Worker]] = {}
_registry_lock = threading.Lock()


def initialize(payload: WorkerPayload | bytes, run_id: str, teardown_at_exit: bool) -> None:
    """Take the payload and run ``setup`` in this worker (an executor initializer).

    ``payload`` is cloudpickled for worker processes, and the coordinator's own object for
    workers in its process, which then share its source and sink but copy the processor.
    With ``teardown_at_exit`` (worker processes) ``teardown`` runs when the process exits;
    otherwise `teardown_local` runs it from the coordinating process.
    """
    if isinstance(payload, bytes):
        payload = cloudpickle.loads(payload)
    else:
        own = cloudpickle.loads(cloudpickle.dumps(payload.processor))
        payload = attrs.evolve(payload, processor=own)
    worker = _Worker(payload)
    _local.worker = worker
    _local.run_id = run_id
    if teardown_at_exit:
        from multiprocessing import util

        util.Finalize(worker, worker.teardown, exitpriority=10)
    else:
        with _registry_lock:
            _workers_by_run.setdefault(run_id, []).append(worker)


def teardown_local(run_id: str) -> None:
    """Run ``teardown`` for the workers of ``run_id`` that live in this process."""
    with _registry_lock:
        workers = _workers_by_run.pop(run_id, [])
    for worker in workers:
        worker.teardown()


def run_block(block: Block) -> BlockOutcome:
    """Read, process and write one block in the current worker; report what happened."""
    worker: _Worker | None = getattr(_local, "worker", None)
    if worker is None:
        raise WorkerError("run_block was called in a worker that was never initialised")
    if worker.setup_error is not None:
        raise SetupError(f"the processor's setup() failed in worker {worker.name}: "
                          f"{worker.setup_error}")
    payload = worker.payload
    clock = time.perf_counter
    started = clock()
    try:
        data = payload.source.read(block.read_box, payload.channels)
    except Exception as error:
        return _failure(block, DATA_ERROR, error, worker, BlockTimings(read=clock() - started))
    read_done = clock()
    try:
        arrays, value = _split(payload.processor.process(data, block), payload.sink)
    except Exception as error:
        timings = BlockTimings(read_done - started, clock() - read_done)
        return _failure(block, FAILED, error, worker, timings)
    del data
    processed = clock()
    if payload.sink is not None and arrays:
        try:
            payload.sink.write(block.box, arrays)
        except (OutputError, ChannelError) as error:
            timings = BlockTimings(read_done - started, processed - read_done)
            return _failure(block, FAILED, error, worker, timings)
        except Exception as error:
            timings = BlockTimings(read_done - started, processed - read_done, clock() - processed)
            return _failure(block, DATA_ERROR, error, worker, timings)
    timings = BlockTimings(read_done - started, processed - read_done, clock() - processed)
    return BlockOutcome(block.key, DONE, value=value, timings=timings, worker=worker.name)


def _split(result: Any, sink: DataSink | None) -> tuple[Mapping[str, Any], Any]:
    """Separate a processor's return value into sink arrays and the per-block value."""
    if isinstance(result, BlockOutput):
        if result.arrays and sink is None:
            raise OutputError(
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
    return {}, result


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _failure(
    block: Block, status: str, error: Exception, worker: _Worker, timings: BlockTimings
) -> BlockOutcome:
    return BlockOutcome(
        block.key,
        status,
        error=_describe(error),
        traceback="".join(traceback.format_exception(error)),
        timings=timings,
        worker=worker.name,
    )
