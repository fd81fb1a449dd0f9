"""boss-tools' downsampling: level ``r + 1`` of a channel built from level ``r``, one
block of cuboids at a time, and the channel's ``downsample_status`` around it.

Sources, all read from the BOSS's own code:

- the plan (which passes, which cuboids, which frame): boss-tools
  activities/resolution_hierarchy.py ``downsample_channel``, looped by boss-manage
  cloud_formation/stepfunctions/resolution_hierarchy.hsd;
- one block: boss-tools lambda/downsample_volume.py ``downsample_volume`` and
  ``downsample_cube``;
- images: Pillow's ``Image.resize(..., Image.BILINEAR)`` (Pillow src/libImaging/Resample.c),
  which that lambda calls on each z-slice;
- annotations: spdb spdb/c_lib/c_version/addData.c ``addAnnotationData`` and
  ``getAnnValue64``;
- the status and ``GET /v1/downsample/``: boss django/bossspatialdb/views.py
  (``Downsample``, ``Cutout.post``, ``CutoutToBlack``), django/bossspatialdb/downsample.py
  ``start``, boss-tools activities/boss_db.py.

What one block is
-----------------
The lambda gathers the ``step`` cuboids whose corner is a *target* cuboid (2x2x1 for an
anisotropic step, 2x2x2 for an isotropic one, (x, y, z)), fills the missing ones with
zeros, and reduces the volume to one cuboid of the next level at ``target // step``. If
none of the cuboids exists it writes nothing. Each output cuboid sees only its own block:
there is no overlap between blocks, so filter edges fall at every block seam.

Images (uint8, uint16): for each output z-slice ``z`` the lambda takes input slice
``z * step_z`` alone (an isotropic step *drops* the odd slices, it does not average them)
and resizes it to half width and height with Pillow's bilinear filter. Reducing by 2, that
filter weighs four inputs ``1, 3, 3, 1`` (over 8) per axis, centred on each input pair, and
at the block's first and last output ``3, 3, 1`` and ``1, 3, 3`` (over 7). x is filtered
first, then y, rounding to the image's integer type after each pass. uint8 runs in Pillow's
22-bit fixed point; uint16 in double precision, rounded half up. Voxels past the frame's
stop inside a block are zeros and are blended into the edge voxels.

Annotations (uint64): each 2x2 patch ``a b / c d`` (``a`` at even y and x, ``b`` its x
neighbour, ``c`` its y neighbour) becomes `annotation_label`; an isotropic step uses the
patch in slice ``2z``, and the one in ``2z + 1`` only when the first gives 0.

The status lifecycle is `TRANSITIONS`; the ``GET`` answer is `downsample_info`.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional, Tuple

import attrs
import numpy as np

from .._bossapi import CUBOID_XYZ
from .hierarchy import (
    XYZ,
    Hierarchy,
    ceildiv,
    downsampled_extents,
    downsampled_voxel_sizes,
    shrink_frame,
)

__all__ = [
    "DownsampleStatus",
    "STATUSES",
    "DownsampleEvent",
    "Transition",
    "TRANSITIONS",
    "next_status",
    "downsample_info",
    "DOWNSAMPLE_MAX_VOXELS",
    "MAX_HIERARCHY_LEVELS",
    "annotation_label",
    "downsample_annotation_block",
    "downsample_image_block",
    "downsample_block",
    "DownsamplePass",
    "DownsamplePlan",
    "plan_downsample",
    "run_downsample",
]


# --------------------------------------------------------------------------------------
# The status
# --------------------------------------------------------------------------------------


class DownsampleStatus:
    """A channel's ``downsample_status`` values, as stored and as ``GET`` returns them
    (boss django/bosscore/models.py ``Channel.DownsampleStatus``; the default is
    ``NOT_DOWNSAMPLED``)."""

    NOT_DOWNSAMPLED = "NOT_DOWNSAMPLED"
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    DOWNSAMPLED = "DOWNSAMPLED"
    FAILED = "FAILED"


STATUSES = (
    DownsampleStatus.NOT_DOWNSAMPLED,
    DownsampleStatus.QUEUED,
    DownsampleStatus.IN_PROGRESS,
    DownsampleStatus.DOWNSAMPLED,
    DownsampleStatus.FAILED,
)
"""Every status, in the order of the model's choices."""


class DownsampleEvent:
    """What moves a channel's status.

    - ``START``: ``POST /v1/downsample/{coll}/{exp}/{chan}/`` (``start``, boss
      django/bossspatialdb/downsample.py); 201 with an empty body when accepted.
    - ``DEQUEUE``: the step function takes the job from its queue (``check_downsample_queue``
      then ``UpdateDownsampleStatus``, boss-tools activities/resolution_hierarchy.py and
      boss_db.py).
    - ``FINISH`` / ``FAIL``: the step function ends, or a ``DownsampleChannel`` activity
      fails after its retries (boss-manage resolution_hierarchy.hsd).
    - ``CANCEL``: ``DELETE /v1/downsample/...`` (``Downsample.delete``, boss
      django/bossspatialdb/views.py); 204 when accepted.
    - ``WRITE``: a cutout ``POST`` or a cutout-to-black ``PUT`` that succeeded
      (``Cutout.post``, ``CutoutToBlack.put``, views.py), at any resolution, ``iso`` or not.

    ``GET /v1/downsample/...`` moves nothing.
    """

    START = "start"
    DEQUEUE = "dequeue"
    FINISH = "finish"
    FAIL = "fail"
    CANCEL = "cancel"
    WRITE = "write"


_INVALID_STATE = 2006  # boss django/bosscore/error.py ErrorCodes.INVALID_STATE, HTTP 409


@attrs.frozen
class Transition:
    """The outcome of an event in a status: the status after it, or a refusal."""

    status: str
    """The status after the event (unchanged when refused)."""
    http_status: int = 200
    """The HTTP status the request that caused the event answers with."""
    error_code: Optional[int] = None
    """The BOSS error code of a refusal (``ErrorCodes``), None when accepted."""
    message: str = ""
    """The BOSS's error message of a refusal."""

    @property
    def refused(self) -> bool:
        """Whether the event was refused."""
        return self.error_code is not None


def _refuse(status: str, message: str) -> Transition:
    return Transition(status, 409, _INVALID_STATE, message)


_S = DownsampleStatus
_E = DownsampleEvent
_ALREADY_DOWNSAMPLED = "Channel is already downsampled. Invalid Request."
_ONLY_CANCEL = "You can only cancel a queued or in-progress downsample operation."

TRANSITIONS: dict[tuple[str, str], Transition] = {
    # POST /v1/downsample/: refused while queued or running; a DOWNSAMPLED channel only
    # by a non-staff user (staff may downsample again, see `next_status`).
    (_S.NOT_DOWNSAMPLED, _E.START): Transition(_S.QUEUED, 201),
    (_S.FAILED, _E.START): Transition(_S.QUEUED, 201),
    (_S.DOWNSAMPLED, _E.START): _refuse(_S.DOWNSAMPLED, _ALREADY_DOWNSAMPLED),
    (_S.QUEUED, _E.START): _refuse(
        _S.QUEUED, "Channel is already waiting to be downsampled. Invalid Request."
    ),
    (_S.IN_PROGRESS, _E.START): _refuse(
        _S.IN_PROGRESS, "Channel is currently being downsampled. Invalid Request."
    ),
    # The step function.
    (_S.QUEUED, _E.DEQUEUE): Transition(_S.IN_PROGRESS),
    (_S.IN_PROGRESS, _E.FINISH): Transition(_S.DOWNSAMPLED),
    (_S.IN_PROGRESS, _E.FAIL): Transition(_S.FAILED),
    # DELETE /v1/downsample/: only a queued or running downsample is cancelled.
    (_S.QUEUED, _E.CANCEL): Transition(_S.NOT_DOWNSAMPLED, 204),
    (_S.IN_PROGRESS, _E.CANCEL): Transition(_S.NOT_DOWNSAMPLED, 204),
    (_S.NOT_DOWNSAMPLED, _E.CANCEL): _refuse(_S.NOT_DOWNSAMPLED, _ONLY_CANCEL),
    (_S.DOWNSAMPLED, _E.CANCEL): _refuse(_S.DOWNSAMPLED, _ONLY_CANCEL),
    (_S.FAILED, _E.CANCEL): _refuse(_S.FAILED, _ONLY_CANCEL),
    # A write makes a downsampled channel NOT_DOWNSAMPLED (and clears downsample_arn);
    # in any other status it changes nothing, not even while a downsample runs.
    (_S.DOWNSAMPLED, _E.WRITE): Transition(_S.NOT_DOWNSAMPLED, 201),
    (_S.NOT_DOWNSAMPLED, _E.WRITE): Transition(_S.NOT_DOWNSAMPLED, 201),
    (_S.QUEUED, _E.WRITE): Transition(_S.QUEUED, 201),
    (_S.IN_PROGRESS, _E.WRITE): Transition(_S.IN_PROGRESS, 201),
    (_S.FAILED, _E.WRITE): Transition(_S.FAILED, 201),
}
"""``(status, event) -> Transition``. Pairs missing here (say ``FINISH`` while
``QUEUED``) cannot happen in the BOSS; `next_status` raises for them.

=================  =====================  ===============  ==================  ===================
status             START (POST)           DEQUEUE/FINISH   CANCEL (DELETE)     WRITE (cutout)
=================  =====================  ===============  ==================  ===================
NOT_DOWNSAMPLED    QUEUED, 201            -                409                 unchanged
QUEUED             409                    IN_PROGRESS      NOT_DOWNSAMPLED     unchanged
IN_PROGRESS        409                    DOWNSAMPLED or   NOT_DOWNSAMPLED     unchanged
                                          FAILED
DOWNSAMPLED        409 (staff: QUEUED)    -                409                 NOT_DOWNSAMPLED
FAILED             QUEUED, 201            -                409                 unchanged
=================  =====================  ===============  ==================  ===================
"""

DOWNSAMPLE_MAX_VOXELS = (200 * 512) * (200 * 512) * (200 * 16)
"""Largest frame volume a non-staff user may downsample (``DOWNSAMPLE_MAX_SIZE``, boss
django/boss/settings/base.py); beyond it ``start`` answers 409 "Large downsamples require
admin permissions to trigger. Invalid Request."."""

MAX_HIERARCHY_LEVELS = 13
"""spdb's ``CUBOIDSIZE`` lists 13 levels (spdb/c_lib/ndtype.py): ``GET
/v1/downsample/`` fails (HTTP 500) for an experiment with more."""


def next_status(
    status: str, event: str, *, is_staff: bool = False, frame_voxels: int = 0
) -> Transition:
    """The outcome of ``event`` for a channel in ``status`` (`TRANSITIONS`).

    ``is_staff`` lets a ``START`` downsample a DOWNSAMPLED channel again and lift the
    size limit; ``frame_voxels`` is the frame's volume that a ``START`` would downsample
    (checked after the status, as ``start`` does).

    >>> next_status("NOT_DOWNSAMPLED", "start")
    Transition(status='QUEUED', http_status=201, error_code=None, message='')
    >>> next_status("DOWNSAMPLED", "start").http_status
    409
    >>> next_status("DOWNSAMPLED", "start", is_staff=True).status
    'QUEUED'
    >>> next_status("DOWNSAMPLED", "write").status, next_status("IN_PROGRESS", "write").status
    ('NOT_DOWNSAMPLED', 'IN_PROGRESS')
    """
    status = status.upper()  # the BOSS compares downsample_status.upper()
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    if event == _E.START and status == _S.DOWNSAMPLED and is_staff:
        outcome = Transition(_S.QUEUED, 201)
    else:
        try:
            outcome = TRANSITIONS[(status, event)]
        except KeyError:
            raise ValueError(f"event {event!r} cannot happen in status {status!r}") from None
    if (
        event == _E.START
        and not outcome.refused
        and not is_staff
        and frame_voxels > DOWNSAMPLE_MAX_VOXELS
    ):
        return _refuse(
            status, "Large downsamples require admin permissions to trigger. Invalid Request."
        )
    return outcome


def downsample_info(hierarchy: Hierarchy, status: str, iso: bool = False) -> dict:
    """The body of ``GET /v1/downsample/{coll}/{exp}/{chan}/[?iso=true]``
    (``Downsample.get``, boss django/bossspatialdb/views.py).

    Keys in the BOSS's order: ``status`` (as stored), ``num_hierarchy_levels``, then
    ``voxel_size``, ``extent`` and ``cuboid_size``, each a dict from the level as a string
    (``"0"`` .. ``str(num_hierarchy_levels - 1)``, from level 0 whatever the base
    resolution) to ``[x, y, z]``. Voxel sizes are floats; extents come from the frame's
    stop (`ndframework.bossemu.hierarchy.downsampled_extents`).

    The BOSS computes the isotropic level first, also without ``iso``: for an anisotropic
    frame whose x and y voxel sizes differ this raises ValueError, which the BOSS answers
    with 400, code 9001 and ``"Error while getting downsampled voxel dimensions: "``
    followed by the message.

    >>> h = Hierarchy((0, 0, 0), (1000, 800, 30), (4, 4, 8), num_hierarchy_levels=3)
    >>> downsample_info(h, "NOT_DOWNSAMPLED", iso=True)  # doctest: +NORMALIZE_WHITESPACE
    {'status': 'NOT_DOWNSAMPLED', 'num_hierarchy_levels': 3,
     'voxel_size': {'0': [4.0, 4.0, 8.0], '1': [8.0, 8.0, 8.0], '2': [16.0, 16.0, 16.0]},
     'extent': {'0': [1000, 800, 30], '1': [500, 400, 30], '2': [250, 200, 15]},
     'cuboid_size': {'0': [512, 512, 16], '1': [512, 512, 16], '2': [512, 512, 16]}}
    """
    levels = hierarchy.num_hierarchy_levels
    if levels > MAX_HIERARCHY_LEVELS:
        raise ValueError(
            f"num_hierarchy_levels must be at most {MAX_HIERARCHY_LEVELS} for the BOSS "
            f"to describe its levels, got {levels}"
        )
    iso_level = hierarchy.iso_level
    voxel_sizes = downsampled_voxel_sizes(
        levels, iso_level, hierarchy.hierarchy_method, hierarchy.voxel_size_xyz, iso
    )
    extents = downsampled_extents(
        levels, iso_level, hierarchy.hierarchy_method, hierarchy.frame_stop_xyz, iso
    )
    return {
        "status": status,
        "num_hierarchy_levels": levels,
        "voxel_size": {str(level): list(size) for level, size in enumerate(voxel_sizes)},
        "extent": {str(level): list(extent) for level, extent in enumerate(extents)},
        "cuboid_size": {str(level): list(CUBOID_XYZ) for level in range(levels)},
    }


# --------------------------------------------------------------------------------------
# One block: annotations
# --------------------------------------------------------------------------------------


def annotation_label(a, b, c, d):
    """The label of a 2x2 patch ``a b / c d`` at the next level (spdb ``getAnnValue64``,
    spdb/c_lib/c_version/addData.c), elementwise over numpy arrays or on scalars.

    Start from ``a``, or ``b`` if ``a`` is 0. A non-zero ``c`` replaces a 0 so far, or
    wins if it equals ``a`` or ``b``. A non-zero ``d`` wins if it equals ``a``, ``b`` or
    ``c``; but where everything so far is 0 the C code assigns ``c`` (itself 0), so a
    label found in ``d`` alone is lost.

    >>> patches = [(1, 2, 3, 4), (1, 2, 2, 5), (1, 2, 3, 3), (0, 5, 7, 7)]
    >>> [int(annotation_label(*p)) for p in patches]
    [1, 2, 3, 7]
    >>> patches = [(0, 0, 0, 9), (0, 0, 4, 0), (0, 6, 0, 0), (8, 0, 0, 0)]
    >>> [int(annotation_label(*p)) for p in patches]
    [0, 4, 6, 8]
    """
    a, b, c, d = (np.asarray(v) for v in (a, b, c, d))
    value = np.where(a != 0, a, b)
    value = np.where(
        c != 0, np.where(value == 0, c, np.where((c == a) | (c == b), c, value)), value
    )
    value = np.where(
        d != 0,
        np.where(value == 0, c, np.where((d == a) | (d == b) | (d == c), d, value)),
        value,
    )
    return value


def _patch_labels(plane: np.ndarray) -> np.ndarray:
    """`annotation_label` of every 2x2 patch of a (..., 2h, 2w) array."""
    return annotation_label(
        plane[..., 0::2, 0::2],
        plane[..., 0::2, 1::2],
        plane[..., 1::2, 0::2],
        plane[..., 1::2, 1::2],
    )


def downsample_annotation_block(volume: np.ndarray, step_z: int) -> np.ndarray:
    """Reduce a ZYX uint64 block of ``(step_z * d, 2h, 2w)`` voxels to ``(d, h, w)``
    (spdb ``addAnnotationData``, spdb/c_lib/c_version/addData.c).

    With ``step_z == 2`` output slice ``z`` takes the labels of input slice ``2z``, and
    those of ``2z + 1`` where the first give 0.

    >>> block = np.zeros((2, 2, 2), np.uint64); block[1, 0, 1] = 5
    >>> downsample_annotation_block(block, 2).tolist()
    [[[5]]]
    """
    _check_block(volume, step_z)
    labels = _patch_labels(volume[0::step_z])
    if step_z == 2:
        labels = np.where(labels == 0, _patch_labels(volume[1::2]), labels)
    return labels.astype(volume.dtype, copy=False)


# --------------------------------------------------------------------------------------
# One block: images, as Pillow's bilinear resize computes them
# --------------------------------------------------------------------------------------

_PRECISION_BITS = 32 - 8 - 2  # Pillow Resample.c: fixed point of the 8-bit passes


def _bilinear_coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """First input index and the weights, one row per output index, of Pillow's bilinear
    filter for ``in_size -> out_size`` (``precompute_coeffs``, Pillow Resample.c).

    Rows have as many weights as the widest one; unused weights are 0. Values are computed
    in the same double-precision operations as Pillow, so they match to the last bit.

    >>> first, weights = _bilinear_coefficients(8, 4)
    >>> first.tolist(), (weights * 56).round(6).tolist()[:2]
    ([0, 1, 3, 5], [[24.0, 24.0, 8.0, 0.0, 0.0], [7.0, 21.0, 21.0, 7.0, 0.0]])
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # bilinear support is 1
    ksize = int(np.ceil(support)) * 2 + 1
    first = np.zeros(out_size, dtype=np.intp)
    weights = np.zeros((out_size, ksize), dtype=np.float64)
    for out_index in range(out_size):
        center = (out_index + 0.5) * scale
        low = max(int(center - support + 0.5), 0)  # C's (int) truncates toward zero
        high = min(int(center + support + 0.5), in_size)
        # Pillow's operation order, (index - center + 0.5) * (1 / filterscale), keeps
        # the doubles bit-identical.
        taps = [
            max(0.0, 1.0 - abs((index - center + 0.5) * (1.0 / filterscale)))
            for index in range(low, high)
        ]
        total = 0.0
        for tap in taps:
            total += tap
        if total != 0.0:
            taps = [tap / total for tap in taps]
        first[out_index] = low
        weights[out_index, : len(taps)] = taps
    return first, weights


def _resample_last_axis(data: np.ndarray, out_size: int) -> np.ndarray:
    """Pillow's bilinear pass along the last axis of uint8 or uint16 ``data``
    (``ImagingResampleHorizontal_8bpc`` / ``_16bpc``, Pillow Resample.c)."""
    in_size = data.shape[-1]
    first, weights = _bilinear_coefficients(in_size, out_size)
    index = np.minimum(first[:, None] + np.arange(weights.shape[1]), in_size - 1)
    if data.dtype == np.uint8:
        # Pillow sums in a C int: 255 * 2**22 and the rounding half fit in 32 bits.
        fixed = (0.5 + weights * (1 << _PRECISION_BITS)).astype(np.int32)  # (int) truncates
        total = np.full(data.shape[:-1] + (out_size,), 1 << (_PRECISION_BITS - 1), np.int32)
        for tap in range(weights.shape[1]):
            total += data[..., index[:, tap]].astype(np.int32) * fixed[:, tap]
        return np.clip(total >> _PRECISION_BITS, 0, 255).astype(np.uint8)
    # 16-bit: doubles summed tap by tap in Pillow's order, then ROUND_UP (+0.5, truncate).
    total = np.zeros(data.shape[:-1] + (out_size,), np.float64)
    for tap in range(weights.shape[1]):
        total += data[..., index[:, tap]].astype(np.float64) * weights[:, tap]
    rounded = (total + 0.5).astype(np.int64)
    # Pillow stores the low byte and the clipped high byte separately.
    return (np.minimum(rounded >> 8, 255) * 256 + rounded % 256).astype(np.uint16)


def downsample_image_block(volume: np.ndarray, step_z: int) -> np.ndarray:
    """Reduce a ZYX uint8 or uint16 block of ``(step_z * d, 2h, 2w)`` voxels to
    ``(d, h, w)`` as boss-tools does (``downsample_cube``, lambda/downsample_volume.py):
    output slice ``z`` is input slice ``z * step_z`` resized by Pillow's bilinear filter,
    x first, then y.

    uint16 gives what Pillow 11 and later compute. The BOSS's lambda ran on Python 3.7,
    whose newest Pillow (9.5) refuses a bilinear resize of a 16-bit image ("image has
    wrong mode"), so there a uint16 downsample failed.

    >>> slice_ = np.array([[0, 0, 80, 80], [0, 0, 80, 80]], np.uint8)[None]
    >>> downsample_image_block(slice_, 1).tolist()     # weights 3,3,1 / 7 and 1,3,3 / 7
    [[[11, 69]]]
    """
    _check_block(volume, step_z)
    if volume.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"Unsupported type for image downsampling '{volume.dtype}'")
    slices = volume[0::step_z]
    out_y, out_x = volume.shape[1] // 2, volume.shape[2] // 2
    across_x = _resample_last_axis(slices, out_x)
    across_y = _resample_last_axis(np.swapaxes(across_x, -1, -2), out_y)
    return np.ascontiguousarray(np.swapaxes(across_y, -1, -2))


def _check_block(volume: np.ndarray, step_z: int) -> None:
    if step_z not in (1, 2):
        raise ValueError(f"step_z must be 1 or 2, got {step_z}")
    if volume.ndim != 3 or volume.shape[0] % step_z or volume.shape[1] % 2 or volume.shape[2] % 2:
        raise ValueError(
            f"a block must be ZYX with z divisible by step_z={step_z} and even y and x, "
            f"got shape {volume.shape}"
        )


def downsample_block(volume: np.ndarray, step_xyz: XYZ, is_annotation: bool) -> np.ndarray:
    """One output cuboid from a block of ``step`` input cuboids (ZYX array of ``step *
    cuboid`` voxels): `downsample_annotation_block` for annotation channels,
    `downsample_image_block` otherwise."""
    if tuple(step_xyz[:2]) != (2, 2):
        raise ValueError(f"step_xyz must be (2, 2, 1) or (2, 2, 2), got {tuple(step_xyz)}")
    if is_annotation:
        return downsample_annotation_block(volume, step_xyz[2])
    return downsample_image_block(volume, step_xyz[2])


# --------------------------------------------------------------------------------------
# A whole channel
# --------------------------------------------------------------------------------------


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
