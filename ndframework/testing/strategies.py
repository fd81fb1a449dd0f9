"""Hypothesis strategies for boxes, block shapes, halos and volumes.

Small integers, so that examples shrink to readable counterexamples.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from hypothesis import strategies as st

from ..geometry import Box, Halo

__all__ = ["triples", "boxes", "block_shapes", "halos", "volumes", "DTYPES"]

DTYPES = ("uint8", "uint16", "uint64", "float32")
"""Dtypes the project's volumes come in."""


def triples(min_value: int = 0, max_value: int = 8) -> st.SearchStrategy[tuple[int, int, int]]:
    """(z, y, x) triples of integers in ``[min_value, max_value]``."""
    axis = st.integers(min_value, max_value)
    return st.tuples(axis, axis, axis)


@st.composite
def boxes(draw, max_start: int = 20, max_extent: int = 12, min_extent: int = 0) -> Box:  # type: ignore[no-untyped-def]
    """Boxes anywhere near the origin (starts may be negative), of extents in
    ``[min_extent, max_extent]``."""
    start = draw(triples(-max_start, max_start))
    shape = draw(triples(min_extent, max_extent))
    return Box.from_shape(shape, start)


def block_shapes(max_value: int = 7) -> st.SearchStrategy[tuple[int, int, int]]:
    """Valid block shapes: positive in every axis."""
    return triples(1, max_value)


def halos(max_value: int = 9) -> st.SearchStrategy[Halo]:
    """Halos, symmetric or not, up to ``max_value`` (larger than small blocks)."""
    symmetric = triples(0, max_value).map(Halo.of)
    asymmetric = st.tuples(triples(0, max_value), triples(0, max_value)).map(Halo.of)
    return st.one_of(symmetric, asymmetric)


@st.composite
def volumes(  # type: ignore[no-untyped-def]
    draw,
    max_extent: int = 10,
    channels: Sequence[str] = ("a", "b"),
    dtypes: Sequence[str] = DTYPES,
) -> dict[str, np.ndarray]:
    """``{channel: ZYX array}`` of one shape (at least one voxel), random values."""
    shape = draw(triples(1, max_extent))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    arrays = {}
    for name in channels:
        dtype = np.dtype(draw(st.sampled_from(dtypes)))
        if dtype.kind == "f":
            arrays[name] = rng.random(shape, dtype=dtype)
        else:
            arrays[name] = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    return arrays
