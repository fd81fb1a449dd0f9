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

AXES_PIXELS = 600
"""About the pixels the whole view spans along its longer side: what decides whether a
halo or the chunk grid is visible."""

VISIBLE_PIXELS = 4
"""Pixels a halo must span to be seen in the whole view; a thinner one gets a zoom."""

MIN_CHUNK_PIXELS = 12
"""Pixels between two storage chunk boundaries below which the chunk grid is left out
(a grey wash tells nothing), and the legend says so."""

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
    from matplotlib.patches import Patch

    figure = new_figure(*PLAN_FIGURE_SIZE)
    axes = figure.add_subplot()
    source, channel, middle = pipeline.source, prepared.channels[0], layer.middle
    chunks = _chunk_grid(source)
    image_note = _draw_scene(axes, layer, halo, source, channel, z, view, chunks,
                             fallback=True)
    handles: list[Any] = [Line2D([], [], color=BLOCK_COLOUR, lw=1.4,
                                 label="owned box of each block")]
    if chunks is not None:
        handles.append(Line2D([], [], color=CHUNK_COLOUR, lw=1.2, ls=(0, (1, 2)),
                              label=_chunk_label(chunks, view)))
    handles.append(Patch(facecolor=_faded(MIDDLE_COLOUR), edgecolor=MIDDLE_COLOUR, lw=2.0,
                         label=f"block {middle.key} ({span(middle.box)})"))
    if not halo.is_zero:
        handles.append(Line2D([], [], color=MIDDLE_COLOUR, lw=2.0, ls=(0, (5, 3)),
                              label=f"its read box, with the halo ({span(middle.read_box)})"))
        if layer.neighbours:
            handles.append(Line2D([], [], color=NEIGHBOUR_COLOUR, lw=1.3, ls=(0, (4, 3)),
                                  label="read boxes of the blocks around it"))
    zoom = _zoom_region(layer, halo, view)
    if zoom is not None:
        inset = axes.inset_axes((0.62, 0.62, 0.37, 0.37))
        _draw_scene(inset, layer, halo, source, channel, z, zoom, chunks, fallback=False)
        inset.tick_params(labelsize="xx-small", colors="white")
        inset.locator_params(nbins=3)
        inset.text(0.03, 0.03, "zoom on the halos", transform=inset.transAxes,
                   ha="left", va="bottom", fontsize="x-small",
                   color="white", zorder=10,
                   bbox=dict(facecolor="#202020", alpha=0.8, edgecolor="none", pad=2))
        axes.indicate_inset_zoom(inset, edgecolor="white", alpha=0.9)
    axes.set_xlabel("x (voxels)")
    axes.set_ylabel("y (voxels)")
    axes.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2,
                fontsize="small", frameon=False)
    axes.set_title(_title(plan, tiler, halo, z, layer, image_note), fontsize="medium")
    return save(figure, target)


def _draw_scene(axes: Any, layer: "_Layer", halo: Halo, source: DataSource, channel: str,
                z: int, region: Box, chunks: tuple[Triple, Triple, bool] | None, *,
                fallback: bool) -> str:
    """Draw the slice's image, the chunk grid, the owned boxes and the middle block's and
    its neighbours' read boxes over ``region`` (its y, x extent) of ``axes``; what the
    title says of the image."""
    from matplotlib.patches import Rectangle

    axes.set_facecolor("#202020")
    image_note = _draw_image(axes, source, channel, z, region, layer.middle, fallback)
    if chunks is not None:
        _draw_chunks(axes, chunks, region)
    layer.draw_outlines(axes)
    middle = layer.middle
    axes.add_patch(Rectangle(*_corner(middle.box), facecolor=MIDDLE_COLOUR, alpha=0.12,
                             edgecolor="none", zorder=3))
    axes.add_patch(Rectangle(*_corner(middle.box), facecolor="none", lw=2.0,
                             edgecolor=MIDDLE_COLOUR, zorder=5))
    if not halo.is_zero:
        for block in layer.neighbours:
            axes.add_patch(Rectangle(*_corner(block.read_box), facecolor="none", lw=1.3,
                                     ls=(0, (4, 3)), edgecolor=NEIGHBOUR_COLOUR, zorder=4))
        axes.add_patch(Rectangle(*_corner(middle.read_box), facecolor="none", lw=2.0,
                                 ls=(0, (5, 3)), edgecolor=MIDDLE_COLOUR, zorder=6))
    axes.set_xlim(region.start[2], region.stop[2])
    axes.set_ylim(region.stop[1], region.start[1])  # y down, as the image's rows
    axes.set_aspect("equal")
    return image_note


def _zoom_region(layer: "_Layer", halo: Halo, view: Box) -> Box | None:
    """A small region around a corner of the middle block that its neighbours share, to
    zoom on when the halo is too thin to see in the whole view; None when it is not (or
    there is no halo, or no such corner)."""
    thickest = max(*halo.before[1:], *halo.after[1:])
    pixels_per_voxel = AXES_PIXELS / max(view.shape[1], view.shape[2], 1)
    if thickest == 0 or thickest * pixels_per_voxel >= VISIBLE_PIXELS:
        return None
    box = layer.middle.box
    corner = []
    for axis in (1, 2):
        if box.start[axis] > view.start[axis]:
            corner.append(box.start[axis])
        elif box.stop[axis] < view.stop[axis]:
            corner.append(box.stop[axis])
        else:
            return None  # one block across: no neighbour to share a corner with
    reach = min(max(4 * thickest, 16), min(box.shape[1:]))
    return Box((box.start[0], corner[0] - reach, corner[1] - reach),
               (box.stop[0], corner[0] + reach, corner[1] + reach)).intersect(view)


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

    def draw_outlines(self, axes: Any) -> None:
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
                middle: Block, fallback: bool) -> str:
    """Draw the slice of ``channel`` under the blocks; what the title says of it. A slice
    too large to read falls back to the middle block's read box, with ``fallback``."""
    region = _plane(view, z).intersect(source.bounds)
    note = ""
    if region.size > MAX_IMAGE_PIXELS:
        small = _plane(middle.read_box, z).intersect(source.bounds)
        if not fallback or small.size > MAX_IMAGE_PIXELS or small.empty:
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
    if image.dtype.kind not in "biufc":
        return f"no image: channel {channel} holds {image.dtype}, not numbers"
    shown = (np.abs(image) if image.dtype.kind == "c" else image).astype(np.float32)
    # the 0.5 and 99.5 percentiles, so that a few extreme voxels do not grey out the rest
    finite = shown[np.isfinite(shown)]
    low, high = ((float(v) for v in np.percentile(finite, (0.5, 99.5))) if finite.size
                 else (0.0, 1.0))
    axes.imshow(shown, cmap="gray", vmin=low, vmax=max(high, low + 1e-9), origin="upper",
                zorder=0,
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


def _chunk_lines(chunks: tuple[Triple, Triple, bool], region: Box) -> list[range] | None:
    """The chunk boundaries along y and x inside ``region``, or None when they would lie
    closer than `MIN_CHUNK_PIXELS` in a view of ``region``."""
    shape, origin, _ = chunks
    if min(shape[1:]) * AXES_PIXELS / max(region.shape[1], region.shape[2], 1) \
            < MIN_CHUNK_PIXELS:
        return None
    lines = []
    for axis in (1, 2):
        step, low, high = shape[axis], region.start[axis], region.stop[axis]
        first = origin[axis] + math.ceil((low - origin[axis]) / step) * step
        lines.append(range(first, high + 1, step))
    return lines


def _chunk_label(chunks: tuple[Triple, Triple, bool], view: Box) -> str:
    shape, _, boss = chunks
    what = (f"BOSS cuboids, {shape[2]} × {shape[1]} (x, y)" if boss
            else f"storage chunks, {shape[1]} × {shape[2]} (y, x)")
    return what if _chunk_lines(chunks, view) is not None else f"{what}: too fine to draw"


def _draw_chunks(axes: Any, chunks: tuple[Triple, Triple, bool], region: Box) -> None:
    """Draw the storage chunk boundaries inside ``region``, faint, when they are not too
    fine to see."""
    lines = _chunk_lines(chunks, region)
    if lines is None:
        return
    style = dict(colors=CHUNK_COLOUR, linewidths=1.2, linestyles=(0, (1, 2)), alpha=0.9,
                 zorder=1)
    axes.hlines(list(lines[0]), region.start[2], region.stop[2], **style)
    axes.vlines(list(lines[1]), region.start[1], region.stop[1], **style)


def _title(plan: Any, tiler: Tiler, halo: Halo, z: int, layer: _Layer,
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
