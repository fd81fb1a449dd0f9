"""The pipeline: composes a source, a tiler, a processor, an executor and a sink, and runs
every block with an honest account of what happened."""

from __future__ import annotations

import collections
import time
import uuid
from concurrent import futures
from typing import Any, Callable, Iterable, Iterator, Sequence

import attrs
import cloudpickle
import numpy as np

from . import _worker
from ._hooks import Hooks
from ._worker import BlockOutcome, WorkerPayload
from .errors import ConfigError, DataAccessError, GeometryError, OutOfBoundsError, SetupError
from .executors import Executor, ProcessExecutor, get_executor
from .geometry import Block, Box, Halo, Triple
from .processor import BlockProcessor, FunctionProcessor
from .result import BlockFailure, Plan, RunInfo, RunResult
from .storage import DataSink, DataSource
from .tiling import Tiler

__all__ = ["Pipeline"]

def _as_box(bounds: Box | Sequence[Sequence[int]] | None) -> Box | None:
    if bounds is None or isinstance(bounds, Box):
        return bounds
    try:
        start, stop = bounds
    except (TypeError, ValueError):
        raise GeometryError(
            f"bounds must be a Box or ((z, y, x) start, (z, y, x) stop), got {bounds!r}", bounds
        ) from None
    return Box(start, stop)


def _as_processor(processor: BlockProcessor | Callable[..., Any]) -> BlockProcessor:
    if isinstance(processor, BlockProcessor):
        return processor
    if isinstance(processor, type) and issubclass(processor, BlockProcessor):
        raise ConfigError(
            f"pass an instance of {processor.__name__}, not the class: "
            f"{processor.__name__}()", processor
        )
    if callable(processor):
        return FunctionProcessor(processor)
    raise ConfigError(
        f"processor must be a BlockProcessor or a function of the data dict, got {processor!r}",
        processor,
    )


@attrs.frozen
class _Prepared:
    """A pipeline's parts, resolved and checked against each other."""

    channels: tuple[str, ...]
    bounds: Box
    tiler: Tiler
    info: RunInfo


class Pipeline:
    """Runs a processor over every block of a source, in parallel, with a full account.

    Parameters
    ----------
    source:
        Where blocks are read from.
    processor:
        A `BlockProcessor`, or a plain function of the data dict (wrapped in a
        `FunctionProcessor`).
    tiler:
        How the bounds are split (default: the source's ``default_tiler()``; for most
        sources whole storage chunks, about 32 MiB a block). The processor's ``halo`` is
        added to the tiler's.
    executor:
        An `Executor` or its name (default: ``ProcessExecutor()``).
    sink:
        Where the processor's output arrays are written, if anywhere.
    plugins:
        Objects or modules with `hookimpl` functions, on top of those from the
        ``ndframework`` entry-point group (unless ``load_entrypoints=False``).
    channels:
        Channels to read (default: the processor's ``channels``, else all).
    bounds:
        Region to process, a `Box` or ((z, y, x), (z, y, x)) (default: the source's bounds).
    max_attempts:
        How often a block whose worker process died is tried before it counts as failed.
    max_in_flight:
        Most blocks handed to workers at once (default: twice the workers; one when
        serial), which bounds memory whatever the size of the volume.
    load_entrypoints:
        Also register the plugins of the ``ndframework`` entry-point group.

    Examples
    --------
    >>> import numpy as np, ndframework as ndf
    >>> source = ndf.InMemorySource({"em": np.ones((4, 8, 8), np.uint8)})
    >>> pipeline = ndf.Pipeline(source, lambda data: int(data["em"].sum()),
    ...                         tiler=ndf.RegularTiler((2, 8, 8)), executor="serial",
    ...                         load_entrypoints=False)
    >>> result = pipeline.run()
    >>> result.ok, result.done, result.reduced
    (True, ('0_0_0', '2_0_0'), {'0_0_0': 128, '2_0_0': 128})
    """

    def __init__(
        self,
        source: DataSource,
        processor: BlockProcessor | Callable[..., Any],
        *,
        tiler: Tiler | None = None,
        executor: Executor | str | None = None,
        sink: DataSink | None = None,
        plugins: Iterable[Any] = (),
        channels: Sequence[str] | None = None,
        bounds: Box | Sequence[Sequence[int]] | None = None,
        max_attempts: int = 3,
        max_in_flight: int | None = None,
        load_entrypoints: bool = True,
    ) -> None:
        if not isinstance(source, DataSource):
            raise ConfigError(f"source must be a DataSource, got {source!r}", source)
        if sink is not None and not isinstance(sink, DataSink):
            raise ConfigError(f"sink must be a DataSink or None, got {sink!r}", sink)
        if tiler is not None and not isinstance(tiler, Tiler):
            raise ConfigError(f"tiler must be a Tiler or None, got {tiler!r}", tiler)
        for name, value in (("max_attempts", max_attempts), ("max_in_flight", max_in_flight)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}", value)
        self.source = source
        self.processor = _as_processor(processor)
        self.tiler = tiler
        self.executor = ProcessExecutor() if executor is None else get_executor(executor)
        self.sink = sink
        self.plugins = tuple(plugins)
        self.channels = None if channels is None else tuple(channels)
        self.bounds = _as_box(bounds)
        self.max_attempts = max_attempts
        self.max_in_flight = max_in_flight or self.executor.default_in_flight
        self.load_entrypoints = load_entrypoints

    # -- preparing -----------------------------------------------------------------------

    def _prepare(self) -> _Prepared:
        source = self.source
        channels = source.check_channels(self.channels or self.processor.channels)
        bounds = self.bounds or source.bounds
        if not source.bounds.contains(bounds):
            raise OutOfBoundsError(
                f"bounds {bounds} lie outside the source bounds {source.bounds}", bounds
            )
        halo = self.processor.effective_halo
        tiler = self.tiler
        if tiler is None:
            tiler = source.default_tiler()
        if not halo.is_zero:
            tiler = tiler.with_halo(Halo.of(tiler.halo).union(halo))
        if self.sink is not None:
            self._check_sink(bounds, tiler)
        info = RunInfo(
            run_id=uuid.uuid4().hex[:12],
            bounds=bounds,
            block_count=tiler.count(bounds),
            channels=channels,
            source=source.describe(),
            processor=self.processor.describe(),
            executor=self.executor.describe(),
            sink=None if self.sink is None else self.sink.describe(),
        )
        return _Prepared(channels, bounds, tiler, info)

    def _check_sink(self, bounds: Box, tiler: Tiler) -> None:
        sink = self.sink
        assert sink is not None
        if not sink.bounds.contains(bounds):
            raise OutOfBoundsError(
                f"the sink {sink.describe()} covers {sink.bounds}, which does not contain the "
                f"bounds to process {bounds}",
                bounds,
            )
        if sink.in_process_only and not self.executor.shares_memory:
            raise ConfigError(
                f"{sink.describe()} keeps its data in this process, so writes made by the "
                f"{self.executor.name!r} executor's worker processes would be lost; use the "
                f"'serial' or 'threads' executor, or a ZarrSink",
                sink,
            )
        chunks = sink.chunk_shape
        if chunks is None or self.executor.workers == 1:
            return
        origin = sink.bounds.start
        axes = "zyx"
        for block in tiler.blocks(bounds, within=self.source.bounds):
            for axis in range(3):
                edges = (
                    (block.box.start[axis], bounds.start[axis], "starts"),
                    (block.box.stop[axis], bounds.stop[axis], "ends"),
                )
                for edge, outer, verb in edges:
                    aligned = (edge - origin[axis]) % chunks[axis] == 0
                    if not aligned and edge != outer and edge != sink.bounds.stop[axis]:
                        raise ConfigError(
                            f"block {block.key} {verb} at {axes[axis]}={edge}, inside a chunk "
                            f"of the sink (chunk shape {chunks}, z, y, x): parallel writes "
                            f"would share chunks. Use block shapes that are multiples of the "
                            f"chunk shape on a grid aligned to the sink's origin {origin}",
                            block,
                        )

    def plan(self) -> Plan:
        """Describe the run without reading voxels: blocks, bytes read, halo overhead.

        Raises the same errors for bad channels, bounds, tilings and sinks that `run`
        raises before it starts.
        """
        prepared = self._prepare()
        itemsize = sum(self.source.dtype(name).itemsize for name in prepared.channels)
        read_bytes = largest = 0
        for block in prepared.tiler.blocks(prepared.bounds, within=self.source.bounds):
            size = block.read_box.size * itemsize
            read_bytes += size
            largest = max(largest, size)
        return Plan(
            run=prepared.info,
            block_shape=getattr(prepared.tiler, "block_shape", None),
            halo=Halo.of(prepared.tiler.halo),
            dtypes={name: str(self.source.dtype(name)) for name in prepared.channels},
            owned_bytes=prepared.bounds.size * itemsize,
            read_bytes=read_bytes,
            largest_block_bytes=largest,
        )

    # -- running -------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Process every block; return what happened to each.

        An exception in ``process`` fails that block only and the run goes on. A data-access
        error (reading the source, writing the sink) stops the run cleanly: blocks in flight
        finish, and `DataAccessError` names the block, with the partial result attached as
        ``error.result``.
        """
        prepared = self._prepare()
        hooks = Hooks(self.plugins, load_entrypoints=self.load_entrypoints)
        payload: WorkerPayload | bytes = WorkerPayload(
            self.source, self.processor, prepared.channels, self.sink
        )
        if not self.executor.shares_memory:
            payload = cloudpickle.dumps(payload)
        run = _Run(self, prepared, hooks, payload)
        hooks.call("ndf_before_run", run=prepared.info)
        try:
            result = run.execute()
        except BaseException as error:  # interrupted: still tell the plugins what was done
            stopped = f"stopped by {type(error).__name__}"
            hooks.call("ndf_after_run", run=prepared.info,
                       result=run.result(time.perf_counter(), stopped=stopped))
            raise
        hooks.call("ndf_after_run", run=prepared.info, result=result)
        if run.data_error is not None:
            error = DataAccessError(run.data_error[1], key=run.data_error[0])
            error.result = result
            raise error
        if run.setup_error is not None:
            raise SetupError(run.setup_error)
        return result


class _Run:
    """The coordinator's bookkeeping for one run."""

    def __init__(
        self,
        pipeline: Pipeline,
        prepared: _Prepared,
        hooks: Hooks,
        payload: WorkerPayload | bytes,
    ) -> None:
        self.pipeline = pipeline
        self.prepared = prepared
        self.hooks = hooks
        self.payload = payload
        self.info = prepared.info
        self.order: list[str] = []
        self.outcomes: dict[str, BlockOutcome] = {}
        self.attempts: dict[str, int] = collections.Counter()
        self.failures: dict[str, BlockFailure] = {}
        self.retry: collections.deque[Block] = collections.deque()
        self.data_error: tuple[str, str] | None = None
        self.setup_error: str | None = None
        self.started = time.perf_counter()
        self.blocks: Iterator[Block] = iter(())

    def _start_pool(self) -> futures.Executor:
        executor = self.pipeline.executor
        return executor.start(
            _worker.initialize, (self.payload, self.info.run_id, executor.tears_down_at_exit)
        )

    @property
    def stopping(self) -> bool:
        return self.data_error is not None or self.setup_error is not None

    def execute(self) -> RunResult:
        prepared = self.prepared
        self.blocks = prepared.tiler.blocks(prepared.bounds, within=self.pipeline.source.bounds)
        pending: dict[futures.Future, Block] = {}
        pool = self._start_pool()
        try:
            while True:
                pool = self._fill(pool, pending)
                if not pending:
                    break
                finished, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
                broken = False
                for future in finished:
                    block = pending.pop(future)
                    broken |= self._collect(block, future)
                if broken:
                    pool = self._restart(pool, pending)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        else:
            pool.shutdown(wait=True)
        finally:
            _worker.teardown_local(self.info.run_id)
        stopped = None
        if self.data_error is not None:
            stopped = f"data access failed for block {self.data_error[0]}"
        elif self.setup_error is not None:
            stopped = "the processor's setup() failed"
        return self.result(time.perf_counter(), stopped=stopped)

    def _fill(self, pool: futures.Executor, pending: dict[futures.Future, Block]) -> futures.Executor:
        """Hand blocks to workers until ``max_in_flight`` are out. A block retried after its
        worker died runs alone, so that a block that kills its worker is found for sure."""
        limit = self.pipeline.max_in_flight
        while not self.stopping and len(pending) < limit:
            if self.retry:
                if pending:
                    return pool
                block = self.retry.popleft()
                limit = 1
            else:
                block = next(self.blocks, None)
                if block is None:
                    return pool
                self.order.append(block.key)
                self.hooks.call("ndf_before_block", run=self.info, block=block)
            self.attempts[block.key] += 1
            try:
                pending[pool.submit(_worker.run_block, block)] = block
            except futures.BrokenExecutor:
                self.attempts[block.key] -= 1
                self.retry.appendleft(block)
                pool = self._restart(pool, pending)
        return pool

    def _collect(self, block: Block, future: futures.Future) -> bool:
        """Record a finished future; True when it reports a broken pool."""
        try:
            outcome = future.result()
        except futures.BrokenExecutor:
            self._worker_died(block)
            return True
        except SetupError as error:
            self.setup_error = str(error)
            return False
        except Exception as error:  # e.g. a value that cannot be pickled back
            outcome = BlockOutcome(
                block.key, _worker.FAILED, error=f"{type(error).__name__}: {error}",
                traceback=None,
            )
        self._record(block, outcome)
        return False

    def _worker_died(self, block: Block) -> None:
        if self.attempts[block.key] < self.pipeline.max_attempts:
            self.retry.append(block)
            return
        self._record(block, BlockOutcome(
            block.key, _worker.FAILED,
            error=(f"WorkerError: the worker process running block {block.key} died "
                   f"(killed, crashed or out of memory), {self.attempts[block.key]} times"),
        ))

    def _restart(self, pool: futures.Executor, pending: dict[futures.Future, Block]) -> futures.Executor:
        """Replace a broken pool; every block it held becomes a suspect to retry alone."""
        for future, block in list(pending.items()):
            del pending[future]
            self._worker_died(block)
        pool.shutdown(wait=True, cancel_futures=True)
        return self._start_pool()

    def _record(self, block: Block, outcome: BlockOutcome) -> None:
        self.outcomes[block.key] = outcome
        if outcome.ok:
            self.hooks.call("ndf_after_block", run=self.info, block=block, outcome=outcome)
            return
        self.failures[block.key] = BlockFailure(
            outcome.error or "unknown error", outcome.traceback, self.attempts[block.key]
        )
        if outcome.status == _worker.DATA_ERROR and self.data_error is None:
            self.data_error = (
                block.key,
                f"data access failed for block {block.key} (box {block.box}, read box "
                f"{block.read_box}): {outcome.error}",
            )
        self.hooks.call("ndf_on_block_error", run=self.info, block=block, outcome=outcome)

    def result(self, now: float, stopped: str | None) -> RunResult:
        not_run = [key for key in self.order if key not in self.outcomes]
        not_run += [block.key for block in self.blocks]
        done = tuple(key for key in self.order if key in self.outcomes and self.outcomes[key].ok)
        values = {key: self.outcomes[key].value for key in done}
        reduced = None
        if stopped is None:
            reduced = self.pipeline.processor.reduce(values)
        return RunResult(
            run=self.info,
            done=done,
            failed={key: self.failures[key] for key in self.order if key in self.failures},
            skipped=(),
            not_run=tuple(not_run),
            attempts={key: self.attempts[key] for key in self.order if self.attempts[key]},
            timings={key: self.outcomes[key].timings for key in self.order
                     if key in self.outcomes},
            values=values,
            reduced=reduced,
            elapsed=now - self.started,
            stopped=stopped,
        )
