"""What a run is (`RunInfo`), what it will do (`Plan`), what happened to each block
(`BlockOutcome`, `BlockStatus`) and what the run did (`RunResult`)."""

from __future__ import annotations

import enum
import json
import textwrap
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ._equality import same
from ._json import json_ready
from ._views import KeyList, RecordMap
from .errors import BlocksFailedError
from .geometry import Block, Box, Halo, Triple

if TYPE_CHECKING:
    from .journal import BlockRecord, Journal

__all__ = ["RunInfo", "Plan", "BlockStatus", "BlockTimings", "BlockOutcome", "BlockFailure",
           "RunResult"]


class BlockStatus(str, enum.Enum):
    """What became of a block (or of one try of it)."""

    DONE = "done"
    """Processed, and its outputs written."""
    FAILED = "failed"
    """The processor raised, returned outputs the sink refused, timed out, or its worker
    died too often."""
    DATA_ERROR = "data_error"
    """Reading the source or writing the sink failed (the run stops)."""
    SETUP_ERROR = "setup_error"
    """The worker's ``setup()`` failed (the run stops)."""

    def __str__(self) -> str:
        return self.value


def _status(value: BlockStatus | str) -> BlockStatus:
    # an outcome is made for every block: skip the enum's lookup when it is one already
    return value if type(value) is BlockStatus else BlockStatus(value)


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
    """What a worker reports for one try of a block: small, and picklable."""

    key: str
    """The block's key."""
    status: BlockStatus = attrs.field(converter=_status)
    """How the try ended."""
    value: Any = attrs.field(default=None, eq=attrs.cmp_using(eq=same), hash=False)
    """The per-block value, for blocks done (compared by content: arrays too)."""
    error: str | None = None
    """The error's type and message, for blocks not done."""
    traceback: str | None = None
    """The error's formatted traceback, for blocks not done."""
    timings: BlockTimings = BlockTimings()
    """Where the time went."""
    worker: str = ""
    """Which worker ran the block: ``pid`` or ``pid/thread``."""
    retryable: bool = False
    """True when the error is one the processor's ``retry_on`` names: worth another try."""
    attempts: int = 1
    """Tries of the block so far, this one included: the coordinator counts them (a worker
    cannot), and sets them before plugins see the outcome."""
    stops_run: bool = False
    """True when the error is one every block would meet (arrays returned with no sink to
    write them): the run stops after this block."""

    @property
    def ok(self) -> bool:
        """True when the block is done."""
        return self.status is BlockStatus.DONE


def _bytes(n_bytes: float) -> str:
    """``n_bytes`` in the largest binary unit that keeps it at or above 1."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n_bytes) < 1024 or unit == "TiB":
            return f"{n_bytes:,.1f} {unit}" if unit != "B" else f"{n_bytes:,.0f} B"
        n_bytes /= 1024
    raise AssertionError("unreachable")


@attrs.frozen
class RunInfo:
    """A run as plugins see it."""

    run_id: str
    """The run's stable identity: a digest of its fingerprint, the same for every session
    that resumes it."""
    bounds: Box
    """The region processed."""
    block_count: int
    """Blocks to process in this run."""
    channels: tuple[str, ...]
    """Channels read."""
    source: str
    """The source, described without secrets."""
    processor: str
    """The processor's name."""
    executor: str
    """The executor and its worker count."""
    sink: str | None = None
    """The sink, described without secrets, if any."""
    session: str = ""
    """This session of the run (each start or resume is one), unique."""
    journal: str | None = None
    """The journal's path, when the run keeps one."""


WORKING_COPIES = 1
"""Copies of a block's read data that the memory estimate adds for the processor's own
arrays (a filtered copy, a mask, labels before they are cast)."""

_REQUEST_NOTES = {
    "cutout requests": "to the BOSS, a block over its request limit in several",
    "chunk reads": "each channel's chunks each read box touches, as if no worker kept any",
}


def _wrapped(label: str, text: str) -> list[str]:
    """``label`` and ``text`` as lines of the plan, continued under the text's start."""
    return textwrap.wrap(text, 92, initial_indent=f"{label:<13}", subsequent_indent=" " * 13)


def memory_estimate(read_bytes: int, output_bytes: int) -> int:
    """Bytes a worker needs for one block: its read data, ``WORKING_COPIES`` more of it for
    the processor's own arrays, and its outputs.

    >>> memory_estimate(100, 30)
    230
    """
    return read_bytes * (1 + WORKING_COPIES) + output_bytes


@attrs.frozen
class Plan:
    """What a run would do, computed without reading any voxel (metadata only)."""

    run: RunInfo
    """The run's description."""
    block_shape: Triple | None
    """The tiler's block shape (z, y, x), when it has one."""
    halo: Halo
    """Context read around each block."""
    dtypes: Mapping[str, str]
    """Dtype of each channel read."""
    owned_bytes: int
    """Bytes in the bounds, over the channels read: what a run without halo would read."""
    read_bytes: int
    """Bytes read by all blocks together, halos included."""
    largest_block_bytes: int
    """Bytes read by the largest block: a lower bound on a worker's memory need."""
    chunk_shape: Triple | None = None
    """The source's storage chunk shape (z, y, x), when it has one."""
    decoded_bytes: int | None = None
    """Bytes of storage chunks decoded by all blocks together, when the source has chunks:
    each block decodes every chunk its read box touches inside the source (no cache)."""
    read_requests: int | None = None
    """Requests that reading every block makes to the source, of the kind `request_kind`
    says; None for a source without storage chunks (in memory)."""
    request_kind: str = ""
    """What `read_requests` counts: ``"cutout requests"`` to the BOSS (a block over its
    limit of 520 MiB a request is fetched in several), or ``"chunk reads"`` (for every block,
    each channel's storage chunks its read box touches, as if no worker kept chunks)."""
    output_bytes: int = 0
    """Bytes of the largest block's outputs: its owned box in every output channel (those
    the processor declares in ``outputs``, else the sink's); 0 without outputs."""
    warnings: tuple[str, ...] = ()
    """What would make the run slow, wasteful, or refused by a server, one sentence each:
    blocks over the BOSS's request limit, blocks too small for the executor, writes not
    aligned to the sink's chunks, a large halo overhead, more memory than the machine has."""

    @property
    def block_count(self) -> int:
        """Number of blocks."""
        return self.run.block_count

    @property
    def mean_block_bytes(self) -> float:
        """Bytes read per block, on average."""
        return self.read_bytes / self.block_count if self.block_count else 0.0

    @property
    def halo_overhead(self) -> float:
        """Extra bytes read for halos, as a fraction of ``owned_bytes`` (0.25 = 25 % more)."""
        return self.read_bytes / self.owned_bytes - 1 if self.owned_bytes else 0.0

    @property
    def decode_ratio(self) -> float | None:
        """Bytes of storage chunks decoded per byte owned (1.0 when blocks are whole chunks
        without halo), or None when the source has no chunks."""
        if self.decoded_bytes is None:
            return None
        return self.decoded_bytes / self.owned_bytes if self.owned_bytes else 0.0

    @property
    def memory_per_worker(self) -> int:
        """An estimate of the bytes a worker holds for its largest block (`memory_estimate`):
        the block's read data (halo included), as much again for the processor's own arrays,
        and its outputs. Not counted: the interpreter and libraries, what ``setup`` loads (a
        model), and caches such as a zarr source's decoded chunks."""
        return memory_estimate(self.largest_block_bytes, self.output_bytes)

    def __str__(self) -> str:
        run = self.run
        channels = ", ".join(f"{name} ({dtype})" for name, dtype in self.dtypes.items())
        lines = [
            f"source:      {run.source}",
            f"processor:   {run.processor}",
            f"executor:    {run.executor}",
            f"bounds:      {run.bounds}  (z, y, x; shape {run.bounds.shape})",
            f"channels:    {channels}",
            f"blocks:      {run.block_count:,} of shape {self.block_shape} (z, y, x)",
            f"halo:        before {self.halo.before}, after {self.halo.after}",
            f"read/block:  {_bytes(self.mean_block_bytes)} on average, "
            f"{_bytes(self.largest_block_bytes)} at most",
            f"read total:  {_bytes(self.read_bytes)} ({self.halo_overhead:.1%} halo overhead "
            f"over {_bytes(self.owned_bytes)})",
        ]
        if self.decoded_bytes is not None:
            lines.append(
                f"decoded:     {_bytes(self.decoded_bytes)} of chunks of shape "
                f"{self.chunk_shape} ({self.decode_ratio:.2f} bytes per byte owned, no cache)"
            )
        if self.read_requests is not None:
            note = _REQUEST_NOTES.get(self.request_kind)
            lines += _wrapped("requests:", f"{self.read_requests:,} {self.request_kind}"
                              + (f" ({note})" if note else ""))
        read = _bytes(self.largest_block_bytes)
        outputs = f", its outputs {_bytes(self.output_bytes)}" if self.output_bytes else ""
        lines += _wrapped(
            "memory:",
            f"about {_bytes(self.memory_per_worker)} per worker: the largest read {read}"
            f"{outputs}, and {read} more for the processor's own arrays (not counting "
            f"libraries, or what setup() loads)")
        if run.sink:
            lines.insert(3, f"sink:        {run.sink}")
        if self.warnings:
            lines.append(f"warnings:    {len(self.warnings)}")
            for warning in self.warnings:
                lines += textwrap.wrap(warning, 92, initial_indent="  - ",
                                       subsequent_indent="    ")
        return "\n".join(lines)


@attrs.frozen
class BlockFailure:
    """Why a block was not done."""

    error: str
    """The error's type and message."""
    traceback: str | None
    """The formatted traceback, from the worker where the error happened."""
    attempts: int
    """How many times the block was tried."""


@attrs.frozen
class RunCounts:
    """How many blocks of a run ended how."""

    done: int = 0
    """Processed in this session."""
    failed: int = 0
    """Failed in this session."""
    skipped: int = 0
    """Done by an earlier session, so not run again."""
    not_run: int = 0
    """Not tried to the end in this session: never handed out, or in flight when the run
    stopped."""


@attrs.frozen(eq=False)
class RunResult:
    """What a run did, block by block.

    Counts, the reduced value and the stop reason are held here; the per-block records
    (keys, failures, attempts, timings, values) are read from the run's journal when asked
    for, so that a run over millions of blocks stays small in memory. Keys are listed in
    block order.
    """

    run: RunInfo
    """The run's description."""
    counts: RunCounts
    """How many blocks were done, failed, skipped and not run."""
    reduced: Any
    """The processor's ``reduce`` (or ``fold``) of the values of every block done, in this
    session and earlier ones; None when the run did not finish."""
    elapsed: float
    """Wall-clock seconds of this session."""
    stopped: str | None = None
    """Why the run ended early, or None when every block was tried."""
    journal: Journal | None = attrs.field(default=None, repr=False)
    """The run's journal, where the per-block records are."""
    blocks: Callable[[], Iterator[Block]] | None = attrs.field(default=None, repr=False)
    """The run's blocks, in order (to list those not run)."""
    plugin_errors: tuple[str, ...] = ()
    """Hooks that raised during the run (each reported once, the run went on)."""

    # -- per-block views -----------------------------------------------------------------

    def _records(self, status: BlockStatus | None,
                 other: bool = False) -> Callable[[], Iterator[BlockRecord]]:
        journal, session = self.journal, self.run.session

        def records() -> Iterator[BlockRecord]:
            if journal is None:
                return iter(())
            return journal.records(status=status, session=session, other_sessions=other)

        return records

    def _count(self, status: BlockStatus | None, other: bool = False) -> Callable[[], int]:
        def count() -> int:
            if self.journal is None:
                return 0
            return self.journal.count(status=status, session=self.run.session,
                                      other_sessions=other)
        return count

    def _lookup(self, status: BlockStatus | None,
                other: bool = False) -> Callable[[str], BlockRecord | None]:
        def lookup(key: str) -> BlockRecord | None:
            record = None if self.journal is None else self.journal.record(key)
            if record is None or (status is not None and record.status is not status):
                return None
            if (record.session == self.run.session) == other:
                return None
            return record
        return lookup

    @property
    def done(self) -> KeyList:
        """Keys of the blocks processed successfully in this session."""
        records = self._records(BlockStatus.DONE)
        return KeyList(lambda: (r.key for r in records()), lambda: self.counts.done)

    @property
    def skipped(self) -> KeyList:
        """Keys of the blocks not run because an earlier session had done them."""
        records = self._records(BlockStatus.DONE, other=True)
        return KeyList(lambda: (r.key for r in records()), lambda: self.counts.skipped)

    @property
    def failed(self) -> RecordMap:
        """``{key: BlockFailure}`` of the blocks that failed in this session."""
        return RecordMap(self._records(BlockStatus.FAILED), lambda r: r.failure,
                         lambda: self.counts.failed, self._lookup(BlockStatus.FAILED))

    @property
    def not_run(self) -> KeyList:
        """Keys of the blocks with no outcome in this session because it stopped early:
        never handed out, in flight when it was interrupted, or waiting to be retried."""
        return KeyList(self._not_run, lambda: self.counts.not_run)

    def _not_run(self) -> Iterator[str]:
        if not self.counts.not_run or self.blocks is None:
            return
        if self.journal is None:
            yield from (block.key for block in self.blocks())
            return
        from .journal import BlockState

        for _, block, state in self.journal.pending(self.blocks()):
            if state is BlockState.DONE:
                continue
            if state is BlockState.NEW and self.journal.record(block.key) is not None:
                continue  # failed in this session
            yield block.key

    @property
    def attempts(self) -> RecordMap:
        """``{key: tries}`` of the blocks tried to the end in this session."""
        return RecordMap(self._records(None), lambda r: r.attempts, self._count(None),
                         self._lookup(None))

    @property
    def timings(self) -> RecordMap:
        """``{key: BlockTimings}`` of the blocks tried to the end in this session (the last
        try's, worker-side)."""
        return RecordMap(self._records(None), lambda r: r.timings, self._count(None),
                         self._lookup(None))

    @property
    def values(self) -> RecordMap:
        """``{key: value}`` of every block done, in this session and earlier ones: what
        ``reduce`` sees."""
        journal = self.journal

        def records() -> Iterator[BlockRecord]:
            return iter(()) if journal is None else journal.records(status=BlockStatus.DONE)

        def lookup(key: str) -> BlockRecord | None:
            record = None if journal is None else journal.record(key)
            return record if record is not None and record.status is BlockStatus.DONE else None

        def pairs() -> Iterator[tuple[str, Any]]:
            return iter(()) if journal is None else journal.values()

        return RecordMap(records, lambda r: r.value,
                         lambda: self.counts.done + self.counts.skipped, lookup, pairs)

    def records(self) -> Iterator[BlockRecord]:
        """Every journal record of this session, in block order."""
        return self._records(None)()

    # -- verdicts ------------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        """True when every block of the run is done (in this session or an earlier one)."""
        counts = self.counts
        return not counts.failed and not counts.not_run and self.stopped is None

    def raise_for_failures(self) -> "RunResult":
        """Raise `BlocksFailedError` (carrying this result) unless the run is `ok`; return
        the result otherwise, for chaining: ``pipeline.run().raise_for_failures()``."""
        if not self.ok:
            raise BlocksFailedError(self.summary(), result=self)
        return self

    def to_dict(self, *, blocks: bool = True) -> dict[str, Any]:
        """The result as JSON-ready data: the run, counts, stop reason, reduced value and,
        with ``blocks``, every record of this session with its value. Values are converted
        as `json_ready` says (numpy numbers and small arrays as numbers and lists, mappings
        keyed by text, large arrays summarised, other objects as their repr)."""
        info = attrs.asdict(self.run, value_serializer=lambda _i, _a, v: str(v)
                            if isinstance(v, Box) else v)
        data: dict[str, Any] = {
            "run": info,
            "ok": self.ok,
            "counts": attrs.asdict(self.counts),
            "stopped": self.stopped,
            "elapsed": self.elapsed,
            "reduced": json_ready(self.reduced),
            "plugin_errors": list(self.plugin_errors),
        }
        if blocks:
            data["blocks"] = [record.to_dict() for record in self.records()]
        return data

    def to_json(self, *, blocks: bool = True, indent: int | None = 2) -> str:
        """`to_dict` as JSON text."""
        return json.dumps(self.to_dict(blocks=blocks), indent=indent)

    def summary(self) -> str:
        """A few lines for a terminal."""
        counts = self.counts
        rate = counts.done / self.elapsed if self.elapsed > 0 else 0.0
        lines = [
            f"{'OK' if self.ok else 'NOT OK'}: {counts.done} done, {counts.failed} "
            f"failed, {counts.skipped} skipped, {counts.not_run} not run, of "
            f"{self.run.block_count} blocks in {self.elapsed:.2f} s ({rate:.1f} blocks/s)"
        ]
        if self.stopped:
            lines.append(f"stopped: {self.stopped}")
        for shown, (key, failure) in enumerate(self.failed.items()):
            if shown == 10:
                lines.append(f"  ... and {counts.failed - 10} more failed blocks")
                break
            error = failure.error.splitlines()[0] if failure.error else "unknown error"
            lines.append(f"  failed {key} after {failure.attempts} attempt(s): {error}")
        for error in self.plugin_errors:
            lines.append(f"  plugin error: {error}")
        return "\n".join(lines)
