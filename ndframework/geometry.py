"""Boxes and blocks: pure arithmetic on half-open ZYX regions, no I/O."""

from __future__ import annotations

from typing import Iterable, Sequence

import attrs

from ._numbers import is_integer, minimum_words
from .errors import GeometryError

__all__ = ["Box", "Block", "Halo", "as_triple"]

Triple = tuple[int, int, int]


def as_triple(value: Iterable[int] | int, name: str, *, minimum: int | None = None) -> Triple:
    """Normalise ``value`` to a tuple of three Python ints, or raise `GeometryError` naming it.

    A single integer is repeated on every axis. ``minimum`` bounds every axis from below.

    >>> as_triple((1, 2, 3), "halo")
    (1, 2, 3)
    >>> as_triple(4, "halo")
    (4, 4, 4)
    """
    if (  # the common case, and a hot path: boxes are built for every block
        type(value) is tuple
        and len(value) == 3
        and type(value[0]) is int
        and type(value[1]) is int
        and type(value[2]) is int
        and (minimum is None or min(value) >= minimum)
    ):
        return value  # type: ignore[return-value]
    if is_integer(value):
        items: list[object] = [value] * 3
    else:
        try:
            items = list(value)  # type: ignore[arg-type]
        except TypeError:
            raise GeometryError(
                f"{name} must be three integers (z, y, x), got {value!r}", value
            ) from None
    if len(items) != 3:
        raise GeometryError(
            f"{name} must have 3 values (z, y, x), got {len(items)}: {value!r}", value
        )
    for item in items:
        if not is_integer(item):
            raise GeometryError(f"{name} must be integers, got {value!r}", value)
    triple = (int(items[0]), int(items[1]), int(items[2]))  # type: ignore[call-overload]
    if minimum is not None and min(triple) < minimum:
        raise GeometryError(
            f"{name} must be {minimum_words(minimum)} in every axis, got {triple!r}", value
        )
    return triple


# The converters of the fields below: each names its field in errors.


def _box_start(value: Iterable[int] | int) -> Triple:
    return as_triple(value, "Box start")


def _box_stop(value: Iterable[int] | int) -> Triple:
    return as_triple(value, "Box stop")


def _block_index(value: Iterable[int] | int) -> Triple:
    return as_triple(value, "Block index")


def _halo_before(value: Iterable[int] | int) -> Triple:
    return as_triple(value, "halo (before)", minimum=0)


def _halo_after(value: Iterable[int] | int) -> Triple:
    return as_triple(value, "halo (after)", minimum=0)


def _check_box(instance: "Box", attribute: object, stop: Triple) -> None:
    start = instance.start
    if stop[0] < start[0] or stop[1] < start[1] or stop[2] < start[2]:
        raise GeometryError(
            f"Box stop must not be below start in any axis, got start={start}, "
            f"stop={stop}",
            (instance.start, stop),
        )


@attrs.frozen(order=True)
class Box:
    """An axis-aligned, half-open region ``[start, stop)`` in ZYX voxel coordinates.

    >>> box = Box((0, 10, 20), (4, 20, 40))
    >>> box.shape, box.size
    ((4, 10, 20), 800)
    >>> box.grow((1, 1, 1), (0, 2, 2)).stop
    (4, 22, 42)
    """

    start: Triple = attrs.field(converter=_box_start)
    """First voxel in the box, (z, y, x)."""
    stop: Triple = attrs.field(converter=_box_stop, validator=_check_box)
    """One past the last voxel in the box, (z, y, x)."""

    @classmethod
    def from_shape(cls, shape: Sequence[int], start: Sequence[int] = (0, 0, 0)) -> "Box":
        """The box of ``shape`` whose first voxel is ``start``."""
        start_t = as_triple(start, "start")
        shape_t = as_triple(shape, "shape", minimum=0)
        return cls(start_t, tuple(a + s for a, s in zip(start_t, shape_t)))

    @property
    def shape(self) -> Triple:
        """Extent along each axis, (z, y, x)."""
        return tuple(b - a for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    @property
    def size(self) -> int:
        """Number of voxels in the box."""
        z, y, x = self.shape
        return z * y * x

    @property
    def empty(self) -> bool:
        """True when the box holds no voxel."""
        return self.size == 0

    def contains(self, other: "Box") -> bool:
        """True when ``other`` lies entirely inside this box (an empty box at its edge counts)."""
        (a0, a1, a2), (b0, b1, b2) = self.start, self.stop
        (c0, c1, c2), (d0, d1, d2) = other.start, other.stop
        return (a0 <= c0 and a1 <= c1 and a2 <= c2
                and d0 <= b0 and d1 <= b1 and d2 <= b2)

    def intersect(self, other: "Box") -> "Box":
        """The overlap of the two boxes; an empty box where they do not meet."""
        (a0, a1, a2), (b0, b1, b2) = self.start, self.stop
        (c0, c1, c2), (d0, d1, d2) = other.start, other.stop
        s0, s1, s2 = max(a0, c0), max(a1, c1), max(a2, c2)
        return _box((s0, s1, s2),
                    (max(s0, min(b0, d0)), max(s1, min(b1, d1)), max(s2, min(b2, d2))))

    def grow(self, before: Sequence[int], after: Sequence[int] | None = None) -> "Box":
        """This box extended by ``before`` voxels below start and ``after`` above stop."""
        g0, g1, g2 = as_triple(before, "before")
        h0, h1, h2 = (g0, g1, g2) if after is None else as_triple(after, "after")
        (a0, a1, a2), (b0, b1, b2) = self.start, self.stop
        return Box((a0 - g0, a1 - g1, a2 - g2), (b0 + h0, b1 + h1, b2 + h2))

    def shift(self, offset: Sequence[int]) -> "Box":
        """This box moved by ``offset`` voxels."""
        o0, o1, o2 = as_triple(offset, "offset")
        (a0, a1, a2), (b0, b1, b2) = self.start, self.stop
        return _box((a0 + o0, a1 + o1, a2 + o2), (b0 + o0, b1 + o1, b2 + o2))

    def relative_to(self, origin: Box | Sequence[int]) -> "Box":
        """This box in the coordinates of an array whose first voxel is ``origin``."""
        o0, o1, o2 = origin.start if isinstance(origin, Box) else as_triple(origin, "origin")
        (a0, a1, a2), (b0, b1, b2) = self.start, self.stop
        return _box((a0 - o0, a1 - o1, a2 - o2), (b0 - o0, b1 - o1, b2 - o2))

    def slices(self) -> tuple[slice, slice, slice]:
        """Slices that cut this box out of an array whose first voxel is (0, 0, 0)."""
        (a0, a1, a2), (b0, b1, b2) = self.start, self.stop
        return slice(a0, b0), slice(a1, b1), slice(a2, b2)

    def __str__(self) -> str:
        return "[" + ", ".join(f"{a}:{b}" for a, b in zip(self.start, self.stop)) + "]"


@attrs.frozen
class Block:
    """One unit of work: the box it owns and writes, and the box it reads (with its halo).

    >>> block = Block((0, 1, 0), Box((0, 64, 0), (16, 128, 64)), Box((0, 60, 0), (16, 132, 64)))
    >>> block.key
    '0_64_0'
    >>> block.owned_slices()
    (slice(0, 16, None), slice(4, 68, None), slice(0, 64, None))
    """

    index: Triple = attrs.field(converter=_block_index)
    """Position of the block in its tiling's grid, (z, y, x)."""
    box: Box
    """The region the block owns: it is processed and written by this block only."""
    read_box: Box = attrs.field()
    """``box`` grown by the halo and clipped to the source bounds: the region read."""

    @read_box.validator
    def _check_read_box(self, attribute: object, read_box: Box) -> None:
        if not read_box.contains(self.box):
            raise GeometryError(
                f"read_box {read_box} must contain the owned box {self.box}", read_box
            )

    @property
    def key(self) -> str:
        """``"z_y_x"`` of the owned box's start: the Nd-Multicore block key."""
        z, y, x = self.box.start
        return f"{z}_{y}_{x}"

    @property
    def shape(self) -> Triple:
        """Shape of the owned box."""
        return self.box.shape

    def owned_slices(self) -> tuple[slice, slice, slice]:
        """Slices that cut the owned box out of an array covering ``read_box``."""
        return self.box.relative_to(self.read_box).slices()

    def crop(self, array):  # type: ignore[no-untyped-def]
        """The owned part of ``array``, an array read over ``read_box`` (trailing ZYX axes)."""
        return array[(Ellipsis, *self.owned_slices())]


_new = object.__new__
_set = object.__setattr__


def _box(start: Triple, stop: Triple) -> Box:
    """`Box` ``(start, stop)`` without conversion or checks, for arithmetic on boxes
    already checked: ``start`` and ``stop`` are tuples of three ints, ``stop >= start``.
    Boxes are built several times for every block, and the checks cost more than the rest
    of the arithmetic."""
    box = _new(Box)
    _set(box, "start", start)
    _set(box, "stop", stop)
    return box


def _block(index: Triple, box: Box, read_box: Box) -> Block:
    """`Block` without conversion or checks, for tilers that build valid blocks."""
    block = _new(Block)
    _set(block, "index", index)
    _set(block, "box", box)
    _set(block, "read_box", read_box)
    return block


def _halo_pair(value: object) -> tuple[object, object]:
    """``value`` as (before, after): a pair of triples is split, anything else repeated."""
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (tuple, list)) for v in value)
    ):
        return value[0], value[1]
    return value, value


@attrs.frozen
class Halo:
    """Context read around a block: voxels per axis below (``before``) and above (``after``).

    Build it from one integer, a (z, y, x) triple (symmetric), or a pair of triples
    ``((z, y, x) before, (z, y, x) after)``.

    >>> Halo.of(2)
    Halo(before=(2, 2, 2), after=(2, 2, 2))
    >>> Halo.of(((0, 1, 1), (0, 2, 2))).after
    (0, 2, 2)
    """

    before: Triple = attrs.field(default=(0, 0, 0), converter=_halo_before)
    """Voxels read below the owned box's start, (z, y, x)."""
    after: Triple = attrs.field(default=(0, 0, 0), converter=_halo_after)
    """Voxels read above the owned box's stop, (z, y, x)."""

    @classmethod
    def of(cls, value: object) -> "Halo":
        """Normalise an integer, a triple, a pair of triples or a `Halo`; validate it."""
        if isinstance(value, Halo):
            return value
        before, after = _halo_pair(value)
        if before is after:  # one value for both sides: name it plainly in errors
            triple = as_triple(before, "halo", minimum=0)  # type: ignore[arg-type]
            return cls(triple, triple)
        return cls(before, after)  # type: ignore[arg-type]

    def union(self, other: "Halo") -> "Halo":
        """The halo that is at least as large as both, axis by axis."""
        return Halo(
            tuple(max(a, b) for a, b in zip(self.before, other.before)),  # type: ignore[arg-type]
            tuple(max(a, b) for a, b in zip(self.after, other.after)),  # type: ignore[arg-type]
        )

    @property
    def is_zero(self) -> bool:
        """True when no context is read."""
        return not any(self.before) and not any(self.after)


