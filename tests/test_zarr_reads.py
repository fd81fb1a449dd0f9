"""Chunk-aware zarr reads: the per-process cache of decoded chunks, with numpy as the oracle."""

from __future__ import annotations

import itertools
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import ndframework as ndf
from ndframework._padding import HALO_MODES, read_padded
from ndframework.storage._chunk_cache import ChunkCache, _chunk_boxes, read_through
from ndframework.storage._zarr import ORIGIN_ATTRIBUTE, create_array
from ndframework.testing import SourceConformance
from ndframework.testing.strategies import halos, triples
from processors import NeighbourhoodSum, neighbourhood_sum

ORIGIN = (2, -3, 5)


def write_zarr(path, arrays, chunks, shards=None, origin=ORIGIN):
    group = zarr.open_group(str(path), mode="w")
    group.attrs[ORIGIN_ATTRIBUTE] = list(origin)
    for name, array in arrays.items():
        if shards is None:
            create_array(group, name, array.shape, chunks, array.dtype)
        else:
            group.create_array(name, shape=array.shape, chunks=chunks, shards=shards,
                               dtype=array.dtype, fill_value=0)
        group[name][...] = array
    return path


def random_arrays(shape, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "em": rng.integers(0, 256, shape, dtype=np.uint8),
        "mask": rng.integers(0, 2**16, shape, dtype=np.uint16),
    }


def assert_reads_equal(source, arrays, box, channels=("em", "mask")):
    data = source.read(box, channels)
    local = box.relative_to(source.bounds).slices()
    for name in channels:
        assert data[name].dtype == arrays[name].dtype
        assert data[name].flags.writeable
        np.testing.assert_array_equal(data[name], arrays[name][local])


@st.composite
def boxes_within(draw, bounds):
    start = [draw(st.integers(a, b)) for a, b in zip(bounds.start, bounds.stop)]
    stop = [draw(st.integers(s, b)) for s, b in zip(start, bounds.stop)]
    return ndf.Box(tuple(start), tuple(stop))


@st.composite
def layouts(draw):
    """(array shape, chunk shape, shard shape or None, cache bytes)."""
    shape = draw(triples(1, 11))
    chunks = draw(triples(1, 5))
    shards = None
    if draw(st.booleans()):
        shards = tuple(c * draw(st.integers(1, 3)) for c in chunks)
    # 0: no cache; a few chunks' worth: constant eviction; plenty: everything stays.
    cache_bytes = draw(st.sampled_from([0, 3 * 2 * int(np.prod(chunks)), 2**20]))
    return shape, chunks, shards, cache_bytes


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=layouts(), data=st.data())
@example(layout=((5, 7, 9), (2, 3, 4), (4, 6, 8), 2**20), data=None)
def test_reads_through_the_cache_equal_numpy(tmp_path_factory, layout, data):
    shape, chunks, shards, cache_bytes = layout
    arrays = random_arrays(shape)
    path = write_zarr(tmp_path_factory.mktemp("z") / "v.zarr", arrays, chunks, shards)
    source = ndf.ZarrSource(path, chunk_cache_bytes=cache_bytes)
    if data is None:  # the @example: every block of a tiling with a halo, then all at once
        boxes = [b.read_box for b in ndf.RegularTiler((2, 3, 3), halo=1).blocks(source.bounds)]
        boxes.append(source.bounds)
    else:
        boxes = data.draw(st.lists(boxes_within(source.bounds), min_size=1, max_size=12))
    for box in boxes:
        assert_reads_equal(source, arrays, box)
        cache = source.chunk_cache
        assert cache is None if cache_bytes == 0 else cache.nbytes <= cache_bytes


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(block_shape=triples(1, 6), halo=halos(4), mode=st.sampled_from(HALO_MODES))
def test_padded_reads_equal_those_of_an_in_memory_source(tmp_path_factory, block_shape, halo,
                                                         mode):
    arrays = random_arrays((6, 7, 8), seed=1)
    path = write_zarr(tmp_path_factory.mktemp("z") / "v.zarr", arrays, (2, 3, 3))
    source = ndf.ZarrSource(path, chunk_cache_bytes=4 * 2 * 18)
    oracle = ndf.InMemorySource(arrays, origin=ORIGIN)
    from ndframework._padding import read_limits

    tiler = ndf.RegularTiler(block_shape, halo=halo, origin=ORIGIN)
    within = read_limits(source.bounds, tiler.halo, mode)
    for block in tiler.blocks(source.bounds, within=within):
        got = read_padded(source, block, ["em", "mask"], mode, 7)
        expected = read_padded(oracle, block, ["em", "mask"], mode, 7)
        for name in ("em", "mask"):
            np.testing.assert_array_equal(got[name], expected[name])
        assert source.chunk_cache.nbytes <= source.chunk_cache_bytes


def test_neighbouring_halo_reads_decode_each_chunk_once(tmp_path):
    arrays = random_arrays((8, 12, 16))
    path = write_zarr(tmp_path / "v.zarr", arrays, (2, 3, 4))
    source = ndf.ZarrSource(path)
    for block in ndf.RegularTiler((2, 3, 4), halo=1, origin=ORIGIN).blocks(source.bounds):
        assert_reads_equal(source, arrays, block.read_box)
    chunk_count = 2 * 4 * 4 * 4  # two channels
    assert source.chunk_cache.misses == chunk_count == len(source.chunk_cache)
    # Along each axis the 4 blocks touch 2, 3, 3 and 2 chunks: 10³ chunks a channel in all.
    assert source.chunk_cache.hits + source.chunk_cache.misses == 2 * 10**3


def test_the_cache_never_holds_more_than_its_bound(tmp_path):
    arrays = random_arrays((8, 12, 16))
    path = write_zarr(tmp_path / "v.zarr", arrays, (2, 3, 4))
    chunk_bytes = 2 * 3 * 4 * 2  # the uint16 channel's chunks are the larger
    source = ndf.ZarrSource(path, chunk_cache_bytes=5 * chunk_bytes + 1)
    for block in ndf.RegularTiler((3, 4, 5), halo=2, origin=ORIGIN).blocks(source.bounds):
        assert_reads_equal(source, arrays, block.read_box)
        assert 0 < source.chunk_cache.nbytes <= 5 * chunk_bytes + 1
    assert_reads_equal(source, arrays, source.bounds)  # far more than the cache holds
    assert source.chunk_cache.nbytes <= 5 * chunk_bytes + 1


def test_a_chunk_larger_than_the_cache_is_read_but_not_kept(tmp_path):
    arrays = random_arrays((4, 4, 4))
    source = ndf.ZarrSource(write_zarr(tmp_path / "v.zarr", arrays, (4, 4, 4)),
                            chunk_cache_bytes=10)
    assert_reads_equal(source, arrays, source.bounds)
    assert source.chunk_cache.nbytes == 0 and len(source.chunk_cache) == 0


def test_a_source_without_a_cache_reads_straight_through(tmp_path):
    arrays = random_arrays((5, 6, 7))
    source = ndf.ZarrSource(write_zarr(tmp_path / "v.zarr", arrays, (2, 2, 2)),
                            chunk_cache_bytes=0)
    for block in ndf.RegularTiler((2, 3, 3), halo=1, origin=ORIGIN).blocks(source.bounds):
        assert_reads_equal(source, arrays, block.read_box)
    assert source.chunk_cache is None and source._cache is None


@pytest.mark.parametrize("bad", [-1, 1.5, "256MiB", True])
def test_a_bad_cache_size_is_refused_naming_it(tmp_path, bad):
    with pytest.raises(ndf.ConfigError, match=rf"chunk_cache_bytes must be .* got {bad!r}"):
        ndf.ZarrSource(tmp_path / "v.zarr", chunk_cache_bytes=bad)


def test_pickling_drops_open_arrays_and_decoded_chunks(tmp_path):
    arrays = random_arrays((8, 12, 16))
    source = ndf.ZarrSource(write_zarr(tmp_path / "v.zarr", arrays, (2, 3, 4)),
                            chunk_cache_bytes=2**20)
    fresh_size = len(pickle.dumps(source))
    assert_reads_equal(source, arrays, source.bounds)
    assert source._arrays and source.chunk_cache.nbytes > 0
    payload = pickle.dumps(source)
    assert len(payload) < fresh_size + 2048  # metadata only: no arrays, no chunks
    copy = pickle.loads(payload)
    assert copy._arrays == {} and copy._cache is None
    assert copy.chunk_cache_bytes == 2**20 and copy.chunk_cache.nbytes == 0
    assert_reads_equal(copy, arrays, source.bounds)
    assert source.chunk_cache is not copy.chunk_cache


def test_threads_sharing_one_source_read_what_numpy_reads(tmp_path):
    arrays = random_arrays((8, 12, 16))
    source = ndf.ZarrSource(write_zarr(tmp_path / "v.zarr", arrays, (2, 3, 4)),
                            chunk_cache_bytes=12 * 24 * 2)
    blocks = list(ndf.RegularTiler((2, 3, 4), halo=(1, 2, 3), origin=ORIGIN)
                  .blocks(source.bounds)) * 4
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda block: assert_reads_equal(source, arrays, block.read_box), blocks))
    assert source.chunk_cache.nbytes <= 12 * 24 * 2


@pytest.mark.parametrize("shards", [None, (4, 6, 8)], ids=["chunks", "shards"])
def test_a_halo_pipeline_over_a_zarr_source_equals_numpy(executor, tmp_path, shards):
    arrays = random_arrays((8, 12, 16))
    source = ndf.ZarrSource(write_zarr(tmp_path / "v.zarr", arrays, (2, 3, 4), shards))
    sink = ndf.ZarrSink.create(tmp_path / "out.zarr", {"total": "uint32"}, source.bounds,
                               chunk_shape=(4, 6, 8))
    tiler = ndf.RegularTiler((4, 6, 8), origin=ORIGIN)
    result = ndf.Pipeline(source, NeighbourhoodSum(), tiler=tiler, executor=executor,
                          sink=sink).run()
    assert result.ok, result.summary()
    total = zarr.open_group(sink.path, mode="r")["total"][...]
    np.testing.assert_array_equal(total, neighbourhood_sum(arrays["em"]))


def test_the_cache_evicts_the_least_recently_used_chunk():
    cache = ChunkCache(max_bytes=3)
    for key in "abc":
        cache.put(key, np.zeros(1, np.uint8))
    cache.get("a")
    cache.put("d", np.zeros(1, np.uint8))
    assert cache.keys() == ["c", "a", "d"] and cache.nbytes == 3
    cache.put("e", np.zeros(2, np.uint8))
    assert cache.keys() == ["d", "e"] and cache.nbytes == 3
    assert not cache.get("e").flags.writeable  # readers copy out; nobody writes in


@given(st.sets(triples(0, 4), max_size=40))
def test_chunk_boxes_cover_the_chunks_exactly_once(indices):
    covered = [
        index
        for region in _chunk_boxes(sorted(indices))
        for index in itertools.product(*(range(lo, hi) for lo, hi in region))
    ]
    assert sorted(covered) == sorted(indices)


def test_read_through_an_in_memory_stand_in_counts_one_read_per_box_of_missing_chunks():
    class Counting:
        def __init__(self, array, chunks):
            self.array, self.chunks, self.reads = array, chunks, []
            self.shape, self.dtype = array.shape, array.dtype

        def __getitem__(self, key):
            self.reads.append(key)
            return self.array[key].copy()

    array = Counting(np.arange(6 * 6 * 6).reshape(6, 6, 6), (2, 2, 2))
    cache = ChunkCache()
    np.testing.assert_array_equal(read_through(array, (1, 1, 1), (3, 3, 3), cache),
                                  array.array[1:3, 1:3, 1:3])
    assert len(array.reads) == 1 and len(cache) == 8
    np.testing.assert_array_equal(read_through(array, (1, 1, 1), (5, 3, 3), cache),
                                  array.array[1:5, 1:3, 1:3])
    assert len(array.reads) == 2 and array.reads[-1] == (slice(4, 6), slice(0, 4), slice(0, 4))


class TestShardedZarrSource(SourceConformance):
    def make_source(self, arrays, origin, directory):
        path = write_zarr(directory / "v.zarr", arrays, (2, 2, 3), (4, 4, 6), origin=origin)
        return ndf.ZarrSource(path, chunk_cache_bytes=200)


class TestZarrSourceWithoutACache(SourceConformance):
    def make_source(self, arrays, origin, directory):
        path = write_zarr(directory / "v.zarr", arrays, (2, 3, 4), origin=origin)
        return ndf.ZarrSource(path, chunk_cache_bytes=0)


def test_threads_reading_neighbouring_blocks_at_once_decode_each_chunk_once(tmp_path):
    arrays = random_arrays((8, 12, 16))
    source = ndf.ZarrSource(write_zarr(tmp_path / "v.zarr", arrays, (2, 3, 4)))
    blocks = list(ndf.RegularTiler((2, 3, 4), halo=1, origin=ORIGIN).blocks(source.bounds))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda block: assert_reads_equal(source, arrays, block.read_box), blocks))
    assert source.chunk_cache.misses == 2 * 4 * 4 * 4 == len(source.chunk_cache)


def test_a_run_releases_the_decoded_chunks_its_worker_threads_shared(tmp_path):
    volume = np.arange(16 * 32 * 32, dtype=np.uint16).reshape(16, 32, 32)
    group = zarr.open_group(str(tmp_path / "v.zarr"), mode="w")
    group.create_array("em", shape=volume.shape, dtype=volume.dtype, chunks=(8, 16, 16))
    group["em"][:] = volume
    source = ndf.ZarrSource(tmp_path / "v.zarr")
    held = []

    class Watch:  # the worker threads share the coordinator's source, and its cache
        @ndf.hookimpl
        def ndf_after_block(self, run, block, outcome):
            held.append(len(source.chunk_cache))

    processor = ndf.FunctionProcessor(lambda data: int(data["em"].sum()), halo=1)
    result = ndf.Pipeline(source, processor, tiler=ndf.RegularTiler((8, 16, 16)),
                          executor=ndf.ThreadExecutor(2), plugins=[Watch()]).run()
    assert result.ok and len(result.done) == 8 and max(held) > 0
    assert source._cache is None  # dropped when the run ended
    box = ndf.Box((0, 0, 0), (2, 2, 2))
    np.testing.assert_array_equal(source.read(box)["em"], volume[:2, :2, :2])


def test_a_run_never_uses_chunks_decoded_before_it(tmp_path):
    group = zarr.open_group(str(tmp_path / "v.zarr"), mode="w")
    group.create_array("em", shape=(8, 16, 16), dtype="uint8", chunks=(4, 8, 8))
    source = ndf.ZarrSource(tmp_path / "v.zarr")
    assert source.read(source.bounds)["em"].max() == 0  # a preview: decoded, cached zeros
    group["em"][:] = 7  # the store changes, e.g. by a pipeline writing it
    result = ndf.Pipeline(source, lambda data: int(data["em"].astype(np.int64).sum()),
                          tiler=ndf.RegularTiler((4, 8, 8)), executor="serial").run()
    assert sum(dict(result.reduced).values()) == 7 * 8 * 16 * 16


def test_threads_reading_the_same_chunks_at_once_decode_each_once(tmp_path):
    arrays = random_arrays((8, 12, 16))
    source = ndf.ZarrSource(write_zarr(tmp_path / "v.zarr", arrays, (2, 3, 4)))
    # Whole chunks, and boxes within one chunk: each read is of a single chunk.
    tiler = ndf.RegularTiler((2, 3, 4), origin=ORIGIN)
    boxes = [block.box for block in tiler.blocks(source.bounds)]
    boxes += [ndf.Box(box.start, tuple(s + 1 for s in box.start)) for box in boxes]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda box: assert_reads_equal(source, arrays, box), boxes * 3))
    assert source.chunk_cache.misses == 2 * 4 * 4 * 4 == len(source.chunk_cache)
