"""A tiler of a third party's, written as a user would, with ndframework's public names only:
it passes the tiler conformance kit and runs a whole pipeline (a halo from the processor, a
chunked sink, a plan, a journal and a resume). And the kit fails tilers that break the
contract, with a message that says how."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

import ndframework as ndf
from ndframework.testing.tilers import TilerConformance


class Bisecting(ndf.Tiler):
    """Halves a region along its longest axis (the first of equals, in z, y, x order)
    until every part holds at most ``max_voxels``: blocks of a few shapes, on no grid."""

    def __init__(self, max_voxels, halo=0):
        self.max_voxels = max_voxels
        self.halo = ndf.Halo.of(halo)

    def with_halo(self, halo):
        return Bisecting(self.max_voxels, halo)

    def count(self, bounds):
        return sum(1 for _ in self.boxes(bounds))

    def blocks(self, bounds, *, within=None):
        within = bounds if within is None else within
        for number, box in enumerate(self.boxes(bounds)):
            read_box = box.grow(self.halo.before, self.halo.after).intersect(within)
            yield ndf.Block((number, 0, 0), box, read_box)

    def boxes(self, box):
        if box.empty:
            return
        if box.size <= self.max_voxels:
            yield box
            return
        axis = box.shape.index(max(box.shape))
        middle = box.start[axis] + box.shape[axis] // 2
        low_stop, high_start = list(box.stop), list(box.start)
        low_stop[axis] = high_start[axis] = middle
        yield from self.boxes(ndf.Box(box.start, low_stop))
        yield from self.boxes(ndf.Box(high_start, box.stop))


class TestBisectingConforms(TilerConformance):
    def make_tiler(self, halo):
        return Bisecting(40, halo)


# -- a whole run over it ----------------------------------------------------------------------


class MaxFilter(ndf.BlockProcessor):
    """The largest value within one voxel, mirrored at the volume's edge; fails a block
    until a file of its key is in ``marks``. A block's value is the box it read."""

    halo = 1
    halo_mode = "mirror"
    channels = ("em",)
    outputs = {"max": "uint8"}

    def __init__(self, marks, failing=()):
        self.marks, self.failing = marks, tuple(failing)

    def process(self, data, block):
        if block.key in self.failing and not (self.marks / block.key).exists():
            raise RuntimeError(f"block {block.key} fails until marked")
        largest = ndi.maximum_filter(data["em"], size=3, mode="mirror")
        return ndf.BlockOutput({"max": block.crop(largest)}, value=block.read_box)


@pytest.fixture
def volume():
    return np.random.default_rng(3).integers(0, 250, (8, 16, 16), dtype=np.uint8)


def test_a_run_with_a_halo_a_sink_a_plan_and_a_resume(volume, tmp_path):
    source = ndf.InMemorySource({"em": volume}, origin=(4, 8, 12))
    tiler = Bisecting(256, halo=(0, 2, 0))
    sink = ndf.ZarrSink.create(tmp_path / "out.zarr", {"max": "uint8"}, source.bounds,
                               chunk_shape=(4, 4, 4))
    marks = tmp_path / "marks"
    marks.mkdir()
    boxes = list(tiler.boxes(source.bounds))  # (4 or 8, 8, 8): edges on the chunk grid
    failing = [f"{z}_{y}_{x}" for z, y, x in (boxes[1].start, boxes[5].start)]

    def pipeline(tiler=tiler):
        return ndf.Pipeline(source, MaxFilter(marks, failing), tiler=tiler, sink=sink,
                            executor=ndf.ThreadExecutor(2), journal=tmp_path / "run.db")

    union = ndf.Halo.of((1, 2, 1))  # the processor's halo and the tiler's, axis by axis
    plan = pipeline().plan()
    assert plan.run.block_count == len(boxes) == 8 and plan.halo == union
    assert plan.read_bytes == sum(box.grow(union.before, union.after).size for box in boxes)

    first = pipeline().run()
    assert sorted(first.failed) == sorted(failing) and len(first.done) == 6
    for key in failing:
        (marks / key).touch()
    second = pipeline().run()
    assert second.ok and sorted(second.done) == sorted(failing)
    assert sorted(second.skipped) == sorted(first.done)
    assert second.run.run_id == first.run.run_id

    read = dict(second.values)  # the halo padded by mirroring: read boxes are not clipped
    assert read == {f"{z}_{y}_{x}": box.grow(union.before, union.after)
                    for box in boxes for z, y, x in [box.start]}
    written = ndf.ZarrSource(tmp_path / "out.zarr").read(source.bounds)["max"]
    np.testing.assert_array_equal(written, ndi.maximum_filter(volume, size=3, mode="mirror"))

    # another tiling of the same class: the journal tells them apart, and refuses to resume
    with pytest.raises(ndf.JournalMismatchError, match=r"tiler: .*Bisecting.* 8 blocks"):
        pipeline(Bisecting(128, halo=(0, 2, 0))).run()


def test_a_tiling_whose_parallel_writes_would_share_a_chunk_is_refused(volume, tmp_path):
    source = ndf.InMemorySource({"em": volume})
    sink = ndf.ZarrSink.create(tmp_path / "out.zarr", {"max": "uint8"}, source.bounds,
                               chunk_shape=(4, 4, 4))
    tiler = Bisecting(32)  # halves z down to 2 voxels: inside the chunks of 4
    with pytest.raises(ndf.ConfigError, match=r"block 0_0_0 ends at z=2, inside a chunk"):
        ndf.Pipeline(source, MaxFilter(tmp_path), tiler=tiler, sink=sink,
                     executor=ndf.ThreadExecutor(2)).run()


# -- the kit fails what breaks the contract ---------------------------------------------------


class Overlapping(Bisecting):
    def blocks(self, bounds, *, within=None):
        for block in super().blocks(bounds, within=within):
            box = ndf.Box(block.box.start, block.box.grow((0, 0, 0), (0, 0, 1))
                          .intersect(bounds).stop)
            yield ndf.Block(block.index, box, box)


class Gapped(Bisecting):
    def blocks(self, bounds, *, within=None):
        return list(super().blocks(bounds, within=within))[1:]

    def count(self, bounds):
        return max(super().count(bounds) - 1, 0)


class Miscounting(Bisecting):
    def count(self, bounds):
        return super().count(bounds) + 1


class Shuffling(Bisecting):
    """Every other walk in reverse."""

    walks = 0

    def blocks(self, bounds, *, within=None):
        self.walks += 1
        blocks = list(super().blocks(bounds, within=within))
        return reversed(blocks) if self.walks % 2 == 0 else blocks


class Unclipped(Bisecting):
    def blocks(self, bounds, *, within=None):
        for block in super().blocks(bounds, within=within):
            read_box = block.box.grow(self.halo.before, self.halo.after)
            yield ndf.Block(block.index, block.box, read_box)


class Mutating(Bisecting):
    def with_halo(self, halo):
        self.halo = ndf.Halo.of(halo)
        return self


class Repeating(Bisecting):
    def blocks(self, bounds, *, within=None):
        for block in super().blocks(bounds, within=within):
            yield ndf.Block((0, 0, 0), block.box, block.read_box)


class SetOrdered(Bisecting):
    """Blocks in the order of a set of their keys: the same in one process, another in a
    process with another hash seed."""

    def blocks(self, bounds, *, within=None):
        blocks = {block.key: block for block in super().blocks(bounds, within=within)}
        return [blocks[key] for key in set(blocks)]


class LyingGrid(ndf.RegularTiler):
    """A grid of the block shape, blocks walked in reverse: planning would be wrong."""

    def grid(self, bounds):
        return super().grid(bounds)

    def blocks(self, bounds, *, within=None):
        return reversed(list(super().blocks(bounds, within=within)))


BOUNDS = ndf.Box((-3, 0, 2), (5, 9, 12))
HALO = ndf.Halo.of(((1, 0, 2), (0, 3, 1)))


@pytest.mark.parametrize("tiler, check, message", [
    (Overlapping, "check_cover", "owned by more than one block"),
    (Gapped, "check_cover", "owned by no block"),
    (Miscounting, "check_count", r"count\(\) says 9 blocks, blocks\(\) yields 8"),
    (Shuffling, "check_order_and_keys", "a second walk gave other blocks"),
    (Repeating, "check_order_and_keys", "indices repeat"),
    (SetOrdered, "check_order_elsewhere", "a process with another hash seed walked"),
    (Unclipped, "check_read_boxes", "and clipped to"),
    (Mutating, "check_with_halo", "changed the tiler it was called on"),
    (LyingGrid, "check_planning", "differ from the grid"),
])
def test_the_kit_fails_a_tiler_that_breaks_the_contract(tiler, check, message):
    size = {LyingGrid: (2, 3, 4), SetOrdered: 12}.get(tiler, 100)  # SetOrdered: 60 blocks

    class Kit(TilerConformance):
        def make_tiler(self, halo):
            return tiler(size, halo)

    arguments = {"check_with_halo": (ndf.Halo.of(2),), "check_read_boxes": (((1, 1, 1),) * 2,)}
    with pytest.raises(AssertionError, match=message):
        getattr(Kit(), check)(HALO, BOUNDS, *arguments.get(check, ()))


class Recording(Bisecting):
    """Notes the bounds it tiles and its halo in ``seen``."""

    def __init__(self, seen, max_voxels, halo=0):
        super().__init__(max_voxels, halo)
        self.seen = seen

    def blocks(self, bounds, *, within=None):
        self.seen.append((bounds, self.halo))
        return super().blocks(bounds, within=within)


@pytest.mark.parametrize("test", [name for name in dir(TilerConformance)
                                  if name.startswith("test_") and "empty" not in name
                                  and "another_process" not in name])
def test_the_kits_tests_check_tilings_of_many_bounds_and_halos(test):
    seen = []

    class Kit(TilerConformance):
        def make_tiler(self, halo):
            return Recording(seen, 40, halo)

    getattr(Kit(), test)()
    several = {bounds for bounds, _ in seen if Bisecting(40).count(bounds) > 1}
    assert len(several) >= 5 and len({halo for _, halo in seen}) >= 5
