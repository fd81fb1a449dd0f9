"""The emulator's Morton index and sparse cuboid store, with numpy as the oracle."""

from __future__ import annotations

import tempfile
import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ndframework.bossemu import cuboids
from ndframework.bossemu.cuboid_format import (
    CUBOID_SHAPE,
    CuboidKey,
    cuboid_parts,
    decode_cuboid,
    encode_cuboid,
    storage_iso,
)
from ndframework.bossemu.cuboid_stores import DiskCuboids, MemoryCuboids
from ndframework.bossemu.morton import INDEX_MAX, INDEX_MIN, morton_to_xyz, xyz_to_morton
from ndframework.geometry import Box

pytestmark = pytest.mark.timeout(60)

# ---------------------------------------------------------------------------------------
# Morton index
# ---------------------------------------------------------------------------------------


def spdb_xyz_morton(x: int, y: int, z: int) -> int:
    """zindex.c's XYZMorton loop, bit by bit, after spdb's np.uint64 cast (two's
    complement) and the loop's 21 triads."""
    x, y, z = (value & (2**21 - 1) for value in (x, y, z))
    morton, mask = 0, 1
    for i in range(21):
        morton += (x & mask) << (2 * i)
        morton += (y & mask) << (2 * i + 1)
        morton += (z & mask) << (2 * i + 2)
        mask <<= 1
    return morton


def spdb_morton_xyz(morton: int) -> tuple[int, int, int]:
    """zindex.c's MortonXYZ loop (unsigned)."""
    xyz = [0, 0, 0]
    for i in range(21):
        xyz[0] += (0x1 & morton) << i
        xyz[1] += ((0x2 & morton) << i) >> 1
        xyz[2] += ((0x4 & morton) << i) >> 2
        morton >>= 3
    return xyz[0], xyz[1], xyz[2]


cuboid_index = st.integers(INDEX_MIN, INDEX_MAX)
small_index = st.integers(0, 7)

HAND_CHECKED = [  # (x, y, z) -> Morton, worked out by hand from zindex.c's bit layout
    ((0, 0, 0), 0),
    ((1, 0, 0), 1),
    ((0, 1, 0), 2),
    ((1, 1, 0), 3),
    ((0, 0, 1), 4),
    ((1, 1, 1), 7),
    ((2, 0, 0), 8),
    ((0, 2, 0), 16),
    ((0, 0, 2), 32),
    ((3, 5, 7), 431),
    ((2**20 - 1, 0, 0), int("001" * 20, 2)),
]


@pytest.mark.parametrize(("xyz", "morton"), HAND_CHECKED)
def test_morton_hand_checked_values(xyz, morton):
    """spdb/c_lib/c_version/zindex.c: x in the lowest bit of each triad, then y, then z."""
    assert xyz_to_morton(*xyz) == morton == spdb_xyz_morton(*xyz)
    assert morton_to_xyz(morton) == xyz == spdb_morton_xyz(morton)


@given(cuboid_index, cuboid_index, cuboid_index)
@example(INDEX_MIN, INDEX_MAX, -1)
def test_morton_round_trips_and_matches_spdb(x, y, z):
    """spdb/c_lib/ndlib.py XYZMorton/MortonXYZ: same bits as zindex.c's loops, negative
    indices as the 21-bit two's complement that spdb's np.uint64 cast gives."""
    morton = xyz_to_morton(x, y, z)
    assert morton == spdb_xyz_morton(x, y, z)
    assert morton_to_xyz(morton) == (x, y, z)
    if min(x, y, z) >= 0:
        assert spdb_morton_xyz(morton) == (x, y, z)


@given(st.lists(st.tuples(small_index, small_index, small_index), min_size=2, unique=True))
def test_morton_orders_as_spdb(positions):
    """spdb/spatialdb/spatialdb.py cutout sorts cuboids by XYZMorton: the same order."""
    ours = sorted(positions, key=lambda xyz: xyz_to_morton(*xyz))
    assert ours == sorted(positions, key=lambda xyz: spdb_xyz_morton(*xyz))


def test_morton_order_of_a_2x2x2_group():
    """spdb/c_lib/c_version/zindex.c: within a 2x2x2 group x turns fastest, then y, z."""
    group = [(x, y, z) for z in (0, 1) for y in (0, 1) for x in (0, 1)]
    assert sorted(group, key=lambda xyz: xyz_to_morton(*xyz)) == group


@pytest.mark.parametrize("bad", [INDEX_MIN - 1, INDEX_MAX + 1, 2**21 - 1])
def test_morton_refuses_indices_that_would_alias(bad):
    """spdb/c_lib/c_version/zindex.c keeps 21 bits: beyond [-2**20, 2**20) indices alias."""
    with pytest.raises(ValueError, match="cuboid index x"):
        xyz_to_morton(bad, 0, 0)
    with pytest.raises(ValueError):
        morton_to_xyz(2**63)


# ---------------------------------------------------------------------------------------
# Keys and geometry
# ---------------------------------------------------------------------------------------


def test_keys_follow_spdb_object_keys():
    """spdb/spatialdb/object.py generate_object_key: hash&[ISO&]lookup&res&t&morton;
    kvio.py orders keys by time sample, then Morton index."""
    key = CuboidKey.at("4&5&6", 2, (0, 1, 1), time_sample=3)
    assert key.object_key.split("&")[1:] == ["4", "5", "6", "2", "3", "3"]
    iso = CuboidKey.at("4&5&6", 2, (0, 1, 1), time_sample=3, iso=True)
    assert iso.object_key.split("&")[1] == "ISO" and iso != key
    keys = [CuboidKey.at("c", 0, (0, 0, x), t) for t in (1, 0) for x in (1, 0)]
    assert [(k.time_sample, k.morton) for k in sorted(keys)] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert CuboidKey.at("c", 0, (-1, 2, -3)).index == (-1, 2, -3)
    assert CuboidKey.at("c", 0, (-1, 0, 0)).box == Box((-16, 0, 0), (0, 512, 512))


def test_storage_iso_as_spdb():
    """spdb/spatialdb/object.py generate_object_key: ISO only above the isotropic level of
    an anisotropic hierarchy."""
    assert storage_iso(True, 4, 3, "ANISOTROPIC")
    assert not storage_iso(True, 3, 3, "anisotropic")
    assert not storage_iso(False, 4, 3, "anisotropic")
    assert not storage_iso(True, 4, 0, "isotropic")


boxes = st.tuples(
    st.tuples(st.integers(-40, 40), st.integers(-600, 600), st.integers(-600, 600)),
    st.tuples(st.integers(0, 40), st.integers(0, 1100), st.integers(0, 1100)),
).map(lambda start_shape: Box.from_shape(start_shape[1], start_shape[0]))


@given(boxes)
def test_cuboid_parts_cover_the_box_once(box):
    """spdb/spatialdb/spatialdb.py write_cuboid: cuboids from corner // cube_dim to
    ceil((corner + extent) / cube_dim), each given the part of the box inside it."""
    parts = list(cuboid_parts(box))
    assert sum(part.size for _, part in parts) == box.size
    for index, part in parts:
        assert not part.empty and box.contains(part)
        assert CuboidKey.at("c", 0, index).box.contains(part)
    assert len({index for index, _ in parts}) == len(parts)


# ---------------------------------------------------------------------------------------
# Cutout over a store against a dense numpy model
# ---------------------------------------------------------------------------------------

# A small frame that starts below 0 and crosses cuboid boundaries on every axis (z at
# -16, 0 and 16, y at 0, x at 512): twelve cuboids, a few hundred voxels.
FRAME = Box((-17, -2, 509), (18, 3, 515))
TIMES = 2


class DenseModel:
    """The BOSS's write rule on a dense array (T, Z, Y, X) of FRAME."""

    def __init__(self, dtype):
        self.data = np.zeros((TIMES,) + FRAME.shape, dtype=dtype)

    def write(self, box, data, time_start):
        region = self.data[(slice(time_start, time_start + data.shape[0]),)
                           + box.relative_to(FRAME).slices()]
        np.copyto(region, data, where=data != 0)

    def to_black(self, box, time_range):
        self.data[(slice(*time_range),) + box.relative_to(FRAME).slices()] = 0

    def read(self, box, time_range):
        return self.data[(slice(*time_range),) + box.relative_to(FRAME).slices()]


@st.composite
def frame_boxes(draw):
    """Boxes in FRAME; one in four the whole frame, so that operations often overlap."""
    if draw(st.integers(0, 3)) == 0:
        return FRAME
    start = [draw(st.integers(a, b - 1)) for a, b in zip(FRAME.start, FRAME.stop)]
    stop = [draw(st.integers(s + 1, b)) for s, b in zip(start, FRAME.stop)]
    return Box(start, stop)


@st.composite
def time_ranges(draw):
    start = draw(st.integers(0, TIMES - 1))
    return start, draw(st.integers(start + 1, TIMES))


operations = st.one_of(
    st.tuples(st.just("write"), frame_boxes(), time_ranges(), st.integers(0, 2**32 - 1),
              st.sampled_from([0.0, 0.5, 1.0])),
    st.tuples(st.just("black"), frame_boxes(), time_ranges()),
    st.tuples(st.just("read"), frame_boxes(), time_ranges()),
)


def posted_data(shape, seed, zero_fraction, dtype):
    """Random voxels with about ``zero_fraction`` of them 0."""
    rng = np.random.default_rng(seed)
    values = rng.integers(1, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)
    return np.where(rng.random(shape) < zero_fraction, 0, values).astype(dtype)


def run_operations(store, model, ops, dtype, channel="1&2&3", resolution=0):
    for op in ops:
        kind, box, (t0, t1) = op[:3]
        if kind == "write":
            data = posted_data((t1 - t0,) + box.shape, op[3], op[4], dtype)
            if t1 - t0 == 1 and op[3] % 2:
                cuboids.write(store, channel, resolution, box, data[0], time_start=t0)
            else:
                cuboids.write(store, channel, resolution, box, data, time_start=t0)
            model.write(box, data, t0)
        elif kind == "black":
            cuboids.to_black(store, channel, resolution, box, time_range=(t0, t1))
            model.to_black(box, (t0, t1))
        else:
            got = cuboids.read(store, channel, resolution, box, dtype, time_range=(t0, t1))
            np.testing.assert_array_equal(got, model.read(box, (t0, t1)))
    whole = cuboids.read(store, channel, resolution, FRAME, dtype, time_range=(0, TIMES))
    np.testing.assert_array_equal(whole, model.data)


PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


OVERLAPPING_WRITES = [  # zeros of the second write must leave the first one's voxels
    ("write", FRAME, (0, 1), 1, 0.0),
    ("write", Box((0, -1, 510), (17, 2, 514)), (0, 2), 2, 0.5),
]


@PROPERTY_SETTINGS
@given(st.lists(operations, max_size=8), st.sampled_from(["uint8", "uint16"]))
@example(OVERLAPPING_WRITES, "uint8")
@example(OVERLAPPING_WRITES + [("black", Box((-1, -2, 509), (1, 0, 515)), (0, 2))], "uint16")
def test_memory_store_matches_dense_model(ops, dtype):
    """spdb/spatialdb/spatialdb.py cutout and write_cuboid; the merge of
    spdb/spatialdb/imagecube.py/annocube.py overwrite (non-zero voxels replace) and
    cube.py overwrite_to_black, applied per cuboid as boss-tools lambda/s3_flush_lambda.py
    does."""
    run_operations(MemoryCuboids(), DenseModel(dtype), ops, np.dtype(dtype))


@PROPERTY_SETTINGS
@given(st.lists(operations, max_size=8))
@example(OVERLAPPING_WRITES)
def test_disk_store_matches_dense_model_and_survives_reopening(ops):
    """spdb/spatialdb/spatialdb.py cutout/write_cuboid over files; a new DiskCuboids on
    the same directory reads what the first wrote (the S3 objects outlive the server)."""
    model = DenseModel("uint8")
    with tempfile.TemporaryDirectory() as directory:
        store = DiskCuboids.open(directory)
        run_operations(store, model, ops, np.dtype("uint8"))
        reopened = DiskCuboids.open(directory)
        assert reopened.keys_in("1&2&3") == store.keys_in("1&2&3")
        whole = cuboids.read(reopened, "1&2&3", 0, FRAME, "uint8", time_range=(0, TIMES))
        np.testing.assert_array_equal(whole, model.data)


@pytest.fixture(params=["memory", "disk"])
def store(request, tmp_path):
    return MemoryCuboids() if request.param == "memory" else DiskCuboids.open(tmp_path / "s")


def test_never_written_cuboids_read_zeros(store):
    """spdb/spatialdb/spatialdb.py cutout: keys missing from S3 become zero cuboids."""
    assert store.get(CuboidKey.at("c", 0, (0, 0, 0))) is None
    box = Box((0, 0, 0), (16, 512, 512))
    cuboids.write(store, "c", 0, box, np.full(box.shape, 3, "uint16"))
    neighbour = Box((16, 0, 0), (20, 4, 4))
    assert not cuboids.read(store, "c", 0, neighbour, "uint16").any()
    assert not cuboids.read(store, "c", 1, box, "uint16").any()  # another resolution
    assert not cuboids.read(store, "c", 0, box, "uint16", iso=True).any()  # the iso copy
    assert not cuboids.read(store, "c", 0, box, "uint16", time_range=(1, 2)).any()
    assert not cuboids.read(store, "other", 0, box, "uint16").any()
    assert store.keys_in("c") == [CuboidKey.at("c", 0, (0, 0, 0))]


def test_full_cuboid_write_merges_and_does_not_replace(store):
    """spdb/c_lib/c_version/overwriteDense.c: only non-zero posted voxels are copied, also
    when the post covers a whole cuboid (boss-tools lambda/s3_flush_lambda.py merges every
    write into the existing object)."""
    box = Box((16, 512, 0), (32, 1024, 512))
    first = np.zeros(box.shape, "uint64")
    first[0, 0, :4] = [1, 2, 3, 2**63]
    cuboids.write(store, "anno", 0, box, first)
    second = np.zeros(box.shape, "uint64")
    second[0, 0, 1] = 7
    second[5, 6, 7] = 9
    cuboids.write(store, "anno", 0, box, second)
    expected = first.copy()
    expected[0, 0, 1], expected[5, 6, 7] = 7, 9
    np.testing.assert_array_equal(cuboids.read(store, "anno", 0, box, "uint64")[0], expected)


def test_zeros_create_no_cuboid_and_black_keeps_one(store):
    """boss-tools lambda/s3_flush_lambda.py: to-black of an absent cuboid is dropped; an
    existing cuboid blacked out stays, as zeros (cube.py overwrite_to_black)."""
    box = Box((0, 0, 0), (16, 512, 512))
    cuboids.write(store, "c", 0, box, np.zeros(box.shape, "uint8"))
    cuboids.to_black(store, "c", 0, box.shift((16, 0, 0)))
    assert store.keys_in("c") == []
    cuboids.write(store, "c", 0, Box((1, 1, 1), (2, 2, 2)), np.ones((1, 1, 1), "uint8"))
    cuboids.to_black(store, "c", 0, box)
    assert len(store.keys_in("c")) == 1
    assert not decode_cuboid(store.get(store.keys_in("c")[0]), "uint8").any()


def test_bytes_are_spdb_blosc(store):
    """spdb/spatialdb/cube.py to_blosc_by_time_index/pack_array: one time sample, C order,
    blosc with spdb's typesize in bits; unpack_array reads it back."""
    import blosc

    box = Box((0, 0, 0), (2, 3, 4))
    data = np.arange(24, dtype="uint16").reshape(box.shape) + 1
    cuboids.write(store, "c", 0, box, data)
    raw = blosc.decompress(store.get(CuboidKey.at("c", 0, (0, 0, 0))))
    stored = np.frombuffer(raw, "uint16").reshape(CUBOID_SHAPE)
    np.testing.assert_array_equal(stored[:2, :3, :4], data)
    with pytest.raises(ValueError, match="not a cuboid of uint8"):
        cuboids.read(store, "c", 0, box, "uint8")


def test_errors_name_the_bad_value():
    """boss django/bossspatialdb/views.py checks the posted shape against the ranges."""
    store = MemoryCuboids()
    with pytest.raises(ValueError, match=r"box's shape \(1, 1, 2\).*got \(1, 1, 3\)"):
        cuboids.write(store, "c", 0, Box((0, 0, 0), (1, 1, 2)), np.ones((1, 1, 3), "uint8"))
    with pytest.raises(ValueError, match=r"time_range.*got \(2, 2\)"):
        cuboids.read(store, "c", 0, Box((0, 0, 0), (1, 1, 2)), "uint8", time_range=(2, 2))


# ---------------------------------------------------------------------------------------
# Sparse: memory grows with the data, not the frame
# ---------------------------------------------------------------------------------------

BIG_FRAME = Box((0, 0, 0), (10_000, 100_000, 100_000))


def test_memory_grows_with_data_written_not_frame():
    """spdb/spatialdb/spatialdb.py: only written cuboids become objects; a 100000 x 100000
    x 10000 frame costs nothing until written, then a few cuboids' bytes."""
    store = MemoryCuboids()
    rng = np.random.default_rng(7)
    corners = [(9_990, 99_990, 99_990), (0, 0, 0), (5_000, 123, 77_777), (31, 50_000, 511)]
    for corner in corners:
        box = Box.from_shape((4, 4, 4), corner).intersect(BIG_FRAME)
        data = rng.integers(1, 255, box.shape, dtype="uint8")
        cuboids.write(store, "big", 0, box, data)
        np.testing.assert_array_equal(cuboids.read(store, "big", 0, box, "uint8")[0], data)
    touched = {index for corner in corners
               for index, _ in cuboid_parts(Box.from_shape((4, 4, 4), corner))}
    assert len(store.keys_in("big")) == len(touched) == 7
    assert store.nbytes < 64 * 1024 * len(touched)  # a cuboid of 4 MiB shrinks to KiB


def test_read_of_large_empty_region_allocates_only_the_output():
    """spdb/spatialdb/spatialdb.py cutout: absent cuboids are zeros; here they are never
    materialised (spdb allocates zero cuboids; the output alone suffices)."""
    store = MemoryCuboids()
    cuboids.write(store, "big", 0, Box((0, 0, 0), (1, 1, 1)), np.ones((1, 1, 1), "uint8"))
    box = Box((0, 0, 0), (1, 4_000, 4_000))  # 64 cuboids, 16 MB of output
    tracemalloc.start()
    try:
        output = cuboids.read(store, "big", 0, box, "uint8")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert output.sum() == 1
    cuboid_bytes = CUBOID_SHAPE[0] * CUBOID_SHAPE[1] * CUBOID_SHAPE[2]
    assert peak < output.nbytes + 2 * cuboid_bytes


# ---------------------------------------------------------------------------------------
# Concurrency
# ---------------------------------------------------------------------------------------


def run_threads(targets):
    errors = []

    def guarded(target):
        try:
            target()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a writer hung"
    assert not errors, errors


def test_concurrent_writers_equal_sequential(store):
    """spdb/spatialdb/spatialdb.py write_cuboid merges cuboid by cuboid; writers to
    different cuboids and to the same cuboid (disjoint voxels, zeros elsewhere) end as a
    sequential run does: no update lost to a concurrent read-modify-write."""
    writers = 6
    box = Box((-16, 0, 0), (16, 64, 1024))  # four cuboids, shared by every writer
    posts = []
    for writer in range(writers):
        data = np.zeros(box.shape, "uint8")
        data[:, writer::writers, :] = writer + 1  # this writer's rows of every cuboid
        posts.append((box, data))
        own = Box.from_shape((2, 2, 2), (0, 0, 2048 + 512 * writer))  # its own cuboid
        posts.append((own, np.full(own.shape, writer + 1, "uint8")))
    run_threads([lambda post=post: cuboids.write(store, "c", 0, *post) for post in posts])
    sequential = MemoryCuboids()
    for post in posts:
        cuboids.write(sequential, "c", 0, *post)
    everything = Box((-16, 0, 0), (16, 64, 2048 + 512 * writers))
    np.testing.assert_array_equal(
        cuboids.read(store, "c", 0, everything, "uint8"),
        cuboids.read(sequential, "c", 0, everything, "uint8"),
    )


def test_cuboid_locks_are_per_cuboid(store):
    """A writer holding one cuboid's lock does not stop writers of other cuboids; a writer
    of the same cuboid waits (spdb serialises writes per cuboid through its page-out
    state, spdb/spatialdb/state.py add_to_page_out)."""
    held = CuboidKey.at("c", 0, (0, 0, 0))
    other_done, same_done = threading.Event(), threading.Event()

    def write_other():
        cuboids.write(store, "c", 0, Box((16, 0, 0), (17, 1, 1)), np.ones((1, 1, 1), "uint8"))
        other_done.set()

    def write_same():
        cuboids.write(store, "c", 0, Box((0, 0, 0), (1, 1, 1)), np.ones((1, 1, 1), "uint8"))
        same_done.set()

    with store.lock(held):
        other = threading.Thread(target=write_other)
        same = threading.Thread(target=write_same)
        other.start(), same.start()
        assert other_done.wait(30), "a writer of another cuboid waited for a held lock"
        assert not same_done.is_set()
    same.join(30), other.join(30)
    assert same_done.is_set()
    assert not store._locks._entries  # locks are dropped once nobody holds them


def test_disk_reader_never_sees_a_torn_cuboid(tmp_path):
    """A reader racing a writer of one cuboid gets old or new bytes whole (the BOSS reads
    whole S3 objects; here files are renamed into place)."""
    store = DiskCuboids.open(tmp_path)
    key = CuboidKey.at("c", 0, (0, 0, 0))
    rng = np.random.default_rng(1)
    versions = [encode_cuboid(rng.integers(0, 256, CUBOID_SHAPE, dtype="uint8"))
                for _ in range(2)]
    versions.append(encode_cuboid(np.zeros(CUBOID_SHAPE, "uint8")))  # much shorter
    store.put(key, versions[0])
    stop = threading.Event()

    def writer():
        for round_ in range(60):
            store.put(key, versions[round_ % len(versions)])
        stop.set()

    def reader():
        while not stop.is_set():
            assert store.get(key) in versions

    run_threads([writer, reader, reader])
    assert not list(tmp_path.rglob(".*.tmp"))


def test_disk_channels_stay_inside_and_strays_are_swept(tmp_path):
    """spdb/spatialdb/object.py keys objects by lookup key: any channel name maps to its
    own directory under the store; a crash's temporary files are gone on reopening."""
    store = DiskCuboids.open(tmp_path / "store")
    one = np.ones((1, 1, 1), "uint8")
    for channel in ["..", "a/b", "1&2&3", "%2F"]:
        cuboids.write(store, channel, 0, Box((0, 0, 0), (1, 1, 1)), one * len(channel))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["store"]
    for channel in ["..", "a/b", "1&2&3", "%2F"]:
        assert store.keys_in(channel) == [CuboidKey.at(channel, 0, (0, 0, 0))]
        got = cuboids.read(store, channel, 0, Box((0, 0, 0), (1, 1, 1)), "uint8")
        assert got.item() == len(channel)
    stray = store.path(CuboidKey.at("..", 0, (0, 0, 0))).parent / ".crashed.tmp"
    stray.write_bytes(b"half")
    reopened = DiskCuboids.open(tmp_path / "store")
    assert not stray.exists()
    reopened.delete_channel("..")
    assert reopened.keys_in("..") == [] and len(reopened.keys_in("a/b")) == 1
