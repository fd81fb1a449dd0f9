"""One cuboid as spdb names and stores it: its shape, its key, the cuboids a box touches, and
its bytes.

The BOSS keeps a channel as cuboids of 512 x 512 x 16 voxels (x, y, z; spdb's
``CUBOIDSIZE``, spdb/c_lib/ndtype.py, the same at every resolution) on a grid anchored at
0, one object per cuboid and time sample, named by the cuboid's Morton index
(`ndframework.bossemu.morton`, in `CuboidKey`) and holding the blosc-compressed C-order
voxels of that one time sample (``to_blosc_by_time_index``, spdb/spatialdb/cube.py;
`encode_cuboid`).
"""

from __future__ import annotations

import hashlib
from typing import Iterator

import attrs
import blosc
import numpy as np

from .._bossapi import CUBOID_ZYX
from ..errors import ConfigError
from ..geometry import Box
from .morton import morton_to_xyz, xyz_to_morton

__all__ = [
    "CUBOID_SHAPE",
    "CuboidKey",
    "cuboid_parts",
    "storage_iso",
    "encode_cuboid",
    "decode_cuboid",
]

CUBOID_SHAPE: tuple[int, int, int] = CUBOID_ZYX
"""A cuboid's shape, (z, y, x) voxels: 16 x 512 x 512 at every resolution."""
_CUBOID_VOXELS = CUBOID_SHAPE[0] * CUBOID_SHAPE[1] * CUBOID_SHAPE[2]


def _non_negative(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if value < 0:
        raise ConfigError(f"{attribute.name} must be non-negative, got {value}", value)


@attrs.frozen(order=True)
class CuboidKey:
    """The name of one stored cuboid, with what spdb puts in its object keys.

    spdb's object key is ``md5&[ISO&]{lookup_key}&{resolution}&{time_sample}&{morton}``
    (``generate_object_key``, spdb/spatialdb/object.py). Keys sort as spdb orders cuboid
    keys: by channel, resolution and iso, then time sample, then Morton index.

    >>> key = CuboidKey.at("1&2&3", 0, (1, 0, 2))
    >>> key.morton, key.index, key.box
    (12, (1, 0, 2), Box(start=(16, 0, 1024), stop=(32, 512, 1536)))
    >>> key.object_key.split("&", 1)[1]
    '1&2&3&0&0&12'
    """

    channel: str = attrs.field(converter=str, validator=attrs.validators.min_len(1))
    """The channel: spdb's lookup key (``collection&experiment&channel`` ids) or any id."""
    resolution: int = attrs.field(converter=int, validator=_non_negative)
    """The resolution level, 0 the native one."""
    iso: bool = attrs.field(converter=bool)
    """True for the isotropic copy of the level (see `storage_iso`)."""
    time_sample: int = attrs.field(converter=int, validator=_non_negative)
    """The time sample."""
    morton: int = attrs.field(converter=int, validator=_non_negative)
    """The Morton index of the cuboid's (x, y, z) position on the cuboid grid."""

    @classmethod
    def at(
        cls,
        channel: str,
        resolution: int,
        index: tuple[int, int, int],
        time_sample: int = 0,
        iso: bool = False,
    ) -> CuboidKey:
        """The key of the cuboid at grid position ``index``, (z, y, x) cuboid indices."""
        z, y, x = index
        return cls(channel, resolution, iso, time_sample, xyz_to_morton(x, y, z))

    @property
    def index(self) -> tuple[int, int, int]:
        """The cuboid's grid position, (z, y, x) cuboid indices."""
        x, y, z = morton_to_xyz(self.morton)
        return z, y, x

    @property
    def box(self) -> Box:
        """The voxels the cuboid holds, in the coordinates of its resolution."""
        start = tuple(i * s for i, s in zip(self.index, CUBOID_SHAPE))
        return Box.from_shape(CUBOID_SHAPE, start)

    @property
    def object_key(self) -> str:
        """spdb's S3 object key of this cuboid (``generate_object_key``, spdb object.py)."""
        base = f"{self.channel}&{self.resolution}&{self.time_sample}&{self.morton}"
        if self.iso:
            base = "ISO&" + base
        return f"{hashlib.md5(base.encode()).hexdigest()}&{base}"


def storage_iso(iso: bool, resolution: int, isotropic_level: int, hierarchy_method: str) -> bool:
    """Whether a request's ``iso`` flag selects a separate copy of the level's cuboids.

    spdb keys the isotropic copy apart only for ``iso=True`` above the isotropic level of
    an anisotropic hierarchy; everywhere else ``iso`` reads and writes the ordinary cuboids
    (``generate_object_key``, spdb/spatialdb/object.py; ``generate_cached_cuboid_keys``,
    spdb/spatialdb/kvio.py; ``write_cuboid``, spdb/spatialdb/spatialdb.py).

    >>> storage_iso(True, 3, 2, "anisotropic"), storage_iso(True, 2, 2, "anisotropic")
    (True, False)
    >>> storage_iso(True, 5, 0, "isotropic")
    False
    """
    return bool(iso) and resolution > isotropic_level and hierarchy_method.lower() == "anisotropic"


def cuboid_parts(box: Box) -> Iterator[tuple[tuple[int, int, int], Box]]:
    """The cuboids that ``box`` touches, each with the part of ``box`` inside it.

    Yields ``(index, part)``: the cuboid's (z, y, x) grid position (floor division, so
    negative below 0) and the non-empty intersection of ``box`` with it, z slowest, x
    fastest. An empty box touches none.

    >>> [(index, str(part)) for index, part in cuboid_parts(Box((-1, 0, 500), (1, 1, 520)))]
    [((-1, 0, 0), '[-1:0, 0:1, 500:512]'), ((-1, 0, 1), '[-1:0, 0:1, 512:520]'), \
((0, 0, 0), '[0:1, 0:1, 500:512]'), ((0, 0, 1), '[0:1, 0:1, 512:520]')]
    """
    if box.empty:
        return
    ranges = [
        range(start // size, -(-stop // size))
        for start, stop, size in zip(box.start, box.stop, CUBOID_SHAPE)
    ]
    (cz, cy, cx), (sz, sy, sx) = CUBOID_SHAPE, box.start
    (ez, ey, ex) = box.stop
    for z in ranges[0]:
        for y in ranges[1]:
            for x in ranges[2]:
                start = (max(sz, z * cz), max(sy, y * cy), max(sx, x * cx))
                stop = (min(ez, (z + 1) * cz), min(ey, (y + 1) * cy), min(ex, (x + 1) * cx))
                yield (z, y, x), Box(start, stop)


def encode_cuboid(cuboid: np.ndarray) -> bytes:
    """A cuboid's voxels as spdb stores them: C order, blosc-compressed.

    spdb passes blosc the item size in bits, not bytes (``pack_array``,
    spdb/spatialdb/cube.py); kept so that the bytes match spdb's.
    """
    if cuboid.shape != CUBOID_SHAPE:
        raise ConfigError(f"a cuboid has shape {CUBOID_SHAPE}, got {cuboid.shape}", cuboid)
    return blosc.compress(np.ascontiguousarray(cuboid), typesize=cuboid.dtype.itemsize * 8)


def decode_cuboid(data: bytes, dtype: np.dtype | str | None) -> np.ndarray:
    """The writable (z, y, x) voxels of an encoded cuboid of ``dtype``.

    With ``dtype=None``, an unsigned integer type of the item size that the cuboid's
    length implies: enough to move voxels or zero them without knowing the channel.
    """
    raw = blosc.decompress(data, as_bytearray=True)
    if dtype is None:
        itemsize, remainder = divmod(len(raw), _CUBOID_VOXELS)
        if remainder or itemsize not in (1, 2, 4, 8):
            raise ConfigError(f"a stored cuboid holds {len(raw)} bytes, not a cuboid", data)
        dtype = f"u{itemsize}"
    dtype = np.dtype(dtype)
    if len(raw) != _CUBOID_VOXELS * dtype.itemsize:
        raise ConfigError(
            f"a stored cuboid holds {len(raw)} bytes, which is not a cuboid of {dtype} "
            f"({_CUBOID_VOXELS * dtype.itemsize} bytes)",
            dtype,
        )
    return np.frombuffer(raw, dtype=dtype).reshape(CUBOID_SHAPE)
