"""``neurodata.cfg``: where a BOSS volume lives and which part of it a run reads.

The file is Nd-Multicore's, in INI format::

    [Default]
    protocol = https
    host = api.bossdb.io
    token = <your API token, or leave it out and set INTERN_TOKEN>

    [Parallel]
    collection = my_collection
    experiment = my_experiment
    channels = em, mask
    x_range = 0,1024
    y_range = 0,1024
    z_range = 0,32
    # optional: resolution = 0, t_range = 0,1

`BossConfig.from_file` reads and checks it without the network; `BossConfig.check_against`
checks it against what the BOSS says about the experiment (`VolumeInfo`), which
`BossSource.from_config` fetches. Every error names the file, the key and the bad value, and
none contains the token.
"""

from __future__ import annotations

import numbers
import os
import re
from collections.abc import Sequence
from typing import Any

import attrs

from .._numbers import as_int
from ..errors import ChannelError, ConfigError
from ..geometry import Box
from ._ini import DEFAULT_SECTION, PARALLEL_SECTION, parse_int, parse_range, read_ini, section_of
from ._metadata import VolumeInfo
from ._secret import Secret

__all__ = [
    "BossConfig",
    "DEFAULT_SECTION",
    "PARALLEL_SECTION",
    "TOKEN_ENV_VAR",
    "PROTOCOLS",
    "SUPPORTED_DATATYPES",
]

TOKEN_ENV_VAR = "INTERN_TOKEN"
"""Environment variable holding the token when the file leaves it out (intern's name)."""
PROTOCOLS = ("http", "https")
"""Protocols the BOSS API is served over."""
SUPPORTED_DATATYPES = ("uint8", "uint16", "uint64")
"""Channel datatypes ndframework reads and writes."""

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_AXES = ("z", "y", "x")


# -- the settings -------------------------------------------------------------------------


def _as_range(value: object) -> tuple[int, int] | None:
    """``(start, stop)`` as a tuple of two ints; anything else is left for the validator."""
    if value is None or isinstance(value, str) or not isinstance(value, Sequence):
        return value  # type: ignore[return-value]
    pair = tuple(value)
    if len(pair) == 2 and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in pair
    ):
        return int(pair[0]), int(pair[1])
    return value  # type: ignore[return-value]


def _as_channels(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, Sequence):
        return value  # type: ignore[return-value]  # the validator names it
    return tuple(str(name).strip() for name in value if str(name).strip())


def _as_protocol(value: object) -> object:
    """``'HTTPS '`` as ``'https'``; anything but a string is left to the validator."""
    return value.strip().lower() if isinstance(value, str) else value


def _as_host(value: object) -> object:
    """``' api.bossdb.io/'`` as ``'api.bossdb.io'``; anything but a string is left to the
    validator."""
    return value.strip().rstrip("/") if isinstance(value, str) else value


def _check_protocol(config: BossConfig, attribute: attrs.Attribute, value: str) -> None:
    if value not in PROTOCOLS:
        raise ConfigError(
            f"{config.where('protocol')} = {value!r}: the protocol must be 'http' or 'https'",
            value,
        )


def _check_host(config: BossConfig, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ConfigError(
            f"{config.where('host')} = {value!r}: the host must be a host name such as "
            f"'api.bossdb.io', optionally with ':port'",
            value,
        )
    if "://" in value or "/" in value:
        raise ConfigError(
            f"{config.where('host')} = {value!r}: give the host name alone (e.g. "
            f"'api.bossdb.io'); the protocol goes in 'protocol'",
            value,
        )


def _check_token(config: BossConfig, attribute: attrs.Attribute, value: Secret) -> None:
    token = value.reveal()  # never quoted below
    if not token or any(c.isspace() for c in token):
        raise ConfigError(
            f"{config.where('token')}: the token ({config.token_from}) must be a non-empty "
            f"string without spaces"
        )


def _check_name(config: BossConfig, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ConfigError(
            f"{config.where(attribute.name)} = {value!r}: a BOSS {attribute.name} name is "
            f"made of letters, digits, '_' and '-'",
            value,
        )


def _check_channels(config: BossConfig, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if not isinstance(value, tuple) or not value:
        raise ConfigError(
            f"{config.where('channels')} = {value!r}: name at least one channel, "
            f"comma-separated, e.g. 'em, mask'",
            value,
        )
    for name in value:
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"{config.where('channels')}: {name!r} is not a channel name (letters, digits, "
                f"'_' and '-')",
                name,
            )
    duplicates = sorted({name for name in value if value.count(name) > 1})
    if duplicates:
        raise ConfigError(
            f"{config.where('channels')}: channel {duplicates[0]!r} is named twice", value
        )


def _check_range(config: BossConfig, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    key = attribute.name
    ok = (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )
    if not ok:
        raise ConfigError(
            f"{config.where(key)} = {value!r}: a range is two integers 'start,stop'", value
        )
    start, stop = value
    if start < 0:
        raise ConfigError(
            f"{config.where(key)} = {start},{stop}: the start must be >= 0 (BOSS coordinates "
            f"are never negative)",
            value,
        )
    if start >= stop:
        raise ConfigError(
            f"{config.where(key)} = {start},{stop}: the start must be below the stop (ranges "
            f"are half-open, [start, stop))",
            value,
        )


def _check_resolution(config: BossConfig, attribute: attrs.Attribute, value: int) -> None:
    as_int(value, config.where("resolution"), minimum=0, zero="the native resolution")


@attrs.frozen
class BossConfig:
    """The settings of a BOSS volume to read (or write): server, experiment, channels, region.

    Build it with `BossConfig.from_file` or from values; either way it is checked locally,
    without the network. Ranges are half-open ``(start, stop)`` in x, y, z as in the file;
    `box` gives the ZYX `Box`. The token is a `Secret`, and out of the repr.

    >>> config = BossConfig("https", "api.bossdb.io", "t0ken", "coll", "exp", "em, mask",
    ...                     x_range=(0, 1024), y_range=(0, 512), z_range=(0, 16))
    >>> config.channels, config.box
    (('em', 'mask'), Box(start=(0, 0, 0), stop=(16, 512, 1024)))
    >>> "t0ken" in repr(config)
    False
    """

    protocol: str = attrs.field(converter=_as_protocol, validator=_check_protocol)
    """'http' or 'https'."""
    host: str = attrs.field(converter=_as_host, validator=_check_host)
    """Host name of the BOSS API, e.g. 'api.bossdb.io', optionally with ':port'."""
    token: Secret = attrs.field(converter=Secret, validator=_check_token, repr=False)
    """The API token."""
    collection: str = attrs.field(validator=_check_name)
    """Collection name."""
    experiment: str = attrs.field(validator=_check_name)
    """Experiment name."""
    channels: tuple[str, ...] = attrs.field(converter=_as_channels, validator=_check_channels)
    """Channels to read (or write), in order; a comma-separated string is split."""
    x_range: tuple[int, int] | None = attrs.field(
        default=None, converter=_as_range, validator=_check_range
    )
    """x range (start, stop), or None for the coordinate frame's."""
    y_range: tuple[int, int] | None = attrs.field(
        default=None, converter=_as_range, validator=_check_range
    )
    """y range (start, stop), or None for the coordinate frame's."""
    z_range: tuple[int, int] | None = attrs.field(
        default=None, converter=_as_range, validator=_check_range
    )
    """z range (start, stop), or None for the coordinate frame's."""
    resolution: int = attrs.field(default=0, validator=_check_resolution)
    """Resolution level: 0 is native; a channel can be read at its ``base_resolution`` up to
    ``base_resolution + num_hierarchy_levels - 1``."""
    t_range: tuple[int, int] | None = attrs.field(
        default=None, converter=_as_range, validator=_check_range
    )
    """Time range (start, stop); with one, arrays are TZYX. None reads the default sample."""
    path: str | None = attrs.field(default=None, kw_only=True)
    """The file the settings were read from, for messages; None when built from values."""
    token_from: str = attrs.field(default="the token argument", kw_only=True)
    """Where the token came from, for messages (never the token itself)."""

    # -- reading the file -------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> BossConfig:
        """Read and check a ``neurodata.cfg`` file, without the network.

        The token may be left out of the file (or empty) when the ``INTERN_TOKEN``
        environment variable holds it, so that the file can be shared.

        Raises
        ------
        ConfigError
            If the file is missing or unreadable, a section or key is missing, a key is
            misspelt or in the wrong section, or a value is invalid; the message names the
            file, the key and the value (never the token's).
        """
        path = os.fspath(path)
        parser = read_ini(path)

        def optional(key: str) -> str | None:
            section = section_of(key)
            return parser.get(section, key, fallback="").strip() or None

        def text(key: str) -> str:
            value = optional(key)
            if value is None:
                section = section_of(key)
                raise ConfigError(f"{path}: [{section}] {key} is missing or empty", key)
            return value

        token = optional("token")
        token_from = f"[{DEFAULT_SECTION}] token of {path}"
        if token is None:
            token = os.environ.get(TOKEN_ENV_VAR, "").strip()
            token_from = f"the {TOKEN_ENV_VAR} environment variable"
            if not token:
                raise ConfigError(
                    f"{path}: [{DEFAULT_SECTION}] token is missing and the {TOKEN_ENV_VAR} "
                    f"environment variable is not set; put the token in one of them",
                    "token",
                )
        return cls(
            protocol=text("protocol"),
            host=text("host"),
            token=token,
            collection=text("collection"),
            experiment=text("experiment"),
            channels=text("channels"),
            x_range=parse_range(optional("x_range"), "x_range", path),
            y_range=parse_range(optional("y_range"), "y_range", path),
            z_range=parse_range(optional("z_range"), "z_range", path),
            resolution=parse_int(optional("resolution"), "resolution", path, default=0),
            t_range=parse_range(optional("t_range"), "t_range", path),
            path=path,
            token_from=token_from,
        )

    # -- views --------------------------------------------------------------------------

    def where(self, key: str) -> str:
        """Where ``key`` is set, for messages: ``'neurodata.cfg: [Parallel] x_range'``."""
        if self.path is None:
            return key
        return f"{self.path}: [{section_of(key)}] {key}"

    @property
    def url(self) -> str:
        """``protocol://host`` of the BOSS API."""
        return f"{self.protocol}://{self.host}"

    @property
    def box(self) -> Box | None:
        """The configured region as a ZYX `Box`, or None unless all three ranges are set."""
        ranges = (self.z_range, self.y_range, self.x_range)
        if any(r is None for r in ranges):
            return None
        return Box(tuple(r[0] for r in ranges), tuple(r[1] for r in ranges))  # type: ignore[index]

    def box_within(self, extent: Box) -> Box:
        """The configured region as a ZYX `Box`, taking unset ranges from ``extent``."""
        ranges = (self.z_range, self.y_range, self.x_range)
        start = tuple(r[0] if r else s for r, s in zip(ranges, extent.start))
        stop = tuple(r[1] if r else s for r, s in zip(ranges, extent.stop))
        return Box(start, stop)

    def with_box(self, box: Box | None) -> BossConfig:
        """These settings with the ranges of a ZYX ``box`` (None: the frame's)."""
        if box is None:
            return attrs.evolve(self, x_range=None, y_range=None, z_range=None)
        (z0, y0, x0), (z1, y1, x1) = box.start, box.stop
        return attrs.evolve(self, x_range=(x0, x1), y_range=(y0, y1), z_range=(z0, z1))

    # -- against the server -------------------------------------------------------------

    def check_against(self, info: VolumeInfo) -> Box:
        """Check these settings against what the BOSS says; return the region to read, ZYX.

        Raises
        ------
        ChannelError
            If a channel does not exist (the message lists those that do).
        ConfigError
            If a channel's datatype is not supported, the resolution does not exist, or a
            range lies outside the coordinate frame or the time axis.
        """
        source = f"{self.collection}/{self.experiment}"
        for name in self.channels:
            if name not in info.channel_names:
                valid = ", ".join(map(repr, info.channel_names)) or "none"
                raise ChannelError(
                    f"{self.where('channels')} = {', '.join(self.channels)!r}: {source} has no "
                    f"channel {name!r}; its channels: {valid}",
                    name,
                )
            datatype = info.channels[name].datatype if name in info.channels else None
            if datatype not in SUPPORTED_DATATYPES:
                raise ConfigError(
                    f"{self.where('channels')}: channel {name!r} of {source} holds {datatype}, "
                    f"which ndframework does not read; supported datatypes: "
                    f"{', '.join(SUPPORTED_DATATYPES)}",
                    datatype,
                )
        bases = {info.channels[name].base_resolution for name in self.channels} or {0}
        for base in sorted(bases):
            levels = info.resolutions(base)
            if self.resolution not in levels:
                based = [n for n in self.channels if info.channels[n].base_resolution == base]
                whose = source if bases == {0} else (
                    f"channel {', '.join(map(repr, based))} of {source} (base_resolution {base})"
                )
                raise ConfigError(
                    f"{self.where('resolution')} = {self.resolution}: {whose} has resolutions "
                    f"{levels.start} to {levels.stop - 1} (num_hierarchy_levels = "
                    f"{info.hierarchy_levels})",
                    self.resolution,
                )
        # Channels based at different levels: the largest of their extents (the highest
        # base's, halved the fewest times), so that none loses data; the BOSS accepts any
        # range within the frame at every level and reads zeros past a level's extent.
        extent = info.extent(self.resolution, max(bases))
        for index, axis in enumerate(_AXES):
            key = f"{axis}_range"
            given: tuple[int, int] | None = getattr(self, key)
            low, high = extent.start[index], extent.stop[index]
            if given is not None and not (low <= given[0] and given[1] <= high):
                raise ConfigError(
                    f"{self.where(key)} = {given[0]},{given[1]}: outside the coordinate frame "
                    f"{info.coord_frame!r} of {source}, whose {axis} range at resolution "
                    f"{self.resolution} is {low},{high}",
                    given,
                )
        if self.t_range is not None and self.t_range[1] > info.time_samples:
            raise ConfigError(
                f"{self.where('t_range')} = {self.t_range[0]},{self.t_range[1]}: {source} has "
                f"{info.time_samples} time sample(s), so the t range must lie within "
                f"0,{info.time_samples}",
                self.t_range,
            )
        return self.box_within(extent)
