"""Tilers: exact coverage, halos and clipping, order, count, invalid shapes, and the
per-axis measures of a regular grid against walking its blocks."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import ndframework as ndf
from ndframework import tiling
from ndframework.testing.strategies import block_shapes, boxes, halos, triples
from ndframework.testing.tilers import TilerConformance
from ndframework.testing.tilers import _chunks_touched as chunks_touched
from ndframework.testing.tilers import _first_misaligned as first_misaligned


def coverage(blocks, bounds):
    """How many blocks own each voxel of ``bounds`` grown by one voxel all round."""
    frame = bounds.grow((1, 1, 1))
    counts = np.zeros(frame.shape, np.int16)
    for block in blocks:
        counts[block.box.relative_to(frame).slices()] += 1
    return counts, bounds.relative_to(frame).slices()


def assert_exact_cover(blocks, bounds):
    counts, inside = coverage(blocks, bounds)
    assert (counts[inside] == 1).all(), "every voxel inside is owned exactly once"
    counts[inside] = 0
    assert not counts.any(), "no voxel outside the bounds is owned"


@settings(max_examples=300, deadline=None)
@given(bounds=boxes(), block_shape=block_shapes(), origin=triples(-9, 9))
@example(bounds=ndf.Box((0, 0, 0), (0, 5, 5)), block_shape=(1, 1, 1), origin=(0, 0, 0))
@example(bounds=ndf.Box((3, 3, 3), (4, 4, 4)), block_shape=(7, 7, 7), origin=(0, 0, 0))
def test_regular_blocks_cover_the_bounds_exactly(bounds, block_shape, origin):
    tiler = ndf.RegularTiler(block_shape, origin=origin)
    blocks = list(tiler.blocks(bounds))
    assert_exact_cover(blocks, bounds)
    assert tiler.count(bounds) == len(blocks)
    for block in blocks:
        assert not block.box.empty
        assert all(s <= b for s, b in zip(block.shape, block_shape))


@settings(max_examples=300, deadline=None)
@given(bounds=boxes(), block_shape=block_shapes(), origin=triples(-9, 9))
def test_regular_block_edges_lie_on_the_grid_or_the_bounds(bounds, block_shape, origin):
    for block in ndf.RegularTiler(block_shape, origin=origin).blocks(bounds):
        for axis in range(3):
            for edge, outer in ((block.box.start[axis], bounds.start[axis]),
                                (block.box.stop[axis], bounds.stop[axis])):
                assert edge == outer or (edge - origin[axis]) % block_shape[axis] == 0


@settings(max_examples=300, deadline=None)
@given(bounds=boxes(min_extent=1), block_shape=block_shapes(), halo=halos(),
       margin=st.tuples(triples(0, 4), triples(0, 4)))
def test_read_boxes_are_the_owned_box_grown_by_the_halo_and_clipped(
    bounds, block_shape, halo, margin
):
    within = bounds.grow(*margin)
    for block in ndf.RegularTiler(block_shape, halo=halo).blocks(bounds, within=within):
        expected = block.box.grow(halo.before, halo.after).intersect(within)
        assert block.read_box == expected
        assert block.read_box.contains(block.box)
        assert within.contains(block.read_box)
        # the owned part of an array read over read_box is the owned box itself
        frame = np.arange(within.size).reshape(within.shape)
        read = frame[block.read_box.relative_to(within).slices()]
        np.testing.assert_array_equal(block.crop(read),
                                      frame[block.box.relative_to(within).slices()])


@settings(max_examples=200, deadline=None)
@given(bounds=boxes(), block_shape=block_shapes(), halo=halos())
def test_blocks_come_in_a_deterministic_c_order_with_grid_indices(bounds, block_shape, halo):
    tiler = ndf.RegularTiler(block_shape, halo=halo)
    first = list(tiler.blocks(bounds))
    assert first == list(tiler.blocks(bounds))
    assert [b.box.start for b in first] == sorted(b.box.start for b in first)
    assert [b.index for b in first] == sorted(b.index for b in first)
    assert len({b.key for b in first}) == len(first)
    for block in first:
        assert block.key == "_".join(map(str, block.box.start))


cuboids = st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6))


@settings(max_examples=200, deadline=None)
@given(bounds=boxes(max_start=40, max_extent=16), cuboid=cuboids,
       multiple=triples(1, 3), origin=triples(-5, 5), halo=halos(4))
@example(bounds=ndf.Box((3, 0, 0), (40, 600, 1030)), cuboid=(16, 512, 512),
         multiple=(1, 1, 1), origin=(0, 0, 0), halo=ndf.Halo.of(0))
def test_cuboid_tiler_blocks_equal_a_regular_grid_on_the_cuboid_grid(
    bounds, cuboid, multiple, origin, halo
):
    block_shape = tuple(c * m for c, m in zip(cuboid, multiple))
    tiler = ndf.CuboidTiler(block_shape, halo=halo, origin=origin, cuboid=cuboid)
    blocks = list(tiler.blocks(bounds))
    assert blocks == list(ndf.RegularTiler(block_shape, halo=halo, origin=origin).blocks(bounds))
    assert [block.box for block in blocks] == intern_boxes(bounds, block_shape, origin)
    assert tiler.count(bounds) == len(blocks)
    assert_exact_cover(blocks, bounds)


def intern_boxes(bounds, block_shape, origin):
    """The oracle: intern's ``block_compute`` boxes, in ZYX order. Its grid lines start at
    its ``origin`` argument, so it is anchored at the grid line at or below the start."""
    from intern.utils.parallel import block_compute

    if bounds.empty:
        return []
    anchor = [o + (s - o) // b * b for s, o, b in zip(bounds.start, origin, block_shape)]
    (z0, y0, x0), (z1, y1, x1) = bounds.start, bounds.stop
    ranges = block_compute(x0, x1, y0, y1, z0, z1, origin=anchor[::-1],
                           block_size=block_shape[::-1])
    return sorted(ndf.Box((z[0], y[0], x[0]), (z[1], y[1], x[1])) for x, y, z in ranges)


def test_cuboid_blocks_are_generated_one_at_a_time(monkeypatch):
    made = []
    make_block = tiling._block
    monkeypatch.setattr(tiling, "_block", lambda *a: made.append(a) or make_block(*a))
    bounds = ndf.Box((0, 0, 0), (10000, 100000, 100000))  # 24 million BOSS cuboids
    tiler = ndf.CuboidTiler(ndf.BOSS_CUBOID, halo=(0, 8, 8))
    first = next(iter(tiler.blocks(bounds)))
    assert first.box == ndf.Box((0, 0, 0), (16, 512, 512)) and len(made) == 1
    assert tiler.count(bounds) == 625 * 196 * 196 and len(made) == 1


def test_cuboid_tiler_default_is_boss_aligned():
    tiler = ndf.CuboidTiler()
    bounds = ndf.Box((5, 100, 1000), (40, 600, 2100))
    blocks = list(tiler.blocks(bounds))
    assert tiler.block_shape == (16, 1024, 1024)
    assert_exact_cover(blocks, bounds)
    inner_starts = {b.box.start for b in blocks} - {bounds.start}
    for start in inner_starts:
        for axis, value in enumerate(start):
            assert value == bounds.start[axis] or value % ndf.BOSS_CUBOID[axis] == 0


def test_halo_larger_than_the_block_reads_neighbours():
    tiler = ndf.RegularTiler((1, 1, 1), halo=((2, 0, 0), (0, 0, 3)))
    bounds = ndf.Box((0, 0, 0), (4, 1, 5))
    block = next(b for b in tiler.blocks(bounds) if b.key == "2_0_1")
    assert block.read_box == ndf.Box((0, 0, 1), (3, 1, 5))


def test_empty_bounds_give_no_blocks():
    for tiler in (ndf.RegularTiler((2, 2, 2)), ndf.CuboidTiler()):
        bounds = ndf.Box((0, 0, 0), (0, 10, 10))
        assert list(tiler.blocks(bounds)) == [] and tiler.count(bounds) == 0


def test_a_one_voxel_volume_is_one_block():
    bounds = ndf.Box((7, 7, 7), (8, 8, 8))
    (block,) = ndf.CuboidTiler(halo=1).blocks(bounds)
    assert block.box == block.read_box == bounds and block.index == (0, 0, 0)


def test_within_must_contain_the_bounds():
    with pytest.raises(ndf.GeometryError, match=r"must contain the bounds \[0:4, 0:4, 0:4\]"):
        list(ndf.RegularTiler(2).blocks(ndf.Box((0, 0, 0), (4, 4, 4)),
                                        within=ndf.Box((1, 0, 0), (4, 4, 4))))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"block_shape": (0, 512, 512)}, r"block_shape must be positive in every axis, got \(0, 512, 512\)"),
        ({"block_shape": (-1, 2, 2)}, r"block_shape must be positive .* got \(-1, 2, 2\)"),
        ({"block_shape": (1.5, 2, 2)}, r"block_shape must be integers, got \(1.5, 2, 2\)"),
        ({"block_shape": (2, 2)}, r"block_shape must have 3 values \(z, y, x\), got 2: \(2, 2\)"),
        ({"block_shape": None}, r"block_shape must be three integers .* got None"),
        ({"block_shape": (True, 2, 2)}, r"block_shape must be integers"),
        ({"block_shape": 2, "halo": (-1, 0, 0)}, r"halo must be non-negative .* got \(-1, 0, 0\)"),
        ({"block_shape": 2, "halo": (0.5, 0, 0)}, r"halo must be integers, got \(0.5, 0, 0\)"),
        ({"block_shape": 2, "halo": (1, 1)}, r"halo must have 3 values .* got 2: \(1, 1\)"),
        ({"block_shape": 2, "halo": ((1, 1, 1), (1, -1, 1))}, r"halo \(after\) must be non-negative"),
        ({"block_shape": 2, "origin": (0, 0)}, r"origin must have 3 values"),
    ],
)
def test_regular_tiler_invalid_arguments_name_the_value(kwargs, message):
    with pytest.raises(ndf.GeometryError, match=message):
        ndf.RegularTiler(**kwargs)


def test_cuboid_tiler_block_shape_must_be_a_multiple_of_the_cuboid():
    with pytest.raises(ndf.GeometryError, match=r"multiple of the cuboid \(16, 512, 512\).*\(16, 500, 512\)"):
        ndf.CuboidTiler((16, 500, 512))
    with pytest.raises(ndf.GeometryError, match=r"block_shape must be positive"):
        ndf.CuboidTiler((0, 512, 512))


def test_geometry_errors_are_value_errors():
    with pytest.raises(ValueError):
        ndf.RegularTiler(0)


class UsersTiler(ndf.Tiler):
    """A user's own tiler: a regular tiler's blocks, with no grid to measure them by."""

    def __init__(self, tiler):
        self.tiler = tiler

    @property
    def halo(self):
        return self.tiler.halo

    def blocks(self, bounds, *, within=None):
        return self.tiler.blocks(bounds, within=within)

    def count(self, bounds):
        return self.tiler.count(bounds)

    def with_halo(self, halo):
        return UsersTiler(self.tiler.with_halo(halo))


class Reversed(ndf.RegularTiler):
    """A subclass that changes ``blocks`` (their order) but not ``grid``."""

    def blocks(self, bounds, *, within=None):
        return reversed(list(super().blocks(bounds, within=within)))


@st.composite
def chunk_grids(draw, bounds):
    """Chunk grids over ``bounds`` grown by a little, through a random origin."""
    grown = bounds.grow(draw(triples(0, 3)), draw(triples(0, 3)))
    return tiling.ChunkGrid(draw(block_shapes(6)), draw(triples(-9, 9)), grown)


@settings(max_examples=300, deadline=None)
@given(bounds=boxes(), block_shape=block_shapes(), halo=halos(), origin=triples(-9, 9),
       margin=st.tuples(triples(0, 12), triples(0, 12)), data=st.data())
@example(bounds=ndf.Box((0, 0, 0), (4, 4, 8)), block_shape=(2, 4, 4),
         halo=ndf.Halo.of(1), origin=(0, 0, 0), margin=((0, 0, 0), (0, 0, 0)), data=None)
def test_measures_per_axis_equal_the_sums_over_the_blocks(
    bounds, block_shape, halo, origin, margin, data
):
    """The margin stands for the halo modes that pad: read boxes clipped to the source
    grown by the halo (whole) or by less (clipped on some sides)."""
    within = bounds.grow(*margin)
    chunks = None if data is None else data.draw(chunk_grids(within))
    for tiler in (ndf.RegularTiler(block_shape, halo=halo, origin=origin),
                  ndf.CuboidTiler(block_shape, halo=halo, origin=origin, cuboid=(1, 1, 1))):
        blocks = list(tiler.blocks(bounds, within=within))
        expected = tiling.TilingMeasures(
            block_count=len(blocks),
            read_voxels=sum(block.read_box.size for block in blocks),
            largest_read_voxels=max((block.read_box.size for block in blocks), default=0),
            chunks_read=None if chunks is None else sum(
                chunks_touched(block.read_box, chunks) for block in blocks),
        )
        if not blocks:  # an empty product: a largest block of 0 voxels, and none read
            assert tiling.measure(tiler, bounds, within=within, chunks=chunks).block_count == 0
            continue
        assert tiling.measure(tiler, bounds, within=within, chunks=chunks) == expected
        walked = tiling.measure(UsersTiler(tiler), bounds, within=within, chunks=chunks)
        assert walked == expected


def test_a_subclass_that_changes_blocks_is_measured_by_walking(monkeypatch):
    bounds = ndf.Box((0, 0, 0), (4, 4, 8))
    tiler = Reversed((2, 4, 4), halo=1)
    assert tiling._regular_grid(tiler, bounds) is None
    assert tiling._regular_grid(ndf.RegularTiler((2, 4, 4)), bounds) is not None
    assert tiling.measure(tiler, bounds) == tiling.measure(ndf.RegularTiler((2, 4, 4), 1), bounds)


@settings(max_examples=300, deadline=None)
@given(bounds=boxes(), block_shape=block_shapes(), origin=triples(-9, 9), halo=halos(3),
       data=st.data())
@example(bounds=ndf.Box((0, 0, 0), (8, 8, 8)), block_shape=(4, 4, 6), origin=(0, 0, 0),
         halo=ndf.Halo.of(0), data=None)
def test_the_first_misaligned_block_per_axis_equals_the_walked_one(
    bounds, block_shape, origin, halo, data
):
    if data is None:
        chunks = tiling.ChunkGrid((4, 4, 4), (0, 0, 0), bounds)
    else:  # often aligned: chunk shapes that divide the block shape, through the origin
        chunks = data.draw(chunk_grids(bounds))
        if data.draw(st.booleans()):
            divisors = [data.draw(st.sampled_from([d for d in range(1, b + 1) if b % d == 0]))
                        for b in block_shape]
            chunks = attrs.evolve(chunks, shape=tuple(divisors), origin=origin)
    tiler = ndf.RegularTiler(block_shape, halo=halo, origin=origin)
    expected = first_misaligned(list(tiler.blocks(bounds)), bounds, chunks)
    assert tiling.misaligned_edge(tiler, bounds, chunks) == expected
    assert tiling.misaligned_edge(UsersTiler(tiler), bounds, chunks) == expected


def test_chunks_must_cover_the_bounds_to_check_alignment():
    chunks = tiling.ChunkGrid((4, 4, 4), (0, 0, 0), ndf.Box((0, 0, 0), (4, 4, 4)))
    with pytest.raises(ndf.GeometryError, match=r"must contain the bounds \[0:8, 0:4, 0:4\]"):
        tiling.misaligned_edge(ndf.RegularTiler(4), ndf.Box((0, 0, 0), (8, 4, 4)), chunks)


@settings(max_examples=300, deadline=None)
@given(start=st.integers(-20, 20), extent=st.integers(0, 30), step=st.integers(1, 7),
       origin=st.integers(-9, 9))
def test_a_grid_axis_computes_what_it_iterates(start, extent, step, origin):
    axis = tiling.GridAxis(start, start + extent, step, origin)
    intervals = list(axis)
    assert len(axis) == len(intervals)
    assert [axis.interval(i) for i in range(len(axis))] == intervals
    assert [low for low, _ in intervals[1:]] == [high for _, high in intervals[:-1]]
    with pytest.raises(IndexError):
        axis.interval(len(axis))


# -- the conformance kit, on the framework's tilers ------------------------------------------


class TestRegularTilerConforms(TilerConformance):
    def make_tiler(self, halo):
        return ndf.RegularTiler((2, 3, 5), halo=halo, origin=(1, -1, 0))


class TestCuboidTilerConforms(TilerConformance):
    def make_tiler(self, halo):
        return ndf.CuboidTiler((2, 4, 3), halo=halo, origin=(0, 1, 2), cuboid=(1, 2, 3))


class TestAUsersTilerConforms(TilerConformance):
    """A plain subclass of `Tiler`, with no grid: measured and checked by walking."""

    def make_tiler(self, halo):
        return UsersTiler(ndf.RegularTiler((3, 2, 4), halo=halo))


def test_a_tiler_must_provide_its_halo_and_its_methods():
    class NoHalo(ndf.Tiler):
        def blocks(self, bounds, *, within=None):
            return iter(())

        def count(self, bounds):
            return 0

        def with_halo(self, halo):
            return self

    with pytest.raises(TypeError, match=r"Can't instantiate tiler .*NoHalo without its halo: "
                                        r"set self.halo in __init__"):
        NoHalo()
    with pytest.raises(TypeError, match=r"abstract methods? .*blocks"):
        type("Bare", (ndf.Tiler,), {"halo": ndf.Halo()})()
