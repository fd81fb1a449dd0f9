"""A run's block grid rebuilt from what its journal records: the tiler and bounds of its
fingerprint, or, failing those, the keys of the blocks recorded."""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Iterable
from typing import Any

import attrs

from ..errors import NDFrameworkError
from ..geometry import Box, Halo, Triple
from ..journal import Journal
from ..tiling import CuboidTiler, RegularTiler, Tiler, _regular_grid

__all__ = ["RecordedGrid", "recorded_grid", "parse_box", "parse_tiler"]

_TILERS: dict[str, Any] = {"RegularTiler": RegularTiler, "CuboidTiler": CuboidTiler,
                           "Halo": Halo}
"""The classes a fingerprint's ``tiler`` may name for the grid to be rebuilt."""

_BOX = re.compile(r"^\[(-?\d+):(-?\d+), (-?\d+):(-?\d+), (-?\d+):(-?\d+)\]$")


@attrs.frozen
class RecordedGrid:
    """The blocks of a run as a rectilinear grid: block boundaries along each axis."""

    edges: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    """Per axis (z, y, x), the start of every block interval and the stop of the last."""
    block_shape: Triple | None
    """The tiler's block shape, when the tiler was rebuilt."""
    bounds: Box | None
    """The region the run processed, when the journal records it."""
    inferred: bool
    """True when the boundaries were inferred from the keys recorded: the journal's tiler
    is not one this module rebuilds (a tiler of the user's own)."""
    complete: bool
    """True when the grid has as many blocks as the run (the journal's count): always
    for a rebuilt tiler; for an inferred grid, false when rows or columns without any
    record could not be filled in, and are missing."""

    @property
    def shape(self) -> Triple:
        """Blocks along z, y and x."""
        z, y, x = (len(edges) - 1 for edges in self.edges)
        return z, y, x

    @property
    def count(self) -> int:
        """Blocks in the grid."""
        z, y, x = self.shape
        return z * y * x

    def indexer(self) -> "_Indexer":
        """A function from a block key to its grid index, or None for a key off the grid."""
        return _Indexer(self.edges)


class _Indexer:
    def __init__(self, edges: tuple[tuple[int, ...], ...]) -> None:
        self.lookups = [{start: index for index, start in enumerate(axis[:-1])}
                        for axis in edges]

    def __call__(self, key: str) -> Triple | None:
        try:
            z, y, x = (int(part) for part in key.split("_"))
        except ValueError:
            return None
        found = (self.lookups[0].get(z), self.lookups[1].get(y), self.lookups[2].get(x))
        if None in found:
            return None
        return found  # type: ignore[return-value]


def parse_box(text: str | None) -> Box | None:
    """A box from its ``str()`` as the fingerprint keeps it, or None.

    >>> parse_box("[0:8, 10:64, 0:96]")
    Box(start=(0, 10, 0), stop=(8, 64, 96))
    """
    match = _BOX.match(text or "")
    if match is None:
        return None
    values = [int(group) for group in match.groups()]
    try:
        return Box(tuple(values[0::2]), tuple(values[1::2]))
    except NDFrameworkError:
        return None


def parse_tiler(text: str | None) -> Tiler | None:
    """The tiler whose ``repr`` the fingerprint keeps, when it is a `RegularTiler` or a
    `CuboidTiler`; None for any other text. Nothing is evaluated but those constructors
    and literals.

    >>> parse_tiler("RegularTiler(block_shape=(4, 32, 32), halo=Halo(before=(0, 1, 1), "
    ...             "after=(0, 1, 1)), origin=(0, 0, 0))").block_shape
    (4, 32, 32)
    >>> parse_tiler("MyTiler(size=3)") is None
    True
    """
    try:
        return _build(ast.parse(text or "", mode="eval").body)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError,
            NDFrameworkError):
        return None


def _build(node: ast.AST) -> Any:
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _TILERS:
            raise ValueError("not a tiler this module rebuilds")
        args = [_build(arg) for arg in node.args]
        kwargs = {keyword.arg: _build(keyword.value) for keyword in node.keywords
                  if keyword.arg is not None}
        return _TILERS[node.func.id](*args, **kwargs)
    return ast.literal_eval(node)


def recorded_grid(journal: Journal) -> RecordedGrid | None:
    """The run's block grid: rebuilt from the tiler and bounds the fingerprint records
    (checked against the block count), else inferred from the keys recorded; None when
    the journal records neither (no session ever opened it)."""
    fingerprint = journal.fingerprint()
    bounds = parse_box(fingerprint.get("bounds"))
    tiler = parse_tiler(fingerprint.get("tiler"))
    count = journal.block_count()
    if tiler is not None and bounds is not None:
        grid = _regular_grid(tiler, bounds)
        if grid is not None:
            z, y, x = (tuple([low for low, _ in axis] + [axis.stop]) for axis in grid)
            recorded = RecordedGrid((z, y, x), getattr(tiler, "block_shape", None), bounds,
                                    inferred=False, complete=True)
            if count is None or count == recorded.count:
                return recorded
    return _inferred(journal, bounds, count)


def _inferred(journal: Journal, bounds: Box | None, count: int | None) -> RecordedGrid | None:
    """The grid through the starts of the blocks recorded; with the rows and columns
    never recorded filled in at the step of the others, when that makes as many blocks
    as the run has."""
    starts: list[set[int]] = [set(), set(), set()]
    for record in journal.records():
        try:
            point = [int(part) for part in record.key.split("_")]
        except ValueError:
            continue
        if len(point) == 3:
            for axis in range(3):
                starts[axis].add(point[axis])
    if not all(starts):
        if bounds is None:
            return None
        starts = [{bounds.start[axis]} for axis in range(3)]
    stops = [None if bounds is None else bounds.stop[axis] for axis in range(3)]
    z, y, x = (_with_stop(sorted(starts[axis]), stops[axis]) for axis in range(3))
    filled = RecordedGrid((_filled(z), _filled(y), _filled(x)), None, bounds, inferred=True,
                          complete=True)
    if filled.count == count:
        return filled
    recorded = RecordedGrid((z, y, x), None, bounds, inferred=True, complete=False)
    return attrs.evolve(recorded, complete=recorded.count == count)


def _with_stop(starts: list[int], stop: int | None) -> tuple[int, ...]:
    """``starts`` and the stop of the last interval: the bounds' stop when known and past
    it, else one step (the smallest gap between starts, or 1) beyond."""
    if stop is None or stop <= starts[-1]:
        gaps: Iterable[int] = (b - a for a, b in zip(starts, starts[1:]))
        stop = starts[-1] + min(gaps, default=1)
    return (*starts, stop)


def _filled(edges: tuple[int, ...]) -> tuple[int, ...]:
    """``edges`` with every gap wider than the step split at the step: the greatest
    common divisor of the gaps but the first and last (which the bounds may clip), or of
    all when there are no others. Gaps are split from their low edge up, the first from
    its high edge down, as grid lines lie a step apart from every start but the bounds'.

    >>> _filled((2, 16, 24, 48, 50))
    (2, 8, 16, 24, 32, 40, 48, 50)
    """
    gaps = [b - a for a, b in zip(edges, edges[1:])]
    if not gaps:
        return edges
    step = math.gcd(*(gaps[1:-1] or gaps))
    lines = set(edges)
    lines.update(range(edges[1], edges[0], -step))
    for low, high in zip(edges[1:-1], edges[2:]):
        lines.update(range(low, high, step))
    return tuple(sorted(lines))
