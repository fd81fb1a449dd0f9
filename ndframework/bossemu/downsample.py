"""boss-tools' downsampling: level ``r + 1`` of a channel built from level ``r``, one
block of cuboids at a time.

Sources, all read from the BOSS's own code:

- the plan (which passes, which cuboids, which frame): boss-tools
  activities/resolution_hierarchy.py ``downsample_channel``, looped by boss-manage
  cloud_formation/stepfunctions/resolution_hierarchy.hsd;
- one block: boss-tools lambda/downsample_volume.py ``downsample_volume`` and
  ``downsample_cube`` (`ndframework.bossemu.downsample_blocks`).

What one block is
-----------------
The lambda gathers the ``step`` cuboids whose corner is a *target* cuboid (2x2x1 for an
anisotropic step, 2x2x2 for an isotropic one, (x, y, z)), fills the missing ones with
zeros, and reduces the volume to one cuboid of the next level at ``target // step``. If
none of the cuboids exists it writes nothing. Each output cuboid sees only its own block:
there is no overlap between blocks, so filter edges fall at every block seam.

The channel's ``downsample_status`` around a downsample is
`ndframework.bossemu.downsample_status`.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional, Tuple

import attrs
import numpy as np

from .._bossapi import CUBOID_XYZ
from .downsample_blocks import downsample_block
from .hierarchy import XYZ, Hierarchy, ceildiv, shrink_frame

__all__ = [
    "DownsamplePass",
    "DownsamplePlan",
    "plan_downsample",
    "run_downsample",
]


@attrs.frozen
class DownsamplePass:
    """One fan-out of boss-tools: every target block of ``resolution`` reduced into
    ``resolution + 1`` (one config of ``downsample_channel``,
    activities/resolution_hierarchy.py)."""

    resolution: int
    """The level read; the pass writes ``resolution + 1``."""
    step_xyz: XYZ
    """``(2, 2, 1)`` (anisotropic) or ``(2, 2, 2)`` (isotropic)."""
    read_iso: bool
    """Whether it reads the ``ISO&`` copy (every isotropic pass of an anisotropic channel
    but the first, which reads the plain isotropic level)."""
    write_iso: bool
    """Whether it writes the ``ISO&`` copy."""
    frame_start_xyz: XYZ
    """The frame's start at ``resolution`` as boss-tools holds it."""
    frame_stop_xyz: XYZ
    """The frame's stop at ``resolution``."""
    cuboid_xyz: XYZ = CUBOID_XYZ
    """The cuboid's size in voxels."""

    @property
    def cubes_start_xyz(self) -> XYZ:
        """First target cuboid: the frame's start floor-divided by the cuboid, then moved
        down to a multiple of the step so that blocks align with a frame starting at 0."""
        start = (s // c for s, c in zip(self.frame_start_xyz, self.cuboid_xyz))
        return tuple(s - s % step for s, step in zip(start, self.step_xyz))  # type: ignore

    @property
    def cubes_stop_xyz(self) -> XYZ:
        """The frame's stop ceiling-divided by the cuboid (not aligned to the step: the
        last block may reach one cuboid past it)."""
        stop = (ceildiv(s, c) for s, c in zip(self.frame_stop_xyz, self.cuboid_xyz))
        return tuple(stop)  # type: ignore[return-value]

    def targets(self) -> Iterator[XYZ]:
        """Every target cuboid (the corner of a block), x outermost as boss-tools orders
        them (bossutils ``multidimensional.range``)."""
        start, stop, step = self.cubes_start_xyz, self.cubes_stop_xyz, self.step_xyz
        for x in range(start[0], stop[0], step[0]):
            for y in range(start[1], stop[1], step[1]):
                for z in range(start[2], stop[2], step[2]):
                    yield (x, y, z)

    def count(self) -> int:
        """``len(list(self.targets()))``."""
        spans = (
            max(0, ceildiv(stop - start, step))
            for start, stop, step in zip(self.cubes_start_xyz, self.cubes_stop_xyz, self.step_xyz)
        )
        total = 1
        for span in spans:
            total *= span
        return total

    def target_of(self, cube_xyz: XYZ) -> Optional[XYZ]:
        """The target whose block holds cuboid ``cube_xyz`` of ``resolution``, or None
        if the pass does not read it."""
        target = tuple(c - c % step for c, step in zip(cube_xyz, self.step_xyz))
        bounds = zip(target, self.cubes_start_xyz, self.cubes_stop_xyz)
        inside = all(start <= t < stop for t, start, stop in bounds)
        return target if inside else None  # type: ignore[return-value]

    def output_of(self, target_xyz: XYZ) -> XYZ:
        """The cuboid of ``resolution + 1`` that a target's block becomes."""
        return tuple(t // step for t, step in zip(target_xyz, self.step_xyz))  # type: ignore


@attrs.frozen
class DownsamplePlan:
    """The passes of one downsample in the order the BOSS runs them, and how it ends."""

    passes: Tuple[DownsamplePass, ...]
    """The passes, level by level; at a level with an isotropic copy the plain pass
    comes first."""
    failure: Optional[str] = None
    """Why the BOSS's run fails after the passes (its status then goes FAILED), or None."""


def plan_downsample(hierarchy: Hierarchy, cuboid_xyz: XYZ = CUBOID_XYZ) -> DownsamplePlan:
    """The passes that boss-tools runs for a channel (``downsample_channel`` looped by
    boss-manage resolution_hierarchy.hsd).

    From the base resolution up to ``num_hierarchy_levels - 1``: an isotropic hierarchy
    makes one 2x2x2 pass per level. An anisotropic one makes a 2x2x1 pass per level and,
    from the isotropic level on, a second, 2x2x2 pass into the ``ISO&`` copy; its frame is
    the plain frame copied at the isotropic level. If the base resolution is already past
    the isotropic level that copy never happens: the BOSS's second pass then fails (a
    ``KeyError`` on ``iso_x_start``), which `DownsamplePlan.failure` records.

    >>> h = Hierarchy((0, 0, 0), (2048, 2048, 64), (4, 4, 8), num_hierarchy_levels=3)
    >>> for p in plan_downsample(h).passes:
    ...     print(p.resolution, p.step_xyz, p.read_iso, p.write_iso, p.count())
    0 (2, 2, 1) False False 16
    1 (2, 2, 1) False False 4
    1 (2, 2, 2) False True 2
    """
    passes = []
    iso_level = hierarchy.iso_level if hierarchy.hierarchy_method == "anisotropic" else 0
    frame = (hierarchy.frame_start_xyz, hierarchy.frame_stop_xyz)
    iso_frame = None
    for resolution in range(hierarchy.base_resolution, hierarchy.num_hierarchy_levels - 1):
        if hierarchy.hierarchy_method == "isotropic":
            passes.append(DownsamplePass(resolution, (2, 2, 2), False, False, *frame, cuboid_xyz))
            frame = shrink_frame(*frame, (2, 2, 2))
            continue
        if resolution == iso_level:
            iso_frame = frame
        passes.append(DownsamplePass(resolution, (2, 2, 1), False, False, *frame, cuboid_xyz))
        frame = shrink_frame(*frame, (2, 2, 1))
        if resolution >= iso_level:
            if iso_frame is None:
                failure = (
                    f"the base resolution {hierarchy.base_resolution} is past the isotropic "
                    f"level {iso_level}: boss-tools has no isotropic frame to downsample"
                )
                return DownsamplePlan(tuple(passes), failure)
            read_iso = resolution != iso_level
            passes.append(
                DownsamplePass(resolution, (2, 2, 2), read_iso, True, *iso_frame, cuboid_xyz)
            )
            iso_frame = shrink_frame(*iso_frame, (2, 2, 2))
    return DownsamplePlan(tuple(passes))


ReadCuboid = Callable[[int, XYZ, bool], Optional[np.ndarray]]
WriteCuboid = Callable[[int, XYZ, bool, np.ndarray], None]
ListCuboids = Callable[[int, bool], Iterable[XYZ]]


def run_downsample(
    plan: DownsamplePlan,
    read_cuboid: ReadCuboid,
    write_cuboid: WriteCuboid,
    list_cuboids: ListCuboids,
    *,
    is_annotation: bool,
    dtype,
    cuboid_xyz: XYZ = CUBOID_XYZ,
) -> int:
    """Run a plan over a sparse cuboid store; return the number of cuboids written.

    ``list_cuboids(resolution, iso)`` names the stored cuboids (x, y, z indices) of a
    level; ``read_cuboid(resolution, cube_xyz, iso)`` returns one as a ZYX array of
    ``cuboid_xyz[::-1]`` voxels, or None if it is not stored; ``write_cuboid(resolution,
    cube_xyz, iso, array)`` stores one. A pass only visits targets with at least one
    stored cuboid: the BOSS skips the others without writing (``volume_empty`` in
    ``downsample_volume``), so cuboids of the next level outside those blocks keep
    whatever they held. Missing cuboids of a visited block read as zeros.

    If the plan has a failure, the passes run and then RuntimeError is raised, as the
    BOSS writes those levels before it fails.
    """
    cuboid_zyx = tuple(cuboid_xyz[::-1])
    written = 0
    for pass_ in plan.passes:
        stored = list_cuboids(pass_.resolution, pass_.read_iso)
        sources = {pass_.target_of(tuple(cube)) for cube in stored}
        sources.discard(None)
        step_x, step_y, step_z = pass_.step_xyz
        for target in sorted(sources):  # type: ignore[type-var]
            volume = np.zeros(
                (step_z * cuboid_zyx[0], step_y * cuboid_zyx[1], step_x * cuboid_zyx[2]), dtype
            )
            found = False
            for dx in range(step_x):
                for dy in range(step_y):
                    for dz in range(step_z):
                        cube = (target[0] + dx, target[1] + dy, target[2] + dz)
                        data = read_cuboid(pass_.resolution, cube, pass_.read_iso)
                        if data is None:
                            continue
                        found = True
                        volume[
                            dz * cuboid_zyx[0] : (dz + 1) * cuboid_zyx[0],
                            dy * cuboid_zyx[1] : (dy + 1) * cuboid_zyx[1],
                            dx * cuboid_zyx[2] : (dx + 1) * cuboid_zyx[2],
                        ] = np.asarray(data).reshape(cuboid_zyx)
            if not found:
                continue
            out = downsample_block(volume, pass_.step_xyz, is_annotation)
            write_cuboid(pass_.resolution + 1, pass_.output_of(target), pass_.write_iso, out)
            written += 1
    if plan.failure is not None:
        raise RuntimeError(plan.failure)
    return written
