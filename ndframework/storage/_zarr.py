"""Volumes in a zarr group on local disk: one array per channel, all of one shape."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .._numbers import as_int
from ..errors import ConfigError, DataAccessError
from ..geometry import Box, Triple, as_triple
from ._base import DataSink, DataSource
from ._chunk_cache import ChunkCache, default_chunk_cache_bytes, read_basic, read_through

__all__ = ["ZarrSource", "ZarrSink"]

ORIGIN_ATTRIBUTE = "ndframework_origin"
"""Group attribute holding the (z, y, x) coordinates of the arrays' first voxel."""


def _as_path(path_or_group: Any) -> str:
    if isinstance(path_or_group, (str, os.PathLike)):
        return os.fspath(path_or_group)
    store = getattr(path_or_group, "store", None)
    root = getattr(store, "root", None) or getattr(store, "path", None)
    if root is None:
        raise ConfigError(
            f"expected a path or a zarr group on local disk, got {path_or_group!r}",
            path_or_group,
        )
    return os.path.join(os.fspath(root), getattr(path_or_group, "path", "") or "")


def create_array(
    group: Any, name: str, shape: Sequence[int], chunks: Sequence[int], dtype: Any
) -> Any:
    """A zero-filled array in ``group``: ``create_array`` in zarr 3, ``create_dataset`` in
    zarr 2 (the zarr of Python 3.10)."""
    create = getattr(group, "create_array", None) or group.create_dataset
    return create(name, shape=tuple(shape), chunks=tuple(chunks), dtype=np.dtype(dtype),
                  fill_value=0)


class _ZarrVolume:
    """Lazily opened zarr group and arrays; pickles as its path and metadata, and reopens
    where it is used."""

    _mode = "r"

    def __init__(self, path_or_group: Any, channels: Sequence[str] | None = None) -> None:
        self.path = _as_path(path_or_group)
        self._wanted = None if channels is None else tuple(channels)
        self._group: Any = None
        self._arrays: dict[str, Any] = {}
        self._meta: tuple[tuple[str, ...], Box, dict[str, np.dtype], Triple] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_group"] = None  # each process opens its own handles
        state["_arrays"] = {}
        return state

    def _array(self, name: str) -> Any:
        """The channel's zarr array, opened once per process: opening reads its metadata,
        which would otherwise cost as much as reading a small chunk, at every block."""
        array = self._arrays.get(name)
        if array is None:
            array = self._arrays[name] = self._open()[name]
        return array

    def _open(self) -> Any:
        import zarr  # slow to import: only where a zarr store is used

        if self._group is None:
            if not Path(self.path).exists():
                raise ConfigError(f"no zarr store at {self.path!r}", self.path)
            try:
                self._group = zarr.open_group(self.path, mode=self._mode)
            except Exception as error:
                raise ConfigError(
                    f"cannot open a zarr group at {self.path!r}: {error}", self.path
                ) from error
        return self._group

    def _metadata(self) -> tuple[tuple[str, ...], Box, dict[str, np.dtype], Triple]:
        if self._meta is None:
            group = self._open()
            names = tuple(sorted(group.array_keys()))
            channels = names if self._wanted is None else self._wanted
            missing = [name for name in channels if name not in names]
            if missing or not channels:
                raise ConfigError(
                    f"zarr group {self.path!r} has no array {missing[0]!r}; arrays: "
                    f"{', '.join(map(repr, names)) or 'none'}"
                    if missing
                    else f"zarr group {self.path!r} holds no arrays",
                    missing,
                )
            arrays = {name: group[name] for name in channels}
            self._arrays.update(arrays)
            shapes = {array.shape for array in arrays.values()}
            if len(shapes) != 1 or len(next(iter(shapes))) != 3:
                listing = ", ".join(f"{n!r}: {a.shape}" for n, a in arrays.items())
                raise ConfigError(
                    f"the arrays of zarr group {self.path!r} must be 3-D (z, y, x) and of one "
                    f"shape, got {listing}",
                    shapes,
                )
            origin = as_triple(group.attrs.get(ORIGIN_ATTRIBUTE, (0, 0, 0)), "origin")
            bounds = Box.from_shape(next(iter(shapes)), origin)
            dtypes = {name: np.dtype(array.dtype) for name, array in arrays.items()}
            first = next(iter(arrays.values()))
            # A sharded array is written a whole shard at a time: that is the unit that
            # parallel writes must not share.
            chunks = as_triple(getattr(first, "shards", None) or first.chunks, "chunks")
            self._meta = (channels, bounds, dtypes, chunks)
        return self._meta

    @property
    def channels(self) -> tuple[str, ...]:
        return self._metadata()[0]

    @property
    def bounds(self) -> Box:
        return self._metadata()[1]

    def dtype(self, channel: str) -> np.dtype:
        self.check_channels([channel])  # type: ignore[attr-defined]
        return self._metadata()[2][channel]

    @property
    def chunk_shape(self) -> Triple:
        """Chunk shape of the channel arrays (their shard shape when sharded; the first
        channel's when they differ)."""
        return self._metadata()[3]

    def describe(self) -> str:
        return f"{type(self).__name__}({self.path!r})"


class ZarrSource(_ZarrVolume, DataSource):
    """A source over a zarr group on local disk, one 3-D array per channel.

    The group's ``ndframework_origin`` attribute, when present, places the arrays' first
    voxel at (z, y, x); otherwise they start at the origin. Nothing is opened until the
    source is first used, and each process opens its own handles, once.

    Reads go through a cache of decoded chunks, one per source object in each process
    (shared by worker threads, not sent to worker processes): a read decodes only the
    chunks it does not find there, so that neighbouring blocks whose halos reach into the
    same chunks decode them once. The least recently used chunks are dropped first. Once
    reads show that they reach only a few voxels into the chunks they partly cover (a
    halo), only slabs that deep on each face of a chunk are kept, of chunks of 1 MiB or
    more of which they take a quarter at most: a read needing more of the chunk decodes it
    again.

    Parameters
    ----------
    path_or_group:
        Path of the group, or an open zarr group on local disk.
    channels:
        Arrays of the group to offer as channels (default: all, sorted by name).
    chunk_cache_bytes:
        Bytes of decoded chunks to keep in each process; 0 reads straight through zarr and
        keeps nothing. Default: 80 MiB for the run, divided among the worker processes of
        a `ProcessExecutor` or of the local cluster a `DaskExecutor` starts (80 MiB in
        each process otherwise).
    """

    def __init__(
        self,
        path_or_group: Any,
        channels: Sequence[str] | None = None,
        *,
        chunk_cache_bytes: int | None = None,
    ) -> None:
        chunk_cache_bytes = as_int(chunk_cache_bytes, "chunk_cache_bytes", minimum=0,
                                   zero="no cache", none="for the default")
        super().__init__(path_or_group, channels)
        self.chunk_cache_bytes = chunk_cache_bytes
        self._cache: ChunkCache | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_cache"] = None  # decoded chunks stay in the process that decoded them
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def chunk_cache(self) -> ChunkCache | None:
        """This process's cache of decoded chunks (made on first use), or None when
        ``chunk_cache_bytes`` is 0."""
        if self.chunk_cache_bytes == 0:
            return None
        if self._cache is None:
            with self._lock:
                if self._cache is None:
                    budget = self.chunk_cache_bytes
                    self._cache = ChunkCache(
                        default_chunk_cache_bytes() if budget is None else budget)
        return self._cache

    def release(self) -> None:
        """Drop this process's decoded chunks (the worker threads of a run that ended
        shared them); the next read decodes afresh."""
        with self._lock:
            self._cache = None

    def read_box(self, box: Box, channels: tuple[str, ...]) -> dict[str, np.ndarray]:
        local = box.relative_to(self.bounds)
        cache = self.chunk_cache
        try:
            with self._lock:  # opening from several threads at once would open twice
                arrays = {name: self._array(name) for name in channels}
            if cache is None:
                slices = local.slices()
                return {name: np.asarray(read_basic(array)(slices))
                        for name, array in arrays.items()}
            return {
                name: read_through(array, local.start, local.stop, cache, prefix=name)
                for name, array in arrays.items()
            }
        except Exception as error:
            raise DataAccessError(
                f"reading {box} from zarr store {self.path!r} failed: {error}"
            ) from error


class ZarrSink(_ZarrVolume, DataSink):
    """A sink into an existing zarr group on local disk; `ZarrSink.create` makes one.

    Parallel writes are safe when no two blocks share a chunk (or, for a sharded array, a
    shard), which the pipeline checks against ``chunk_shape`` before a run.
    """

    _mode = "r+"

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        dtypes: Mapping[str, object],
        bounds: Box,
        *,
        chunk_shape: Sequence[int] = (64, 64, 64),
        overwrite: bool = False,
    ) -> "ZarrSink":
        """Create a zarr group at ``path`` with one zero-filled array per ``{channel: dtype}``.

        The arrays cover ``bounds`` (the group records its start as the origin) and are
        chunked by ``chunk_shape``. An existing store is an error unless ``overwrite``.
        """
        chunks = as_triple(chunk_shape, "chunk_shape", minimum=1)
        if not dtypes:
            raise ConfigError("a zarr sink needs at least one channel, got none", dtypes)
        if Path(path).exists() and not overwrite:
            raise ConfigError(
                f"a store already exists at {os.fspath(path)!r}; pass overwrite=True to "
                f"replace it",
                path,
            )
        import zarr

        group = zarr.open_group(os.fspath(path), mode="w")
        group.attrs[ORIGIN_ATTRIBUTE] = list(bounds.start)
        shape_chunks = tuple(min(c, max(s, 1)) for c, s in zip(chunks, bounds.shape))
        for name, dtype in dtypes.items():
            create_array(group, name, bounds.shape, shape_chunks, dtype)
        return cls(path)

    def write_box(self, box: Box, arrays: dict[str, np.ndarray]) -> None:
        local = box.relative_to(self.bounds).slices()
        try:
            for name, array in arrays.items():
                self._array(name)[local] = array.astype(self.dtype(name), copy=False)
        except Exception as error:
            raise DataAccessError(
                f"writing {box} to zarr store {self.path!r} failed: {error}"
            ) from error
