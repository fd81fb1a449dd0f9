"""Boxes, halos and blocks: the arithmetic everything else stands on."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given

import ndframework as ndf
from ndframework.testing.strategies import boxes


def test_box_shape_size_and_slices():
    box = ndf.Box((1, 2, 3), (4, 6, 8))
    assert box.shape == (3, 4, 5) and box.size == 60 and not box.empty
    assert box.slices() == (slice(1, 4), slice(2, 6), slice(3, 8))
    assert str(box) == "[1:4, 2:6, 3:8]"


def test_box_normalises_numpy_integers_and_lists():
    box = ndf.Box([np.int64(1), 2, 3], np.array([2, 3, 4]))
    assert box.start == (1, 2, 3) and type(box.start[0]) is int


def test_box_refuses_stop_below_start():
    with pytest.raises(ndf.GeometryError, match=r"stop must not be below start.*\(1, 0, 0\)"):
        ndf.Box((1, 0, 0), (0, 5, 5))


def _mask(box, frame):
    mask = np.zeros(frame.shape, bool)
    mask[box.intersect(frame).relative_to(frame).slices()] = True
    return mask


@given(a=boxes(max_start=8, max_extent=8), b=boxes(max_start=8, max_extent=8))
def test_intersection_equals_the_overlap_of_numpy_masks(a, b):
    frame = ndf.Box((-10, -10, -10), (18, 18, 18))
    overlap = a.intersect(b)
    np.testing.assert_array_equal(_mask(overlap, frame), _mask(a, frame) & _mask(b, frame))
    assert overlap.empty or (a.contains(overlap) and b.contains(overlap))


@given(box=boxes())
def test_grow_then_shift_round_trip(box):
    assert box.grow((1, 2, 3), (0, 1, 0)).grow((-1, -2, -3), (0, -1, 0)) == box
    assert box.shift((5, -5, 0)).shift((-5, 5, 0)) == box


def test_halo_forms():
    assert ndf.Halo.of(1) == ndf.Halo((1, 1, 1), (1, 1, 1))
    assert ndf.Halo.of((0, 1, 2)).after == (0, 1, 2)
    assert ndf.Halo.of(((1, 0, 0), (0, 0, 2))).union(ndf.Halo.of(1)) == ndf.Halo(
        (1, 1, 1), (1, 1, 2)
    )
    assert ndf.Halo.of(0).is_zero


def test_block_key_crop_and_pickle():
    block = ndf.Block((0, 1, 2), ndf.Box((0, 10, 20), (5, 20, 30)),
                      ndf.Box((0, 8, 18), (5, 22, 32)))
    assert block.key == "0_10_20"
    assert block.owned_slices() == (slice(0, 5), slice(2, 12), slice(2, 12))
    assert pickle.loads(pickle.dumps(block)) == block


def test_block_read_box_must_contain_the_owned_box():
    with pytest.raises(ndf.GeometryError, match=r"read_box \[0:5, 12:20, 20:30\] must contain"):
        ndf.Block((0, 0, 0), ndf.Box((0, 10, 20), (5, 20, 30)),
                  ndf.Box((0, 12, 20), (5, 20, 30)))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((-1, 0, 0), r"halo must be non-negative in every axis, got \(-1, 0, 0\)"),
        ((1, 1), r"halo must have 3 values \(z, y, x\), got 2"),
        (((1, 1, 1), (0, -2, 0)), r"halo \(after\) must be non-negative"),
        (1.5, r"halo must be three integers|halo must be integers"),
    ],
)
def test_bad_halos_are_refused_when_built(value, message):
    with pytest.raises(ndf.GeometryError, match=message):
        ndf.Halo.of(value)


def test_halo_constructor_validates_too():
    with pytest.raises(ndf.GeometryError, match=r"halo \(before\) must be non-negative"):
        ndf.Halo((-1, 0, 0))
