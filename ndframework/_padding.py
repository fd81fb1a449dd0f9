"""Halo edge modes: a block's data over its whole read box, padded beyond the source's edge.

With the default mode, ``"clip"``, read boxes are clipped to the source and ``data`` is
smaller near the volume's edge. With any other mode the tiler leaves read boxes unclipped and
the voxels outside the source are made up as ``scipy.ndimage`` makes them up at an array's
edge, so that a filter run block by block equals the filter run on the whole volume with the
same mode. Only the source's edges are padded: inside the source the halo is real data.

Each voxel of the read box maps, axis by axis, to the source voxel whose value it takes; the
source is read over the few contiguous runs of voxels those maps reach (near the edge, and
for ``"wrap"`` also at the far end), never over the whole volume.
"""

from __future__ import annotations

import itertools
import numbers
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import ConfigError
from .geometry import Block, Box, Halo

if TYPE_CHECKING:
    from .storage import DataSource

__all__ = ["HALO_MODES", "check_halo_mode", "check_halo_cval", "read_limits", "read_padded"]

HALO_MODES: tuple[str, ...] = ("clip", "reflect", "mirror", "nearest", "constant", "wrap")
"""Valid halo modes: ``"clip"`` (no padding) and the ``scipy.ndimage`` boundary modes."""


def check_halo_mode(mode: object) -> str:
    """``mode`` if it is a valid halo mode, else `ConfigError` naming it and the valid ones.

    >>> check_halo_mode("mirror")
    'mirror'
    >>> check_halo_mode("symmetric")
    Traceback (most recent call last):
    ...
    ndframework.errors.ConfigError: halo_mode must be one of 'clip', 'reflect', 'mirror', \
'nearest', 'constant', 'wrap', got 'symmetric'
    """
    if not isinstance(mode, str) or mode not in HALO_MODES:
        raise ConfigError(
            f"halo_mode must be one of {', '.join(map(repr, HALO_MODES))}, got {mode!r}", mode
        )
    return mode


def check_halo_cval(cval: object, dtypes: Sequence[np.dtype] = ()) -> float | int | complex:
    """``cval`` if it is a number that every dtype of ``dtypes`` holds unchanged, else
    `ConfigError` naming it.

    >>> check_halo_cval(2.5, [np.dtype("float32")])
    2.5
    >>> check_halo_cval(-1, [np.dtype("uint8")])
    Traceback (most recent call last):
    ...
    ndframework.errors.ConfigError: halo_cval -1 cannot be stored in a uint8 channel
    """
    if isinstance(cval, bool) or not isinstance(cval, numbers.Number):
        raise ConfigError(f"halo_cval must be a number, got {cval!r}", cval)
    for dtype in dtypes:
        dtype = np.dtype(dtype)
        if dtype.kind in "biu" and not _fits_integer(cval, dtype):
            raise ConfigError(f"halo_cval {cval!r} cannot be stored in a {dtype} channel", cval)
    return cval  # type: ignore[return-value]


def _fits_integer(cval: numbers.Number, dtype: np.dtype) -> bool:
    if not isinstance(cval, numbers.Real) or not float(cval).is_integer():
        return False
    info = np.iinfo(np.uint8 if dtype.kind == "b" else dtype)
    low, high = (0, 1) if dtype.kind == "b" else (info.min, info.max)
    return low <= int(cval) <= high


def read_limits(source_bounds: Box, halo: Halo, mode: str) -> Box:
    """The region a tiler clips read boxes to: the source's bounds for ``"clip"``, else the
    bounds grown by the halo, which leaves every read box whole.

    >>> bounds = Box((0, 0, 0), (4, 4, 4))
    >>> read_limits(bounds, Halo.of(2), "clip") == bounds
    True
    >>> read_limits(bounds, Halo.of(2), "wrap")
    Box(start=(-2, -2, -2), stop=(6, 6, 6))
    """
    if check_halo_mode(mode) == "clip":
        return source_bounds
    return source_bounds.grow(halo.before, halo.after)


def read_padded(
    source: DataSource,
    block: Block,
    channels: Sequence[str],
    mode: str,
    cval: float = 0,
) -> dict[str, np.ndarray]:
    """Read ``block.read_box`` of ``channels``; pad where it leaves the source, as ``mode``.

    ``"clip"`` reads ``block.read_box`` as it is (the tiler has clipped it to the source).
    The other modes are those of ``scipy.ndimage`` (``np.pad`` names in brackets), shown for
    a source ``a b c d``:

    ``"reflect"`` (``"symmetric"``)
        ``d c b a | a b c d | d c b a``: reflect about the edge.
    ``"mirror"`` (``"reflect"``)
        ``d c b | a b c d | c b a``: reflect about the centre of the edge voxel.
    ``"nearest"`` (``"edge"``)
        ``a a a a | a b c d | d d d d``: repeat the edge voxel.
    ``"constant"``
        ``k k k k | a b c d | k k k k``: fill with ``cval``.
    ``"wrap"``
        ``a b c d | a b c d | a b c d``: the volume repeats periodically.

    Reflections and wraps repeat as often as needed, so a halo may be larger than the axis.
    A read box inside the source is read as it is, with no copy.

    Examples
    --------
    >>> import ndframework as ndf
    >>> source = ndf.InMemorySource({"em": np.arange(4).reshape(1, 1, 4)})
    >>> block = Block((0, 0, 0), Box((0, 0, 0), (1, 1, 2)), Box((0, 0, -3), (1, 1, 4)))
    >>> read_padded(source, block, ["em"], "reflect")["em"][0, 0]
    array([2, 1, 0, 0, 1, 2, 3])
    >>> read_padded(source, block, ["em"], "wrap")["em"][0, 0]
    array([1, 2, 3, 0, 1, 2, 3])
    """
    read_box = block.read_box
    if mode == "clip":
        return source.read(read_box, channels)
    bounds = source.bounds
    inside = read_box.intersect(bounds)
    if inside == read_box:
        return source.read(read_box, channels)
    if check_halo_mode(mode) == "constant":
        return _pad_constant(source, read_box, inside, channels, cval)
    if inside.empty:
        raise ConfigError(
            f"the read box {read_box} does not meet the source bounds {bounds}: nothing to "
            f"pad from with halo_mode {mode!r}",
            read_box,
        )
    # Per axis: the source coordinate each read-box voxel takes its value from, and the
    # contiguous runs of source voxels these reach.
    maps = [
        _source_coordinates(read_box.start[axis], read_box.stop[axis],
                            bounds.start[axis], bounds.stop[axis], mode)
        for axis in range(3)
    ]
    runs = [_runs(coordinates) for coordinates in maps]
    pieces: dict[tuple[int, ...], dict[str, np.ndarray]] = {}
    for combination in itertools.product(*(range(len(axis_runs)) for axis_runs in runs)):
        start = tuple(runs[axis][i][0] for axis, i in enumerate(combination))
        stop = tuple(runs[axis][i][1] for axis, i in enumerate(combination))
        pieces[combination] = source.read(Box(start, stop), channels)
    # Positions in the runs laid end to end, per axis; then one gather per channel.
    offsets = [np.cumsum([0] + [b - a for a, b in axis_runs]) for axis_runs in runs]
    positions = [
        _positions(coordinates, axis_runs, axis_offsets)
        for coordinates, axis_runs, axis_offsets in zip(maps, runs, offsets)
    ]
    gather = np.ix_(*positions)
    result = {}
    for name in channels:
        if len(pieces) == 1:
            compact = next(iter(pieces.values()))[name]
        else:
            first = next(iter(pieces.values()))[name]
            compact = np.empty(tuple(int(o[-1]) for o in offsets), first.dtype)
            for combination, arrays in pieces.items():
                where = tuple(
                    slice(offsets[axis][i], offsets[axis][i + 1])
                    for axis, i in enumerate(combination)
                )
                compact[where] = arrays[name]
        result[name] = compact[gather]
    return result


def _pad_constant(
    source: DataSource, read_box: Box, inside: Box, channels: Sequence[str], cval: float
) -> dict[str, np.ndarray]:
    data = source.read(inside, channels) if not inside.empty else None
    where = inside.relative_to(read_box).slices()
    result = {}
    for name in channels:
        dtype = data[name].dtype if data is not None else source.dtype(name)
        padded = np.full(read_box.shape, cval, dtype)
        if data is not None:
            padded[where] = data[name]
        result[name] = padded
    return result


def _source_coordinates(start: int, stop: int, low: int, high: int, mode: str) -> np.ndarray:
    """For each coordinate in ``[start, stop)``, the one in ``[low, high)`` whose value it
    takes under ``mode`` (scipy.ndimage's boundary rule)."""
    length = high - low
    offset = np.arange(start - low, stop - low)
    if mode == "nearest":
        local = np.clip(offset, 0, length - 1)
    elif mode == "wrap":
        local = np.mod(offset, length)
    elif mode == "reflect":  # period 2n: the edge voxel repeats
        local = np.mod(offset, 2 * length)
        local = np.where(local >= length, 2 * length - 1 - local, local)
    elif mode == "mirror":  # period 2n - 2: the edge voxel is the mirror
        if length == 1:
            local = np.zeros_like(offset)
        else:
            local = np.mod(offset, 2 * length - 2)
            local = np.where(local >= length, 2 * length - 2 - local, local)
    else:
        raise ConfigError(f"halo_mode {mode!r} does not map coordinates", mode)
    return local + low


def _runs(coordinates: np.ndarray) -> list[tuple[int, int]]:
    """The coordinates reached, as sorted, disjoint ``[start, stop)`` runs."""
    reached = np.unique(coordinates)
    breaks = np.flatnonzero(np.diff(reached) != 1) + 1
    return [(int(run[0]), int(run[-1]) + 1) for run in np.split(reached, breaks)]


def _positions(
    coordinates: np.ndarray, runs: list[tuple[int, int]], offsets: np.ndarray
) -> np.ndarray:
    """Where each coordinate lies once the runs are laid end to end."""
    starts = np.array([start for start, _ in runs])
    which = np.searchsorted(starts, coordinates, side="right") - 1
    return offsets[which] + coordinates - starts[which]
