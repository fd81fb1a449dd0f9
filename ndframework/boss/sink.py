"""Writing block outputs into BOSS channels through the ``intern`` client: `BossSink`."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence

import attrs
import numpy as np

from ..errors import ChannelError, ConfigError
from ..geometry import Box, Triple
from ..storage import DataSink
from ._retry import RetryPolicy
from ._secret import Secret
from ._split import MAX_CUTOUT_BYTES, TooLarge, halve, smaller
from ._volume import DEFAULT_TIMEOUT, BossVolume, as_box, listing
from .config import SUPPORTED_DATATYPES, BossConfig

__all__ = ["BossSink"]


def _datatypes(
    channels: Mapping[str, object] | Sequence[str] | str, datatype: object | None
) -> dict[str, str]:
    """``{channel: datatype}`` from a mapping, or from names and one ``datatype``."""
    if isinstance(channels, Mapping):
        if datatype is not None:
            raise ConfigError(
                f"give each channel's datatype in the mapping or one datatype for a list of "
                f"names, not both (got datatype={datatype!r})",
                datatype,
            )
        chosen = {str(name): dtype for name, dtype in channels.items()}
    else:
        names = channels.split(",") if isinstance(channels, str) else list(channels)
        names = [str(name).strip() for name in names if str(name).strip()]
        if datatype is None:
            raise ConfigError(
                f"creating channels {names} needs their datatype: pass datatype= (one of "
                f"{', '.join(SUPPORTED_DATATYPES)}) or a {{channel: datatype}} mapping",
                names,
            )
        chosen = {name: datatype for name in names}
    result = {}
    for name, dtype in chosen.items():
        result[name] = _dtype_name(dtype)
        if result[name] not in SUPPORTED_DATATYPES:
            raise ConfigError(
                f"channel {name!r}: datatype {dtype!r} is not one the BOSS stores; use "
                f"{', '.join(SUPPORTED_DATATYPES)}",
                dtype,
            )
    return result


def _dtype_name(value: object) -> str:
    """'uint16' for 'uint16', np.uint16 or np.dtype('uint16'); other values as text."""
    try:
        return np.dtype(value).name  # type: ignore[call-overload]
    except TypeError:
        return str(value)


class BossSink(BossVolume, DataSink):
    """A sink into channels of a BOSS experiment, written with intern's ``create_cutout``.

    Its ``chunk_shape`` is the BOSS cuboid, so the pipeline refuses tilings whose parallel
    writes would share one. An all-zero piece is written with the to-black endpoint, since
    intern's ``create_cutout`` silently skips arrays that sum to zero. Constructing one
    does no I/O; `create` and `from_config` talk to the server at once.

    Parameters
    ----------
    host, token, collection, experiment, protocol, resolution, timeout, retry, max_request_bytes:
        As for `BossSource`.
    channels:
        Names of existing channels to write, a sequence or a comma-separated string.
    bounds:
        The region writes may touch, a ZYX `Box` (default: the coordinate frame's extent).

    Examples
    --------
    >>> import numpy as np
    >>> from ndframework.boss.emulator import BossEmulator
    >>> with BossEmulator(token="doc-token") as boss:
    ...     boss.create_volume("coll", "exp", {"em": np.ones((4, 8, 8), np.uint8)})
    ...     sink = BossSink.create(boss.host, "doc-token", "coll", "exp", {"labels": "uint16"},
    ...                            protocol=boss.protocol)
    ...     sink.write(Box((0, 0, 0), (1, 2, 2)), {"labels": np.full((1, 2, 2), 7, np.uint16)})
    ...     stored = boss.channel_array("coll", "exp", "labels")
    >>> int(stored.sum()), stored.dtype.name
    (28, 'uint16')
    """

    def __init__(
        self,
        host: str,
        token: str | Secret,
        collection: str,
        experiment: str,
        channels: Sequence[str] | str,
        *,
        protocol: str = "https",
        resolution: int = 0,
        bounds: Box | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_request_bytes: int = MAX_CUTOUT_BYTES,
    ) -> None:
        config = BossConfig(
            protocol, host, token, collection, experiment, channels, resolution=resolution
        ).with_box(as_box(bounds))
        super().__init__(
            config, timeout=timeout, retry=retry, max_request_bytes=max_request_bytes
        )

    def _check_config(self, config: BossConfig) -> None:
        if config.t_range is not None:
            raise ConfigError(
                f"{config.where('t_range')} = {config.t_range[0]},{config.t_range[1]}: a "
                f"BossSink writes 3-D (z, y, x) blocks at each channel's default time "
                f"sample; leave t_range out of the sink's settings",
                config.t_range,
            )

    @classmethod
    def create(
        cls,
        host: str,
        token: str | Secret,
        collection: str,
        experiment: str,
        channels: Mapping[str, str] | Sequence[str] | str,
        *,
        datatype: str | None = None,
        sources: Sequence[str] = (),
        protocol: str = "https",
        resolution: int = 0,
        bounds: Box | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_request_bytes: int = MAX_CUTOUT_BYTES,
    ) -> BossSink:
        """A sink into ``channels``, creating those that do not exist yet.

        Parameters
        ----------
        channels:
            ``{name: datatype}``, or names that all take ``datatype``. Datatypes are
            'uint8' or 'uint16' (image channels) or 'uint64' (annotation channels).
        datatype:
            The datatype of every channel when ``channels`` lists names.
        sources:
            Channels the new ones derive from (the BOSS asks it of annotation channels).

        Raises
        ------
        ConfigError
            If a datatype is not supported, or a channel exists with another datatype (the
            message names both), or the settings do not fit the server.
        """
        wanted = _datatypes(channels, datatype)
        sink = cls(
            host, token, collection, experiment, tuple(wanted), protocol=protocol,
            resolution=resolution, bounds=bounds, timeout=timeout, retry=retry,
            max_request_bytes=max_request_bytes,
        )
        return sink._prepare_channels(wanted, create=True, sources=sources)

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str],
        channels: Mapping[str, str] | Sequence[str] | str,
        *,
        datatype: str | None = None,
        create: bool = False,
        sources: Sequence[str] = (),
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_request_bytes: int = MAX_CUTOUT_BYTES,
    ) -> BossSink:
        """A sink into ``channels`` of the experiment and region ``neurodata.cfg`` names.

        The server, token, collection, experiment, ranges and resolution come from the
        file; the channels to write are given here (the file's are the inputs). With
        ``create``, missing channels are made with their datatype; with a datatype given,
        existing channels must have it.
        """
        names = list(channels) if isinstance(channels, Mapping) else channels
        config = attrs.evolve(BossConfig.from_file(path), channels=names)
        sink: BossSink = cls.from_settings(
            config, timeout=timeout, retry=retry, max_request_bytes=max_request_bytes
        )
        if create or datatype is not None or isinstance(channels, Mapping):
            wanted: Mapping[str, str | None] = _datatypes(channels, datatype)
        else:
            wanted = dict.fromkeys(config.channels)
        return sink._prepare_channels(wanted, create=create, sources=sources)

    def _prepare_channels(
        self, wanted: Mapping[str, str | None], *, create: bool, sources: Sequence[str]
    ) -> BossSink:
        """Check existing channels' datatypes (where given), create missing ones (when
        asked), then validate."""
        from intern.resource.boss.resource import ChannelResource

        c = self.config
        remote = self._remote()
        existing = self._ask(lambda: remote.list_channels(c.collection, c.experiment))
        for name, datatype in wanted.items():
            if name not in existing and not create:
                raise ChannelError(
                    f"the sink's channel {name!r} does not exist in {c.collection}/"
                    f"{c.experiment} (its channels: {listing(existing)}); pass "
                    f"create=True and its datatype to make it",
                    name,
                )
            if name in existing:
                found = self._channel_info(remote, name).datatype
                if datatype is not None and found != datatype:
                    raise ConfigError(
                        f"channel {name!r} of {c.collection}/{c.experiment} exists with "
                        f"datatype {found}, but {datatype} was asked for; write to another "
                        f"channel or ask for {found}",
                        found,
                    )
            elif create:
                resource = ChannelResource(
                    name, c.collection, c.experiment,
                    type="annotation" if datatype == "uint64" else "image",
                    datatype=datatype, sources=list(sources),
                )
                self._ask(functools.partial(remote.create_project, resource))
        return self.validate()

    @property
    def chunk_origin(self) -> Triple:
        """The BOSS cuboid grid starts at 0 whatever the bounds of the sink."""
        return (0, 0, 0)

    def _write_box(self, box: Box, arrays: dict[str, np.ndarray]) -> None:
        for name, array in arrays.items():
            data = np.ascontiguousarray(array, dtype=self.dtype(name))
            pieces = self._pieces(box, name)
            while pieces:
                piece = pieces.pop()
                try:
                    self._put(name, piece, data[piece.relative_to(box).slices()])
                except TooLarge as error:
                    pieces.extend(smaller(piece, error))

    def _put(self, channel: str, box: Box, data: np.ndarray) -> None:
        remote, resource = self._remote(), self._resource(channel)
        x_range, y_range, z_range = self._ranges(box)
        resolution = self.config.resolution
        if not data.any():
            # intern's create_cutout returns without a request when the data sum to zero.
            self._call(
                lambda: remote.create_cutout_to_black(
                    resource, resolution, x_range, y_range, z_range
                ),
                what=f"zeroing {self._where(channel, box)}",
            )
        elif np.sum(data) == 0:
            # uint64 labels can sum to a multiple of 2**64, which intern takes for all-zero
            # and skips: write the halves, whose sums differ, separately.
            for half in halve(box):
                self._put(channel, half, data[half.relative_to(box).slices()])
        else:
            contiguous = np.ascontiguousarray(data)
            self._call(
                lambda: remote.create_cutout(
                    resource, resolution, x_range, y_range, z_range, contiguous
                ),
                what=f"writing {self._where(channel, box)}",
            )
