"""Tilers split a region into blocks. Pure arithmetic: no I/O, nothing of the rest."""

from __future__ import annotations

import abc
import itertools
import math
from typing import Iterator

import attrs
from .errors import GeometryError
from .geometry import Block, Box, Halo, Triple, as_triple

__all__ = ["Tiler", "RegularTiler", "CuboidTiler", "BOSS_CUBOID", "default_block_shape"]

BOSS_CUBOID: Triple = (16, 512, 512)
"""The BOSS storage cuboid, (z, y, x): 512 × 512 × 16 voxels in x, y, z."""

DEFAULT_BLOCK_BYTES = 32 * 2**20
"""Bytes a default block aims at, over all channels."""


class Tiler(abc.ABC):
    """Splits a bounding box into blocks.

    ``blocks(bounds)`` yields the blocks in a deterministic order, their owned boxes covering
    ``bounds`` exactly (every voxel once, none outside); ``count(bounds)`` is their number.
    """

    halo: Halo

    @abc.abstractmethod
    def blocks(self, bounds: Box, *, within: Box | None = None) -> Iterator[Block]:
        """Yield the blocks covering ``bounds``, read boxes clipped to ``within`` (default:
        ``bounds``), which must contain ``bounds``."""

    @abc.abstractmethod
    def count(self, bounds: Box) -> int:
        """Number of blocks ``blocks(bounds)`` yields, computed without yielding them."""

    def with_halo(self, halo: object) -> "Tiler":
        """This tiler reading ``halo`` around each block."""
        return attrs.evolve(self, halo=halo)  # type: ignore[misc]


def _axis_edges(start: int, stop: int, step: int, origin: int) -> list[int]:
    """Block boundaries along one axis: ``start``, grid lines strictly inside, ``stop``."""
    if stop <= start:
        return []
    first = origin + (start - origin) // step * step + step
    return [start, *range(first, stop, step), stop]


def _clip_within(bounds: Box, within: Box | None) -> Box:
    if within is None:
        return bounds
    if not within.contains(bounds):
        raise GeometryError(
            f"the region to read within, {within}, must contain the bounds {bounds}", within
        )
    return within


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

    block_shape: Triple = attrs.field(
        converter=lambda v: as_triple(v, "block_shape", minimum=1)
    )
    """Size of one block, (z, y, x)."""
    halo: Halo = attrs.field(default=(0, 0, 0), converter=Halo.of)
    """Context read around each block."""
    origin: Triple = attrs.field(default=(0, 0, 0), converter=lambda v: as_triple(v, "origin"))
    """A point on the block grid, (z, y, x)."""

    def _edges(self, bounds: Box) -> list[list[int]]:
        return [
            _axis_edges(a, b, step, o)
            for a, b, step, o in zip(bounds.start, bounds.stop, self.block_shape, self.origin)
        ]

    def count(self, bounds: Box) -> int:
        return math.prod(max(0, len(edges) - 1) for edges in self._edges(bounds))

    def blocks(self, bounds: Box, *, within: Box | None = None) -> Iterator[Block]:
        clip = _clip_within(bounds, within)
        zs, ys, xs = self._edges(bounds)
        for iz, (z0, z1) in enumerate(zip(zs, zs[1:])):
            for iy, (y0, y1) in enumerate(zip(ys, ys[1:])):
                for ix, (x0, x1) in enumerate(zip(xs, xs[1:])):
                    box = Box((z0, y0, x0), (z1, y1, x1))
                    yield _make_block((iz, iy, ix), box, self.halo, clip)


def _make_block(index: Triple, box: Box, halo: Halo, clip: Box) -> Block:
    return Block(index, box, box.grow(halo.before, halo.after).intersect(clip))


def _check_cuboid_multiple(instance: "CuboidTiler", attribute: object, value: Triple) -> None:
    if any(b % c for b, c in zip(value, instance.cuboid)):
        raise GeometryError(
            f"block_shape must be a multiple of the cuboid {instance.cuboid} (z, y, x) in "
            f"every axis, got {value}",
            value,
        )


@attrs.frozen
class CuboidTiler(Tiler):
    """Blocks aligned to the BOSS cuboid grid, from ``intern.utils.parallel.block_compute``.

    Reads and above all writes aligned to the 512 × 512 × 16 (x, y, z) cuboid avoid a
    read-modify-write on the server. Blocks are ``block_shape`` (a multiple of the cuboid)
    on a grid anchored at ``origin``; those at the edges of the bounds are clipped.

    Examples
    --------
    >>> tiler = CuboidTiler()
    >>> tiler.block_shape
    (16, 1024, 1024)
    >>> [b.key for b in tiler.blocks(Box((10, 0, 1000), (20, 100, 1100)))]
    ['10_0_1000', '10_0_1024', '16_0_1000', '16_0_1024']
    """

    block_shape: Triple = attrs.field(
        default=(16, 1024, 1024),
        converter=lambda v: as_triple(v, "block_shape", minimum=1),
        validator=_check_cuboid_multiple,
    )
    """Size of one block, (z, y, x): a multiple of ``cuboid``."""
    halo: Halo = attrs.field(default=(0, 0, 0), converter=Halo.of)
    """Context read around each block."""
    origin: Triple = attrs.field(default=(0, 0, 0), converter=lambda v: as_triple(v, "origin"))
    """A corner of the cuboid grid, (z, y, x); the BOSS grid starts at 0."""
    cuboid: Triple = attrs.field(
        default=BOSS_CUBOID,
        converter=lambda v: as_triple(v, "cuboid", minimum=1),
        kw_only=True,
    )
    """The storage cuboid the blocks align to, (z, y, x)."""

    def count(self, bounds: Box) -> int:
        return RegularTiler(self.block_shape, origin=self.origin).count(bounds)

    def blocks(self, bounds: Box, *, within: Box | None = None) -> Iterator[Block]:
        from intern.utils.parallel import block_compute  # intern is slow to import: on use

        clip = _clip_within(bounds, within)
        if bounds.empty:
            return
        # Anchor block_compute's grid at the grid line at or below the start, so that starts
        # below the origin (and far above it) are aligned without a long walk.
        anchor = tuple(
            o + (s - o) // b * b
            for s, o, b in zip(bounds.start, self.origin, self.block_shape)
        )
        (z0, y0, x0), (z1, y1, x1) = bounds.start, bounds.stop
        ranges = block_compute(
            x0, x1, y0, y1, z0, z1,
            origin=(anchor[2], anchor[1], anchor[0]),
            block_size=(self.block_shape[2], self.block_shape[1], self.block_shape[0]),
        )
        # block_compute returns (x, y, z) ranges in no useful order: sort them into ZYX order.
        boxes = sorted(
            Box((z[0], y[0], x[0]), (z[1], y[1], x[1])) for x, y, z in ranges
        )
        starts = [sorted({box.start[axis] for box in boxes}) for axis in range(3)]
        positions = [{value: i for i, value in enumerate(axis)} for axis in starts]
        for box in boxes:
            index = tuple(positions[axis][box.start[axis]] for axis in range(3))
            yield _make_block(index, box, self.halo, clip)  # type: ignore[arg-type]


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
