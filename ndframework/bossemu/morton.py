"""The Morton (Z-order) index of a cuboid, as spdb computes it.

spdb names every stored cuboid by the Morton index of its position on the cuboid grid
(``XYZMorton`` in spdb/c_lib/ndlib.py, implemented in spdb/c_lib/c_version/zindex.c): the
bits of the cuboid's x, y and z indices interleaved, x in the lowest bit of each triad::

    bit 3*i     <- bit i of x
    bit 3*i + 1 <- bit i of y
    bit 3*i + 2 <- bit i of z        for i in 0..20 (21 triads, 63 bits)

so ``(1, 0, 0) -> 1``, ``(0, 1, 0) -> 2``, ``(0, 0, 1) -> 4``, and sorting by Morton index
walks x fastest, then y, then z within every 2x2x2 group. ``MortonXYZ`` in the same files
is its inverse.

Negative indices. The cuboid grid is anchored at 0 and spdb finds a cuboid with floor
division (``corner // cube_dim`` in ``SpatialDB.cutout`` and ``write_cuboid``,
spdb/spatialdb/spatialdb.py), so a coordinate frame that starts below 0 has cuboids at
negative indices. spdb hands them to ``XYZMorton`` through ``np.uint64(...)``, which in the
numpy spdb was written for wraps a negative index to its 64-bit two's complement; the C loop
then keeps the low 21 bits. This module does the same: an index is taken modulo 2**21 before
interleaving, and `morton_to_xyz` sign-extends the 21 bits back. That makes the Morton index
a one-to-one map on indices in ``[-2**20, 2**20)`` (a frame up to 536,870,912 voxels either
side of 0 in x and y, and 16,777,216 in z), identical to spdb's for the non-negative ones;
indices outside that range are refused rather than allowed to alias (spdb would accept
``[2**20, 2**21)`` too, where they alias the negative ones). The real BOSS never reaches the
negative case through its API: its cutout URLs admit only ``\\d+:\\d+`` ranges
(boss django/bossspatialdb/urls.py).
"""

from __future__ import annotations

__all__ = ["MORTON_BITS", "INDEX_MIN", "INDEX_MAX", "xyz_to_morton", "morton_to_xyz"]

MORTON_BITS = 21
"""Bits per axis in a Morton index (21 triads, spdb/c_lib/c_version/zindex.c)."""
INDEX_MIN = -(2 ** (MORTON_BITS - 1))
"""Lowest cuboid index on any axis that has a Morton index of its own."""
INDEX_MAX = 2 ** (MORTON_BITS - 1) - 1
"""Highest cuboid index on any axis that has a Morton index of its own."""

_AXIS_MASK = (1 << MORTON_BITS) - 1
_SIGN_BIT = 1 << (MORTON_BITS - 1)
_MORTON_MASK = (1 << (3 * MORTON_BITS)) - 1

# The usual "spread by two" masks: each step moves groups of bits apart until every bit of
# a 21-bit value sits at three times its position. The tests check this against a
# bit-by-bit transcription of zindex.c's loop.
_SPREAD = (
    (32, 0x1F00000000FFFF),
    (16, 0x1F0000FF0000FF),
    (8, 0x100F00F00F00F00F),
    (4, 0x10C30C30C30C30C3),
    (2, 0x1249249249249249),
)


def _spread(value: int) -> int:
    value &= _AXIS_MASK
    for shift, mask in _SPREAD:
        value = (value | (value << shift)) & mask
    return value


def _compact(value: int) -> int:
    value &= _SPREAD[-1][1]
    # undo the spreading steps from the last to the first: each undone shift leaves the
    # bits in the groups of the step before it, hence that step's mask
    masks = [mask for _, mask in _SPREAD[:-1]]
    for (shift, _), mask in zip(reversed(_SPREAD), reversed([_AXIS_MASK] + masks)):
        value = (value ^ (value >> shift)) & mask
    return value


def _check_index(value: int, axis: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(value.__index__())  # numpy integers
        except AttributeError:
            raise TypeError(f"cuboid index {axis} must be an integer, got {value!r}") from None
    if not INDEX_MIN <= value <= INDEX_MAX:
        raise ValueError(
            f"cuboid index {axis} must lie in [{INDEX_MIN}, {INDEX_MAX}] to have a Morton "
            f"index, got {value}"
        )
    return value


def xyz_to_morton(x: int, y: int, z: int) -> int:
    """The Morton index of the cuboid at cuboid indices ``(x, y, z)``, as spdb's XYZMorton.

    Parameters
    ----------
    x, y, z
        Cuboid indices (voxel coordinate floor-divided by the cuboid size), each in
        ``[INDEX_MIN, INDEX_MAX]``; negative ones are taken as 21-bit two's complement.

    Raises
    ------
    ValueError
        When an index lies outside ``[INDEX_MIN, INDEX_MAX]``.

    Examples
    --------
    >>> [xyz_to_morton(*xyz) for xyz in [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]]
    [0, 1, 2, 4]
    >>> xyz_to_morton(2, 0, 0), xyz_to_morton(3, 5, 7)
    (8, 431)
    >>> xyz_to_morton(-1, 0, 0) == int("001" * 21, 2)
    True
    """
    x = _check_index(x, "x")
    y = _check_index(y, "y")
    z = _check_index(z, "z")
    return _spread(x) | (_spread(y) << 1) | (_spread(z) << 2)


def morton_to_xyz(morton: int) -> tuple[int, int, int]:
    """The cuboid indices ``(x, y, z)`` of a Morton index: the inverse of `xyz_to_morton`.

    Like spdb's MortonXYZ for indices below ``2**20``; indices with the top bit of their
    21 set are read back as negative (two's complement), see the module docstring.

    Raises
    ------
    ValueError
        When ``morton`` is negative or has bits above the 63 that 21 triads fill.

    Examples
    --------
    >>> morton_to_xyz(431)
    (3, 5, 7)
    >>> morton_to_xyz(xyz_to_morton(-3, 4, -5))
    (-3, 4, -5)
    """
    if isinstance(morton, bool) or not isinstance(morton, int):
        morton = int(morton.__index__())
    if not 0 <= morton <= _MORTON_MASK:
        raise ValueError(
            f"a Morton index lies in [0, 2**{3 * MORTON_BITS}), got {morton}"
        )
    x = _compact(morton)
    y = _compact(morton >> 1)
    z = _compact(morton >> 2)
    return _signed(x), _signed(y), _signed(z)


def _signed(value: int) -> int:
    return value - (1 << MORTON_BITS) if value & _SIGN_BIT else value
