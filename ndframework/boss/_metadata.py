"""What the BOSS says about a volume: `VolumeInfo` and `ChannelInfo`.

`BossVolume` fetches them once, in the coordinating process, and `BossConfig.check_against`
checks the settings against them.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ..geometry import Box

__all__ = ["VolumeInfo", "ChannelInfo"]


@attrs.frozen
class ChannelInfo:
    """What the BOSS says about one channel."""

    name: str
    """Channel name."""
    datatype: str
    """Voxel type, e.g. 'uint8'."""
    type: str = "image"
    """'image' or 'annotation'."""
    base_resolution: int = 0
    """Resolution level the data were uploaded at."""
    default_time_sample: int = 0
    """Time sample a cutout without a time range reads."""


@attrs.frozen
class VolumeInfo:
    """What the BOSS says about an experiment, its coordinate frame and some of its channels.

    Fetched once, in the coordinating process, and carried to the workers with the source.
    """

    collection: str
    """Collection name."""
    experiment: str
    """Experiment name."""
    coord_frame: str
    """Name of the experiment's coordinate frame."""
    frame: Box
    """The coordinate frame's extent, ZYX: a channel's extent at its base resolution."""
    hierarchy_levels: int = 1
    """Number of resolution levels (``num_hierarchy_levels``)."""
    hierarchy_method: str = "anisotropic"
    """How lower resolutions are made: 'anisotropic' (x and y) or 'isotropic'."""
    time_samples: int = 1
    """Length of the time axis (``num_time_samples``)."""
    channel_names: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    """Every channel of the experiment."""
    channels: Mapping[str, ChannelInfo] = attrs.field(factory=dict)
    """The channels looked at, by name."""

    def resolutions(self, base_resolution: int = 0) -> range:
        """The resolutions a channel whose data start at ``base_resolution`` can be read at:
        ``range(base, base + num_hierarchy_levels)`` (``validate_resolution``, boss
        django/bosscore/request.py)."""
        return range(base_resolution, base_resolution + self.hierarchy_levels)

    def extent(self, resolution: int, base_resolution: int = 0) -> Box:
        """The frame's extent at ``resolution`` for a channel based at ``base_resolution``.

        As boss-tools builds each level (``downsample_channel``, activities/
        resolution_hierarchy.py): the coordinate frame is the base resolution's frame, and
        each level above halves x and y (and z too in an isotropic hierarchy), the start
        rounded down and the stop up, so no voxel is lost. The BOSS itself checks a cutout at
        any resolution against the unscaled frame (``set_cutoutargs``, boss
        django/bosscore/request.py); what lies past this extent reads as zeros.
        """
        steps = resolution - base_resolution
        if steps <= 0:
            return self.frame
        scaled = (0, 1, 2) if self.hierarchy_method == "isotropic" else (1, 2)
        factor = 2**steps
        start = tuple(s // factor if a in scaled else s for a, s in enumerate(self.frame.start))
        stop = tuple(-(-s // factor) if a in scaled else s for a, s in enumerate(self.frame.stop))
        return Box(start, stop)
