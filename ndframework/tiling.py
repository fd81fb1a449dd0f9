"""Tilers split a region into blocks. Pure arithmetic: no I/O, nothing of the rest."""

from __future__ import annotations

import abc
import itertools
import math
from typing import Any, Iterable, Iterator

import attrs
from .errors import GeometryError
from .geometry import Block, Box, Halo, Triple, _block, _box, as_triple

__all__ = [
    "Tiler", "RegularTiler", "CuboidTiler", "BOSS_CUBOID", "default_block_shape",
    "GridAxis", "ChunkGrid", "TilingMeasures", "measure", "misaligned_edge",
]

BOSS_CUBOID: Triple = (16, 512, 512)
"""The BOSS storage cuboid, (z, y, x): 512 × 512 × 16 voxels in x, y, z."""

DEFAULT_BLOCK_BYTES = 32 * 2**20
"""Bytes a default block aims at, over all channels."""


class _TilerType(abc.ABCMeta):
    """Tilers' metaclass: a tiler's ``halo`` is required like an abstract method, but an
    instance may set it in ``__init__``, so it is checked once the tiler is made."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        tiler = super().__call__(*args, **kwargs)
        if not hasattr(tiler, "halo"):
            raise TypeError(
                f"Can't instantiate tiler {cls.__qualname__} without its halo: set self.halo "
                f"in __init__ (Halo() for none), or define halo as a field or a property")
        return tiler


class Tiler(metaclass=_TilerType):
    """Splits a bounding box into blocks: what every tiler provides, and all the pipeline
    relies on.

    A tiler provides `blocks`, `count`, `halo` and `with_halo`; `grid` is optional. Any
    subclass that keeps the contract below works in every part of a run: the halo a
    processor asks for, the check that parallel writes never share a sink's chunk,
    `Pipeline.plan`, and the journal that lets a run resume. `RegularTiler` and
    `CuboidTiler` are the framework's own; ``docs/tilers.md`` writes one from scratch, and
    `ndframework.testing.tilers.TilerConformance` checks the contract:

    - **Exact cover.** The owned boxes of ``blocks(bounds)`` cover ``bounds``: every voxel
      once, none outside, and no box empty (so empty bounds have no blocks). A tiler that
      leaves out blocks on purpose, such as those a mask marks empty, keeps the rest: its
      boxes are disjoint, not empty, and inside the bounds.
    - **Read boxes.** A block's ``read_box`` is its box grown by ``halo`` (``before`` below
      the start, ``after`` above the stop) and clipped to ``within``.
    - **Unique keys.** No two blocks of one tiling share a key (the start of the box) or
      an index.
    - **Deterministic order.** The same bounds give the same blocks in the same order on
      every call, in every process and session: the journal records blocks by key.
    - **Count.** ``count(bounds)`` is the number of blocks ``blocks(bounds)`` yields.
    - **Halo.** ``with_halo(halo)`` is a tiler with the same boxes, in the same order,
      reading ``halo`` around them; this tiler is left as it was.

    The journal names a run's tiling so that a resumed run skips only blocks that mean the
    same: `RegularTiler` and `CuboidTiler` by their ``repr``, which holds everything their
    blocks depend on; any other tiler by its class, its halo and a digest of its blocks'
    indices and boxes, walked once more when a run or plan is prepared.
    """

    halo: Halo
    """The context read around each block, a `Halo`: required, as the abstract methods
    are. An attribute set in ``__init__``, a field of an attrs class or a property all
    provide it; a tiler made without one is refused with a `TypeError`."""

    @abc.abstractmethod
    def blocks(self, bounds: Box, *, within: Box | None = None) -> Iterator[Block]:
        """Yield the blocks of ``bounds``, one at a time, in a deterministic order.

        Read boxes are clipped to ``within`` (default: ``bounds``), which must contain
        ``bounds``: the pipeline passes the source's bounds, or with a halo mode that pads,
        the bounds grown by the halo. Generate blocks lazily: a volume may have millions.
        """

    @abc.abstractmethod
    def count(self, bounds: Box) -> int:
        """The number of blocks ``blocks(bounds)`` yields. The pipeline calls it before a
        run starts: compute it without building the blocks where that is possible."""

    @abc.abstractmethod
    def with_halo(self, halo: Halo) -> "Tiler":
        """A tiler of the same blocks reading ``halo`` around each, leaving this one as it
        was. The pipeline calls it with the union of this tiler's halo and the
        processor's. An attrs class returns ``attrs.evolve(self, halo=halo)``."""

    def grid(self, bounds: Box) -> tuple["GridAxis", "GridAxis", "GridAxis"] | None:
        """The blocks of ``bounds`` as a regular grid, one `GridAxis` per axis (z, y, x),
        or None (the default) when they are not one.

        A tiler that returns a grid promises that ``blocks(bounds)`` yields, in C order,
        the block with index ``(i, j, k)``, owning the ``i``-th interval along z, the
        ``j``-th along y and the ``k``-th along x, and reading it grown by ``halo``. Planning
        then counts and measures the blocks per axis instead of walking them. A subclass
        that overrides ``blocks`` below the class defining ``grid`` is walked.
        """
        return None


@attrs.frozen
class GridAxis:
    """Block boundaries along one axis: ``start``, the grid lines ``origin + k * step``
    strictly inside, and ``stop``. Intervals are computed on demand, never stored.

    >>> axis = GridAxis(3, 20, 8, 0)
    >>> len(axis), list(axis), axis.interval(1)
    (3, [(3, 8), (8, 16), (16, 20)], (8, 16))
    """

    start: int
    """First coordinate tiled."""
    stop: int
    """One past the last coordinate tiled."""
    step: int
    """Distance between grid lines: the block extent along this axis."""
    origin: int
    """A grid line."""

    @property
    def first_line(self) -> int:
        """The first grid line above ``start`` (it may lie at or beyond ``stop``)."""
        return self.origin + (self.start - self.origin) // self.step * self.step + self.step

    def __len__(self) -> int:
        if self.stop <= self.start:
            return 0
        first = self.first_line
        return 1 if first >= self.stop else 2 + (self.stop - 1 - first) // self.step

    def interval(self, index: int) -> tuple[int, int]:
        """The ``index``-th interval ``(start, stop)``, from 0."""
        count = len(self)
        if not 0 <= index < count:
            raise IndexError(f"interval {index} of an axis with {count}")
        first = self.first_line
        low = self.start if index == 0 else first + (index - 1) * self.step
        high = self.stop if index == count - 1 else first + index * self.step
        return low, high

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.stop <= self.start:
            return
        low = self.start
        for line in range(self.first_line, self.stop, self.step):
            yield low, line
            low = line
        yield low, self.stop


def _grid(bounds: Box, block_shape: Triple, origin: Triple) -> tuple[GridAxis, GridAxis, GridAxis]:
    z, y, x = (
        GridAxis(a, b, step, o)
        for a, b, step, o in zip(bounds.start, bounds.stop, block_shape, origin)
    )
    return z, y, x


def _grid_blocks(
    grid: tuple[GridAxis, GridAxis, GridAxis], halo: Halo, clip: Box
) -> Iterator[Block]:
    """The blocks of ``grid`` in C order, generated one at a time. ``clip`` contains the
    grid's bounds, so every read box (the box grown by the halo, clipped) contains its box:
    the boxes are built without checks, a hot path over millions of blocks."""
    zs, ys, xs = grid
    (g0, g1, g2), (h0, h1, h2) = halo.before, halo.after
    (c0, c1, c2), (d0, d1, d2) = clip.start, clip.stop
    plain = not any(halo.before) and not any(halo.after)
    for iz, (z0, z1) in enumerate(zs):
        rz0, rz1 = max(z0 - g0, c0), min(z1 + h0, d0)
        for iy, (y0, y1) in enumerate(ys):
            ry0, ry1 = max(y0 - g1, c1), min(y1 + h1, d1)
            for ix, (x0, x1) in enumerate(xs):
                box = _box((z0, y0, x0), (z1, y1, x1))
                read_box = box if plain else _box(
                    (rz0, ry0, max(x0 - g2, c2)), (rz1, ry1, min(x1 + h2, d2))
                )
                yield _block((iz, iy, ix), box, read_box)


def _clip_within(bounds: Box, within: Box | None) -> Box:
    if within is None:
        return bounds
    if not within.contains(bounds):
        raise GeometryError(
            f"the region to read within, {within}, must contain the bounds {bounds}", within
        )
    return within


def _as_block_shape(value: Iterable[int] | int) -> Triple:
    return as_triple(value, "block_shape", minimum=1)


def _as_origin(value: Iterable[int] | int) -> Triple:
    return as_triple(value, "origin")


def _as_cuboid(value: Iterable[int] | int) -> Triple:
    return as_triple(value, "cuboid", minimum=1)


@attrs.frozen
class RegularTiler(Tiler):
    """Blocks of ``block_shape`` on a grid anchored at ``origin``; edge blocks are clipped.

    Parameters
    ----------
    block_shape:
        Size of a block, (z, y, x), positive integers.
    halo:
        Context read around each block: an integer, a (z, y, x) triple, or a pair of triples
        (before, after). Read boxes are clipped to the region read from.
    origin:
        A point on the grid, (z, y, x): block boundaries are at ``origin + k * block_shape``.

    Examples
    --------
    >>> tiler = RegularTiler((2, 4, 4))
    >>> bounds = Box((0, 0, 0), (3, 4, 6))
    >>> [b.key for b in tiler.blocks(bounds)]
    ['0_0_0', '0_0_4', '2_0_0', '2_0_4']
    >>> tiler.count(bounds)
    4
    """

    block_shape: Triple = attrs.field(converter=_as_block_shape)
    """Size of one block, (z, y, x)."""
    halo: Halo = attrs.field(default=(0, 0, 0), converter=Halo.of)
    """Context read around each block."""
    origin: Triple = attrs.field(default=(0, 0, 0), converter=_as_origin)
    """A point on the block grid, (z, y, x)."""

    def grid(self, bounds: Box) -> tuple[GridAxis, GridAxis, GridAxis]:
        return _grid(bounds, self.block_shape, self.origin)

    def count(self, bounds: Box) -> int:
        return math.prod(len(axis) for axis in self.grid(bounds))

    def blocks(self, bounds: Box, *, within: Box | None = None) -> Iterator[Block]:
        clip = _clip_within(bounds, within)
        return _grid_blocks(self.grid(bounds), self.halo, clip)

    def with_halo(self, halo: object) -> "RegularTiler":
        """This tiler reading ``halo`` (anything `Halo.of` takes) around each block."""
        return attrs.evolve(self, halo=halo)


def _make_block(index: Triple, box: Box, halo: Halo, clip: Box) -> Block:
    return _block(index, box, box.grow(halo.before, halo.after).intersect(clip))


def _check_cuboid_multiple(instance: "CuboidTiler", attribute: object, value: Triple) -> None:
    if any(b % c for b, c in zip(value, instance.cuboid)):
        raise GeometryError(
            f"block_shape must be a multiple of the cuboid {instance.cuboid} (z, y, x) in "
            f"every axis, got {value}",
            value,
        )


@attrs.frozen
class CuboidTiler(RegularTiler):
    """A `RegularTiler` whose blocks align to the BOSS cuboid grid, as
    ``intern.utils.parallel.block_compute`` cuts them.

    Reads and above all writes aligned to the 512 × 512 × 16 (x, y, z) cuboid avoid a
    read-modify-write on the server. Blocks are ``block_shape`` (a multiple of the cuboid,
    checked) on a grid anchored at ``origin``; those at the edges of the bounds are
    clipped. They are generated one at a time in C order (intern's function lists every
    block at once, about 850 bytes each: 20 GiB for a 100000² × 10000 volume), and equal
    intern's blocks.

    The fields are redeclared here, with the defaults of a cuboid tiling, so that they keep
    their order: positional arguments and the ``repr`` journals record are those of
    `RegularTiler`, followed by ``cuboid``.

    Examples
    --------
    >>> tiler = CuboidTiler()
    >>> tiler.block_shape
    (16, 1024, 1024)
    >>> [b.key for b in tiler.blocks(Box((10, 0, 1000), (20, 100, 1100)))]
    ['10_0_1000', '10_0_1024', '16_0_1000', '16_0_1024']
    """

    block_shape: Triple = attrs.field(
        default=(16, 1024, 1024), converter=_as_block_shape, validator=_check_cuboid_multiple
    )
    """Size of one block, (z, y, x): a multiple of ``cuboid``."""
    halo: Halo = attrs.field(default=(0, 0, 0), converter=Halo.of)
    """Context read around each block."""
    origin: Triple = attrs.field(default=(0, 0, 0), converter=_as_origin)
    """A corner of the cuboid grid, (z, y, x); the BOSS grid starts at 0."""
    cuboid: Triple = attrs.field(default=BOSS_CUBOID, converter=_as_cuboid, kw_only=True)
    """The storage cuboid the blocks align to, (z, y, x)."""


def default_block_shape(
    chunk_shape: Triple | None,
    bounds: Box,
    bytes_per_voxel: int,
    target_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Triple:
    """A block shape of whole storage chunks holding about ``target_bytes``.

    Starting from one chunk (or 64³ voxels), x, y and then z are doubled in turn until a
    block holds enough bytes or covers the bounds.

    >>> default_block_shape((16, 64, 64), Box((0, 0, 0), (100, 1000, 1000)), 1, 2**20)
    (32, 128, 256)
    """
    shape = list(chunk_shape or (64, 64, 64))
    limit = [max(extent, 1) for extent in bounds.shape]
    axes = itertools.cycle((2, 1, 0))
    stalled = 0
    while shape[0] * shape[1] * shape[2] * bytes_per_voxel < target_bytes and stalled < 3:
        axis = next(axes)
        if shape[axis] < limit[axis]:
            shape[axis] *= 2
            stalled = 0
        else:
            stalled += 1
    return (shape[0], shape[1], shape[2])


# -- measuring a tiling without walking it ----------------------------------------------


def _as_chunk_shape(value: Iterable[int] | int) -> Triple:
    return as_triple(value, "chunk_shape", minimum=1)


def _as_chunk_origin(value: Iterable[int] | int) -> Triple:
    return as_triple(value, "chunk origin")


@attrs.frozen
class ChunkGrid:
    """Storage chunks of ``shape`` on a grid through ``origin``, holding data over ``bounds``.

    >>> ChunkGrid((16, 512, 512), (0, 0, 0), Box((0, 0, 0), (32, 1024, 1024))).shape
    (16, 512, 512)
    """

    shape: Triple = attrs.field(converter=_as_chunk_shape)
    """Size of one chunk, (z, y, x)."""
    origin: Triple = attrs.field(converter=_as_chunk_origin)
    """A corner of the chunk grid, (z, y, x)."""
    bounds: Box
    """The region the chunks hold: reads are counted inside it only."""

    def touched(self, axis: int, start: int, stop: int) -> int:
        """Chunks along ``axis`` that the interval ``[start, stop)`` touches inside the bounds."""
        low = max(start, self.bounds.start[axis])
        high = min(stop, self.bounds.stop[axis])
        if high <= low:
            return 0
        step, origin = self.shape[axis], self.origin[axis]
        return (high - 1 - origin) // step - (low - origin) // step + 1


@attrs.frozen
class TilingMeasures:
    """What a tiling's blocks add up to, over all blocks."""

    block_count: int
    """Number of blocks."""
    read_voxels: int
    """Voxels in all read boxes together."""
    largest_read_voxels: int
    """Voxels in the largest read box."""
    chunks_read: int | None
    """Storage chunks the read boxes touch, counted once per block that touches them (no
    cache), or None without a chunk grid."""


def _regular_grid(tiler: Tiler, bounds: Box) -> tuple[GridAxis, GridAxis, GridAxis] | None:
    """``tiler.grid(bounds)``, unless the tiler's ``blocks`` is overridden below the class
    that defines its ``grid`` (then the grid may not describe the blocks)."""
    cls = type(tiler)
    defines_grid = next(k for k in cls.__mro__ if "grid" in vars(k))
    defines_blocks = next(k for k in cls.__mro__ if "blocks" in vars(k))
    if not issubclass(defines_grid, defines_blocks):
        return None
    return tiler.grid(bounds)


def measure(
    tiler: Tiler, bounds: Box, *, within: Box | None = None, chunks: ChunkGrid | None = None
) -> TilingMeasures:
    """Count and size the blocks of ``bounds``, read boxes clipped to ``within``.

    A regular grid is separable: a read box is a product of per-axis intervals, so the sums
    and maxima over blocks are products of per-axis sums and maxima, computed axis by axis
    in memory that does not grow with the blocks. Other tilers' blocks are walked.

    >>> tiler = RegularTiler((2, 4, 4), halo=1)
    >>> measure(tiler, Box((0, 0, 0), (4, 4, 8)))
    TilingMeasures(block_count=4, read_voxels=240, largest_read_voxels=60, chunks_read=None)
    """
    clip = _clip_within(bounds, within)
    grid = _regular_grid(tiler, bounds)
    if grid is None:
        return _walk(tiler, bounds, clip, chunks)
    halo = Halo.of(tiler.halo)
    count, read, largest, touched = 1, 1, 1, 1
    for axis, intervals in enumerate(grid):
        axis_read = axis_largest = axis_touched = 0
        for low, high in intervals:
            read_low = max(low - halo.before[axis], clip.start[axis])
            read_high = min(high + halo.after[axis], clip.stop[axis])
            axis_read += read_high - read_low
            axis_largest = max(axis_largest, read_high - read_low)
            if chunks is not None:
                axis_touched += chunks.touched(axis, read_low, read_high)
        count *= len(intervals)
        read, largest, touched = read * axis_read, largest * axis_largest, touched * axis_touched
    return TilingMeasures(count, read, largest, None if chunks is None else touched)


def _walk(tiler: Tiler, bounds: Box, clip: Box, chunks: ChunkGrid | None) -> TilingMeasures:
    count = read = largest = touched = 0
    for block in tiler.blocks(bounds, within=clip):
        count += 1
        read += block.read_box.size
        largest = max(largest, block.read_box.size)
        if chunks is not None:
            start, stop = block.read_box.start, block.read_box.stop
            touched += math.prod(chunks.touched(axis, start[axis], stop[axis]) for axis in range(3))
    return TilingMeasures(count, read, largest, None if chunks is None else touched)


def misaligned_edge(
    tiler: Tiler, bounds: Box, chunks: ChunkGrid, *, within: Box | None = None
) -> tuple[Block, int, int] | None:
    """The first block (in the tiler's order) with an edge inside a chunk of ``chunks``, as
    ``(block, axis, edge)``, or None when every block edge lies on the chunk grid or on the
    edge of ``bounds``, which the chunks' bounds must contain.

    Blocks whose edges all lie on the grid write whole chunks (or the bounds' edge of one),
    so parallel writes never share a chunk. A regular grid is checked per axis: its inner
    edges are the grid lines inside the bounds, aligned when the first is and the step is
    a multiple of the chunk (or there is one line).

    >>> chunks = ChunkGrid((4, 4, 4), (0, 0, 0), Box((0, 0, 0), (8, 8, 8)))
    >>> block, axis, edge = misaligned_edge(RegularTiler((4, 4, 6)), chunks.bounds, chunks)
    >>> block.key, axis, edge
    ('0_0_0', 2, 6)
    """
    clip = _clip_within(bounds, within)
    if not chunks.bounds.contains(bounds):
        raise GeometryError(
            f"the chunks' bounds {chunks.bounds} must contain the bounds {bounds}", bounds
        )

    def aligned(axis: int, edge: int, outer: int) -> bool:
        return (edge - chunks.origin[axis]) % chunks.shape[axis] == 0 or edge == outer

    def first_bad(block: Block) -> tuple[Block, int, int] | None:
        for axis in range(3):
            for edge, outer in ((block.box.start[axis], bounds.start[axis]),
                                (block.box.stop[axis], bounds.stop[axis])):
                if not aligned(axis, edge, outer):
                    return block, axis, edge
        return None

    grid = _regular_grid(tiler, bounds)
    if grid is None:
        return next(filter(None, map(first_bad, tiler.blocks(bounds, within=clip))), None)
    if bounds.empty:
        return None
    # Per axis, the first interval that ends at a misaligned grid line (its neighbour starts
    # there): only grid lines strictly inside the bounds can be misaligned.
    firsts: list[int | None] = []
    for axis, intervals in enumerate(grid):
        lines = len(intervals) - 1
        first = None
        if lines >= 1 and not aligned(axis, intervals.first_line, bounds.stop[axis]):
            first = 0
        elif lines >= 2 and (intervals.step % chunks.shape[axis]):
            first = 1
        firsts.append(first)
    candidates = [
        tuple(first if axis == bad else 0 for axis in range(3))
        for bad, first in enumerate(firsts) if first is not None
    ]
    if not candidates:
        return None
    index = min(candidates)  # the first in C order
    lows_highs = [grid[axis].interval(index[axis]) for axis in range(3)]
    box = Box(tuple(low for low, _ in lows_highs), tuple(high for _, high in lows_highs))
    return first_bad(_make_block(index, box, Halo.of(tiler.halo), clip))  # type: ignore[arg-type]
