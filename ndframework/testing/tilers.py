"""Conformance tests that every tiler passes.

Subclass `TilerConformance` in a pytest module and implement `make_tiler`; pytest then runs
every test of the kit against your tiler::

    from ndframework.testing.tilers import TilerConformance

    class TestMyTiler(TilerConformance):
        def make_tiler(self, halo):
            return MyTiler(size=5, halo=halo)

Numpy is the oracle: the kit counts, voxel by voxel, how many blocks own each voxel of the
bounds. A tiler that leaves out blocks on purpose (those a mask marks empty) overrides
`TilerConformance.required` to say which voxels it must still own.
"""

from __future__ import annotations

import abc
import itertools
import os
import pickle
import subprocess
import sys

import cloudpickle
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..geometry import Block, Box, Halo
from ..tiling import (
    ChunkGrid, Tiler, TilingMeasures, _make_block, _regular_grid, measure, misaligned_edge,
)
from .strategies import boxes, halos, triples

__all__ = ["TilerConformance"]

_WALK = """
import pickle, sys
tiler, bounds = pickle.loads(sys.stdin.buffer.read())
blocks = [(block.key, block.box, block.read_box) for block in tiler.blocks(bounds)]
sys.stdout.buffer.write(pickle.dumps(blocks))
"""
"""Walks a pickled tiler over pickled bounds; prints the blocks, pickled."""

# Every subclass runs the same test methods on its own tiler (differing_executors): intended.
_kit_settings = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.differing_executors]
)
_margins = st.tuples(triples(0, 4), triples(0, 4))
"""How far ``within`` reaches beyond the bounds, (before, after): a halo mode that pads."""


class TilerConformance(abc.ABC):
    """The contract of `ndframework.Tiler`, checked with numpy as the oracle: the blocks
    cover the bounds exactly (or every voxel `required` names, for a tiler that skips
    blocks), come in a deterministic order with unique keys and indices, number
    ``count(bounds)``, read their box grown by the halo and clipped to ``within``, keep
    their boxes under ``with_halo``, and plan (``measure``, the sink alignment check) as
    they walk. Subclass it and implement `make_tiler`.

    Each test draws bounds (from `bounds`) and halos with hypothesis and calls a
    ``check_*`` method, which a test of your own may call for a case of its own (a bug's
    bounds, say): ``self.check_cover(Halo.of(1), Box((0, 0, 0), (9, 9, 9)))``.
    """

    @abc.abstractmethod
    def make_tiler(self, halo: Halo) -> Tiler:
        """Your tiler, reading ``halo`` around each block."""

    def bounds(self) -> st.SearchStrategy[Box]:
        """The bounds the kit tiles: boxes near the origin (starts may be negative) of up
        to 12 voxels along each axis, empty ones included. Override it for a tiler that
        needs larger bounds to make more than one block; keep them small, the kit counts
        every voxel."""
        return boxes(max_start=20, max_extent=12)

    def required(self, tiler: Tiler, bounds: Box) -> np.ndarray | None:
        """The voxels of ``bounds`` that ``tiler`` must own, a boolean array of
        ``bounds.shape``; None (the default) for all of them, an exact cover.

        A tiler that leaves out blocks on purpose returns the voxels it must keep,
        computed apart from the tiler (for a mask, the mask at full resolution). The kit
        then checks that those are owned once each and the others at most once.
        """
        return None

    # -- the tests: each draws bounds and halos, and calls a check -------------------------

    @_kit_settings
    @given(data=st.data(), halo=halos(4))
    def test_blocks_cover_the_bounds_exactly(self, data: st.DataObject, halo: Halo) -> None:
        self.check_cover(halo, data.draw(self.bounds(), label="bounds"))

    def test_empty_bounds_have_no_blocks(self) -> None:
        tiler = self.make_tiler(Halo.of(1))
        for stop in ((1, 9, 9), (9, 2, 9), (9, 9, 3)):
            bounds = Box((1, 2, 3), stop)
            assert list(tiler.blocks(bounds)) == [], f"blocks in the empty bounds {bounds}"
            assert tiler.count(bounds) == 0, f"count() of the empty bounds {bounds}"

    @_kit_settings
    @given(data=st.data(), halo=halos(4))
    def test_order_is_deterministic_and_keys_unique(
        self, data: st.DataObject, halo: Halo
    ) -> None:
        self.check_order_and_keys(halo, data.draw(self.bounds(), label="bounds"))

    @_kit_settings
    @given(data=st.data(), halo=halos(4))
    def test_count_equals_the_blocks_yielded(self, data: st.DataObject, halo: Halo) -> None:
        self.check_count(halo, data.draw(self.bounds(), label="bounds"))

    @_kit_settings
    @given(data=st.data(), halo=halos(4), margin=_margins)
    def test_read_boxes_are_the_boxes_grown_by_the_halo_and_clipped(
        self, data: st.DataObject, halo: Halo, margin: tuple
    ) -> None:
        self.check_read_boxes(halo, data.draw(self.bounds(), label="bounds"), margin)

    @_kit_settings
    @given(data=st.data(), halo=halos(4), other=halos(4))
    def test_with_halo_keeps_the_boxes_and_reads_the_new_halo(
        self, data: st.DataObject, halo: Halo, other: Halo
    ) -> None:
        self.check_with_halo(halo, data.draw(self.bounds(), label="bounds"), other)

    @_kit_settings
    @given(data=st.data(), halo=halos(4), margin=_margins, chunk_shape=triples(1, 6),
           chunk_origin=triples(-6, 6))
    def test_planning_agrees_with_the_blocks(
        self, data: st.DataObject, halo: Halo, margin: tuple, chunk_shape: tuple,
        chunk_origin: tuple,
    ) -> None:
        bounds = data.draw(self.bounds(), label="bounds")
        self.check_planning(halo, bounds, margin, chunk_shape, chunk_origin)

    def test_order_is_the_same_in_another_process(self) -> None:
        self.check_order_elsewhere(Halo.of(1), Box((-2, 1, 3), (10, 13, 15)))

    # -- the checks: call them for a case of your own -------------------------------------

    def check_order_elsewhere(self, halo: Halo, bounds: Box) -> None:
        """A process with another hash seed (the order of a set of strings changes with it)
        walks the same blocks in the same order: a resumed run, in a new process, is judged
        by the journal's record of the blocks."""
        tiler = self.make_tiler(halo)
        here = [(block.key, block.box, block.read_box) for block in tiler.blocks(bounds)]
        seed = "1" if sys.flags.hash_randomization == 0 else "0"
        environment = dict(os.environ, PYTHONHASHSEED=seed,
                           PYTHONPATH=os.pathsep.join(path or os.curdir for path in sys.path))
        walked = subprocess.run([sys.executable, "-c", _WALK], capture_output=True, timeout=120,
                                input=cloudpickle.dumps((tiler, bounds)), env=environment)
        assert walked.returncode == 0, walked.stderr.decode(errors="replace")
        there = pickle.loads(walked.stdout)
        assert there == here, (
            f"a process with another hash seed walked other blocks, or in another order: "
            f"{[key for key, _, _ in there][:8]} against {[key for key, _, _ in here][:8]}")

    def check_cover(self, halo: Halo, bounds: Box) -> None:
        """Every voxel of ``bounds`` (or every `required` one) is owned by one block, the
        others by at most one; no block owns a voxel outside or is empty."""
        tiler = self.make_tiler(halo)
        owners = np.zeros(bounds.shape, np.int32)
        for block in tiler.blocks(bounds):
            assert isinstance(block, Block), f"blocks() yielded {block!r}, not a Block"
            assert not block.box.empty, f"block {block.key} owns no voxel: {block.box}"
            assert bounds.contains(block.box), (
                f"block {block.key} owns {block.box}, outside the bounds {bounds}")
            owners[block.box.relative_to(bounds).slices()] += 1
        twice = np.argwhere(owners > 1)
        assert not len(twice), (
            f"{len(twice)} voxels owned by more than one block, the first at "
            f"{tuple(int(v) for v in twice[0] + bounds.start)}")
        required = self.required(tiler, bounds)
        if required is None:
            required = np.ones(bounds.shape, bool)
        assert required.shape == bounds.shape, (
            f"required() gave an array of {required.shape}, not the bounds' {bounds.shape}")
        missed = np.argwhere(required & (owners == 0))
        assert not len(missed), (
            f"{len(missed)} voxels of {bounds} owned by no block, the first at "
            f"{tuple(int(v) for v in missed[0] + bounds.start)}")

    def check_order_and_keys(self, halo: Halo, bounds: Box) -> None:
        """Two walks, and a walk of another tiler made alike, give the same blocks in the
        same order; no two share a key or an index."""
        tiler = self.make_tiler(halo)
        first = list(tiler.blocks(bounds))
        assert list(tiler.blocks(bounds)) == first, "a second walk gave other blocks"
        assert list(self.make_tiler(halo).blocks(bounds)) == first, (
            "another tiler made alike gave other blocks")
        keys = [block.key for block in first]
        assert len(set(keys)) == len(keys), f"keys repeat: {sorted(keys)}"
        indices = [block.index for block in first]
        assert len(set(indices)) == len(indices), f"indices repeat: {sorted(indices)}"

    def check_count(self, halo: Halo, bounds: Box) -> None:
        """``count(bounds)`` is the number of blocks yielded."""
        tiler = self.make_tiler(halo)
        count, walked = tiler.count(bounds), sum(1 for _ in tiler.blocks(bounds))
        assert count == walked, f"count() says {count} blocks, blocks() yields {walked}"

    def check_read_boxes(self, halo: Halo, bounds: Box,
                         margin: tuple = ((0, 0, 0), (0, 0, 0))) -> None:
        """Read boxes are the boxes grown by the halo and clipped to ``within``, the bounds
        grown by ``margin`` (before, after), or to the bounds without one."""
        tiler = self.make_tiler(halo)
        assert Halo.of(tiler.halo) == halo, f"make_tiler({halo}) reads {tiler.halo}"
        within = bounds.grow(*margin)
        for clip, blocks in ((within, tiler.blocks(bounds, within=within)),
                             (bounds, tiler.blocks(bounds))):
            for block in blocks:
                expected = block.box.grow(halo.before, halo.after).intersect(clip)
                assert block.read_box == expected, (
                    f"block {block.key} reads {block.read_box}, not {expected}: its box "
                    f"{block.box} grown by {halo} and clipped to {clip}")

    def check_with_halo(self, halo: Halo, bounds: Box, other: Halo) -> None:
        """``with_halo(other)`` gives a tiler of the same boxes, indices and order reading
        ``other``, and leaves the tiler it was called on as it was."""
        tiler = self.make_tiler(halo)
        before = list(tiler.blocks(bounds))
        changed = tiler.with_halo(other)
        assert isinstance(changed, Tiler), f"with_halo() gave {changed!r}, not a Tiler"
        assert Halo.of(changed.halo) == other, f"with_halo({other}) reads {changed.halo}"
        assert Halo.of(tiler.halo) == halo, "with_halo() changed the tiler it was called on"
        assert list(tiler.blocks(bounds)) == before, (
            "with_halo() changed the blocks of the tiler it was called on")
        after = list(changed.blocks(bounds))
        assert [(b.index, b.box) for b in after] == [(b.index, b.box) for b in before], (
            "with_halo() changed the boxes, their indices or their order")
        for block in after:
            expected = block.box.grow(other.before, other.after).intersect(bounds)
            assert block.read_box == expected, (
                f"after with_halo({other}), block {block.key} reads {block.read_box}, "
                f"not {expected}")

    def check_planning(self, halo: Halo, bounds: Box, margin: tuple = ((0, 0, 0), (0, 0, 0)),
                       chunk_shape: tuple = (2, 2, 2), chunk_origin: tuple = (0, 0, 0)) -> None:
        """What the pipeline computes before a run (``plan()``'s measures, the sink
        alignment check), by a regular grid's axes when the tiler gives one, equals what
        its blocks add up to; and a grid, when given, describes the blocks."""
        tiler = self.make_tiler(halo)
        within = bounds.grow(*margin)
        blocks = list(tiler.blocks(bounds, within=within))
        grid = _regular_grid(tiler, bounds)
        if grid is not None:  # its promise: C order, grid indices, intervals per axis
            expected = [
                _make_block(index, Box(*zip(*(grid[a].interval(index[a]) for a in range(3)))),
                            halo, within)
                for index in itertools.product(*(range(len(axis)) for axis in grid))
            ]
            assert blocks == expected, "the blocks differ from the grid the tiler gives"
        chunks = ChunkGrid(chunk_shape, chunk_origin, within)
        assert measure(tiler, bounds, within=within, chunks=chunks) == TilingMeasures(
            block_count=len(blocks),
            read_voxels=sum(block.read_box.size for block in blocks),
            largest_read_voxels=max((block.read_box.size for block in blocks), default=0),
            chunks_read=sum(_chunks_touched(block.read_box, chunks) for block in blocks),
        ), "plan()'s measures differ from the sums over the blocks"
        assert misaligned_edge(tiler, bounds, chunks, within=within) == _first_misaligned(
            blocks, bounds, chunks), "the sink alignment check differs from the blocks'"


def _chunks_touched(read_box: Box, chunks: ChunkGrid) -> int:
    """The distinct chunks the voxels of ``read_box`` fall in, inside the chunks' bounds."""
    inside = read_box.intersect(chunks.bounds)
    return int(np.prod([
        len(np.unique((np.arange(low, high) - origin) // step))
        for low, high, origin, step in zip(inside.start, inside.stop, chunks.origin,
                                           chunks.shape)
    ]))


def _first_misaligned(blocks: list[Block], bounds: Box, chunks: ChunkGrid):  # type: ignore[no-untyped-def]
    for block in blocks:
        for axis in range(3):
            for edge, outer in ((block.box.start[axis], bounds.start[axis]),
                                (block.box.stop[axis], bounds.stop[axis])):
                if edge != outer and (edge - chunks.origin[axis]) % chunks.shape[axis]:
                    return block, axis, edge
    return None
