"""`plot_status`: which blocks of a run are done, failed or pending, layer by layer, and
how long the blocks done took."""

from __future__ import annotations

import math
import os
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..journal import Journal
from ..result import BlockStatus
from ._figure import new_figure, output_path, require_matplotlib, save
from ._grid import RecordedGrid, recorded_grid

__all__ = ["plot_status", "MAX_PANELS", "STATUS_FIGURE_SIZE"]

STATUS_FIGURE_SIZE = (12.0, 9.0)
"""Inches (width, height) of the status picture."""

MAX_PANELS = 12
"""Most z-layers of blocks drawn, one panel each; a deeper run shows those with failed
blocks first (half the panels at most), the others spread over its depth, and a chart of
every layer's counts."""

MAX_CELLS = 2**26
"""Most blocks whose statuses are all kept (a byte each) so that panels can go to the
layers with failures; a larger grid gets evenly spread panels."""

GRID_LINES_UP_TO = 48
"""Blocks along y or x up to which each block is outlined; beyond, failed blocks are also
marked with a cross, so that one failure among thousands stays visible."""

LOG_SPREAD = 100.0
"""Ratio of the slowest block done to the quickest beyond which durations are drawn on a
log scale."""

DONE, FAILED, PENDING = "done", "failed", "pending"
COLOURS = {PENDING: "#cfd8dc", DONE: "#43a047", FAILED: "#e53935"}
_CODE = {PENDING: 0, DONE: 1, FAILED: 2}


def plot_status(journal: Journal, path: str | os.PathLike[str]) -> Path:
    """Draw which blocks of a journal's run are done, failed or pending, and save it.

    One panel per z-layer of blocks shows each block's status at its place, x to the right
    and y down in voxel coordinates: at most `MAX_PANELS`, the layers with failed blocks
    first, the others spread over the depth, and a chart of every layer's counts. Below,
    a histogram of the time each block done took (read, process and write). Pending blocks
    are those the journal records neither done nor failed: never tried, or running now.

    Block boxes are rebuilt from the tiler and bounds the journal's fingerprint records.
    For a tiler of the user's own, whose grid cannot be rebuilt, they are inferred from the
    keys recorded, and the title says so.

    Parameters
    ----------
    journal:
        The run's journal, open (``Journal.read(path)``, as ``ndframework status`` opens
        it, or the journal of a pipeline that ran).
    path:
        The picture's file; its suffix names the format (``.png``, ``.svg``, ``.pdf``...).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    PlotDependencyError
        matplotlib is not installed (``pip install "ndframework[plot]"``).
    ConfigError
        The journal is not open or records no run, or the path's suffix is no image format
        or its directory does not exist.

    Examples
    --------
    >>> import numpy as np, tempfile, ndframework as ndf
    >>> from ndframework.plots import plot_status
    >>> folder = tempfile.mkdtemp()
    >>> source = ndf.InMemorySource({"em": np.zeros((8, 64, 64), np.uint8)})
    >>> ndf.Pipeline(source, lambda data: None, tiler=ndf.RegularTiler((4, 32, 32)),
    ...              executor="serial", journal=folder + "/run.sqlite").run().ok
    True
    >>> journal = ndf.Journal.read(folder + "/run.sqlite")
    >>> plot_status(journal, folder + "/status.png").name
    'status.png'
    >>> journal.close()
    """
    require_matplotlib()
    if not isinstance(journal, Journal):
        raise ConfigError(f"plot_status needs a Journal (ndf.Journal.read(path)), got "
                          f"{journal!r}", journal)
    try:
        journal.connection
    except RuntimeError:
        raise ConfigError(f"{journal!r} is not open: open it with ndf.Journal.read(path)",
                          journal) from None
    target = output_path(path)
    grid = recorded_grid(journal)
    if grid is None:
        raise ConfigError(f"{journal.describe()} records no run: nothing to draw", journal)
    tally = _Tally.of(journal, grid)

    from matplotlib.patches import Patch

    figure = new_figure(*STATUS_FIGURE_SIZE)
    shown = tally.shown
    columns = min(len(shown), 4)
    rows = math.ceil(len(shown) / columns)
    outer = figure.add_gridspec(2, 1, height_ratios=[max(rows, 1) * 1.0, 0.9])
    panels = outer[0].subgridspec(rows, columns)
    for number, layer in enumerate(shown):
        axes = figure.add_subplot(panels[number // columns, number % columns])
        _draw_layer(axes, grid, layer, tally.codes[layer], tally.layer_counts[layer])
        if number // columns == rows - 1 or number + columns >= len(shown):
            axes.set_xlabel("x (voxels)", fontsize="x-small")
        if number % columns == 0:
            axes.set_ylabel("y (voxels)", fontsize="x-small")
    deep = grid.shape[0] > 1
    bottom = outer[1].subgridspec(1, 2 if deep else 1)
    _draw_durations(figure.add_subplot(bottom[0, 0]), tally.durations)
    if deep:
        _draw_layer_counts(figure.add_subplot(bottom[0, 1]), grid, tally)
    counts = tally.totals
    figure.legend(handles=[Patch(facecolor=COLOURS[name], edgecolor="none",
                                 label=f"{name} ({counts[name]:,})")
                           for name in (DONE, FAILED, PENDING)],
                  loc="outside lower center", ncol=3, frameon=False)
    figure.suptitle(_title(journal, grid, tally), x=0.01, ha="left", fontsize="medium")
    return save(figure, target)


def _spread(count: int, wanted: int) -> list[int]:
    """At most ``wanted`` of ``range(count)``, evenly spread, first and last included.

    >>> _spread(3, 12), _spread(100, 12)[:4], _spread(100, 12)[-1], _spread(9, 1)
    ([0, 1, 2], [0, 9, 18, 27], 99, [4])
    """
    if wanted >= count:
        return list(range(count))
    if wanted <= 1:
        return [count // 2] if wanted == 1 else []
    return sorted({round(i * (count - 1) / (wanted - 1)) for i in range(wanted)})


def _layers_shown(failed: np.ndarray) -> list[int]:
    """Which z-layers get a panel, given each layer's failed blocks: all, or `MAX_PANELS`
    of them, half at most among those with failures (spread over them), the others spread
    over the depth.

    >>> failed = np.zeros(100, int); failed[[41, 42, 77]] = 1
    >>> _layers_shown(failed)
    [0, 12, 25, 37, 41, 42, 50, 62, 74, 77, 87, 99]
    """
    layers = len(failed)
    if layers <= MAX_PANELS:
        return list(range(layers))
    failing = np.flatnonzero(failed)
    chosen = {int(failing[i]) for i in _spread(len(failing), MAX_PANELS // 2)}
    wanted = MAX_PANELS - len(chosen)
    others: list[int] = []
    for tries in range(wanted, wanted + len(chosen) + 1):  # the spread may hit the chosen
        others = [layer for layer in _spread(layers, tries) if layer not in chosen]
        if len(others) >= wanted:
            break
    others = [others[i] for i in _spread(len(others), wanted)]
    return sorted(chosen | set(others))


class _Tally:
    """What the journal records, counted per layer, with the status of every block of the
    layers shown and the durations of the blocks done; read in one pass over the records.

    The status of every block is kept (a byte each) when the grid has at most `MAX_CELLS`
    blocks, and the panels are chosen afterwards, failures first; for larger grids only
    the layers of evenly spread panels are kept.
    """

    def __init__(self, grid: RecordedGrid, block_count: int | None) -> None:
        layers, rows, columns = grid.shape
        self.block_count = block_count
        if grid.count <= MAX_CELLS:
            self.cube: np.ndarray | None = np.zeros(grid.shape, np.int8)
            self.codes: dict[int, np.ndarray] = {}
        else:
            self.cube = None
            self.codes = {layer: np.zeros((rows, columns), np.int8)
                          for layer in _spread(layers, MAX_PANELS)}
        self.layer_counts = np.zeros((layers, 3), np.int64)  # done, failed, pending
        self.layer_counts[:, 2] = rows * columns
        self.durations = array("d")
        self.unplaced = 0
        self.unplaced_done = 0

    @classmethod
    def of(cls, journal: Journal, grid: RecordedGrid) -> "_Tally":
        tally = cls(grid, journal.block_count())
        index_of = grid.indexer()
        cube, codes = tally.cube, tally.codes
        for record in journal.records():
            done = record.status is BlockStatus.DONE
            if done:
                tally.durations.append(record.timings.total)
            index = index_of(record.key)
            if index is None:
                tally.unplaced += 1
                tally.unplaced_done += done
                continue
            layer, row, column = index
            tally.layer_counts[layer, 0 if done else 1] += 1
            tally.layer_counts[layer, 2] -= 1
            code = _CODE[DONE if done else FAILED]
            if cube is not None:
                cube[index] = code
            elif layer in codes:
                codes[layer][row, column] = code
        if cube is not None:
            tally.codes = {layer: cube[layer]
                           for layer in _layers_shown(tally.layer_counts[:, 1])}
        return tally

    @property
    def shown(self) -> list[int]:
        """The layers that get a panel, in order."""
        return sorted(self.codes)

    @property
    def totals(self) -> dict[str, int]:
        """Blocks done, failed and pending in the run: pending counted from the journal's
        block count when it has one (the grid may lack rows never recorded)."""
        done, failed, pending = (int(n) for n in self.layer_counts.sum(axis=0))
        done += self.unplaced_done
        failed += self.unplaced - self.unplaced_done
        if self.block_count is not None:
            pending = max(self.block_count - done - failed, 0)
        return {DONE: done, FAILED: failed, PENDING: pending}


def _draw_layer(axes: Any, grid: RecordedGrid, layer: int, codes: np.ndarray,
                counts: np.ndarray) -> None:
    from matplotlib.colors import BoundaryNorm, ListedColormap

    z_edges, y_edges, x_edges = grid.edges
    colours = ListedColormap([COLOURS[PENDING], COLOURS[DONE], COLOURS[FAILED]])
    axes.pcolorfast(x_edges, y_edges, codes, cmap=colours,
                    norm=BoundaryNorm([-0.5, 0.5, 1.5, 2.5], 3))
    rows, columns = codes.shape
    if max(rows, columns) <= GRID_LINES_UP_TO:
        style = dict(colors="white", linewidths=0.6)
        axes.hlines(y_edges, x_edges[0], x_edges[-1], **style)
        axes.vlines(x_edges, y_edges[0], y_edges[-1], **style)
    else:
        failed_rows, failed_columns = np.nonzero(codes == _CODE[FAILED])
        if failed_rows.size:
            x_mid = (np.asarray(x_edges[:-1]) + np.asarray(x_edges[1:])) / 2
            y_mid = (np.asarray(y_edges[:-1]) + np.asarray(y_edges[1:])) / 2
            axes.scatter(x_mid[failed_columns], y_mid[failed_rows], marker="x", s=14,
                         linewidths=1.0, color="#b71c1c", zorder=3)
    axes.set_xlim(x_edges[0], x_edges[-1])
    axes.set_ylim(y_edges[-1], y_edges[0])  # y down
    axes.set_aspect("equal")
    axes.tick_params(labelsize="x-small")
    done, failed, pending = (int(n) for n in counts)
    axes.set_title(f"z {z_edges[layer]}:{z_edges[layer + 1]}: {done} done, {failed} failed, "
                   f"{pending} pending", fontsize="small")


def _draw_durations(axes: Any, durations: array) -> None:
    axes.set_ylabel("blocks", fontsize="small")
    axes.tick_params(labelsize="x-small")
    if not durations:
        axes.text(0.5, 0.5, "no block done yet", ha="center", va="center",
                  transform=axes.transAxes)
        axes.set_title("block durations", fontsize="small")
        return
    seconds = np.frombuffer(durations, dtype=np.float64)
    unit, scale = _unit(float(seconds.max()))
    seconds = seconds * scale
    count = int(min(50, max(5, math.sqrt(seconds.size))))
    positive = seconds[seconds > 0]
    bins: Any = count
    if positive.size and positive.max() > LOG_SPREAD * positive.min():
        # a long tail: on a linear axis every block but the slowest would share one bar
        floor = positive.min()
        bins = np.geomspace(floor, positive.max(), count + 1)
        seconds = np.maximum(seconds, floor)
        axes.set_xscale("log")
    axes.hist(seconds, bins=bins, color=COLOURS[DONE], edgecolor="white", linewidth=0.4)
    log = ", log scale" if axes.get_xscale() == "log" else ""
    axes.set_xlabel(f"{unit} per block done (read + process + write){log}", fontsize="small")
    axes.set_title(f"durations of {seconds.size:,} blocks done: median "
                   f"{np.median(seconds):.3g} {unit}, slowest {seconds.max():.3g} {unit}",
                   fontsize="small")


def _unit(longest: float) -> tuple[str, float]:
    """The unit that shows durations up to ``longest`` seconds with few digits, and the
    factor from seconds to it.

    >>> _unit(42.0), _unit(0.02), _unit(2e-5)
    (('seconds', 1.0), ('milliseconds', 1000.0), ('microseconds', 1000000.0))
    """
    if longest >= 1:
        return "seconds", 1.0
    if longest >= 1e-3:
        return "milliseconds", 1e3
    return "microseconds", 1e6


def _draw_layer_counts(axes: Any, grid: RecordedGrid, tally: _Tally) -> None:
    """Every layer's blocks by status, stacked, at the layer's place along z."""
    z_edges = np.asarray(grid.edges[0])
    lows, widths = z_edges[:-1], np.diff(z_edges)
    base = np.zeros(len(lows))
    for column, name in enumerate((DONE, FAILED, PENDING)):
        heights = tally.layer_counts[:, column]
        axes.bar(lows, heights, width=widths, bottom=base, align="edge",
                 color=COLOURS[name], linewidth=0)
        base = base + heights
    if len(tally.shown) < len(lows):  # mark the layers that have a panel
        middles = (lows + widths / 2)[tally.shown]
        axes.plot(middles, np.full(len(middles), base.max()), linestyle="none", marker="v",
                  color="#37474f", markersize=5, clip_on=False, label="layers drawn above")
        axes.legend(loc="lower right", fontsize="x-small")
    axes.set_xlim(z_edges[0], z_edges[-1])
    axes.set_xlabel("z (voxels)", fontsize="small")
    axes.set_ylabel("blocks in the layer", fontsize="small")
    axes.tick_params(labelsize="x-small")
    layers = grid.shape[0]
    shown = (f"panels show {len(tally.shown)} of them" if len(tally.shown) < layers
             else "one panel each above")
    axes.set_title(f"all {layers:,} z-layers of blocks ({shown})", fontsize="small")


def _title(journal: Journal, grid: RecordedGrid, tally: _Tally) -> str:
    counts = tally.totals
    total = sum(counts.values())
    lines = [f"{journal.path}: {counts[DONE]:,} done, {counts[FAILED]:,} failed, "
             f"{counts[PENDING]:,} pending of {total:,} blocks"]
    shape = grid.block_shape
    what = (f"blocks of {shape[0]} × {shape[1]} × {shape[2]} (z, y, x)" if shape is not None
            else "blocks")
    if grid.bounds is not None:
        what += f" over {grid.bounds} (z, y, x)"
    layers = grid.shape[0]
    if len(tally.shown) < layers:
        how = ("those with failed blocks first, the others spread over the depth"
               if tally.cube is not None else "spread over the depth")
        what += f"; {len(tally.shown)} of {layers:,} z-layers drawn: {how}"
    lines.append(what)
    if grid.inferred:
        note = "the run's tiler cannot be rebuilt: block boxes inferred from the keys recorded"
        if not grid.complete:
            note += "; blocks in rows or columns with no record are not drawn"
        lines.append(note)
    if tally.unplaced:
        lines.append(f"{tally.unplaced:,} recorded blocks lie off the grid and are not drawn")
    return "\n".join(lines)
