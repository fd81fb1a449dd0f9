"""The pipeline: composes a source, a tiler, a processor, an executor and a sink, and runs
every block with an honest account of what happened."""

from __future__ import annotations

import logging
import math
import os
import signal
import warnings
from typing import Any, Callable, Iterable, Sequence

import attrs
import cloudpickle

from . import _padding, _plan_checks, _worker
from ._fingerprint import digest, fingerprint
from ._numbers import as_int
from ._checks import check_outputs_fit, checked_plugins
from ._hooks import Hooks
from ._run import FailureLimit, Run
from ._worker import WorkerContext
from .errors import ConfigError, GeometryError, OutOfBoundsError, RunInterrupted
from .journal import Journal
from .executors import Executor, ProcessExecutor, WorkerSession, get_executor
from .geometry import Box, Halo
from .processor import BlockProcessor, FunctionProcessor
from .result import Plan, RunInfo, RunResult
from .storage import DataSink, DataSource
from .tiling import ChunkGrid, Tiler, measure, misaligned_edge

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
    fingerprint: dict[str, str]


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
        sources whole storage chunks, about 32 MiB a block). Blocks are read with the
        larger of the tiler's and the processor's ``halo``, axis by axis.
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
    journal:
        Where the run keeps its ledger: a path to an SQLite file (created when missing) or
        a `Journal`. Rerunning with the same journal skips the blocks it records done, and
        runs the failed and never-run ones (those that failed before come last). Without
        one, a temporary journal holds the per-block records of this run only.
    restart:
        Discard the records of a journal made for another run (or this one) and start over,
        instead of refusing it with `JournalMismatchError`.
    max_attempts:
        Tries for a block whose worker process died, that ran past ``block_timeout``, or
        whose ``process`` raised one of the processor's ``retry_on`` exceptions, before it
        counts as failed. Other exceptions in ``process`` fail a block at once.
    max_failures:
        Fail fast: once this many distinct blocks have failed, hand out no more blocks, let
        those in flight finish, and end the run with ``RunResult.stopped`` saying why (a
        rerun with the journal resumes). Default: with a ``journal``, stop once 10 blocks
        failed while failures are at least half of the blocks finished (a systematic bug
        costs about 10 blocks; scattered failures over a large volume never stop the run);
        without one, no limit. ``0`` means no limit.
    block_timeout:
        Seconds a block may run (read, process, write); a block running longer is stopped
        by ending its worker process (replaced at once), counted as a try, and failed with
        an error saying it timed out after that many seconds once ``max_attempts`` tries
        are spent. Enforced by the process executor; the serial and thread executors
        cannot stop a running block, and warn when it is given.
    max_in_flight:
        Most tasks handed to workers at once (default: twice the workers; one when
        serial), which bounds memory whatever the size of the volume. A task is one block,
        or, on executors where each task costs a message to another process (processes,
        Dask), a batch of neighbouring blocks sized from their measured durations to about
        50 ms of work (at most 256 blocks, at most a share of those left); a worker runs a
        batch's blocks one after the other, each with its own outcome, and a block that
        fails ends its batch (the rest come back to be handed out again).
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
        journal: str | os.PathLike[str] | Journal | None = None,
        restart: bool = False,
        max_attempts: int = 3,
        max_failures: int | None = None,
        block_timeout: float | None = None,
        max_in_flight: int | None = None,
        load_entrypoints: bool = True,
    ) -> None:
        if not isinstance(source, DataSource):
            raise ConfigError(f"source must be a DataSource, got {source!r}", source)
        if sink is not None and not isinstance(sink, DataSink):
            raise ConfigError(f"sink must be a DataSink or None, got {sink!r}", sink)
        if tiler is not None and not isinstance(tiler, Tiler):
            raise ConfigError(f"tiler must be a Tiler or None, got {tiler!r}", tiler)
        max_attempts = as_int(max_attempts, "max_attempts", minimum=1)
        max_in_flight = as_int(max_in_flight, "max_in_flight", minimum=1, none="for the default")
        max_failures = as_int(max_failures, "max_failures", minimum=0, zero="no limit",
                              none="for the default")
        if block_timeout is not None and (
            isinstance(block_timeout, bool) or not isinstance(block_timeout, (int, float))
            or not block_timeout > 0
        ):
            raise ConfigError(
                f"block_timeout must be a positive number of seconds or None, got "
                f"{block_timeout!r}", block_timeout)
        if journal is not None and not isinstance(journal, Journal):
            journal = Journal(journal)
        self.source = source
        self.processor = _as_processor(processor)
        self.tiler = tiler
        self.executor = ProcessExecutor() if executor is None else get_executor(executor)
        self.sink = sink
        self.plugins = checked_plugins(plugins)
        if isinstance(channels, str):
            channels = (channels,)
        self.channels = None if channels is None else tuple(channels)
        self.bounds = _as_box(bounds)
        self.journal = journal
        self.restart = bool(restart)
        self.max_attempts = max_attempts
        self.max_failures = max_failures
        self.block_timeout = None if block_timeout is None else float(block_timeout)
        self.max_in_flight = max_in_flight or self.executor.default_in_flight
        self.load_entrypoints = load_entrypoints
        if self.block_timeout is not None and not self.executor.can_stop_blocks:
            warnings.warn(
                f"block_timeout={block_timeout!r} cannot be enforced by the "
                f"{self.executor.name!r} executor: it cannot stop a block that runs in this "
                f"process. Use ProcessExecutor (executor='processes') to have blocks that "
                f"run too long stopped.",
                UserWarning, stacklevel=2,
            )

    # -- preparing -----------------------------------------------------------------------

    def _prepare(self) -> _Prepared:
        source = self.source
        wanted = self.channels if self.channels is not None else self.processor.channels
        channels = source.check_channels(wanted)
        bounds = self.bounds or source.bounds
        if not source.bounds.contains(bounds):
            raise OutOfBoundsError(
                f"bounds {bounds} lie outside the source bounds {source.bounds}", bounds
            )
        halo = self.processor.effective_halo
        tiler = self.tiler
        if tiler is None:
            tiler = source.default_tiler(bounds, channels)
        if not halo.is_zero:
            tiler = tiler.with_halo(Halo.of(tiler.halo).union(halo))
        check_outputs_fit(self.processor, self.sink)
        if self.sink is not None:
            self._check_sink(bounds, tiler)
        parts = fingerprint(
            source=source, bounds=bounds, channels=channels, tiler=tiler,
            halo_mode=self.processor.effective_halo_mode, processor=self.processor,
            sink=self.sink,
        )
        info = RunInfo(
            run_id=digest(parts),
            bounds=bounds,
            block_count=tiler.count(bounds),
            channels=channels,
            source=source.describe(),
            processor=self.processor.describe(),
            executor=self.executor.describe(),
            sink=None if self.sink is None else self.sink.describe(),
        )
        return _Prepared(channels, bounds, tiler, info, parts)

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
        origin = sink.chunk_origin
        found = misaligned_edge(tiler, bounds, ChunkGrid(chunks, origin, sink.bounds),
                                within=self.source.bounds)
        if found is not None:
            block, axis, edge = found
            verb = "starts" if edge == block.box.start[axis] else "ends"
            raise ConfigError(
                f"block {block.key} {verb} at {'zyx'[axis]}={edge}, inside a chunk of the "
                f"sink (chunk shape {chunks}, z, y, x): parallel writes would share chunks. "
                f"Use block shapes that are multiples of the chunk shape on a grid through "
                f"the sink's chunk origin {origin}",
                block,
            )

    def plan(self) -> Plan:
        """Describe the run without reading voxels: blocks, bytes read, halo overhead,
        storage chunks decoded, requests to the source, memory per worker, and warnings
        (blocks over the BOSS's request limit, blocks too small for the executor, writes
        not aligned to the sink's chunks, a large halo overhead, too little memory).

        Raises the same errors for bad channels, bounds, tilings and sinks that `run`
        raises before it starts. For regular tilings the figures are computed axis by axis,
        in time and memory that do not grow with the number of blocks. Nothing is read but
        metadata.
        """
        prepared = self._prepare()
        source = self.source
        itemsize = sum(source.dtype(name).itemsize for name in prepared.channels)
        chunk_shape = source.chunk_shape
        chunks = None
        if chunk_shape is not None:
            origin = getattr(source, "chunk_origin", source.bounds.start)
            chunks = ChunkGrid(chunk_shape, origin, source.bounds)
        within = self._read_limits(prepared)
        measures = measure(prepared.tiler, prepared.bounds, within=within, chunks=chunks)
        decoded = None
        if chunks is not None and measures.chunks_read is not None:
            decoded = measures.chunks_read * math.prod(chunks.shape) * itemsize
        assessment = _plan_checks.assess(
            source=source, sink=self.sink, processor=self.processor, executor=self.executor,
            tiler=prepared.tiler, bounds=prepared.bounds, channels=prepared.channels,
            within=within, measures=measures,
        )
        return Plan(
            run=prepared.info,
            block_shape=getattr(prepared.tiler, "block_shape", None),
            halo=Halo.of(prepared.tiler.halo),
            dtypes={name: str(source.dtype(name)) for name in prepared.channels},
            owned_bytes=prepared.bounds.size * itemsize,
            read_bytes=measures.read_voxels * itemsize,
            largest_block_bytes=measures.largest_read_voxels * itemsize,
            chunk_shape=None if chunks is None else chunks.shape,
            decoded_bytes=decoded,
            read_requests=assessment.read_requests,
            request_kind=assessment.request_kind,
            output_bytes=assessment.output_bytes,
            warnings=assessment.warnings,
        )

    def _read_limits(self, prepared: _Prepared) -> Box:
        """What read boxes are clipped to: the source's bounds, or, when the processor's
        ``halo_mode`` pads beyond them, nothing (the bounds grown by the halo). Checks the
        mode and its ``halo_cval`` against the channels' dtypes."""
        mode = self.processor.effective_halo_mode
        if mode == "constant":
            dtypes = [self.source.dtype(name) for name in prepared.channels]
            _padding.check_halo_cval(self.processor.halo_cval, dtypes)
        return _padding.read_limits(self.source.bounds, Halo.of(prepared.tiler.halo), mode)

    # -- running -------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Process every block not yet done; return what happened to each.

        An exception in ``process`` fails that block only and the run goes on (until
        ``max_failures``). A data-access error (reading the source, writing the sink) that
        persists through its retries stops the run cleanly: blocks in flight finish, and
        `DataAccessError` names the block, with the partial result attached as
        ``error.result``. A ``setup()`` that fails in a worker stops the run likewise with
        `SetupError`, and worker processes that keep dying with `WorkerError`.

        SIGINT (Ctrl-C) or SIGTERM, when the run is in the main thread, end it within
        moments: workers are stopped, the journal committed, and `RunInterrupted` (a
        `KeyboardInterrupt`) is raised with the result attached as ``error.result``.
        """
        prepared = self._prepare()
        within = self._read_limits(prepared)
        processor, context = self._payload(prepared.channels)
        hooks = Hooks(self.plugins, load_entrypoints=self.load_entrypoints)
        journal = self.journal if self.journal is not None else Journal()
        journal.open(prepared.fingerprint, restart=self.restart,
                     executor=self.executor.describe(), block_count=prepared.info.block_count)
        info = attrs.evolve(
            prepared.info, session=journal.session,
            journal=None if self.journal is None else journal.path,
        )

        run = Run(
            info,
            blocks=lambda: prepared.tiler.blocks(prepared.bounds, within=within),
            executor=self.executor,
            processor=self.processor,
            session=WorkerSession(info.session, processor, context),
            hooks=hooks,
            journal=journal,
            max_attempts=self.max_attempts,
            max_in_flight=self.max_in_flight,
            failure_limit=self._failure_limit(),
            block_timeout=self.block_timeout,
        )
        hooks.before_run(run=info)
        self.source.release()  # nothing kept from reads before the run (the store may differ)
        try:
            result = run.execute()
        except BaseException as error:  # still tell the plugins what was done
            forced = isinstance(error, _worker.ForcedInterrupt)
            signum = signal.Signals(run.interrupted or signal.SIGINT)
            run.stop(None, f"interrupted twice by {signum.name}" if forced
                     else f"stopped by {type(error).__name__}")  # halts batches in flight
            self.executor.close()
            self.source.release()
            result = run.result()
            raised: BaseException = error
            if forced:  # the second signal: at once, but with the record kept all the same
                raised = RunInterrupted(
                    f"run interrupted twice by {signum.name}: {result.counts.done} blocks "
                    f"done, the journal is committed", signum, result)
            self._end_hooks(hooks, info, result, raised)
            if forced:
                raise raised from None
            raise
        self.executor.close()
        self.source.release()
        stop_error: BaseException | None = None
        if run.interrupted is not None:
            name = signal.Signals(run.interrupted).name
            stop_error = RunInterrupted(
                f"run interrupted by {name}: {result.counts.done} blocks done, the journal "
                f"is committed", run.interrupted, result)
        elif run.stop_error is not None:
            stop_error = run.stop_error.with_result(result)
        self._end_hooks(hooks, info, result, stop_error)
        if stop_error is not None:
            raise stop_error
        if run.reduce_error is not None:
            raise run.reduce_error.with_result(result)
        return result

    @staticmethod
    def _end_hooks(hooks: Hooks, info: RunInfo, result: RunResult,
                   error: BaseException | None) -> None:
        """The hooks of a run's end: `ndf_on_run_stopped` when it stopped early (``error``:
        what `run` raises next, if anything), then `ndf_after_run`."""
        if result.stopped is not None:
            hooks.on_run_stopped(run=info, result=result, reason=result.stopped, error=error)
        hooks.after_run(run=info, result=result)

    def _failure_limit(self) -> FailureLimit | None:
        if self.max_failures == 0:
            return None
        if self.max_failures is not None:
            return FailureLimit(self.max_failures)
        if self.journal is not None:
            return FailureLimit(10, ratio=0.5)
        return None

    def _payload(
        self, channels: tuple[str, ...]
    ) -> tuple[bytes | BlockProcessor, WorkerContext | bytes]:
        """The processor, for every worker to make its own copy of, and the context
        (source, channels, sink): cloudpickled for worker processes, shared by threads.
        Whatever cannot travel is refused here, before any work starts, whatever the
        executor, so that switching executors never meets a new error.

        Threads (and the serial executor) get the processor object and deep-copy it:
        loading a cloudpickle in the process that defined a class replaces the class's
        methods with copies whose code has lost its file name (cloudpickle 3.1.3), which
        would take the source lines out of the coordinator's and the workers' tracebacks.
        """
        try:
            processor = cloudpickle.dumps(self.processor)
        except Exception as error:
            raise ConfigError(
                f"the processor {self.processor.describe()} cannot be copied to the workers "
                f"({type(error).__name__}: {error}); create open files, connections, locks "
                f"and the like in setup(), not in __init__",
                self.processor,
            ) from error
        context = WorkerContext(self.source, channels, self.sink,
                                log_level=logging.getLogger("ndframework").getEffectiveLevel())
        if self.executor.shares_memory:
            return self.processor, context
        try:
            return processor, cloudpickle.dumps(context)
        except Exception as error:
            raise ConfigError(
                f"the source or sink cannot be sent to worker processes "
                f"({type(error).__name__}: {error}); use the 'threads' or 'serial' executor, "
                f"or a source and sink that pickle",
                context,
            ) from error
