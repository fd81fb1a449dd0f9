"""`plot_plan`: the block grid and halos of a pipeline over one z-slice of its region."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..geometry import Block, Box, Halo, Triple, _block
from ..pipeline import Pipeline
from ..storage import DataSource
from ..tiling import GridAxis, Tiler, _regular_grid
from ._figure import new_figure, output_path, require_matplotlib, save, span

__all__ = ["plot_plan", "MAX_IMAGE_PIXELS", "PLAN_FIGURE_SIZE"]

PLAN_FIGURE_SIZE = (8.0, 8.5)
"""Inches (width, height) of the plan picture."""

MAX_IMAGE_PIXELS = 4 * 2**20
"""Most voxels of the slice read for the picture's background. A larger slice is not read:
only the middle block's read box is, when it is small enough, and else no image at all."""

MAX_CHUNK_LINES = 200
"""Most storage chunk boundaries drawn per axis; a finer chunk grid is left out (a grey
wash tells nothing), and the legend says so."""

BLOCK_COLOUR = "#ffc400"
MIDDLE_COLOUR = "#ff2d95"
NEIGHBOUR_COLOUR = "#29b6f6"
CHUNK_COLOUR = "#a5d66f"


def plot_plan(pipeline: Pipeline, path: str | os.PathLike[str], *,
              z: int | None = None) -> Path:
    """Draw the pipeline's blocks and halos over a z-slice of its region, and save it.

    The picture shows, in voxel coordinates (x to the right, y down), the slice's image
    from the first channel read, the owned box of every block cut by the slice, the read
    box (box and halo) of the block in the middle and of the blocks around it, and the
    source's storage chunk grid, faint (the BOSS's 512 × 512 cuboids for a BOSS source).
    Nothing but the one slice is read, and only when it holds at most `MAX_IMAGE_PIXELS`
    voxels: for a larger slice the image is the middle block's read box, or none, and the
    title says so.

    Parameters
    ----------
    pipeline:
        The pipeline whose `Pipeline.plan` is drawn. Its tiler, halo, bounds and channels
        are checked as ``plan()`` checks them.
    path:
        The picture's file; its suffix names the format (``.png``, ``.svg``, ``.pdf``...).
    z:
        The slice drawn (default: the middle of the bounds along z).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    PlotDependencyError
        matplotlib is not installed (``pip install "ndframework[plot]"``).
    ConfigError
        ``z`` lies outside the bounds, the bounds hold no voxel, the path's suffix is no
        image format or its directory does not exist; and whatever ``plan()`` raises.

    Examples
    --------
    >>> import numpy as np, tempfile, ndframework as ndf
    >>> from ndframework.plots import plot_plan
    >>> source = ndf.InMemorySource({"em": np.zeros((8, 64, 64), np.uint8)})
    >>> pipeline = ndf.Pipeline(source, lambda data: None, executor="serial",
    ...                         tiler=ndf.RegularTiler((4, 32, 32), halo=2))
    >>> plot_plan(pipeline, tempfile.mkdtemp() + "/plan.png").name
    'plan.png'
    """
    require_matplotlib()
    if not isinstance(pipeline, Pipeline):
        raise ConfigError(f"plot_plan needs a Pipeline, got {pipeline!r}", pipeline)
    target = output_path(path)
    plan = pipeline.plan()
    # plan() keeps the resolved tiler to itself; the pipeline is the one place that knows it
    prepared = pipeline._prepare()
    within = pipeline._read_limits(prepared)
    bounds, tiler = prepared.bounds, prepared.tiler
    if bounds.empty:
        raise ConfigError(f"the bounds {bounds} hold no voxel: there is no slice to draw",
                          bounds)
    z = _slice_z(z, bounds)
    layer = _Layer.of(tiler, bounds, within, z)
    halo = Halo.of(tiler.halo)
    view = _view(bounds, halo, within)

    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    figure = new_figure(*PLAN_FIGURE_SIZE)
    axes = figure.add_subplot()
    axes.set_facecolor("#202020")
    source = pipeline.source
    channel = prepared.channels[0]
    image_note = _draw_image(axes, source, channel, z, view, layer.middle)

    handles: list[Any] = [Line2D([], [], color=BLOCK_COLOUR, lw=1.4,
                                 label="owned box of each block")]
    chunk_label = _draw_chunks(axes, source, view)
    if chunk_label:
        handles.append(Line2D([], [], color=CHUNK_COLOUR, lw=1.2, ls=(0, (1, 2)),
                              label=chunk_label))

    layer.draw_outlines(axes, view)
    middle = layer.middle
    axes.add_patch(Rectangle(*_corner(middle.box), facecolor=MIDDLE_COLOUR, alpha=0.12,
                             edgecolor="none", zorder=3))
    axes.add_patch(Rectangle(*_corner(middle.box), facecolor="none", lw=2.0,
                             edgecolor=MIDDLE_COLOUR, zorder=5))
    handles.append(Patch(facecolor=_faded(MIDDLE_COLOUR), edgecolor=MIDDLE_COLOUR, lw=2.0,
                         label=f"block {middle.key} ({span(middle.box)})"))
    if not halo.is_zero:
        for block in layer.neighbours:
            axes.add_patch(Rectangle(*_corner(block.read_box), facecolor="none", lw=1.3,
                                     ls=(0, (4, 3)), edgecolor=NEIGHBOUR_COLOUR, zorder=4))
        axes.add_patch(Rectangle(*_corner(middle.read_box), facecolor="none", lw=2.0,
                                 ls=(0, (5, 3)), edgecolor=MIDDLE_COLOUR, zorder=6))
        handles.append(Line2D([], [], color=MIDDLE_COLOUR, lw=2.0, ls=(0, (5, 3)),
                              label=f"its read box, with the halo ({span(middle.read_box)})"))
        if layer.neighbours:
            handles.append(Line2D([], [], color=NEIGHBOUR_COLOUR, lw=1.3, ls=(0, (4, 3)),
                                  label="read boxes of the blocks around it"))

    axes.set_xlim(view.start[2], view.stop[2])
    axes.set_ylim(view.stop[1], view.start[1])  # y down, as the image's rows
    axes.set_aspect("equal")
    axes.set_xlabel("x (voxels)")
    axes.set_ylabel("y (voxels)")
    axes.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2,
                fontsize="small", frameon=False)
    axes.set_title(_title(plan, tiler, halo, z, layer, channel, image_note), fontsize="medium")
    return save(figure, target)


# -- which blocks the slice cuts --------------------------------------------------------


class _Layer:
    """The blocks a z-slice cuts: their outlines, the one in the middle and those around it.

    A regular grid is described by its boundaries (drawn as lines, however many blocks);
    other tilers by the blocks themselves, walked once.
    """

    def __init__(self, count: int, middle: Block, neighbours: list[Block],
                 edges: tuple[list[int], list[int]] | None, boxes: list[Box]) -> None:
        self.count = count
        self.middle = middle
        self.neighbours = neighbours
        self.edges = edges
        self.boxes = boxes

    @classmethod
    def of(cls, tiler: Tiler, bounds: Box, within: Box, z: int) -> _Layer:
        grid = _regular_grid(tiler, bounds)
        halo = Halo.of(tiler.halo)
        centre = ((bounds.start[1] + bounds.stop[1]) // 2,
                  (bounds.start[2] + bounds.stop[2]) // 2)
        if grid is not None:
            zs, ys, xs = grid
            iz, iy, ix = _interval_of(zs, z), _interval_of(ys, centre[0]), \
                _interval_of(xs, centre[1])

            def block(j: int, k: int) -> Block:
                box = Box(*zip(zs.interval(iz), ys.interval(j), xs.interval(k)))
                return _block((iz, j, k), box,
                              box.grow(halo.before, halo.after).intersect(within))

            around = [block(j, k) for j in range(max(iy - 1, 0), min(iy + 2, len(ys)))
                      for k in range(max(ix - 1, 0), min(ix + 2, len(xs))) if (j, k) != (iy, ix)]
            edges = ([low for low, _ in ys] + [ys.stop], [low for low, _ in xs] + [xs.stop])
            return cls(len(ys) * len(xs), block(iy, ix), around, edges, [])
        blocks = [b for b in tiler.blocks(bounds, within=within)
                  if b.box.start[0] <= z < b.box.stop[0]]
        if not blocks:  # the owned boxes cover the bounds: a broken tiler
            raise ConfigError(f"the tiler {tiler!r} has no block at z = {z} of the bounds "
                              f"{bounds}", tiler)
        middle = min(blocks, key=lambda b: _distance(b.box, centre))
        touching = middle.box.grow((0, 1, 1))
        around = [b for b in blocks if b is not middle and not touching.intersect(b.box).empty]
        return cls(len(blocks), middle, around, None, [b.box for b in blocks])

    def draw_outlines(self, axes: Any, view: Box) -> None:
        """The owned boxes' outlines, on top of the image and chunk grid."""
        style = dict(colors=BLOCK_COLOUR, linewidths=1.4, zorder=2)
        if self.edges is not None:
            y_edges, x_edges = self.edges
            axes.hlines(y_edges, x_edges[0], x_edges[-1], **style)
            axes.vlines(x_edges, y_edges[0], y_edges[-1], **style)
            return
        from matplotlib.collections import PatchCollection
        from matplotlib.patches import Rectangle

        axes.add_collection(PatchCollection(
            [Rectangle(*_corner(box)) for box in self.boxes], facecolor="none",
            edgecolor=BLOCK_COLOUR, linewidth=1.4, zorder=2))


def _interval_of(axis: GridAxis, coordinate: int) -> int:
    """Index of the interval of ``axis`` that holds ``coordinate`` (inside the axis)."""
    first = axis.first_line
    return 0 if coordinate < first else 1 + (coordinate - first) // axis.step


def _distance(box: Box, point: tuple[int, int]) -> int:
    """Voxels (y plus x) from ``point`` to ``box`` in its y, x plane; 0 inside."""
    return sum(max(box.start[axis] - value, 0, value - box.stop[axis] + 1)
               for axis, value in zip((1, 2), point))


def _slice_z(z: Any, bounds: Box) -> int:
    low, high = bounds.start[0], bounds.stop[0]
    if z is None:
        return (low + high) // 2
    if isinstance(z, bool) or not isinstance(z, (int, np.integer)) or not low <= z < high:
        raise ConfigError(f"z must be a slice of the bounds {bounds}: an integer from {low} "
                          f"to {high - 1}, got {z!r}", z)
    return int(z)


def _view(bounds: Box, halo: Halo, within: Box) -> Box:
    """The y, x region drawn: the bounds with the halos read around them."""
    return bounds.grow(halo.before, halo.after).intersect(within)


def _corner(box: Box) -> tuple[tuple[int, int], int, int]:
    """``box`` as a matplotlib rectangle's ``(x, y)`` corner, width and height."""
    return (box.start[2], box.start[1]), box.shape[2], box.shape[1]


def _faded(colour: str) -> tuple[float, ...]:
    from matplotlib.colors import to_rgba

    return to_rgba(colour, 0.12)


# -- the background: the slice's image and the storage chunks -----------------------------


def _draw_image(axes: Any, source: DataSource, channel: str, z: int, view: Box,
                middle: Block) -> str:
    """Draw the slice of ``channel`` under the blocks; what the title says of it."""
    region = _plane(view, z).intersect(source.bounds)
    note = ""
    if region.size > MAX_IMAGE_PIXELS:
        small = _plane(middle.read_box, z).intersect(source.bounds)
        if small.size > MAX_IMAGE_PIXELS or small.empty:
            return (f"image not read: the slice holds {region.size:,} voxels, more than "
                    f"{MAX_IMAGE_PIXELS:,}")
        region = small
        note = (f", over block {middle.key}'s read box only (the slice holds "
                f"{_plane(view, z).size:,} voxels)")
    if region.empty:
        return "no image: the slice lies outside the source"
    try:
        data = source.read(region, [channel])[channel]
    finally:
        source.release()
    image = np.asarray(data[(0,) * (data.ndim - 2)])  # (1, y, x), or (t, 1, y, x)
    shown = image.astype(np.float32) if image.dtype.kind in "biuf" else image
    low, high = (np.percentile(shown, (0.5, 99.5)) if shown.size and shown.dtype.kind == "f"
                 else (None, None))
    if low is not None and high <= low:
        high = low + 1
    axes.imshow(shown, cmap="gray", vmin=low, vmax=high, origin="upper", zorder=0,
                extent=(region.start[2], region.stop[2], region.stop[1], region.start[1]))
    return f"image: {channel}{note}"


def _plane(box: Box, z: int) -> Box:
    """The one-voxel-deep slice ``z`` of ``box``'s y, x extent."""
    return Box((z, box.start[1], box.start[2]), (z + 1, box.stop[1], box.stop[2]))


def _chunk_grid(source: DataSource) -> tuple[Triple, Triple, bool] | None:
    """``(chunk shape, grid origin, is the BOSS)`` of the source's storage, or None."""
    shape = source.chunk_shape
    if shape is None:
        return None
    # A BOSS source's cuboid grid starts at 0 whatever its bounds. Looked up only when the
    # BOSS client is loaded already: a BossSource exists only then, and intern is slow to load.
    volume = sys.modules.get("ndframework.boss._volume")
    if volume is not None and isinstance(source, volume.BossVolume):
        return shape, (0, 0, 0), True
    origin = getattr(source, "chunk_origin", source.bounds.start)
    return shape, origin, False


def _draw_chunks(axes: Any, source: DataSource, view: Box) -> str:
    """Draw the storage chunk boundaries inside ``view``, faint; the legend's label."""
    grid = _chunk_grid(source)
    if grid is None:
        return ""
    shape, origin, boss = grid
    what = (f"BOSS cuboids, {shape[2]} × {shape[1]} (x, y)" if boss
            else f"storage chunks, {shape[1]} × {shape[2]} (y, x)")
    lines = []
    for axis in (1, 2):
        step, low, high = shape[axis], view.start[axis], view.stop[axis]
        first = origin[axis] + math.ceil((low - origin[axis]) / step) * step
        lines.append(range(first, high + 1, step))
    if max(len(lines[0]), len(lines[1])) > MAX_CHUNK_LINES:
        return f"{what}: too many to draw"
    style = dict(colors=CHUNK_COLOUR, linewidths=1.2, linestyles=(0, (1, 2)), alpha=0.9,
                 zorder=1)
    axes.hlines(list(lines[0]), view.start[2], view.stop[2], **style)
    axes.vlines(list(lines[1]), view.start[1], view.stop[1], **style)
    return what


def _title(plan: Any, tiler: Tiler, halo: Halo, z: int, layer: _Layer, channel: str,
           image_note: str) -> str:
    shape = plan.block_shape
    blocks = (f"{plan.block_count:,} blocks of {shape[0]} × {shape[1]} × {shape[2]} (z, y, x)"
              if shape is not None else f"{plan.block_count:,} blocks ({type(tiler).__name__})")
    if halo.is_zero:
        halo_text = "no halo"
    elif halo.before == halo.after:
        halo_text = f"halo {halo.before} (z, y, x)"
    else:
        halo_text = f"halo {halo.before} before, {halo.after} after (z, y, x)"
    z_range = f"z {layer.middle.box.start[0]}:{layer.middle.box.stop[0]}"
    return (f"{blocks}, {halo_text}\n"
            f"slice z = {z}: {layer.count:,} blocks ({z_range})\n{image_note}")
