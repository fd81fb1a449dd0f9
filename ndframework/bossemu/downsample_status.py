"""A channel's ``downsample_status``: its values, the events that move it (`TRANSITIONS`,
`next_status`), and the body of ``GET /v1/downsample/`` (`downsample_info`).

Sources, read from the BOSS's own code: boss django/bossspatialdb/views.py (``Downsample``,
``Cutout.post``, ``CutoutToBlack``), django/bossspatialdb/downsample.py ``start``, boss-tools
activities/boss_db.py.
"""

from __future__ import annotations

from typing import Optional

import attrs

from .._bossapi import CUBOID_XYZ
from .hierarchy import Hierarchy, downsampled_extents, downsampled_voxel_sizes

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
]


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
