"""Decoded chunks kept per process, and reads of a box assembled from them.

A block read with a halo touches the chunks around its own: a block one chunk in size with a
one-voxel halo touches up to 27 chunks to use one of them whole, and its neighbours touch the
same chunks again. `read_through` decodes each chunk of a box at most once while it stays in
a `ChunkCache`, so that neighbouring blocks read by the same process share the chunks their
halos reach into.

Once reads have shown that they reach only a few voxels into the chunks they partly cover
(halos), the cache keeps of each chunk only `ChunkFaces`, slabs that deep on each face: all
that the halos of the blocks around it read. A read needing more of a chunk decodes it again.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable, Iterator, Sequence, Union

import numpy as np

__all__ = [
    "ChunkCache",
    "ChunkFaces",
    "read_through",
    "DEFAULT_CHUNK_CACHE_BYTES",
    "default_chunk_cache_bytes",
    "share_default_chunk_cache",
]

DEFAULT_CHUNK_CACHE_BYTES = 80 * 2**20
"""Bytes of decoded chunks a zarr source keeps by default in a run: in its one process, or
divided among the worker processes of a `ProcessExecutor`."""

READ_GROUP_BYTES = 4 * 2**20
"""Bytes of chunks read through zarr in one call at most (but always one chunk): zarr's
calls cost more than small chunks' decoding, and a large read's buffers stay in the
process's heap long after it."""

FACES_AT_MOST = 0.25
"""Faces are kept instead of a whole chunk only when they take at most this part of it: the
chunk's own block then decodes it again, which must buy a large saving."""

FACES_FROM_BYTES = 2**20
"""Faces are kept only of chunks this large at least: smaller ones cost little to keep
whole, and their decoding, more per byte, would be repeated."""

ChunkIndex = tuple[int, ...]
Entry = Union[np.ndarray, "ChunkFaces"]

_processes_sharing = 1


def share_default_chunk_cache(processes: int) -> None:
    """Have this process keep its part of the default budget of decoded chunks: it is one
    of ``processes`` worker processes of a run (`ProcessExecutor` tells its workers)."""
    global _processes_sharing
    _processes_sharing = max(1, int(processes))


def default_chunk_cache_bytes() -> int:
    """Bytes of decoded chunks that a source with the default budget keeps in this process."""
    return DEFAULT_CHUNK_CACHE_BYTES // _processes_sharing


class ChunkFaces:
    """The slabs ``depth`` voxels deep on each face of a chunk: all of it that the halos of
    neighbouring blocks read, in a fraction of its bytes.

    >>> faces = ChunkFaces(np.arange(4 * 8 * 8).reshape(4, 8, 8), depth=1)
    >>> faces.part((0, 0, 0), (1, 8, 8)).shape, faces.part((1, 1, 1), (3, 3, 3)) is None
    ((1, 8, 8), True)
    """

    __slots__ = ("shape", "depth", "slabs", "nbytes")

    def __init__(self, chunk: np.ndarray, depth: int) -> None:
        self.shape = chunk.shape
        self.depth = depth
        self.slabs: list[tuple[np.ndarray, np.ndarray]] = []
        for axis, size in enumerate(chunk.shape):
            deep = min(depth, size)
            low = [slice(None)] * chunk.ndim
            high = list(low)
            low[axis], high[axis] = slice(0, deep), slice(size - deep, size)
            slabs = (chunk[tuple(low)].copy(), chunk[tuple(high)].copy())
            for slab in slabs:
                slab.flags.writeable = False
            self.slabs.append(slabs)
        self.nbytes = sum(slab.nbytes for pair in self.slabs for slab in pair)

    @staticmethod
    def nbytes_for(shape: Sequence[int], itemsize: int, depth: int) -> int:
        """The bytes that the faces ``depth`` deep of a chunk of ``shape`` take."""
        volume = math.prod(shape)
        return 2 * itemsize * sum(volume // size * min(depth, size) for size in shape if size)

    def part(self, low: Sequence[int], high: Sequence[int]) -> np.ndarray | None:
        """The box ``low..high`` of the chunk (in its own coordinates), a read-only view, or
        None when it lies within no face."""
        for axis, (lo, hi, size) in enumerate(zip(low, high, self.shape)):
            deep = min(self.depth, size)
            if hi <= deep:
                slab, offset = self.slabs[axis][0], 0
            elif lo >= size - deep:
                slab, offset = self.slabs[axis][1], size - deep
            else:
                continue
            where = [slice(a, b) for a, b in zip(low, high)]
            where[axis] = slice(lo - offset, hi - offset)
            return slab[tuple(where)]
        return None


def _part(entry: Entry, low: Sequence[int], high: Sequence[int]) -> np.ndarray | None:
    """The box ``low..high`` of a cached chunk, or None when the entry lacks it."""
    if isinstance(entry, ChunkFaces):
        return entry.part(low, high)
    return entry[tuple(map(slice, low, high))]


def face_depth(low: Sequence[int], high: Sequence[int], shape: Sequence[int]) -> int | None:
    """How deep the box ``low..high`` of a chunk of ``shape`` reaches into the chunk from the
    nearest face it lies along; 0 when it is the whole chunk, None when it lies along no
    face (it is inside the chunk, or spans it, in every axis where it is not whole).

    >>> face_depth((0, 0, 60), (8, 8, 64), (8, 8, 64)), face_depth((0, 2, 0), (8, 4, 8), (8, 8, 8))
    (4, None)
    """
    depths = []
    partial = False
    for lo, hi, size in zip(low, high, shape):
        if lo <= 0 and hi >= size:
            continue
        partial = True
        if lo <= 0:
            depths.append(hi)
        elif hi >= size:
            depths.append(size - lo)
    if not partial:
        return 0
    return min(depths) if depths else None


class ChunkCache:
    """Decoded chunks by key, least recently used evicted first, never above ``max_bytes``.

    Safe to share between threads. Chunks are stored read-only: readers copy out of them.
    Once `learn` has seen reads reach only a few voxels into the chunks they partly cover,
    `put` keeps `ChunkFaces` that deep instead of whole chunks, of large chunks of which they
    take a small part (`FACES_FROM_BYTES`, `FACES_AT_MOST`).

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
        self._chunks: OrderedDict[Hashable, Entry] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        # One condition for every claim, not an event per chunk: making an event costs
        # more than the rest of a cache hit, and threads rarely wait.
        self._claims_ended = threading.Condition(self._lock)
        self._loading: set[Hashable] = set()
        self._waiting = 0
        self.face_depth: int | None = None
        """How deep the faces kept of each chunk are; None: whole chunks are kept."""
        self._faces_fit = True  # until a read lies along no face of a chunk
        self.hits = 0
        """Chunks found in the cache (also after waiting for another thread to decode)."""
        self.misses = 0
        """Chunks looked up and not found, or found without the part wanted: each then
        decoded by the reader."""

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

    def learn(self, depth: int | None) -> None:
        """Note a read that reaches ``depth`` voxels into a chunk it partly covers (see
        `face_depth`): faces are kept from now on, deep enough for every read noted, unless
        one of them lay along no face."""
        if depth == 0 or (depth is not None and self._faces_fit and
                          self.face_depth is not None and depth <= self.face_depth):
            return
        with self._lock:
            if depth is None:
                self._faces_fit = False
                self.face_depth = None
            elif self._faces_fit:
                self.face_depth = max(self.face_depth or 0, depth)

    def get(self, key: Hashable) -> Entry | None:
        """The chunk (or its faces) stored under ``key``, now the most recently used; or
        None."""
        with self._lock:
            entry = self._chunks.get(key)
            if entry is not None:
                self._chunks.move_to_end(key)
            return entry

    def claim(
        self,
        keys: Sequence[Hashable],
        boxes: Sequence[tuple[Sequence[int], Sequence[int]]],
    ) -> tuple[dict[Hashable, np.ndarray], list[Hashable], list[Hashable]]:
        """Split ``keys`` into the parts ``boxes`` (``(low, high)`` in each chunk's own
        coordinates) of the chunks held, by key; the keys the caller must now decode and
        `put` (then `release`); and those another thread is decoding (to `wait` for):
        threads reading neighbouring blocks at once decode each chunk once."""
        found: dict[Hashable, np.ndarray] = {}
        mine: list[Hashable] = []
        theirs: list[Hashable] = []
        with self._lock:
            for key, (low, high) in zip(keys, boxes):
                entry = self._chunks.get(key)
                part = None if entry is None else _part(entry, low, high)
                if part is not None:
                    self.hits += 1
                    self._chunks.move_to_end(key)
                    found[key] = part
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

    def wait(self, key: Hashable, low: Sequence[int], high: Sequence[int]) -> np.ndarray | None:
        """The part ``low..high`` of the chunk under ``key`` once no thread is decoding it
        (now the most recently used), or None when it is not held: evicted already, kept
        without that part, or its reader failed."""
        with self._lock:
            while key in self._loading:
                self._waiting += 1
                try:
                    self._claims_ended.wait()
                finally:
                    self._waiting -= 1
            entry = self._chunks.get(key)
            part = None if entry is None else _part(entry, low, high)
            if part is None:
                self.misses += 1
                return None
            self.hits += 1
            self._chunks.move_to_end(key)
            return part

    def put(self, key: Hashable, chunk: np.ndarray, *, owned: bool = False) -> None:
        """Keep ``chunk`` under ``key``, or only its faces when `learn` has seen halo reads
        and they are much smaller, evicting the least recently used chunks to make room; a chunk
        larger than the whole cache is not kept. A whole chunk is copied unless ``owned``
        (the caller's own, never written again, and no view of a larger buffer)."""
        entry: Entry = chunk
        depth = self.face_depth
        if depth is not None and chunk.nbytes >= FACES_FROM_BYTES and ChunkFaces.nbytes_for(
                chunk.shape, chunk.itemsize, depth) <= FACES_AT_MOST * chunk.nbytes:
            with self._lock:
                held = self._chunks.get(key)
                if isinstance(held, ChunkFaces) and held.depth >= depth:
                    self._chunks.move_to_end(key)
                    return  # its faces are held already (a read of the whole chunk)
            entry = ChunkFaces(chunk, depth)
        elif chunk.nbytes > self.max_bytes:
            return
        elif not owned or not chunk.flags.owndata:
            entry = chunk.copy()  # its own buffer: the cache must not pin a larger one
        size = entry.nbytes
        if size > self.max_bytes:
            return
        if isinstance(entry, np.ndarray):
            entry.flags.writeable = False
        with self._lock:
            old = self._chunks.pop(key, None)
            if old is not None:
                self._nbytes -= old.nbytes
            while self._chunks and self._nbytes + size > self.max_bytes:
                _, evicted = self._chunks.popitem(last=False)
                self._nbytes -= evicted.nbytes
            self._chunks[key] = entry
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
    chunks: the parts held in ``cache`` are reused, the other chunks read through zarr, a
    few at a time and each copied into the result at once, and kept in ``cache`` under
    ``(prefix, chunk index)``.

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
    keys = []
    boxes = []
    for index in itertools.product(*(range(f, l + 1) for f, l in zip(first, last))):
        corner = tuple(i * c for i, c in zip(index, grid))
        size = tuple(min(c, e - k) for c, e, k in zip(grid, extent, corner))
        low = tuple(max(a - k, 0) for a, k in zip(start, corner))
        high = tuple(min(b - k, n) for b, k, n in zip(stop, corner, size))
        cache.learn(face_depth(low, high, size))
        keys.append((prefix, index))
        boxes.append((low, high))
    wanted = dict(zip(keys, boxes))
    out = np.empty(shape, np.dtype(array.dtype))
    found, mine, theirs = cache.claim(keys, boxes)
    for key, part in found.items():
        out[_within(key[1], wanted[key], grid, start)] = part
    del found
    _load(read, mine, wanted, grid, extent, cache, start, out, claimed=True)
    late = []
    for key in theirs:
        part = cache.wait(key, *wanted[key])
        if part is None:  # evicted already, kept without it, or its reader failed
            late.append(key)
        else:
            out[_within(key[1], wanted[key], grid, start)] = part
    _load(read, late, wanted, grid, extent, cache, start, out, claimed=False)
    return out


def read_basic(array: Any) -> Callable[[tuple[slice, ...]], Any]:
    """The read of a box of ``array`` by a tuple of slices: zarr's ``get_basic_selection``
    where there is one, which skips the sorting of selections that ``array[slices]`` does
    at every call; ``array[slices]`` otherwise."""
    return getattr(array, "get_basic_selection", None) or array.__getitem__


def _within(
    index: ChunkIndex,
    box: tuple[Sequence[int], Sequence[int]],
    grid: tuple[int, ...],
    start: tuple[int, ...],
) -> tuple[slice, ...]:
    """Where the box (in the coordinates of the chunk at ``index``) lies in a read's result
    that begins at ``start``."""
    return tuple(slice(i * c + lo - a, i * c + hi - a)
                 for i, c, lo, hi, a in zip(index, grid, box[0], box[1], start))


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
    inner = (tuple(a - k for a, k in zip(start, low)), tuple(b - k for b, k in zip(stop, low)))
    found, mine, theirs = cache.claim((key,), (inner,))
    part = cache.wait(key, *inner) if theirs else found.get(key)
    if part is not None:
        return part.copy()
    # Claimed, kept without this part, or its reader failed: decode it here.
    high = tuple(min(a + c, e) for a, c, e in zip(low, grid, extent))
    size = tuple(h - l for l, h in zip(low, high))
    cache.learn(face_depth(*inner, size))
    try:
        chunk = np.asarray(read(tuple(map(slice, low, high))))
        if low == start and high == stop:  # the box is the chunk: the caller gets ``chunk``
            cache.put(key, chunk)
            return chunk
        cache.put(key, chunk, owned=True)
    finally:
        cache.release(mine)
    return chunk[tuple(map(slice, *inner))].copy()


def _load(
    read: Callable[[tuple[slice, ...]], Any],
    keys: Sequence[tuple[Hashable, ChunkIndex]],
    wanted: dict[Hashable, tuple[Sequence[int], Sequence[int]]],
    grid: tuple[int, ...],
    extent: tuple[int, ...],
    cache: ChunkCache,
    start: tuple[int, ...],
    out: np.ndarray,
    claimed: bool,
) -> None:
    """Read the chunks under ``keys``, a box of them per call, copy the part ``wanted`` of
    each into ``out`` (a read's result beginning at ``start``) and keep it in ``cache``;
    end the claims on them when ``claimed``, each box's once it is in the cache."""
    if not keys:
        return
    prefix = keys[0][0]
    itemsize = out.dtype.itemsize
    limit = max(1, READ_GROUP_BYTES // (math.prod(grid) * itemsize))
    pending = list(keys)
    try:
        for region in _chunk_boxes([key[1] for key in keys], limit):
            # A few chunks per call (zarr decodes them concurrently, and each call costs
            # more than a small chunk's decoding), each copied out before the next call.
            low = tuple(lo * c for (lo, _), c in zip(region, grid))
            high = tuple(min(hi * c, e) for (_, hi), c, e in zip(region, grid, extent))
            data = np.asarray(read(tuple(map(slice, low, high))))
            done = []
            for index in itertools.product(*(range(lo, hi) for lo, hi in region)):
                key = (prefix, index)
                where = tuple(
                    slice(i * c - a, min((i + 1) * c, e) - a)
                    for i, c, a, e in zip(index, grid, low, extent)
                )
                chunk = data[where]
                box = wanted[key]
                out[_within(index, box, grid, start)] = chunk[tuple(map(slice, *box))]
                cache.put(key, chunk)
                done.append(key)
            del data, chunk
            if claimed:
                cache.release(done)
                released = set(done)
                pending = [key for key in pending if key not in released]
    finally:
        if claimed:
            cache.release(pending)


def _chunk_boxes(
    indices: Sequence[ChunkIndex], limit: int | None = None
) -> Iterator[list[tuple[int, int]]]:
    """Cover the chunk ``indices`` (in C order) with few disjoint boxes of chunk indices,
    each ``[(start, stop)] * ndim`` and of at most ``limit`` chunks: runs along the last
    axis, merged along the axes before it while their extents match.

    >>> list(_chunk_boxes([(0, 0), (0, 1), (1, 0), (1, 1), (2, 1)]))
    [[(0, 2), (0, 2)], [(2, 3), (1, 2)]]
    >>> list(_chunk_boxes([(0, 0), (0, 1), (1, 0), (1, 1), (2, 1)], limit=2))
    [[(0, 1), (0, 2)], [(1, 2), (0, 2)], [(2, 3), (1, 2)]]
    """
    boxes: list[list[tuple[int, int]]] = [[(i, i + 1) for i in index] for index in indices]
    if len(boxes) > 1:
        for axis in reversed(range(len(indices[0]))):
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
    for box in sorted(boxes):
        yield from _split(box, limit) if limit else [box]


def _split(box: list[tuple[int, int]], limit: int) -> Iterator[list[tuple[int, int]]]:
    """``box`` of chunk indices cut along its first axes into boxes of at most ``limit``
    chunks (one chunk at least)."""
    count = math.prod(hi - lo for lo, hi in box)
    if count <= limit:
        yield box
        return
    axis = next(a for a, (lo, hi) in enumerate(box) if hi - lo > 1)
    lo, hi = box[axis]
    step = max(1, limit // (count // (hi - lo)))
    for at in range(lo, hi, step):
        yield from _split([*box[:axis], (at, min(at + step, hi)), *box[axis + 1:]], limit)
