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


def pipeline(tiler, source=None, **options):
    return ndf.Pipeline(source or Unread(), lambda data: None, tiler=tiler, sink=Unwritten(),
                        executor=ndf.ThreadExecutor(2), load_entrypoints=False, **options)


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
