"""Sparse cuboid storage, blosc-compressed, in memory or on disk, and the cutout over it.

The BOSS keeps a channel as cuboids of 512 x 512 x 16 voxels (x, y, z; spdb's
``CUBOIDSIZE``, spdb/c_lib/ndtype.py, the same at every resolution) on a grid anchored at
0, one object per cuboid and time sample, named by the cuboid's Morton index
(`ndframework.bossemu.morton`) and holding the blosc-compressed C-order voxels of that one
time sample (``to_blosc_by_time_index``, spdb/spatialdb/cube.py). A cuboid that was never
written has no object and reads as zeros (``zero_cuboids`` in ``SpatialDB.cutout``,
spdb/spatialdb/spatialdb.py). So does this module: a `CuboidStore` holds only the cuboids
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
  isotropic level of an anisotropic hierarchy (`storage_iso`).
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Hashable, Iterable, Iterator
from urllib.parse import quote

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
    "CuboidStore",
    "MemoryCuboids",
    "DiskCuboids",
    "cuboid_parts",
    "storage_iso",
    "encode_cuboid",
    "decode_cuboid",
    "read",
    "write",
    "to_black",
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


@attrs.define
class _KeyLocks:
    """One lock per key, alive only while someone holds or waits for it."""

    _mutex: threading.Lock = attrs.field(factory=threading.Lock)
    _entries: dict[Hashable, list] = attrs.field(factory=dict)

    @contextlib.contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        # the mutex guards only the table (a dict update), never the caller's work
        with self._mutex:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = [threading.Lock(), 0]
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._mutex:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._entries[key]


@attrs.define
class CuboidStore(abc.ABC):
    """Where encoded cuboids live: bytes by `CuboidKey`, absent for cuboids never written.

    Backends implement `get`, `put`, `delete` and `keys`; each `put` must replace a
    cuboid's bytes in one step, so that a `get` returns old or new bytes, never a mix.
    `lock` serialises read-modify-write on one cuboid; `read`, `write` and `to_black`
    are the cutout over a store.
    """

    _locks: _KeyLocks = attrs.field(factory=_KeyLocks, init=False, repr=False, eq=False)

    @abc.abstractmethod
    def get(self, key: CuboidKey) -> bytes | None:
        """The encoded cuboid, or None if it was never written (or was deleted)."""

    @abc.abstractmethod
    def put(self, key: CuboidKey, data: bytes) -> None:
        """Store an encoded cuboid, replacing any before it in one step."""

    @abc.abstractmethod
    def delete(self, key: CuboidKey) -> None:
        """Forget a cuboid; nothing happens if it is not stored."""

    @abc.abstractmethod
    def keys(self, channel: str) -> Iterator[CuboidKey]:
        """The keys of a channel's stored cuboids, in no particular order."""

    def lock(self, key: CuboidKey) -> contextlib.AbstractContextManager[None]:
        """Hold the lock of one cuboid (other cuboids' locks stay free)."""
        return self._locks.hold(key)

    def keys_in(
        self,
        channel: str,
        resolution: int | None = None,
        *,
        iso: bool | None = None,
        time_samples: Iterable[int] | None = None,
    ) -> list[CuboidKey]:
        """A channel's stored keys, sorted, optionally of one resolution, iso flag and
        set of time samples."""
        wanted_times = None if time_samples is None else set(time_samples)
        return sorted(
            key
            for key in self.keys(str(channel))
            if (resolution is None or key.resolution == resolution)
            and (iso is None or key.iso == bool(iso))
            and (wanted_times is None or key.time_sample in wanted_times)
        )

    def delete_channel(self, channel: str) -> None:
        """Forget every cuboid of a channel."""
        for key in list(self.keys(str(channel))):
            self.delete(key)


@attrs.define
class MemoryCuboids(CuboidStore):
    """Cuboids in a dict, for tests and throwaway servers.

    Single dict operations are atomic (the GIL, or the dict's own lock in free-threaded
    Python), which is all `CuboidStore` asks of `put` and `get`.

    >>> store = MemoryCuboids()
    >>> store.get(CuboidKey.at("c", 0, (0, 0, 0))) is None
    True
    """

    _channels: dict[str, dict[CuboidKey, bytes]] = attrs.field(factory=dict, repr=False)

    def get(self, key: CuboidKey) -> bytes | None:
        return self._channels.get(key.channel, {}).get(key)

    def put(self, key: CuboidKey, data: bytes) -> None:
        self._channels.setdefault(key.channel, {})[key] = bytes(data)

    def delete(self, key: CuboidKey) -> None:
        self._channels.get(key.channel, {}).pop(key, None)

    def keys(self, channel: str) -> Iterator[CuboidKey]:
        return iter(self._channels.get(str(channel), {}).copy())

    def delete_channel(self, channel: str) -> None:
        self._channels.pop(str(channel), None)

    @property
    def nbytes(self) -> int:
        """Bytes of encoded cuboids held."""
        channels = list(self._channels.values())
        return sum(len(data) for cuboids in channels for data in cuboids.copy().values())


_TEMP_PREFIX = "."


@attrs.define
class DiskCuboids(CuboidStore):
    """Cuboids as files under ``directory``, one per cuboid, kept across restarts.

    Layout: ``<directory>/ch-<channel, %-quoted>/res<r>[-iso]/t<time sample>/<morton>.blosc``
    (the prefix keeps channels such as ``..`` inside the directory).
    A cuboid is written to a hidden temporary file beside its final name and renamed over
    it (``os.replace``, atomic), so a reader sees the old file or the new one, never part
    of one; a crash leaves at most a stray temporary file, which `open` sweeps away.
    One process owns a directory: the per-cuboid locks live in that process.
    The constructor touches nothing; `open` creates the directory. With ``fsync`` each
    cuboid reaches the device before its rename, surviving a crash of the machine, not
    only of the process: slower, and seldom needed by an emulator.
    """

    directory: Path = attrs.field(converter=Path)
    """The store's root directory."""
    fsync: bool = attrs.field(default=False, kw_only=True)
    """Whether each cuboid is flushed to the device before it is renamed into place."""

    @classmethod
    def open(cls, directory: str | os.PathLike, *, fsync: bool = False) -> DiskCuboids:
        """The store in ``directory``, created if missing, without stray temporary files."""
        store = cls(directory, fsync=fsync)
        store.directory.mkdir(parents=True, exist_ok=True)
        for stray in store.directory.glob(f"*/*/*/{_TEMP_PREFIX}*"):
            stray.unlink(missing_ok=True)
        return store

    def path(self, key: CuboidKey) -> Path:
        """The file that holds the cuboid of ``key``."""
        level = f"res{key.resolution}" + ("-iso" if key.iso else "")
        return (
            self._channel_directory(key.channel) / level
            / f"t{key.time_sample}" / f"{key.morton}.blosc"
        )

    def _channel_directory(self, channel: str) -> Path:
        return self.directory / ("ch-" + quote(str(channel), safe=""))

    def get(self, key: CuboidKey) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: CuboidKey, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                if self.fsync:
                    file.flush()
                    os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    def delete(self, key: CuboidKey) -> None:
        self.path(key).unlink(missing_ok=True)

    def keys(self, channel: str) -> Iterator[CuboidKey]:
        channel = str(channel)
        for file in self._channel_directory(channel).glob("res*/t*/*.blosc"):
            if file.name.startswith(_TEMP_PREFIX):
                continue
            level, time_dir = file.parent.parent.name, file.parent.name
            resolution, _, iso = level[3:].partition("-")
            yield CuboidKey(channel, int(resolution), iso == "iso",
                            int(time_dir[1:]), int(file.stem))

    def delete_channel(self, channel: str) -> None:
        shutil.rmtree(self._channel_directory(channel), ignore_errors=True)


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
