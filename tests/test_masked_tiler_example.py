"""The masked tiler of ``examples/masked_tiler.py``: it passes the tiler conformance kit as a
tiler that skips blocks, and a run over it processes exactly the blocks its mask marks."""

from __future__ import annotations

import doctest
import sys
from pathlib import Path

import numpy as np
import pytest

import ndframework as ndf
from ndframework.testing.tilers import TilerConformance

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import masked_tiler  # noqa: E402
from masked_tiler import MaskedTiler  # noqa: E402

SCALE, ORIGIN = (2, 3, 2), (-24, -25, -22)
MASK = np.random.default_rng(7).random((30, 20, 30)) < 0.04  # over -24..36, -25..35, -22..38


def full_resolution(mask, scale, origin, bounds):
    """The oracle: each voxel of ``bounds`` takes the value of the mask voxel it falls in,
    False beyond the mask."""
    bordered = np.pad(mask, 1)  # a False border stands for everything beyond the mask
    cells = [np.clip((np.arange(low, high) - start) // step + 1, 0, size + 1)
             for low, high, start, step, size in zip(bounds.start, bounds.stop, origin, scale,
                                                     mask.shape)]
    return bordered[np.ix_(*cells)]


class TestMaskedTilerConforms(TilerConformance):
    def make_tiler(self, halo):
        return MaskedTiler(ndf.RegularTiler((2, 3, 4), halo=halo, origin=(1, 0, -1)), MASK,
                           SCALE, ORIGIN)

    def required(self, tiler, bounds):
        return full_resolution(MASK, SCALE, ORIGIN, bounds)


def test_the_kit_sees_voxels_to_keep():
    """The mask marks voxels in most bounds the kit draws, so skipping is checked."""
    bounds = ndf.Box((-4, -4, -4), (8, 8, 8))
    required = full_resolution(MASK, SCALE, ORIGIN, bounds)
    assert 0 < required.sum() < required.size


def test_a_run_processes_exactly_the_blocks_the_mask_marks(tmp_path):
    volume = masked_tiler.sparse_volume((8, 64, 64), neurites=2, seed=1)
    scale = (2, 8, 8)
    coarse = ndf.InMemorySource({"neurites": masked_tiler.downsample(volume["neurites"], scale)},
                                origin=(1, 2, 3))
    origin = (2, 16, 24)  # the coarse source's origin at full resolution
    source = ndf.InMemorySource({"em": volume["em"]}, origin=origin)
    regular = ndf.RegularTiler((4, 16, 8), origin=origin)
    tiler = MaskedTiler.from_source(regular, coarse, "neurites", scale)
    assert tiler.origin == origin

    mask = full_resolution(coarse.read(coarse.bounds)["neurites"] > 0, scale, origin,
                           source.bounds)
    blocks = {block.key: block.box.relative_to(source.bounds).slices()
              for block in regular.blocks(source.bounds)}
    marked = [key for key, local in blocks.items() if mask[local].any()]
    assert 0 < len(marked) < regular.count(source.bounds) // 2

    sink = ndf.InMemorySink.zeros({"foreground": "uint8"}, source.bounds)
    pipeline = ndf.Pipeline(source, masked_tiler.Foreground(100), tiler=tiler, sink=sink,
                            executor="threads", journal=tmp_path / "run.db")
    assert pipeline.plan().run.block_count == len(marked)
    result = pipeline.run()
    assert result.ok and sorted(result.done) == sorted(marked)
    bright = volume["em"] > 100
    expected = np.zeros_like(bright)
    for key in marked:
        expected[blocks[key]] = bright[blocks[key]]
    np.testing.assert_array_equal(sink.arrays["foreground"], expected)
    assert np.array_equal(expected, bright)  # nothing bright where the mask marks nothing
    assert result.reduced == int(bright.sum()) > 0


def test_a_mask_must_be_three_dimensional_and_its_scale_positive():
    with pytest.raises(ValueError, match=r"ZYX array, got one of shape \(4, 4\)"):
        MaskedTiler(ndf.RegularTiler(4), np.ones((4, 4)))
    with pytest.raises(ValueError, match=r"positive integers .* got \(1, 0, 1\)"):
        MaskedTiler(ndf.RegularTiler(4), np.ones((4, 4, 4)), scale=(1, 0, 1))


def test_the_script_runs_and_agrees(capsys):
    assert masked_tiler.main(["--executor", "serial"]) == 0
    out = capsys.readouterr().out
    assert "skipped as empty" in out and "the same voxels: yes" in out


def test_the_examples_docstrings_run():
    outcome = doctest.testmod(masked_tiler)
    assert outcome.failed == 0 and outcome.attempted >= 4
