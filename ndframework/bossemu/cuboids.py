"""The cutout over sparse cuboid storage: `read`, `write` (a merge) and `to_black`.

The BOSS keeps a channel as cuboids, one object per cuboid and time sample
(`ndframework.bossemu.cuboid_format`). A cuboid that was never written has no object and
reads as zeros (``zero_cuboids`` in ``SpatialDB.cutout``, spdb/spatialdb/spatialdb.py). So
does this module: a `~ndframework.bossemu.cuboid_stores.CuboidStore` holds only the cuboids
written, and memory or disk grow with them, never with the frame.

Conventions. Boxes are `ndframework.geometry.Box`, half-open and in ZYX voxel coordinates
of the requested resolution, as everywhere in ndframework; the BOSS's (x, y, z) corners and
extents turn into ``Box((z0, y0, x0), (z1, y1, x1))`` at the HTTP layer. Arrays are
``(T, Z, Y, X)``: time leads, as in spdb's ``Cube.data`` ("t,z,y,x", ``write_cuboid``).
`read` always returns the four axes; `write` takes three (one time sample) or four.

What the BOSS does, and what is done here:

- Write merges, it never replaces: a posted voxel that is 0 leaves the stored voxel as it
  was, every other posted voxel replaces it, for image and annotation channels alike and
  also when the post covers a whole cuboid (``overwrite`` in spdb/spatialdb/imagecube.py
  and annocube.py, through ``overwriteDense8/16/64`` in
  spdb/c_lib/c_version/overwriteDense.c; applied per cuboid by boss-tools
  lambda/s3_flush_lambda.py to the cuboid in S3, or stored as posted, zeros included,
  when the cuboid does not exist yet). One deviation, invisible through the API: where
  the post has no non-zero voxel in a cuboid that does not exist, no all-zero object is
  created, so that writing zeros costs no storage.
- Cutout to black zeroes exactly its box: boss's view posts a box of ones with
  ``to_black=True`` (django/bossspatialdb/views.py), ``Cube.overwrite_to_black`` zeroes
  where that mask is 1 (spdb/spatialdb/cube.py), and a cuboid that does not exist is left
  alone (s3_flush_lambda.py). A cuboid blacked out entirely stays stored, as zeros.
- Each cuboid of a write is read, merged and written back under that cuboid's own lock
  (one per key, never one for the store), so writers to different cuboids never wait for
  each other and writers to the same cuboid do not lose each other's voxels. A write is
  not atomic as a whole: on the BOSS each cuboid is flushed on its own too.
- A read takes no lock: each backend replaces a cuboid's bytes in one step (a dict entry;
  a file renamed over the old one), so a reader sees a cuboid before or after a write,
  never half of one. It allocates only its output, plus one cuboid at a time to decode.
- Negative coordinates: cuboid indices are floor divisions, as ``corner // cube_dim`` in
  spdb's ``cutout`` and ``write_cuboid``; a negative index takes a two's complement Morton
  index (`ndframework.bossemu.morton`). spdb's own cutout would misplace such cuboids (it
  offsets cuboids from the unsigned decoding of the lowest Morton index), and the BOSS's
  URLs cannot ask for them; here cutouts in frames that start below 0 read and write
  correctly.
- ``iso`` selects the separate isotropic copy of a level; spdb keys it apart only above the
  isotropic level of an anisotropic hierarchy
  (`~ndframework.bossemu.cuboid_format.storage_iso`).
"""

from __future__ import annotations

from typing import Iterator

import attrs
import numpy as np

from ..errors import ConfigError
from ..geometry import Box
from .cuboid_format import CUBOID_SHAPE, CuboidKey, cuboid_parts, decode_cuboid, encode_cuboid
from .cuboid_stores import CuboidStore

__all__ = ["read", "write", "to_black"]


def _time_range(time_range: tuple[int, int]) -> tuple[int, int]:
    start, stop = (int(value) for value in time_range)
    if not 0 <= start < stop:
        raise ConfigError(
            f"time_range must be [start, stop) with 0 <= start < stop, got {tuple(time_range)}",
            time_range,
        )
    return start, stop


def _pieces(
    channel: str, resolution: int, box: Box, times: range, iso: bool
) -> Iterator[tuple[CuboidKey, int, tuple[slice, ...], tuple[slice, ...]]]:
    """Each cuboid and time sample that ``box`` touches: its key, the sample's offset in
    ``times``, and the slices of their common part inside the cuboid and inside ``box``."""
    for index, part in cuboid_parts(box):
        key = CuboidKey.at(channel, resolution, index, times.start, iso)
        inside = part.relative_to(key.box.start).slices()
        outside = part.relative_to(box).slices()
        for offset, time_sample in enumerate(times):
            yield attrs.evolve(key, time_sample=time_sample), offset, inside, outside


def read(
    store: CuboidStore,
    channel: str,
    resolution: int,
    box: Box,
    dtype: np.dtype | str,
    *,
    time_range: tuple[int, int] = (0, 1),
    iso: bool = False,
) -> np.ndarray:
    """The voxels of ``box`` over ``time_range``, a (T, Z, Y, X) array: spdb's cutout.

    Assembles the stored cuboids that ``box`` touches; voxels of cuboids never written
    are 0 (``SpatialDB.cutout``, spdb/spatialdb/spatialdb.py). Allocates the output and
    one decoded cuboid at a time, whatever the size of the frame.

    >>> from ndframework.bossemu.cuboid_stores import MemoryCuboids
    >>> store = MemoryCuboids()
    >>> read(store, "c", 0, Box((0, 0, 0), (1, 2, 3)), "uint8").shape
    (1, 1, 2, 3)
    """
    dtype = np.dtype(dtype)
    first, stop = _time_range(time_range)
    output = np.zeros((stop - first,) + box.shape, dtype=dtype)
    for key, offset, inside, outside in _pieces(channel, resolution, box, range(first, stop), iso):
        data = store.get(key)
        if data is not None:
            output[(offset,) + outside] = decode_cuboid(data, dtype)[inside]
    return output


def _as_time_series(box: Box, data: np.ndarray) -> np.ndarray:
    posted = np.asarray(data)
    series = posted[np.newaxis] if posted.ndim == 3 else posted
    if series.ndim != 4 or series.shape[1:] != box.shape:
        raise ConfigError(
            f"data must have the box's shape {box.shape} (Z, Y, X), with or without a "
            f"leading time axis, got {posted.shape}",
            posted,
        )
    return series


def write(
    store: CuboidStore,
    channel: str,
    resolution: int,
    box: Box,
    data: np.ndarray,
    *,
    time_start: int = 0,
    iso: bool = False,
) -> None:
    """Merge ``data`` into the stored cuboids of ``box``: spdb's write_cuboid.

    ``data`` is (Z, Y, X) for the one time sample ``time_start``, or (T, Z, Y, X) for
    samples from ``time_start`` on. Its non-zero voxels replace the stored ones; its zeros
    leave them as they are (see the module docstring). Each cuboid is merged under its own
    lock.

    >>> from ndframework.bossemu.cuboid_stores import MemoryCuboids
    >>> store = MemoryCuboids()
    >>> box = Box((0, 0, 0), (1, 1, 3))
    >>> write(store, "c", 0, box, np.array([[[5, 6, 7]]], dtype="uint8"))
    >>> write(store, "c", 0, box, np.array([[[0, 9, 0]]], dtype="uint8"))
    >>> read(store, "c", 0, box, "uint8").ravel().tolist()
    [5, 9, 7]
    """
    series = _as_time_series(box, data)
    times = range(*_time_range((time_start, time_start + series.shape[0])))
    for key, offset, inside, outside in _pieces(channel, resolution, box, times, iso):
        posted = series[(offset,) + outside]
        nonzero = posted != 0
        if not nonzero.any():
            continue  # zeros change nothing, and need no all-zero object
        with store.lock(key):
            stored = store.get(key)
            if stored is None:
                cuboid = np.zeros(CUBOID_SHAPE, dtype=series.dtype)
                cuboid[inside] = posted
            else:
                cuboid = decode_cuboid(stored, series.dtype)
                np.copyto(cuboid[inside], posted, where=nonzero)
            store.put(key, encode_cuboid(cuboid))


def to_black(
    store: CuboidStore,
    channel: str,
    resolution: int,
    box: Box,
    *,
    time_range: tuple[int, int] = (0, 1),
    iso: bool = False,
) -> None:
    """Zero every stored voxel of ``box`` over ``time_range``: spdb's cutout to black.

    Cuboids that do not exist stay absent (boss-tools lambda/s3_flush_lambda.py); the
    others are zeroed inside ``box`` under their own lock (``overwrite_to_black``,
    spdb/spatialdb/cube.py). Needs no dtype: a cuboid's item size follows from its length.
    """
    times = range(*_time_range(time_range))
    for key, _, inside, _ in _pieces(channel, resolution, box, times, iso):
        with store.lock(key):
            stored = store.get(key)
            if stored is not None:
                cuboid = decode_cuboid(stored, None)
                cuboid[inside] = 0
                store.put(key, encode_cuboid(cuboid))
