"""The chunk cache keeping only the faces of chunks that halo reads reach into, reads a few
chunks at a time, and the default budget shared by a run's worker processes."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, strategies as st

import ndframework as ndf
from ndframework.storage import _chunk_cache
from ndframework.storage._chunk_cache import (
    DEFAULT_CHUNK_CACHE_BYTES,
    ChunkCache,
    ChunkFaces,
    _chunk_boxes,
    default_chunk_cache_bytes,
    face_depth,
    read_through,
)


class InMemory:
    """A chunked array in memory standing in for a zarr array, counting its reads."""

    def __init__(self, array, chunks):
        self.array, self.chunks, self.reads = array, chunks, []
        self.shape, self.dtype = array.shape, array.dtype

    def __getitem__(self, slices):
        self.reads.append(slices)
        return self.array[slices].copy()


def halo_boxes(shape, block, halo):
    """Start and stop of every block of ``block`` tiling ``shape`` grown by ``halo``, clipped
    to the volume, in C order."""
    for start in itertools.product(*(range(0, n, b) for n, b in zip(shape, block))):
        yield (tuple(max(0, s - halo) for s in start),
               tuple(min(n, s + b + halo) for s, b, n in zip(start, block, shape)))


@pytest.fixture(autouse=True)
def faces_of_small_chunks(monkeypatch):
    """Faces kept of the small chunks of these tests too."""
    monkeypatch.setattr(_chunk_cache, "FACES_FROM_BYTES", 0)


@st.composite
def chunks_and_boxes(draw):
    shape = draw(st.tuples(*[st.integers(1, 9)] * 3))
    low = tuple(draw(st.integers(0, n - 1)) for n in shape)
    high = tuple(draw(st.integers(lo + 1, n)) for lo, n in zip(low, shape))
    return shape, draw(st.integers(1, 4)), low, high


@given(chunks_and_boxes())
def test_faces_give_the_chunks_voxels_for_every_box_within_one_face(case):
    shape, depth, low, high = case
    chunk = np.arange(np.prod(shape)).reshape(shape)
    faces = ChunkFaces(chunk, depth)
    part = faces.part(low, high)
    within = any(hi <= min(depth, n) or lo >= n - min(depth, n)
                 for lo, hi, n in zip(low, high, shape))
    assert (part is not None) == within
    if part is not None:
        np.testing.assert_array_equal(part, chunk[tuple(map(slice, low, high))])
        assert not part.flags.writeable
    assert faces.nbytes == ChunkFaces.nbytes_for(shape, chunk.itemsize, depth)


def test_face_depth_is_how_deep_a_box_reaches_from_the_face_it_lies_along():
    shape = (8, 32, 32)
    assert face_depth((0, 0, 0), shape, shape) == 0
    assert face_depth((0, 0, 0), (1, 32, 32), shape) == 1
    assert face_depth((6, 0, 30), (8, 32, 32), shape) == 2
    assert face_depth((0, 0, 0), (8, 3, 5), shape) == 3
    assert face_depth((0, 4, 0), (8, 8, 32), shape) is None  # inside the chunk along y
    assert face_depth((2, 0, 0), (4, 1, 32), shape) == 1  # along the first y face


def test_halo_reads_keep_only_faces_and_equal_numpy():
    volume = np.random.default_rng(0).integers(0, 255, (48, 128, 128), dtype=np.uint8)
    array = InMemory(volume, (16, 64, 64))  # faces 1 deep: 3/16 of a chunk
    cache = ChunkCache(max_bytes=2**20)
    for start, stop in halo_boxes(volume.shape, (16, 64, 64), halo=1):
        np.testing.assert_array_equal(read_through(array, start, stop, cache),
                                      volume[tuple(map(slice, start, stop))])
    assert cache.face_depth == 1
    entries = [cache.get(key) for key in cache.keys()]
    assert len(entries) == 3 * 2 * 2 and all(isinstance(e, ChunkFaces) for e in entries)
    # Each chunk is decoded when a halo first reaches into it, then for its own block.
    assert cache.misses <= 2 * len(entries)
    assert cache.nbytes == sum(e.nbytes for e in entries) < volume.nbytes / 2


def test_a_read_needing_more_than_the_faces_decodes_the_chunk_again():
    volume = np.arange(32 * 64 * 64, dtype=np.uint16).reshape(32, 64, 64)
    array = InMemory(volume, (16, 64, 64))
    cache = ChunkCache()
    read_through(array, (0, 0, 0), (17, 64, 64), cache)  # reaches 1 voxel into chunk 1
    assert isinstance(cache.get((None, (1, 0, 0))), ChunkFaces)
    reads = len(array.reads)
    np.testing.assert_array_equal(read_through(array, (16, 0, 0), (17, 64, 64), cache),
                                  volume[16:17])
    assert len(array.reads) == reads  # within the faces
    np.testing.assert_array_equal(read_through(array, (14, 0, 0), (32, 64, 64), cache),
                                  volume[14:32])
    assert len(array.reads) == reads + 1
    np.testing.assert_array_equal(read_through(array, (17, 2, 3), (31, 60, 61), cache),
                                  volume[17:31, 2:60, 3:61])


def test_a_read_inside_chunks_has_whole_chunks_kept_from_then_on():
    volume = np.arange(32 * 64 * 64, dtype=np.uint16).reshape(32, 64, 64)
    array = InMemory(volume, (16, 64, 64))
    cache = ChunkCache()
    read_through(array, (0, 0, 0), (17, 64, 64), cache)
    assert cache.face_depth == 1
    np.testing.assert_array_equal(read_through(array, (2, 4, 4), (6, 8, 8), cache),
                                  volume[2:6, 4:8, 4:8])
    assert cache.face_depth is None
    read_through(array, (0, 0, 0), (32, 64, 64), cache)
    assert all(isinstance(cache.get(key), np.ndarray) for key in cache.keys())
    reads = len(array.reads)
    np.testing.assert_array_equal(read_through(array, (3, 5, 7), (24, 40, 60), cache),
                                  volume[3:24, 5:40, 7:60])
    assert len(array.reads) == reads


def test_large_chunks_are_read_a_few_at_a_time():
    volume = np.zeros((4, 256, 256), np.uint8)
    array = InMemory(volume, (1, 256, 256))  # 64 KiB chunks
    cache = ChunkCache(max_bytes=0)  # keeps nothing: every read decodes
    original = _chunk_cache.READ_GROUP_BYTES
    _chunk_cache.READ_GROUP_BYTES = 2 * 2**16
    try:
        read_through(array, (0, 0, 0), (4, 256, 256), cache)
    finally:
        _chunk_cache.READ_GROUP_BYTES = original
    assert array.reads == [(slice(0, 2), slice(0, 256), slice(0, 256)),
                           (slice(2, 4), slice(0, 256), slice(0, 256))]


@given(st.sets(st.tuples(*[st.integers(0, 4)] * 3), max_size=40), st.integers(1, 9))
def test_chunk_boxes_of_limited_size_cover_the_chunks_exactly_once(indices, limit):
    regions = list(_chunk_boxes(sorted(indices), limit))
    covered = [index for region in regions
               for index in itertools.product(*(range(lo, hi) for lo, hi in region))]
    assert sorted(covered) == sorted(indices)
    assert all(np.prod([hi - lo for lo, hi in region]) <= limit for region in regions)


def test_threads_reading_halo_blocks_through_faces_read_what_numpy_reads():
    volume = np.random.default_rng(1).integers(0, 2**16, (32, 128, 128), dtype=np.uint16)
    array = InMemory(volume, (16, 64, 64))
    cache = ChunkCache(max_bytes=4 * 3 * 2**13)  # room for the faces of 4 chunks
    boxes = list(halo_boxes(volume.shape, (16, 64, 64), halo=1)) * 4

    def check(box):
        start, stop = box
        np.testing.assert_array_equal(read_through(array, start, stop, cache),
                                      volume[tuple(map(slice, start, stop))])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(check, boxes))
    assert cache.nbytes <= cache.max_bytes and cache.face_depth == 1
    assert any(isinstance(cache.get(key), ChunkFaces) for key in cache.keys())


def budget(data):
    return default_chunk_cache_bytes()


@pytest.mark.timeout(120)
def test_a_process_pool_shares_the_default_budget_among_its_workers():
    source = ndf.InMemorySource({"em": np.zeros((4, 4, 4), np.uint8)})
    result = ndf.Pipeline(source, budget, tiler=ndf.RegularTiler((2, 4, 4)),
                          executor=ndf.ProcessExecutor(2)).run()
    assert result.ok, result.summary()
    assert set(dict(result.reduced).values()) == {DEFAULT_CHUNK_CACHE_BYTES // 2}
    assert default_chunk_cache_bytes() == DEFAULT_CHUNK_CACHE_BYTES  # not in this process


def test_small_chunks_and_thick_faces_are_kept_whole(monkeypatch):
    monkeypatch.setattr(_chunk_cache, "FACES_FROM_BYTES", 2**20)
    cache = ChunkCache()
    cache.learn(1)
    cache.put("small", np.zeros((16, 64, 64), np.uint8))  # 64 KiB
    cache.put("large", np.zeros((64, 256, 256), np.uint8))  # faces: 3/64 of it
    cache.learn(8)
    cache.put("thick", np.zeros((64, 256, 256), np.uint8))  # faces: 3/8 of it
    assert isinstance(cache.get("small"), np.ndarray)
    assert isinstance(cache.get("large"), ChunkFaces)
    assert isinstance(cache.get("thick"), np.ndarray)


def test_an_explicit_budget_is_each_processs_own(tmp_path):
    import zarr

    group = zarr.open_group(str(tmp_path / "v.zarr"), mode="w")
    group.create_array("em", shape=(4, 4, 4), dtype="uint8", chunks=(2, 2, 2))
    assert ndf.ZarrSource(tmp_path / "v.zarr").chunk_cache.max_bytes == (
        DEFAULT_CHUNK_CACHE_BYTES)
    assert ndf.ZarrSource(tmp_path / "v.zarr", chunk_cache_bytes=1000).chunk_cache.max_bytes == (
        1000)
