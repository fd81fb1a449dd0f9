"""Decoded chunks kept per process, and reads of a box assembled from them.

A block read with a halo touches the chunks around its own: a block one chunk in size with a
one-voxel halo touches up to 27 chunks to use one of them whole, and its neighbours touch the
same chunks again. `read_through` decodes each chunk of a box at most once while it stays in
a `ChunkCache`, so that neighbouring blocks read by the same process share the chunks their
halos reach into.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable, Iterator, Sequence

import numpy as np

__all__ = ["ChunkCache", "read_through", "DEFAULT_CHUNK_CACHE_BYTES"]

DEFAULT_CHUNK_CACHE_BYTES = 256 * 2**20
"""Bytes of decoded chunks a zarr source keeps in each process by default."""

ChunkIndex = tuple[int, ...]


class ChunkCache:
    """Decoded chunks by key, least recently used evicted first, never above ``max_bytes``.

    Safe to share between threads. Chunks are stored read-only: readers copy out of them.

    >>> cache = ChunkCache(max_bytes=16)
    >>> cache.put("a", np.zeros(8, np.uint8)); cache.put("b", np.ones(8, np.uint8))
    >>> cache.get("a") is not None  # "a" is now the most recently used
    True
    >>> cache.put("c", np.ones(8, np.uint8))  # evicts "b"
    >>> sorted(cache.keys()), cache.nbytes
    (['a', 'c'], 16)
    """

    def __init__(self, max_bytes: int = DEFAULT_CHUNK_CACHE_BYTES) -> None:
        self.max_bytes = int(max_bytes)
        self._chunks: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        # One condition for every claim, not an event per chunk: making an event costs
        # more than the rest of a cache hit, and threads rarely wait.
        self._claims_ended = threading.Condition(self._lock)
        self._loading: set[Hashable] = set()
        self._waiting = 0
        self.hits = 0
        """Chunks found in the cache (also after waiting for another thread to decode)."""
        self.misses = 0
        """Chunks looked up and not found: each then decoded by the reader."""

    @property
    def nbytes(self) -> int:
        """Bytes of the chunks held now."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._chunks)

    def keys(self) -> list[Hashable]:
        """The keys held, least recently used first."""
        with self._lock:
            return list(self._chunks)

    def get(self, key: Hashable) -> np.ndarray | None:
        """The chunk stored under ``key`` (now the most recently used), or None."""
        with self._lock:
            return self._get(key)

    def claim(
        self, keys: Sequence[Hashable]
    ) -> tuple[dict[Hashable, np.ndarray], list[Hashable], list[Hashable]]:
        """Split ``keys`` into the chunks held (by key), the keys the caller must now decode
        and `put` (then `release`), and those another thread is decoding (to `wait` for):
        threads reading neighbouring blocks at once decode each chunk once."""
        found: dict[Hashable, np.ndarray] = {}
        mine: list[Hashable] = []
        theirs: list[Hashable] = []
        with self._lock:
            for key in keys:
                chunk = self._chunks.get(key)
                if chunk is not None:
                    self.hits += 1
                    self._chunks.move_to_end(key)
                    found[key] = chunk
                elif key in self._loading:
                    theirs.append(key)
                else:
                    self.misses += 1
                    self._loading.add(key)
                    mine.append(key)
        return found, mine, theirs

    def release(self, keys: Sequence[Hashable]) -> None:
        """End the claims on ``keys``, decoded or not, waking the threads waiting for them."""
        if not keys:
            return
        with self._lock:
            self._loading.difference_update(keys)
            if self._waiting:
                self._claims_ended.notify_all()

    def wait(self, key: Hashable) -> np.ndarray | None:
        """The chunk under ``key`` once no thread is decoding it (now the most recently
        used), or None when it is not held: evicted already, or its reader failed."""
        with self._lock:
            while key in self._loading:
                self._waiting += 1
                try:
                    self._claims_ended.wait()
                finally:
                    self._waiting -= 1
            return self._get(key)

    def _get(self, key: Hashable) -> np.ndarray | None:
        chunk = self._chunks.get(key)
        if chunk is None:
            self.misses += 1
            return None
        self.hits += 1
        self._chunks.move_to_end(key)
        return chunk

    def put(self, key: Hashable, chunk: np.ndarray) -> None:
        """Keep ``chunk`` under ``key``, evicting the least recently used chunks to make
        room; a chunk larger than the whole cache is not kept."""
        size = chunk.nbytes
        if size > self.max_bytes:
            return
        chunk.flags.writeable = False
        with self._lock:
            old = self._chunks.pop(key, None)
            if old is not None:
                self._nbytes -= old.nbytes
            while self._chunks and self._nbytes + size > self.max_bytes:
                _, evicted = self._chunks.popitem(last=False)
                self._nbytes -= evicted.nbytes
            self._chunks[key] = chunk
            self._nbytes += size

    def clear(self) -> None:
        """Drop every chunk."""
        with self._lock:
            self._chunks.clear()
            self._nbytes = 0


def read_through(
    array: Any,
    start: Sequence[int],
    stop: Sequence[int],
    cache: ChunkCache,
    prefix: Hashable = None,
) -> np.ndarray:
    """``array[start:stop]`` (a box in the array's own coordinates) assembled from decoded
    chunks: those in ``cache`` are reused, the others read through zarr, a few boxes of
    whole chunks per call, and kept in ``cache`` under ``(prefix, chunk index)``.

    The chunk grid is the array's read unit, ``array.chunks``: its inner chunks when it is
    sharded. The result is a new, writable array, the caller's own.
    """
    start, stop = tuple(start), tuple(stop)
    shape = tuple(b - a for a, b in zip(start, stop))
    if min(shape) <= 0:
        return np.empty(tuple(max(0, s) for s in shape), np.dtype(array.dtype))
    grid = tuple(array.chunks)
    extent = tuple(array.shape)
    read = read_basic(array)
    first = tuple(a // c for a, c in zip(start, grid))
    last = tuple((b - 1) // c for b, c in zip(stop, grid))
    if first == last:  # a block that is a chunk, or lies within one: no assembling
        return _read_within_chunk(read, start, stop, grid, extent, cache, (prefix, first))
    keys = [
        (prefix, index)
        for index in itertools.product(*(range(f, l + 1) for f, l in zip(first, last)))
    ]
    chunks, mine, theirs = cache.claim(keys)
    try:
        data, corner = _load(read, [key[1] for key in mine], grid, extent, cache, prefix,
                             chunks)
    finally:
        cache.release(mine)
    if data is not None and corner == start and data.shape == shape:
        return data  # the whole box, read in one piece: nothing to assemble
    late = []
    for key in theirs:
        chunk = cache.wait(key)
        if chunk is None:  # evicted already, or its reader failed: read it here
            late.append(key[1])
        else:
            chunks[key] = chunk
    _load(read, late, grid, extent, cache, prefix, chunks)
    out = np.empty(shape, np.dtype(array.dtype))
    for (_, index), chunk in chunks.items():
        corner = [i * c for i, c in zip(index, grid)]
        low = [max(a, k) for a, k in zip(start, corner)]
        high = [min(b, k + n) for b, k, n in zip(stop, corner, chunk.shape)]
        out[tuple(slice(lo - a, hi - a) for lo, hi, a in zip(low, high, start))] = chunk[
            tuple(slice(lo - k, hi - k) for lo, hi, k in zip(low, high, corner))
        ]
    return out


def read_basic(array: Any) -> Callable[[tuple[slice, ...]], Any]:
    """The read of a box of ``array`` by a tuple of slices: zarr's ``get_basic_selection``
    where there is one, which skips the sorting of selections that ``array[slices]`` does
    at every call; ``array[slices]`` otherwise."""
    return getattr(array, "get_basic_selection", None) or array.__getitem__


def _read_within_chunk(
    read: Callable[[tuple[slice, ...]], Any],
    start: tuple[int, ...],
    stop: tuple[int, ...],
    grid: tuple[int, ...],
    extent: tuple[int, ...],
    cache: ChunkCache,
    key: tuple[Hashable, ChunkIndex],
) -> np.ndarray:
    """`read_through` of a box that lies within the one chunk under ``key``."""
    low = tuple(i * c for i, c in zip(key[1], grid))
    found, mine, theirs = cache.claim((key,))
    chunk = cache.wait(key) if theirs else found.get(key)
    if chunk is None:  # claimed, or its reader failed: decode it here
        high = tuple(min(a + c, e) for a, c, e in zip(low, grid, extent))
        try:
            chunk = np.asarray(read(tuple(map(slice, low, high))))
            if low == start and high == stop:  # the box is the chunk
                cache.put(key, chunk.copy())  # its own buffer: the caller gets ``chunk``
                return chunk
            if not chunk.flags.owndata:
                chunk = chunk.copy()  # the cache must not pin a larger buffer
            cache.put(key, chunk)
        finally:
            cache.release(mine)
    return chunk[tuple(slice(a - k, b - k) for a, b, k in zip(start, stop, low))].copy()


def _load(
    read: Callable[[tuple[slice, ...]], Any],
    indices: Sequence[ChunkIndex],
    grid: tuple[int, ...],
    extent: tuple[int, ...],
    cache: ChunkCache,
    prefix: Hashable,
    chunks: dict[Hashable, np.ndarray],
) -> tuple[np.ndarray | None, tuple[int, ...] | None]:
    """Read the chunks at ``indices`` into ``chunks`` and ``cache``, one read per box of
    them; return the last box read and its first voxel (None, None when none)."""
    data, low = None, None
    for region in _chunk_boxes(indices):
        # One read per box of chunks: zarr decodes the chunks of one call concurrently,
        # and each call costs far more than a small chunk's decoding.
        low = tuple(lo * c for (lo, _), c in zip(region, grid))
        high = tuple(min(hi * c, e) for (_, hi), c, e in zip(region, grid, extent))
        data = np.asarray(read(tuple(map(slice, low, high))))
        for index in itertools.product(*(range(lo, hi) for lo, hi in region)):
            where = tuple(
                slice(i * c - a, min((i + 1) * c, e) - a)
                for i, c, a, e in zip(index, grid, low, extent)
            )
            chunk = data[where].copy()  # its own buffer: the cache must not pin ``data``
            cache.put((prefix, index), chunk)
            chunks[(prefix, index)] = chunk
    return data, low


def _chunk_boxes(indices: Sequence[ChunkIndex]) -> Iterator[list[tuple[int, int]]]:
    """Cover the chunk ``indices`` (in C order) with few disjoint boxes of chunk indices,
    each ``[(start, stop)] * ndim``: runs along the last axis, merged along the axes before
    it while their extents match.

    >>> list(_chunk_boxes([(0, 0), (0, 1), (1, 0), (1, 1), (2, 1)]))
    [[(0, 2), (0, 2)], [(2, 3), (1, 2)]]
    """
    boxes: list[list[tuple[int, int]]] = [[(i, i + 1) for i in index] for index in indices]
    if len(boxes) <= 1:
        yield from boxes
        return
    for axis in reversed(range(len(indices[0]) if indices else 0)):
        merged: list[list[tuple[int, int]]] = []
        # Boxes that agree on every axis but ``axis`` and touch along it become one.
        by_rest: dict[tuple[tuple[int, int], ...], list[tuple[int, int]]] = {}
        for box in boxes:
            rest = tuple(box[:axis] + box[axis + 1:])
            by_rest.setdefault(rest, []).append(box[axis])
        for rest, spans in by_rest.items():
            spans.sort()
            runs = [list(spans[0])]
            for lo, hi in spans[1:]:
                if lo == runs[-1][1]:
                    runs[-1][1] = hi
                else:
                    runs.append([lo, hi])
            for lo, hi in runs:
                merged.append([*rest[:axis], (lo, hi), *rest[axis:]])
        boxes = merged
    yield from sorted(boxes)
