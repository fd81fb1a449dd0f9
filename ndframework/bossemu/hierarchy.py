"""The resolution hierarchy of a channel: per-level voxel sizes, extents, frames and the
isotropic level, as the BOSS computes them.

Two sources fix these numbers, and they do not always agree; each function says which it
follows:

- spdb (spdb/project/resource.py: ``get_isotropic_level``, ``get_downsampled_voxel_dims``,
  ``get_downsampled_extent_dims``) answers ``GET /v1/downsample/...`` and decides which
  cuboids an ``iso=true`` read or write touches (spdb/spatialdb/object.py
  ``generate_object_key``, spdb/spatialdb/kvio.py ``generate_cached_cuboid_keys``). Its
  levels count from resolution 0 and its extents from the frame's *stop* only.
- boss-tools (activities/resolution_hierarchy.py ``downsample_channel``) builds the levels.
  It starts from the channel's ``base_resolution`` with the coordinate frame as given, and
  shrinks the frame's start with a floor division and its stop with a ceiling division at
  every step.

Vectors that the BOSS speaks in XYZ order keep that order here and say so in their names
(``voxel_size_xyz``); nothing in this module touches voxel data.

The anisotropic and isotropic methods
-------------------------------------
``hierarchy_method`` is an experiment's field (boss django/bosscore/models.py):

- ``"isotropic"``: every level halves x, y and z. The isotropic level is 0 and there is no
  separate isotropic copy: ``iso=true`` changes nothing.
- ``"anisotropic"`` (the default): the levels a plain read sees halve x and y and keep z, at
  *every* level, also past the isotropic level. Besides them, boss-tools builds an
  isotropic copy of each level above the isotropic level (halving x, y and z from the
  isotropic level on), stored under keys prefixed ``ISO&`` and read with ``iso=true``.

>>> h = Hierarchy(frame_start_xyz=(0, 0, 0), frame_stop_xyz=(2000, 1000, 100),
...               voxel_size_xyz=(4.0, 4.0, 16.0), num_hierarchy_levels=5)
>>> h.iso_level
2
>>> h.extent(4), h.extent(4, iso=True)
((125, 63, 100), (125, 63, 25))
>>> h.voxel_size(4), h.voxel_size(4, iso=True)
((64.0, 64.0, 16.0), (64.0, 64.0, 64.0))
>>> h.has_iso_copy(2), h.has_iso_copy(3)
(False, True)
"""

from __future__ import annotations

import math
from typing import Tuple

import attrs

__all__ = [
    "HIERARCHY_METHODS",
    "ISO_LEVEL_SEARCH_DEPTH",
    "Hierarchy",
    "isotropic_level",
    "downsampled_voxel_sizes",
    "downsampled_extents",
    "uses_iso_keys",
    "shrink_frame",
    "ceildiv",
]

XYZ = Tuple[int, int, int]
XYZFloat = Tuple[float, float, float]

HIERARCHY_METHODS = ("anisotropic", "isotropic")
"""An experiment's ``hierarchy_method`` choices (boss django/bosscore/models.py
``HIERARCHY_METHOD_CHOICES``); ``"anisotropic"`` is the default."""

ISO_LEVEL_SEARCH_DEPTH = 30
"""spdb looks for the isotropic level among resolutions 0 to 29 (``range(0, 30)`` in
``get_isotropic_level``, spdb/project/resource.py)."""


def ceildiv(numerator: int, denominator: int) -> int:
    """Integer division rounded up, also for negative numbers (bossutils' ``ceildiv``,
    boss-tools bossutils/src/bossutils/multidimensional.py).

    >>> ceildiv(5, 2), ceildiv(4, 2), ceildiv(-5, 2), ceildiv(0, 2)
    (3, 2, -2, 0)
    """
    return -(-numerator // denominator)


def _check_method(hierarchy_method: str) -> str:
    if hierarchy_method not in HIERARCHY_METHODS:
        raise ValueError(
            f"hierarchy_method must be one of {HIERARCHY_METHODS}, got {hierarchy_method!r}"
        )
    return hierarchy_method


def isotropic_level(hierarchy_method: str, voxel_size_xyz: XYZFloat) -> int:
    """The resolution whose voxels are closest to cubes (spdb ``get_isotropic_level``,
    spdb/project/resource.py).

    For ``"isotropic"`` it is 0. For ``"anisotropic"`` it is the first ``r`` in
    ``range(30)`` that minimises ``|z / (x * 2**r) - 1|`` (numpy's ``argmin``: the first of
    equal minima), computed in floating point as spdb does. x and y must be equal.

    >>> isotropic_level("anisotropic", (4.0, 4.0, 40.0))
    3
    >>> isotropic_level("anisotropic", (4.0, 4.0, 4.0)), isotropic_level("anisotropic", (8, 8, 2))
    (0, 0)
    >>> isotropic_level("isotropic", (4.0, 4.0, 40.0))
    0
    >>> isotropic_level("anisotropic", (3.0, 3.0, 4.0))   # 4/3 and 2/3 tie: the first wins
    0
    >>> isotropic_level("anisotropic", (4.0, 5.0, 40.0))
    Traceback (most recent call last):
    ...
    ValueError: X voxel size != Y voxel size. Currently unable to determine isotropic level
    """
    if _check_method(hierarchy_method) == "isotropic":
        return 0
    x_size, y_size, z_size = voxel_size_xyz
    if x_size != y_size:
        # spdb's own message, which GET /v1/downsample/ passes on to the client.
        raise ValueError(
            "X voxel size != Y voxel size. Currently unable to determine isotropic level"
        )
    distances = [
        abs(float(z_size) / (x_size * 2**level) - 1) for level in range(ISO_LEVEL_SEARCH_DEPTH)
    ]
    return distances.index(min(distances))


def uses_iso_keys(hierarchy_method: str, resolution: int, iso_level: int, iso: bool) -> bool:
    """Whether a read or write at ``resolution`` goes to the separate isotropic copy.

    spdb prefixes a cuboid's key with ``ISO&`` exactly when ``iso`` is true, the method is
    anisotropic and ``resolution > iso_level`` (``generate_object_key``,
    spdb/spatialdb/object.py; ``generate_cached_cuboid_keys``, spdb/spatialdb/kvio.py;
    ``write_cuboid``, spdb/spatialdb/spatialdb.py). Otherwise ``iso=true`` reads the plain
    level: at and below the isotropic level the two are the same data.

    >>> uses_iso_keys("anisotropic", 3, 2, iso=True), uses_iso_keys("anisotropic", 2, 2, iso=True)
    (True, False)
    >>> uses_iso_keys("isotropic", 3, 0, iso=True), uses_iso_keys("anisotropic", 3, 2, iso=False)
    (False, False)
    """
    return bool(iso) and _check_method(hierarchy_method) == "anisotropic" and resolution > iso_level


def downsampled_voxel_sizes(
    num_hierarchy_levels: int,
    iso_level: int,
    hierarchy_method: str,
    voxel_size_xyz: XYZFloat,
    iso: bool = False,
) -> list[XYZFloat]:
    """Voxel size (x, y, z) of each level 0 .. ``num_hierarchy_levels - 1`` (spdb
    ``get_downsampled_voxel_dims``, spdb/project/resource.py).

    x and y double at every level. z doubles at every level for ``"isotropic"``, and for
    ``"anisotropic"`` only above ``iso_level`` and only when ``iso`` is asked for. The
    sizes are floats, as the coordinate frame's ``FloatField`` gives them (boss
    django/bosscore/models.py).

    >>> downsampled_voxel_sizes(4, 1, "anisotropic", (4, 4, 8), iso=True)
    [(4.0, 4.0, 8.0), (8.0, 8.0, 8.0), (16.0, 16.0, 16.0), (32.0, 32.0, 32.0)]
    >>> downsampled_voxel_sizes(3, 1, "anisotropic", (4, 4, 8))
    [(4.0, 4.0, 8.0), (8.0, 8.0, 8.0), (16.0, 16.0, 8.0)]
    >>> downsampled_voxel_sizes(0, 0, "isotropic", (1, 1, 1))   # spdb always gives level 0
    [(1.0, 1.0, 1.0)]
    """
    _check_method(hierarchy_method)
    sizes = [tuple(float(size) for size in voxel_size_xyz)]
    for level in range(1, num_hierarchy_levels):
        x_size, y_size, z_size = sizes[-1]
        if hierarchy_method == "isotropic" or (iso and level > iso_level):
            z_size *= 2
        sizes.append((x_size * 2, y_size * 2, z_size))
    return sizes  # type: ignore[return-value]


def downsampled_extents(
    num_hierarchy_levels: int,
    iso_level: int,
    hierarchy_method: str,
    frame_stop_xyz: XYZ,
    iso: bool = False,
) -> list[XYZ]:
    """Extent (x, y, z) of each level 0 .. ``num_hierarchy_levels - 1`` (spdb
    ``get_downsampled_extent_dims``, spdb/project/resource.py), as ``GET
    /v1/downsample/`` reports it.

    spdb starts from the frame's *stop*, not from ``stop - start``: a frame that starts
    away from 0 reports the stop, halved and rounded up (``math.ceil(n / 2.0)``) along
    every axis that halves. Which axes halve follows `downsampled_voxel_sizes`.

    >>> downsampled_extents(4, 1, "anisotropic", (1001, 1000, 33))
    [(1001, 1000, 33), (501, 500, 33), (251, 250, 33), (126, 125, 33)]
    >>> downsampled_extents(4, 1, "anisotropic", (1001, 1000, 33), iso=True)
    [(1001, 1000, 33), (501, 500, 33), (251, 250, 17), (126, 125, 9)]
    >>> downsampled_extents(3, 0, "isotropic", (-5, 7, 1))
    [(-5, 7, 1), (-2, 4, 1), (-1, 2, 1)]
    """
    _check_method(hierarchy_method)
    extents = [tuple(int(stop) for stop in frame_stop_xyz)]
    for level in range(1, num_hierarchy_levels):
        x_stop, y_stop, z_stop = extents[-1]
        if hierarchy_method == "isotropic" or (iso and level > iso_level):
            z_stop = math.ceil(z_stop / 2.0)
        extents.append((math.ceil(x_stop / 2.0), math.ceil(y_stop / 2.0), z_stop))
    return extents  # type: ignore[return-value]


def shrink_frame(start_xyz: XYZ, stop_xyz: XYZ, step_xyz: XYZ) -> tuple[XYZ, XYZ]:
    """The frame one level down, as boss-tools resizes it after each downsample step:
    start floor-divided, stop ceiling-divided by the step (``resize`` in
    ``downsample_channel``, activities/resolution_hierarchy.py). A negative start rounds
    away from zero; the frame never loses a voxel.

    >>> shrink_frame((-5, 3, 7), (1001, 9, 33), (2, 2, 1))
    ((-3, 1, 7), (501, 5, 33))
    """
    start = tuple(coord // step for coord, step in zip(start_xyz, step_xyz))
    stop = tuple(ceildiv(coord, step) for coord, step in zip(stop_xyz, step_xyz))
    return start, stop  # type: ignore[return-value]


def _xyz_ints(value) -> XYZ:
    return tuple(int(v) for v in value)  # type: ignore[return-value]


def _xyz_floats(value) -> XYZFloat:
    return tuple(float(v) for v in value)  # type: ignore[return-value]


@attrs.frozen
class Hierarchy:
    """A channel's resolution hierarchy: its experiment's coordinate frame, number of
    levels and method, and the channel's base resolution.

    >>> h = Hierarchy((0, 0, 0), (1024, 1024, 64), (4, 4, 40), num_hierarchy_levels=6)
    >>> h.iso_level, h.levels_built
    (3, range(1, 6))
    >>> h.downsample_frame(5), h.downsample_frame(5, iso=True)
    (((0, 0, 0), (32, 32, 64)), ((0, 0, 0), (32, 32, 16)))
    """

    frame_start_xyz: XYZ = attrs.field(converter=_xyz_ints)
    """The coordinate frame's ``x_start, y_start, z_start`` (may be negative)."""
    frame_stop_xyz: XYZ = attrs.field(converter=_xyz_ints)
    """The coordinate frame's ``x_stop, y_stop, z_stop``."""
    voxel_size_xyz: XYZFloat = attrs.field(converter=_xyz_floats)
    """The coordinate frame's voxel size at resolution 0."""
    num_hierarchy_levels: int = attrs.field(default=1, converter=int)
    """The experiment's number of levels (boss default 1)."""
    hierarchy_method: str = attrs.field(default="anisotropic")
    """``"anisotropic"`` (boss default) or ``"isotropic"``."""
    base_resolution: int = attrs.field(default=0, converter=int)
    """The channel's base resolution: where its data are written and downsampling starts."""

    @hierarchy_method.validator
    def _check_hierarchy_method(self, attribute, value):
        _check_method(value)

    @num_hierarchy_levels.validator
    def _check_levels(self, attribute, value):
        if value < 1:
            raise ValueError(f"num_hierarchy_levels must be at least 1, got {value}")

    @base_resolution.validator
    def _check_base(self, attribute, value):
        # boss django/bosscore/serializers.py refuses a base_resolution at or past the
        # number of levels.
        if not 0 <= value < self.num_hierarchy_levels:
            raise ValueError(
                f"base_resolution must be in [0, {self.num_hierarchy_levels}) "
                f"(num_hierarchy_levels), got {value}"
            )

    @property
    def iso_level(self) -> int:
        """The isotropic level (`isotropic_level`); raises ValueError for an anisotropic
        frame whose x and y voxel sizes differ."""
        return isotropic_level(self.hierarchy_method, self.voxel_size_xyz)

    @property
    def readable_resolutions(self) -> range:
        """Resolutions a cutout may ask for: ``range(base, base + num_hierarchy_levels)``
        (``validate_resolution``, boss django/bosscore/request.py)."""
        return range(self.base_resolution, self.base_resolution + self.num_hierarchy_levels)

    @property
    def levels_built(self) -> range:
        """Levels a downsample writes: ``base + 1`` up to ``num_hierarchy_levels - 1``.

        The step function loops while ``res_lt_max`` holds, first set to ``base + 1 <
        num_hierarchy_levels`` (boss django/bossspatialdb/downsample.py ``start``), then to
        ``resolution < resolution_max - 1`` after each level (boss-tools
        activities/resolution_hierarchy.py ``downsample_channel``; boss-manage
        resolution_hierarchy.hsd). ``num_hierarchy_levels`` counts from 0 here, not from
        the base resolution.
        """
        return range(self.base_resolution + 1, self.num_hierarchy_levels)

    def uses_iso_keys(self, resolution: int, iso: bool) -> bool:
        """Whether ``iso`` reads and writes at ``resolution`` use the isotropic copy
        (`uses_iso_keys`)."""
        if not (iso and self.hierarchy_method == "anisotropic"):
            return False
        return uses_iso_keys(self.hierarchy_method, resolution, self.iso_level, iso)

    def has_iso_copy(self, resolution: int) -> bool:
        """Whether a downsample builds a separate isotropic copy of ``resolution``: an
        anisotropic hierarchy above its isotropic level (boss-tools
        ``downsample_channel`` adds the 2x2x2 pass from ``resolution >= iso_resolution``,
        writing level ``resolution + 1`` under ``ISO&`` keys). A base resolution past the
        isotropic level builds none: boss-tools fails before its first isotropic pass."""
        return (
            self.hierarchy_method == "anisotropic"
            and resolution in self.levels_built
            and self.base_resolution <= self.iso_level < resolution
        )

    def step_xyz(self, resolution: int, iso: bool = False) -> XYZ:
        """How level ``resolution`` is made from ``resolution - 1``: ``(2, 2, 2)`` for an
        isotropic step, ``(2, 2, 1)`` for an anisotropic one (boss-tools
        ``downsample_channel``: the ``'step'`` of each config).

        >>> h = Hierarchy((0, 0, 0), (64, 64, 64), (1, 1, 4), num_hierarchy_levels=4)
        >>> [h.step_xyz(r) for r in (1, 2, 3)], [h.step_xyz(r, iso=True) for r in (1, 2, 3)]
        ([(2, 2, 1), (2, 2, 1), (2, 2, 1)], [(2, 2, 1), (2, 2, 1), (2, 2, 2)])
        """
        if resolution < 1:
            raise ValueError(f"resolution must be at least 1 to have a step, got {resolution}")
        isotropic = self.hierarchy_method == "isotropic" or self.uses_iso_keys(resolution, iso)
        return (2, 2, 2) if isotropic else (2, 2, 1)

    def voxel_size(self, resolution: int, iso: bool = False) -> XYZFloat:
        """Voxel size (x, y, z) at ``resolution`` (`downsampled_voxel_sizes`)."""
        sizes = downsampled_voxel_sizes(
            resolution + 1, self._iso_level_or_zero(iso), self.hierarchy_method,
            self.voxel_size_xyz, iso,
        )
        return sizes[resolution]

    def extent(self, resolution: int, iso: bool = False) -> XYZ:
        """Extent (x, y, z) at ``resolution`` as ``GET /v1/downsample/`` reports it
        (`downsampled_extents`: from the frame's stop, counting from level 0)."""
        extents = downsampled_extents(
            resolution + 1, self._iso_level_or_zero(iso), self.hierarchy_method,
            self.frame_stop_xyz, iso,
        )
        return extents[resolution]

    def _iso_level_or_zero(self, iso: bool) -> int:
        # spdb needs the isotropic level only where it matters; an isotropic hierarchy
        # or a plain read never consults it.
        return self.iso_level if iso and self.hierarchy_method == "anisotropic" else 0

    def downsample_frame(self, resolution: int, iso: bool = False) -> tuple[XYZ, XYZ]:
        """The frame (start, stop) boss-tools holds at ``resolution`` while downsampling.

        boss-tools starts from the coordinate frame *as the base resolution's frame* and
        shrinks it with `shrink_frame` once per level (``downsample_channel``). The
        isotropic copy starts from the plain frame at the isotropic level (copied as
        ``iso_{x,y,z}_{start,stop}`` when ``resolution == iso_resolution``) and shrinks by
        2 in every axis from there.

        >>> h = Hierarchy((-600, 0, 10), (1000, 1000, 50), (4, 4, 8), num_hierarchy_levels=4)
        >>> h.downsample_frame(1), h.downsample_frame(3, iso=True)
        (((-300, 0, 10), (500, 500, 50)), ((-75, 0, 2), (125, 125, 13)))
        """
        if resolution < self.base_resolution:
            raise ValueError(
                f"resolution must be at least the base resolution {self.base_resolution}, "
                f"got {resolution}"
            )
        start, stop = self.frame_start_xyz, self.frame_stop_xyz
        for level in range(self.base_resolution + 1, resolution + 1):
            start, stop = shrink_frame(start, stop, self.step_xyz(level, iso))
        return start, stop
