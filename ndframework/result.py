"""What a run is (`RunInfo`), what it will do (`Plan`) and what it did (`RunResult`)."""

from __future__ import annotations

from typing import Any, Mapping

import attrs

from ._worker import BlockTimings
from .geometry import Box, Halo, Triple

__all__ = ["RunInfo", "Plan", "BlockFailure", "RunResult"]


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
    """A unique id for this run."""
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


@attrs.frozen
class Plan:
    """What a run would do, computed without reading any voxel."""

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
        if run.sink:
            lines.insert(3, f"sink:        {run.sink}")
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
class RunResult:
    """What a run did, block by block. Keys are listed in block order."""

    run: RunInfo
    """The run's description."""
    done: tuple[str, ...]
    """Keys of the blocks processed successfully in this run."""
    failed: Mapping[str, BlockFailure]
    """Blocks that failed, by key: the error text and traceback."""
    skipped: tuple[str, ...]
    """Keys of blocks not run because an earlier run had done them."""
    not_run: tuple[str, ...]
    """Keys of blocks with no outcome because the run stopped early: never handed out, in
    flight when it was interrupted, or waiting to be retried."""
    attempts: Mapping[str, int]
    """How many times each attempted block was tried."""
    timings: Mapping[str, BlockTimings]
    """Worker-side timings of each block that reached a worker."""
    values: Mapping[str, Any]
    """The per-block values of the blocks done."""
    reduced: Any
    """The processor's ``reduce`` of ``values``, or None when the run stopped early."""
    elapsed: float
    """Wall-clock seconds of the whole run."""
    stopped: str | None = None
    """Why the run ended early, or None when every block was attempted."""

    @property
    def ok(self) -> bool:
        """True when every block of the run is done (or was done by an earlier run)."""
        return not self.failed and not self.not_run and self.stopped is None

    def summary(self) -> str:
        """A few lines for a terminal."""
        rate = len(self.done) / self.elapsed if self.elapsed > 0 else 0.0
        lines = [
            f"{'OK' if self.ok else 'NOT OK'}: {len(self.done)} done, {len(self.failed)} "
            f"failed, {len(self.skipped)} skipped, {len(self.not_run)} not run, of "
            f"{self.run.block_count} blocks in {self.elapsed:.2f} s ({rate:.1f} blocks/s)"
        ]
        if self.stopped:
            lines.append(f"stopped: {self.stopped}")
        for key, failure in list(self.failed.items())[:10]:
            lines.append(f"  failed {key} after {failure.attempts} attempt(s): {failure.error}")
        if len(self.failed) > 10:
            lines.append(f"  ... and {len(self.failed) - 10} more failed blocks")
        return "\n".join(lines)
