"""Where encoded cuboids live: the `CuboidStore` interface, and its backends in memory
(`MemoryCuboids`) and on disk (`DiskCuboids`).

A store holds only the cuboids written, so memory or disk grow with them, never with the
frame; a cuboid never written has no entry, as it has no object on the BOSS. Each backend
replaces a cuboid's bytes in one step, and `CuboidStore.lock` gives one lock per cuboid:
what the cutout over a store (`ndframework.bossemu.cuboids`) relies on.
"""

from __future__ import annotations

import abc
import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Hashable, Iterable, Iterator
from urllib.parse import quote

import attrs

from .cuboid_format import CuboidKey

__all__ = ["CuboidStore", "MemoryCuboids", "DiskCuboids"]


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
