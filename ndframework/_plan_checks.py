"""What `Pipeline.plan` adds to its byte counts: the requests a run makes to its source, the
bytes of a block's outputs, and warnings about a run that would go badly. Arithmetic over
metadata only: no voxel is read or written, and a regular tiling is never walked."""

from __future__ import annotations

import collections
import itertools
import math
import os
import sys
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import attrs

from .geometry import Box, Halo
from .result import _bytes, memory_estimate
from .tiling import BOSS_CUBOID, ChunkGrid, Tiler, TilingMeasures, _regular_grid, misaligned_edge

if TYPE_CHECKING:
    from .executors import Executor
    from .storage import DataSink, DataSource

__all__ = ["Assessment", "assess", "TINY_BLOCK_BYTES", "LARGE_HALO_OVERHEAD"]

TINY_BLOCK_BYTES = 2**20
"""Bytes read per block below which, with worker processes or Dask, the fixed cost of each
block (handing it out, its outcome coming back, opening its reads) outweighs its work."""
TINY_BLOCK_EXECUTORS = ("processes", "dask")
"""Executors where each block costs a message to another process."""
LARGE_HALO_OVERHEAD = 0.5
"""Halo overhead (extra bytes read over bytes owned) above which the plan warns."""
CUTOUT_REQUESTS = "cutout requests"
"""`Assessment.request_kind` of a BOSS source."""
CHUNK_READS = "chunk reads"
"""`Assessment.request_kind` of a source stored in chunks."""


@attrs.frozen
class Assessment:
    """The figures and warnings a plan adds to its byte counts."""

    read_requests: int | None
    """Requests that reading every block makes (see `request_kind`), or None."""
    request_kind: str
    """What `read_requests` counts: `CUTOUT_REQUESTS` or `CHUNK_READS`; empty when None."""
    output_bytes: int
    """Bytes of the largest block's outputs."""
    warnings: tuple[str, ...]
    """What would make the run slow, wasteful or refused by a server."""


def assess(
    *,
    source: DataSource,
    sink: DataSink | None,
    processor: Any,
    executor: Executor,
    tiler: Tiler,
    bounds: Box,
    channels: tuple[str, ...],
    within: Box,
    measures: TilingMeasures,
) -> Assessment:
    """Count requests and output bytes, and list the warnings, for a run of ``tiler`` over
    ``bounds`` of ``channels``, read boxes clipped to ``within``, with ``executor``."""
    itemsizes = {name: source.dtype(name).itemsize for name in channels}
    largest_owned = _largest_owned_voxels(tiler, bounds)
    output_bytes = largest_owned * sum(_output_itemsizes(processor, sink).values())
    limit = _boss_request_limit(source)
    requests: int | None = None
    kind = ""
    if limit is not None:
        times = _time_samples(source)
        requests = sum(_cutout_requests(tiler, bounds, within, itemsizes[name] * times, limit)
                       for name in channels)
        kind = CUTOUT_REQUESTS
    elif source.chunk_shape is not None and measures.chunks_read is not None:
        requests, kind = measures.chunks_read * len(channels), CHUNK_READS

    warnings: list[str] = []
    if limit is not None:
        warnings += _over_boss_limit("reads", source, measures.largest_read_voxels,
                                     itemsizes, limit, tiler)
    sink_limit = None if sink is None else _boss_request_limit(sink)
    if sink is not None and sink_limit is not None:
        warnings += _over_boss_limit(
            "writes", sink, largest_owned,
            {name: sink.dtype(name).itemsize for name in sink.channels}, sink_limit, tiler)
    read_bytes = measures.read_voxels * sum(itemsizes.values())
    largest_read = measures.largest_read_voxels * sum(itemsizes.values())
    warnings += _tiny_blocks(executor, measures.block_count, read_bytes)
    if sink is not None:
        warnings += _misaligned_writes(sink, executor, tiler, bounds, source.bounds)
    owned_bytes = bounds.size * sum(itemsizes.values())
    if owned_bytes and read_bytes / owned_bytes - 1 > LARGE_HALO_OVERHEAD:
        warnings.append(
            f"halos add {read_bytes / owned_bytes - 1:.0%} to the bytes read: a halo of "
            f"{_halo_text(Halo.of(tiler.halo))} around blocks of {_shape_text(tiler)}; "
            f"larger blocks, or a thinner halo, read less"
        )
    warnings += _memory(executor, memory_estimate(largest_read, output_bytes))
    return Assessment(requests, kind, output_bytes, tuple(warnings))


# -- figures -----------------------------------------------------------------------------------

def _output_itemsizes(processor: Any, sink: DataSink | None) -> dict[str, int]:
    """Bytes per voxel of each output channel: those the processor declares, else the
    sink's (a processor may write fewer: an upper bound)."""
    declared = processor.effective_outputs
    if declared:
        return {name: dtype.itemsize for name, dtype in declared.items()}
    if sink is None:
        return {}
    return {name: sink.dtype(name).itemsize for name in sink.channels}


def _read_intervals(axis: Iterable[tuple[int, int]], before: int, after: int, low: int,
                    high: int) -> dict[int, list[tuple[int, int]]]:
    """The read intervals along one grid axis (grown by the halo, clipped to
    ``[low, high)``), grouped by length."""
    groups: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
    for start, stop in axis:
        read = (max(start - before, low), min(stop + after, high))
        groups[read[1] - read[0]].append(read)
    return groups


def _largest_owned_voxels(tiler: Tiler, bounds: Box) -> int:
    """Voxels in the largest box a block owns (and writes)."""
    grid = _regular_grid(tiler, bounds)
    if grid is None:
        return max((block.box.size for block in tiler.blocks(bounds)), default=0)
    return math.prod(max((stop - start for start, stop in axis), default=0) for axis in grid)


def _boss_request_limit(volume: Any) -> int | None:
    """The bytes a request to the BOSS may carry, for a BOSS source or sink; else None."""
    if "ndframework.boss" not in sys.modules:  # never imported: no BOSS volume exists
        return None
    from .boss._volume import BossVolume

    return volume.max_request_bytes if isinstance(volume, BossVolume) else None


def _time_samples(volume: Any) -> int:
    t_range = volume.config.t_range
    return 1 if t_range is None else t_range[1] - t_range[0]


def _cutout_requests(tiler: Tiler, bounds: Box, within: Box, bytes_per_voxel: int,
                     max_bytes: int) -> int:
    """Requests a BOSS source makes to read one channel of every block: each read box is
    split as `ndframework.boss._split.split_box` splits it.

    A regular grid is counted per axis: the split of a box depends on its shape alone, and
    the read boxes of one shape are a product of per-axis intervals of those lengths, so
    their pieces add up to a product of per-axis sums. Grids have a few lengths per axis
    (first, inner, last), so this costs a few products, whatever the number of blocks.
    """
    from .boss._split import _axis_cuts, split_box

    grid = _regular_grid(tiler, bounds)
    if grid is None:
        return sum(len(split_box(block.read_box, bytes_per_voxel, max_bytes))
                   for block in tiler.blocks(bounds, within=within))
    halo = Halo.of(tiler.halo)
    axes = [_read_intervals(axis, halo.before[a], halo.after[a], within.start[a],
                            within.stop[a]) for a, axis in enumerate(grid)]
    total = 0
    for shape in itertools.product(*(sorted(groups) for groups in axes)):
        first = split_box(Box((0, 0, 0), shape), bytes_per_voxel, max_bytes)[0]
        steps = first.shape  # the piece step along each axis, or the whole length
        total += math.prod(
            sum(len(_axis_cuts(start, stop, steps[a], BOSS_CUBOID[a]))
                for start, stop in axes[a][shape[a]])
            for a in range(3)
        )
    return total


# -- warnings ----------------------------------------------------------------------------------

def _shape_text(tiler: Tiler) -> str:
    shape = getattr(tiler, "block_shape", None)
    return "its tiler's shapes" if shape is None else f"{tuple(shape)} (z, y, x)"


def _halo_text(halo: Halo) -> str:
    if halo.before == halo.after:
        return str(halo.before)
    return f"before {halo.before}, after {halo.after}"


def _over_boss_limit(verb: str, volume: Any, voxels: int, itemsizes: Mapping[str, int],
                     limit: int, tiler: Tiler) -> list[str]:
    """A block that ``verb`` ("reads", "writes") more bytes of a channel than one request
    to the BOSS may carry: the volume splits it into several requests."""
    times = _time_samples(volume)
    name, itemsize = max(itemsizes.items(), key=lambda item: item[1], default=("", 0))
    largest = voxels * itemsize * times
    if largest <= limit:
        return []
    return [
        f"the largest block {verb} {_bytes(largest)} of channel {name!r}, over the BOSS's "
        f"limit of {_bytes(limit)} on one cutout request: such blocks take several requests "
        f"each; blocks smaller than {_shape_text(tiler)}, of at most {_bytes(limit)} a "
        f"channel, take one"
    ]


def _tiny_blocks(executor: Executor, block_count: int, read_bytes: int) -> list[str]:
    if executor.name not in TINY_BLOCK_EXECUTORS or not block_count:
        return []
    mean = read_bytes / block_count
    if mean >= TINY_BLOCK_BYTES:
        return []
    return [
        f"blocks read {_bytes(mean)} on average: with the {executor.name!r} executor the "
        f"fixed cost of each block (handing it to a worker process, its outcome coming back, "
        f"opening its reads) outweighs the work below about {_bytes(TINY_BLOCK_BYTES)}; "
        f"choose larger blocks, or the 'threads' executor"
    ]


def _misaligned_writes(sink: DataSink, executor: Executor, tiler: Tiler, bounds: Box,
                       source_bounds: Box) -> list[str]:
    """Writes that share storage chunks. With several workers the pipeline refuses them
    before the run; with one, they are allowed, and each costs a read-modify-write."""
    chunks = sink.chunk_shape
    if chunks is None or executor.workers != 1:
        return []
    found = misaligned_edge(tiler, bounds, ChunkGrid(chunks, sink.chunk_origin, sink.bounds),
                            within=source_bounds)
    if found is None:
        return []
    block, axis, edge = found
    verb = "starts" if edge == block.box.start[axis] else "ends"
    unit = ("cuboid of the BOSS (512 x 512 x 16 voxels, x, y, z)"
            if _boss_request_limit(sink) is not None else f"chunk of the sink {chunks} (z, y, x)")
    return [
        f"writes are not aligned to the sink's chunks: block {block.key} {verb} at "
        f"{'zyx'[axis]}={edge}, inside a {unit}, so blocks rewrite the chunks they share "
        f"(read-modify-write), and no two of them may run at once; use block shapes that are "
        f"multiples of the chunk shape, on a grid through the sink's chunk origin "
        f"{sink.chunk_origin}"
    ]


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # not a POSIX system
        return None


def _memory(executor: Executor, per_worker: int) -> list[str]:
    if executor.name not in ("serial", "threads", "processes"):
        return []  # a cluster's workers are on other machines
    total, memory = per_worker * executor.workers, _physical_memory()
    if memory is None or total <= memory:
        return []
    return [
        f"{executor.workers} worker(s) need about {_bytes(total)} together "
        f"({_bytes(per_worker)} each, see memory/worker), over this machine's "
        f"{_bytes(memory)} of memory: choose smaller blocks or fewer workers"
    ]
