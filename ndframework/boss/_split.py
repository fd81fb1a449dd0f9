"""Keeping BOSS requests under the server's size limit: `split_box`, and halving after a 413.

A cutout the BOSS would refuse as too large (over 520 MiB uncompressed), or that intern
would split itself, is asked for in several requests, cut on the storage cuboid grid where
possible so that each piece costs the server whole cuboids.
"""

from __future__ import annotations

import logging
import math

from .. import _bossapi
from ..errors import ConfigError, DataAccessError
from ..geometry import Box, Triple
from ..tiling import BOSS_CUBOID

__all__ = [
    "split_box",
    "halve",
    "smaller",
    "TooLarge",
    "MAX_CUTOUT_BYTES",
    "MAX_REQUEST_VOXELS",
]

logger = logging.getLogger("ndframework.boss")

MAX_CUTOUT_BYTES = _bossapi.MAX_CUTOUT_BYTES
"""The BOSS's limit on one cutout request, uncompressed: 520 MiB (`ndframework._bossapi`)."""
MAX_REQUEST_VOXELS = 512 * 512 * 192
"""Most voxels (times time samples) per request. intern splits larger cutouts itself, one
request after another inside one call, and its split drops the time axis; staying under its
threshold keeps one call one HTTP request, so that a retry repeats only what failed."""


def split_box(
    box: Box,
    bytes_per_voxel: int,
    max_bytes: int = MAX_CUTOUT_BYTES,
    *,
    max_voxels: int = MAX_REQUEST_VOXELS,
    cuboid: Triple = BOSS_CUBOID,
) -> list[Box]:
    """Split ``box`` into pieces that each fit one request, cuboid-aligned where possible.

    Pieces are cut along z first, then y, then x, on multiples of the cuboid (counted from
    0, as the BOSS stores them); only when one cuboid is over the limit are they cut finer.

    >>> [str(p) for p in split_box(Box((0, 0, 0), (40, 512, 512)), 1, 16 * 512 * 512)]
    ['[0:16, 0:512, 0:512]', '[16:32, 0:512, 0:512]', '[32:40, 0:512, 0:512]']
    """
    limit = min(max_bytes // bytes_per_voxel, max_voxels)
    if box.size <= limit or box.empty:
        return [box]
    if limit < 1:
        raise ConfigError(
            f"one voxel takes {bytes_per_voxel} bytes, over the request limit of {max_bytes} "
            f"bytes",
            max_bytes,
        )
    steps = list(box.shape)
    for axis in range(3):  # whole cuboids first
        if math.prod(steps) <= limit:
            break
        rest = math.prod(steps) // steps[axis]
        fits = limit // rest
        step = fits // cuboid[axis] * cuboid[axis] if fits >= cuboid[axis] else cuboid[axis]
        steps[axis] = min(steps[axis], step)
    for axis in range(3):  # then finer, when a cuboid is too large
        if math.prod(steps) <= limit:
            break
        rest = math.prod(steps) // steps[axis]
        steps[axis] = max(1, min(steps[axis], limit // rest))
    cuts = [
        _axis_cuts(box.start[axis], box.stop[axis], steps[axis], cuboid[axis])
        for axis in range(3)
    ]
    return [
        Box((z0, y0, x0), (z1, y1, x1))
        for z0, z1 in cuts[0]
        for y0, y1 in cuts[1]
        for x0, x1 in cuts[2]
    ]


def _axis_cuts(start: int, stop: int, step: int, cuboid: int) -> list[tuple[int, int]]:
    """``[start, stop)`` in pieces of at most ``step``: on the cuboid grid when ``step`` is a
    multiple of the cuboid, else counted from ``start``."""
    if step >= stop - start:
        return [(start, stop)]
    origin = 0 if step % cuboid == 0 else start
    first = origin + (start - origin) // step * step + step
    edges = [start, *range(first, stop, step), stop]
    return list(zip(edges, edges[1:]))


def halve(box: Box, cuboid: Triple = BOSS_CUBOID) -> list[Box]:
    """``box`` cut in two along its longest axis (in cuboids), on a cuboid line if it can."""
    axis = max(range(3), key=lambda a: (box.shape[a] / cuboid[a], -a))
    start, stop = box.start[axis], box.stop[axis]
    if stop - start < 2:
        return []
    middle = start + (stop - start) // 2
    aligned = middle // cuboid[axis] * cuboid[axis]
    cut = aligned if start < aligned < stop else middle
    low_stop, high_start = list(box.stop), list(box.start)
    low_stop[axis] = high_start[axis] = cut
    return [Box(box.start, tuple(low_stop)), Box(tuple(high_start), box.stop)]


class TooLarge(Exception):
    """The server refused a request as too large (HTTP 413): ask for less at a time."""


def smaller(box: Box, error: TooLarge) -> list[Box]:
    """The two halves of a ``box`` the server found too large, logged; or the error."""
    halves = halve(box)
    if not halves:
        raise DataAccessError(f"{error} failed: the server refuses even one voxel (HTTP 413)")
    logger.info("%s: too large for the server (HTTP 413); asking in two halves", error)
    return halves
