"""Planning: the figures of `Pipeline.plan()`, computed per axis for regular tilings (and by
walking the blocks for others), over volumes far too large to walk."""

from __future__ import annotations

import numpy as np
import pytest

import ndframework as ndf
from ndframework import tiling
from test_tiling import UsersTiler as Walked

HUGE = ndf.Box((0, 0, 0), (10000, 100000, 100000))
"""100000 × 100000 × 10000 voxels (x, y, z): 24 million BOSS cuboids."""


class _Huge:
    """A uint8 volume of ``bounds`` in BOSS cuboids, whose voxels planning never touches."""

    def __init__(self, bounds=HUGE, chunk_shape=ndf.BOSS_CUBOID):
        self._bounds, self._chunk_shape = bounds, chunk_shape

    channels = ("em",)
    bounds = property(lambda self: self._bounds)
    chunk_shape = property(lambda self: self._chunk_shape)

    def dtype(self, channel):
        return np.dtype("uint8")


class Unread(_Huge, ndf.DataSource):
    """A source that planning must never read."""

    def read_box(self, box, channels):
        raise AssertionError(f"planning read {box}")


class Unwritten(_Huge, ndf.DataSink):
    """A sink that planning must never write."""

    def write_box(self, box, arrays):
        raise AssertionError(f"planning wrote {box}")


@pytest.fixture
def blocks_made(monkeypatch):
    """Every block a tiler makes, as it makes it."""
    made = []
    make_block = tiling._block
    monkeypatch.setattr(tiling, "_block", lambda *a: made.append(a) or make_block(*a))
    return made


def pipeline(tiler, source=None, executor=None, **options):
    return ndf.Pipeline(source or Unread(), lambda data: None, tiler=tiler, sink=Unwritten(),
                        executor=executor or ndf.ThreadExecutor(2), load_entrypoints=False,
                        **options)


def test_a_plan_of_24_million_cuboids_walks_no_block(blocks_made):
    plan = pipeline(ndf.CuboidTiler(ndf.BOSS_CUBOID, halo=(0, 8, 8))).plan()
    assert blocks_made == []
    assert plan.block_count == 625 * 196 * 196
    assert plan.owned_bytes == HUGE.size
    # along y and x, 196 blocks read 8 voxels more on each inner side
    assert plan.read_bytes == 10000 * (100000 + 2 * 8 * 195) ** 2
    assert plan.largest_block_bytes == 16 * 528 * 528
    # a read box touches 3 cuboids along y and x, 2 at the edges (the last block is 160 wide)
    assert plan.chunk_shape == ndf.BOSS_CUBOID
    assert plan.decoded_bytes == 625 * (194 * 3 + 2 * 2) ** 2 * 16 * 512 * 512
    assert plan.decode_ratio == pytest.approx(plan.decoded_bytes / HUGE.size)
    assert "decoded:" in str(plan) and "bytes per byte owned, no cache" in str(plan)


def test_a_misaligned_tiling_of_24_million_blocks_is_refused_without_walking(blocks_made):
    with pytest.raises(ndf.ConfigError, match=r"block 0_0_0 ends at x=500, inside a chunk of "
                                              r"the sink \(chunk shape \(16, 512, 512\)"):
        pipeline(ndf.RegularTiler((16, 512, 500))).plan()
    assert len(blocks_made) == 1  # the block named in the error
    with pytest.raises(ndf.ConfigError, match=r"block 16_0_0 ends at z=24"):
        pipeline(ndf.RegularTiler((16, 512, 512), origin=(8, 0, 0)),
                 bounds=ndf.Box((16, 0, 0), HUGE.stop)).plan()


@pytest.mark.parametrize("halo_mode", ["clip", "reflect", "constant"])
@pytest.mark.parametrize("halo", [0, 3, ((0, 5, 1), (2, 0, 9))])
def test_a_users_tiler_is_walked_to_the_same_plan(blocks_made, halo_mode, halo):
    bounds = ndf.Box((3, 5, 7), (40, 61, 83))
    source = Unread(bounds, chunk_shape=(4, 8, 16))
    processor = ndf.FunctionProcessor(lambda data: None, halo=halo, halo_mode=halo_mode)
    tiler = ndf.RegularTiler((8, 16, 16), origin=bounds.start)
    plans = []
    for each in (tiler, Walked(tiler)):
        blocks_made.clear()
        plans.append(ndf.Pipeline(source, processor, tiler=each,
                                  sink=Unwritten(bounds, (8, 16, 16)),
                                  executor=ndf.ThreadExecutor(2),
                                  load_entrypoints=False).plan())
        walked = len(blocks_made)
    figures = [(plan.block_count, plan.owned_bytes, plan.read_bytes, plan.largest_block_bytes,
                plan.decoded_bytes) for plan in plans]
    assert figures[0] == figures[1]
    assert walked >= 2 * tiler.count(bounds)  # the alignment check and the byte counts
    blocks = list(tiler.with_halo(processor.effective_halo).blocks(
        bounds, within=ndf.Box((-99, -99, -99), (999, 999, 999))
        if halo_mode != "clip" else bounds))
    assert plans[0].read_bytes == sum(block.read_box.size for block in blocks)


def test_a_source_without_chunks_reports_no_decoding():
    source = ndf.InMemorySource({"em": np.zeros((4, 8, 8), np.uint16)})
    plan = ndf.Pipeline(source, lambda data: None, tiler=ndf.RegularTiler((2, 8, 8)),
                        executor="serial", load_entrypoints=False).plan()
    assert plan.chunk_shape is None and plan.decoded_bytes is None and plan.decode_ratio is None
    assert "decoded:" not in str(plan)


def test_whole_chunks_without_halo_decode_each_byte_once():
    source = Unread(ndf.Box((0, 0, 0), (64, 1024, 1024)))
    plan = ndf.Pipeline(source, lambda data: None, tiler=ndf.CuboidTiler((32, 1024, 512)),
                        executor="serial", load_entrypoints=False).plan()
    assert plan.decoded_bytes == plan.owned_bytes and plan.decode_ratio == 1.0
    assert "(1.00 bytes per byte owned, no cache)" in str(plan)


# -- requests, memory and warnings ----------------------------------------------------------

BOSS_TOKEN = "plan-test-token-61c0"
BIG_FRAME = (128, 8192, 8192)
"""z, y, x of an empty BOSS frame: 8 GiB of uint8 that planning never reads."""


@pytest.fixture(scope="module")
def boss():
    """An emulator holding ``coll/exp`` (a small volume with data) and ``big/frame`` (an
    8 GiB uint8 frame with no data)."""
    from intern.resource.boss.resource import (
        ChannelResource, CollectionResource, CoordinateFrameResource, ExperimentResource,
    )
    from ndframework.bossemu import BossEmulator

    rng = np.random.default_rng(5)
    with BossEmulator(token=BOSS_TOKEN) as emulator:
        emulator.create_volume("coll", "exp", {
            "em": rng.integers(0, 256, (40, 96, 80), dtype=np.uint8),
            "seg": rng.integers(0, 9, (40, 96, 80), dtype=np.uint64)})
        remote = emulator.remote()
        remote.create_project(CollectionResource("big"))
        z, y, x = BIG_FRAME
        remote.create_project(CoordinateFrameResource("bigframe", "", 0, x, 0, y, 0, z, 4, 4, 40,
                                                      "nanometers"))
        remote.create_project(ExperimentResource("frame", "big", "bigframe"))
        remote.create_project(ChannelResource("em", "big", "frame", "image", datatype="uint8"))
        yield emulator


def boss_source(boss, collection="coll", experiment="exp", channels=("em", "seg"), **options):
    return ndf.BossSource(boss.host, BOSS_TOKEN, collection, experiment, channels,
                          protocol=boss.protocol, **options).validate()


@pytest.mark.parametrize("origin", [(0, 0, 0), (3, 7, 0)])
@pytest.mark.parametrize(("block_shape", "halo"), [((16, 32, 32), 0), ((10, 40, 24), 3),
                                                    ((40, 96, 80), ((1, 2, 3), (3, 0, 9)))])
def test_cutout_requests_are_counted_per_axis_as_every_read_box_splits(boss, block_shape, halo,
                                                                        origin, blocks_made):
    from ndframework.boss._split import split_box

    source = boss_source(boss, max_request_bytes=6000)
    processor = ndf.FunctionProcessor(lambda data: None, halo=halo)
    tiler = ndf.RegularTiler(block_shape, origin=origin)
    bounds = ndf.Box((3, 5, 0), (40, 96, 77))
    plan = ndf.Pipeline(source, processor, tiler=tiler, executor="threads", bounds=bounds,
                        load_entrypoints=False).plan()
    blocks_made.clear()
    blocks = list(tiler.with_halo(processor.effective_halo).blocks(bounds, within=source.bounds))
    walked = sum(len(split_box(block.read_box, itemsize, 6000))
                 for block in blocks for itemsize in (1, 8))
    assert plan.request_kind == "cutout requests" and plan.read_requests == walked
    assert walked > 3 * len(blocks)  # the limit splits blocks
    assert f"requests:    {walked:,} cutout requests (to the BOSS" in str(plan)


def test_cutout_requests_planned_are_those_a_run_makes(boss):
    """The emulator's count of the cutouts a run asks for is the plan's."""
    source = boss_source(boss, max_request_bytes=50_000)
    pipeline = ndf.Pipeline(source, lambda data: None, tiler=ndf.RegularTiler((20, 48, 40)),
                            executor="threads", load_entrypoints=False)
    plan = pipeline.plan()
    assert plan.read_requests > 2 * plan.block_count * 2  # uint64 blocks are split
    boss.reset_stats()
    assert pipeline.run().ok
    assert boss.stats.by_status == {200: plan.read_requests}


def test_a_block_over_the_boss_request_limit_is_a_warning(boss, blocks_made):
    source = boss_source(boss, "big", "frame", ("em",))
    plan = ndf.Pipeline(source, lambda data: None, tiler=ndf.RegularTiler((64, 4096, 4096)),
                        executor="threads", load_entrypoints=False).plan()
    assert blocks_made == []
    assert plan.block_count == 8 and plan.largest_block_bytes == 2**30
    # 1 GiB a block, in requests of at most 512 x 512 x 192 voxels (intern's own split):
    # 16 x 512 x 4096, whole cuboids, 32 a block
    assert plan.read_requests == 8 * 32
    [warning] = [w for w in plan.warnings if "limit" in w]
    assert warning.startswith("the largest block reads 1.0 GiB of channel 'em', over the "
                              "BOSS's limit of 520.0 MiB on one cutout request")
    assert "(64, 4096, 4096)" in warning
    smaller = ndf.Pipeline(source, lambda data: None, tiler=ndf.RegularTiler((64, 2048, 2048)),
                           executor="threads", load_entrypoints=False).plan()
    assert not any("limit" in w for w in smaller.warnings)


def test_a_zarr_source_counts_chunk_reads_per_channel(tmp_path):
    from test_storage import write_zarr

    arrays = {"em": np.zeros((10, 24, 20), np.uint8), "mask": np.zeros((10, 24, 20), np.uint16)}
    source = ndf.ZarrSource(write_zarr(tmp_path / "v.zarr", arrays, (0, 0, 0), chunks=(5, 8, 10)))
    plan = ndf.Pipeline(source, lambda data: None, tiler=ndf.RegularTiler((5, 8, 10), halo=1),
                        executor="serial", load_entrypoints=False).plan()
    # each block touches its chunk and those beside it: 2 along z and x, 2 or 3 along y
    assert plan.request_kind == "chunk reads"
    assert plan.read_requests == 2 * (2 * 2 + 3) * 2 * 2 * 2 * 2
    assert plan.decoded_bytes == plan.read_requests // 2 * 400 * 3


def test_memory_per_worker_counts_the_read_its_outputs_and_as_much_again(tmp_path):
    source = ndf.InMemorySource({"em": np.zeros((8, 24, 24), np.uint16)})
    sink = ndf.InMemorySink.zeros({"labels": "uint32", "mask": "uint8"}, source.bounds)

    class Labels(ndf.BlockProcessor):
        outputs = {"labels": "uint32"}

        def process(self, data, block):
            return {"labels": np.zeros(block.shape, np.uint32)}

    for processor, output_itemsize in ((Labels(), 4), (ndf.FunctionProcessor(dict), 5)):
        plan = ndf.Pipeline(source, processor, tiler=ndf.RegularTiler((4, 8, 8), halo=(0, 2, 2)),
                            sink=sink, executor="serial", load_entrypoints=False).plan()
        read = 4 * 12 * 12 * 2  # the middle block's read box: the halo on both sides of y, x
        assert plan.largest_block_bytes == read
        assert plan.output_bytes == 4 * 8 * 8 * output_itemsize
        assert plan.memory_per_worker == 2 * read + plan.output_bytes
        text = " ".join(str(plan).split())
        shown = ndf.result._bytes
        assert (f"memory: about {shown(plan.memory_per_worker)} per worker: the largest read "
                f"{shown(read)}, its outputs {shown(plan.output_bytes)}, and {shown(read)} more "
                f"for the processor's own arrays") in text


def test_warnings_for_tiny_blocks_misaligned_writes_and_a_large_halo():
    for executor, tiny in ((ndf.ProcessExecutor(2), True), (ndf.DaskExecutor(workers=2), True),
                           (ndf.ThreadExecutor(2), False)):
        plan = ndf.Pipeline(Unread(), lambda data: None, tiler=ndf.RegularTiler((16, 64, 64)),
                            executor=executor, load_entrypoints=False).plan()
        assert any(w.startswith(f"blocks read 64.0 KiB on average: with the {executor.name!r} "
                                f"executor the fixed cost of each block") for w in plan.warnings
                   ) == tiny, plan.warnings
    # one worker may write blocks that share chunks (several may not): slower, but allowed
    serial = ndf.Pipeline(Unread(), lambda data: None, tiler=ndf.RegularTiler((16, 512, 500)),
                          sink=Unwritten(), executor="serial", load_entrypoints=False).plan()
    [warning] = serial.warnings
    assert warning.startswith("writes are not aligned to the sink's chunks: block 0_0_0 ends "
                              "at x=500, inside a chunk of the sink (16, 512, 512)")
    halo = pipeline(ndf.RegularTiler((16, 512, 512), halo=(8, 0, 0))).plan()
    [warning] = halo.warnings
    assert warning.startswith("halos add 100% to the bytes read: a halo of (8, 0, 0) around "
                              "blocks of (16, 512, 512) (z, y, x)")
    assert "warnings:    1\n  - halos add 100%" in str(halo)


def test_blocks_needing_more_memory_than_the_machine_has_are_a_warning():
    plan = pipeline(ndf.RegularTiler((10000, 100000, 100000))).plan()
    [warning] = plan.warnings
    assert warning.startswith("2 worker(s) need about 545.7 TiB together (272.8 TiB each")
    assert "over this machine's" in warning and "choose smaller blocks or fewer workers" in warning
    assert plan.memory_per_worker == 3 * HUGE.size  # read, as much again, output (uint8)


def test_boss_cuboids_decoded_are_counted_on_the_grid_through_zero(boss):
    # blocks z 8:24 and 24:40 each touch two cuboids of the grid through 0 (z 0:16, 16:32,
    # 32:48), though one each on a grid through the bounds' start
    source = boss_source(boss, channels=("em",))
    assert source.chunk_origin == (0, 0, 0)
    plan = ndf.Pipeline(source, lambda data: None, bounds=ndf.Box((8, 0, 0), (40, 96, 80)),
                        tiler=ndf.RegularTiler((16, 96, 80), origin=(8, 0, 0)),
                        executor="serial", load_entrypoints=False).plan()
    assert plan.decoded_bytes == 4 * 16 * 512 * 512
