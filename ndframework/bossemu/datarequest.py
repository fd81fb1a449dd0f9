"""What the BOSS's data services check before they touch data: the channel named in the URL,
the resolution, the cutout's ranges and its time range (``BossRequest``, boss
django/bosscore/request.py), and the emulator's state they share (`Backend`).

Oddities of the BOSS kept on purpose, each from request.py:

- ranges are checked against the coordinate frame *at resolution 0* whatever the
  resolution asked for (``set_cutoutargs``: "TODO --- Get offset for that resolution.
  Reading from coordinate frame right now, This is WRONG");
- a time range may end one past the experiment's last sample and start at its number of
  samples (``set_time`` compares with ``>`` and ``num_time_samples + 1``); such samples
  read as zeros;
- an invalid resolution is a ``TYPE_ERROR`` (``validate_resolution``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from .._bossapi import MAX_CUTOUT_BYTES
from ..geometry import Box
from .accounts import Accounts
from .cuboid_stores import CuboidStore
from .errors import BossError, ErrorCodes
from .hierarchy import Hierarchy
from .paths import Resolved, ResourcePath
from .quirks import Quirks
from .resources import ResourceTree

if TYPE_CHECKING:
    from .downsampling import Downsampler

__all__ = ["Backend", "ChannelRequest", "CutoutArgs", "channel_request", "cutout_args"]


@attrs.define(eq=False)
class Backend:
    """What every view works on: the resource tree, the cuboids and the options."""

    resources: ResourceTree
    """Collections, frames, experiments, channels, metadata and id counters."""
    cuboids: CuboidStore
    """The voxels, one cuboid per key."""
    max_cutout_bytes: int = MAX_CUTOUT_BYTES
    """``CUTOUT_MAX_SIZE``: the largest cutout, uncompressed (uint64: four times this)."""
    exact_id_index: bool = False
    """Answer ``/v1/ids`` and ``/v1/boundingbox`` from the stored cuboids, instead of from
    the BOSS's object index, which its writes no longer fill (see `volume`)."""
    quirks: Quirks = attrs.field(factory=Quirks)
    """The BOSS's oddities reproduced."""
    is_staff: bool = False
    """Whether the one user is staff (may downsample again and without the size limit)."""
    downsampler: Downsampler | None = None
    """Runs the downsample jobs; set by the server."""
    accounts: Accounts = attrs.field(
        default=attrs.Factory(lambda self: Accounts.open(self.resources), takes_self=True)
    )
    """Users, groups and permission sets, kept in the resource tree's database."""


@attrs.frozen
class ChannelRequest:
    """A live channel named in a data service's URL (``BossRequest.initialize_request``)."""

    resolved: Resolved
    """The rows along its path."""

    @property
    def lookup_key(self) -> str:
        """``collection_id&experiment_id&channel_id``: the key of its cuboids and counters."""
        return self.resolved.lookup_key

    @property
    def channel(self) -> Mapping[str, Any]:
        """The channel's row."""
        return self.resolved.channel  # type: ignore[return-value]

    @property
    def experiment(self) -> Mapping[str, Any]:
        """The experiment's row."""
        return self.resolved.experiment  # type: ignore[return-value]

    @property
    def frame(self) -> Mapping[str, Any]:
        """The coordinate frame's row."""
        return self.resolved.coord_frame  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        """The channel's datatype."""
        return np.dtype(self.channel["datatype"])

    @property
    def is_annotation(self) -> bool:
        """Whether it is an annotation channel."""
        return self.channel["type"] == "annotation"

    @property
    def hierarchy(self) -> Hierarchy:
        """Its resolution hierarchy."""
        frame = self.frame
        return Hierarchy(
            frame_start_xyz=tuple(frame[f"{axis}_start"] for axis in "xyz"),
            frame_stop_xyz=tuple(frame[f"{axis}_stop"] for axis in "xyz"),
            voxel_size_xyz=tuple(frame[f"{axis}_voxel_size"] for axis in "xyz"),
            num_hierarchy_levels=self.experiment["num_hierarchy_levels"],
            hierarchy_method=self.experiment["hierarchy_method"],
            base_resolution=self.channel["base_resolution"],
        )

    def check_annotation(self, action: str) -> None:
        """400, 2003 unless an annotation channel; ``action`` ends the BOSS's sentence."""
        if not self.is_annotation:
            raise BossError(
                ErrorCodes.DATATYPE_NOT_SUPPORTED,
                f"The channel in request has type {self.channel['type']}. {action}",
            )

    def check_resolution(self, text: str) -> int:
        """The resolution in the URL, if readable (``validate_resolution``)."""
        base = self.channel["base_resolution"]
        levels = range(base, base + self.experiment["num_hierarchy_levels"])
        try:
            resolution = int(text)
        except ValueError:
            raise BossError(ErrorCodes.TYPE_ERROR, f"Type error in resolution {text}") from None
        if resolution not in levels:
            raise BossError(
                ErrorCodes.TYPE_ERROR,
                f"Invalid resolution {text}. The resolution has to be within {levels.start} "
                f"and {levels.stop}",
            )
        return resolution


def channel_request(backend: Backend, params: Mapping[str, str]) -> ChannelRequest:
    """The live channel of a URL's ``collection``, ``experiment`` and ``channel``: 404 with
    4000 or 4005 if a level is missing or soft-deleted (``set_collection`` and siblings)."""
    path = ResourcePath(
        collection=params["collection"], experiment=params["experiment"], channel=params["channel"]
    )
    return ChannelRequest(backend.resources.resolve(path))


@attrs.frozen
class CutoutArgs:
    """The region of a cutout-like URL, validated."""

    resolution: int
    """The resolution read or written."""
    box: Box
    """The region, ZYX, in the voxels of that resolution."""
    times: range
    """The time samples: the URL's, or the channel's default one."""
    time_request: bool
    """Whether the URL had a time range (the body is then 4-D)."""

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(T, Z, Y, X)."""
        return (len(self.times), *self.box.shape)

    def nbytes(self, dtype: np.dtype) -> int:
        """Bytes of the region, uncompressed."""
        t, z, y, x = self.shape
        return t * z * y * x * dtype.itemsize

    def too_large(self, dtype: np.dtype, max_bytes: int) -> bool:
        """``is_too_large`` (django/bossspatialdb/parsers.py): uint64 may be 4x larger."""
        size = self.nbytes(dtype)
        if dtype.itemsize == 8:
            size /= 4  # type: ignore[assignment]
        return size > max_bytes


_TIME = re.compile(r"/?(?P<start>\d+):?(?P<stop>\d+)?/?")


def _time_range(
    request: ChannelRequest, text: str | None, quirks: Quirks
) -> tuple[range, bool]:
    """``set_time``, or the channel's default time sample without a time range."""
    if not text:
        default = request.channel["default_time_sample"]
        return range(default, default + 1), False
    samples = request.experiment["num_time_samples"]
    match = _TIME.match(text)
    if match is None:
        raise BossError(
            ErrorCodes.INVALID_URL, f"Unable to parse time sample argument {text}"
        )
    start = int(match["start"])
    stop = int(match["stop"]) if match["stop"] else start + 1
    if not quirks.time_past_end and (start >= samples or stop > samples):
        raise BossError(
            ErrorCodes.INVALID_URL,
            f"Invalid time range {text}. It must lie within 0:{samples}, the experiment's "
            f"{samples} time sample(s)",
        )
    if start > samples:
        raise BossError(
            ErrorCodes.INVALID_URL,
            f"Invalid time range {text}. Start time is greater than the maximum time sample "
            f"{samples}",
        )
    if start > stop or stop > samples + 1:
        raise BossError(
            ErrorCodes.INVALID_URL,
            f"Invalid time range {text}. End time is greater than the start time or out of "
            f"bounds with maximum time sample {samples}",
        )
    return range(start, stop), True


def cutout_args(
    request: ChannelRequest, params: Mapping[str, str], quirks: Quirks = Quirks()
) -> CutoutArgs:
    """The time range, then the resolution and ranges of a cutout, ids or to-black URL
    (``validate_cutout_service`` then ``set_cutoutargs``)."""
    times, time_request = _time_range(request, params.get("t_range"), quirks)
    resolution = request.check_resolution(params["resolution"])
    x, y, z = params["x_range"], params["y_range"], params["z_range"]
    try:
        (x0, x1), (y0, y1), (z0, z1) = (
            tuple(int(v) for v in text.split(":")[:2]) for text in (x, y, z)
        )
    except ValueError:
        raise BossError(
            ErrorCodes.TYPE_ERROR, f"Type error in cutout argument{resolution}/{x}/{y}/{z}"
        ) from None
    frame = request.frame
    low = tuple(frame[f"{axis}_start"] for axis in "xyz")
    high = tuple(frame[f"{axis}_stop"] for axis in "xyz")
    if not quirks.unscaled_ranges and resolution > request.hierarchy.base_resolution:
        low, high = request.hierarchy.downsample_frame(resolution)
    inside = all(
        start < stop and start >= lo and stop <= hi
        for start, stop, lo, hi in zip((x0, y0, z0), (x1, y1, z1), low, high)
    )
    if not inside:
        message = f"Incorrect cutout arguments {resolution}/{x}/{y}/{z}"
        if not quirks.unscaled_ranges:
            extent = "/".join(f"{lo}:{hi}" for lo, hi in zip(low, high))
            message += f"; resolution {resolution} spans x/y/z {extent}"
        raise BossError(ErrorCodes.INVALID_CUTOUT_ARGS, message)
    return CutoutArgs(resolution, Box((z0, y0, x0), (z1, y1, x1)), times, time_request)
