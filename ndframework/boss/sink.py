"""Writing block outputs into BOSS channels through the ``intern`` client: `BossSink`.

The BOSS never stores the zeros of a cutout POST: it merges only non-zero voxels into what
it holds (spdb ``Cube.overwrite``, the C ``overwriteDense*`` of
``spdb/c_lib/c_version/overwriteDense.c``: ``if (new != 0) stored = new``), and only its
to-black endpoint (boss ``django/bossspatialdb/views.py``, ``CutoutToBlack.put``) clears
voxels. So a sink that must leave exactly what the processor returned clears the box first.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence

import attrs
import numpy as np

from ..errors import ChannelError, ConfigError
from ..geometry import Box
from ..storage import DataSink
from ._arguments import as_box
from ._messages import listing
from ._metadata import VolumeInfo
from ._retry import RetryPolicy
from ._secret import Secret
from ._split import MAX_CUTOUT_BYTES, TooLarge, halve, smaller
from ._volume import DEFAULT_TIMEOUT, BossVolume
from .config import SUPPORTED_DATATYPES, BossConfig

__all__ = ["BossSink", "WRITE_MODES"]

WRITE_MODES = ("replace", "merge")
"""How a `BossSink` writes: 'replace' (what the processor returned, zeros included) or
'merge' (the BOSS's own merge: zeros keep what was stored)."""


def _check_mode(mode: object) -> str:
    if mode not in WRITE_MODES:
        raise ConfigError(
            f"mode must be 'replace' (store what the processor returned, zeros included) or "
            f"'merge' (store its non-zero voxels, keeping what was stored under its zeros), "
            f"got {mode!r}",
            mode,
        )
    return mode  # type: ignore[return-value]


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
    writes would share one. Constructing one does no I/O; `create` and `from_config` talk
    to the server at once.

    A cutout POST to the BOSS stores only the non-zero voxels it carries: the zeros of an
    output leave older data in place. With ``mode="replace"`` (the default) the sink makes
    the box hold exactly what the processor returned: where the output has zeros, it first
    clears the box with the to-black endpoint, then posts the output (the post is skipped
    when the output is all zero, as intern skips uploading arrays that sum to zero; an
    output without zeros needs the post alone). This is idempotent, so a block retried
    after a crash between the two requests ends as if it had run once. With
    ``mode="merge"`` the sink posts only: non-zero voxels replace what was stored, zeros
    keep it (``np.where(new != 0, new, old)``), e.g. to paint labels over a channel that
    other runs write too. Every request is retried and kept under the size limit in both
    modes.

    Parameters
    ----------
    host, token, collection, experiment, protocol, resolution, timeout, retry, max_request_bytes:
        As for `BossSource`.
    channels:
        Names of existing channels to write, a sequence or a comma-separated string.
    bounds:
        The region writes may touch, a ZYX `Box` (default: the coordinate frame's extent).
    mode:
        ``"replace"`` or ``"merge"``, see above.

    Examples
    --------
    >>> import numpy as np
    >>> from ndframework.bossemu import BossEmulator
    >>> with BossEmulator(token="doc-token") as boss:
    ...     boss.create_volume("coll", "exp", {"em": np.ones((4, 8, 8), np.uint8)})
    ...     sink = BossSink.create(boss.host, "doc-token", "coll", "exp", {"labels": "uint16"},
    ...                            protocol=boss.protocol)
    ...     sink.write(Box((0, 0, 0), (1, 2, 2)), {"labels": np.full((1, 2, 2), 7, np.uint16)})
    ...     stored = boss.channel_array("coll", "exp", "labels")
    >>> int(stored.sum()), stored.dtype.name
    (28, 'uint16')
    """

    mode: str = "replace"

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
        mode: str = "replace",
    ) -> None:
        mode = _check_mode(mode)
        config = BossConfig(
            protocol, host, token, collection, experiment, channels, resolution=resolution
        ).with_box(as_box(bounds))
        super().__init__(
            config, timeout=timeout, retry=retry, max_request_bytes=max_request_bytes
        )
        self.mode = mode

    def _check_config(self, config: BossConfig) -> None:
        if config.t_range is not None:
            raise ConfigError(
                f"{config.where('t_range')} = {config.t_range[0]},{config.t_range[1]}: a "
                f"BossSink writes 3-D (z, y, x) blocks at each channel's default time "
                f"sample; leave t_range out of the sink's settings",
                config.t_range,
            )

    def _check_info(self, info: VolumeInfo) -> None:
        """The BOSS writes a channel at its base resolution or the level above only
        (``write_cuboid``, spdb spdb/spatialdb/spatialdb.py): anything else is refused here,
        before a block is run, rather than by every write."""
        resolution = self.config.resolution
        for name in self.config.channels:
            base = info.channels[name].base_resolution
            if resolution not in (base, base + 1):
                raise ConfigError(
                    f"{self.config.where('resolution')} = {resolution}: the BOSS writes channel "
                    f"{name!r} at its base resolution {base} or at {base + 1} only",
                    resolution,
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
        mode: str = "replace",
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
        mode:
            ``"replace"`` (default) or ``"merge"``, as for `BossSink`.

        Raises
        ------
        ConfigError
            If a datatype or the mode is not supported, or a channel exists with another
            datatype (the message names both), or the settings do not fit the server.
        """
        wanted = _datatypes(channels, datatype)
        sink = cls(
            host, token, collection, experiment, tuple(wanted), protocol=protocol,
            resolution=resolution, bounds=bounds, timeout=timeout, retry=retry,
            max_request_bytes=max_request_bytes, mode=mode,
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
        mode: str = "replace",
    ) -> BossSink:
        """A sink into ``channels`` of the experiment and region ``neurodata.cfg`` names.

        The server, token, collection, experiment, ranges and resolution come from the
        file; the channels to write are given here (the file's are the inputs). With
        ``create``, missing channels are made with their datatype; with a datatype given,
        existing channels must have it. ``mode`` is ``"replace"`` (default) or
        ``"merge"``, as for `BossSink`.

        Raises
        ------
        ConfigError
            For a bad mode, datatype or setting, or a host that is no BOSS API (naming the
            file, the key and the value; never the token).
        """
        mode = _check_mode(mode)
        names = list(channels) if isinstance(channels, Mapping) else channels
        config = attrs.evolve(BossConfig.from_file(path), channels=names)
        sink: BossSink = cls.from_settings(
            config, timeout=timeout, retry=retry, max_request_bytes=max_request_bytes
        )
        sink.mode = mode
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

    def _details(self) -> list[str]:
        return [*super()._details(), f"mode {self.mode}"]

    def write_box(self, box: Box, arrays: dict[str, np.ndarray]) -> None:
        for name, array in arrays.items():
            data = np.ascontiguousarray(array, dtype=self.dtype(name))
            pieces = self._pieces(box, name)
            while pieces:
                piece = pieces.pop()
                try:
                    self._write_piece(name, piece, data[piece.relative_to(box).slices()])
                except TooLarge as error:
                    pieces.extend(smaller(piece, error))

    def _write_piece(self, channel: str, box: Box, data: np.ndarray) -> None:
        """Write one request's worth: cleared first when replacing data that has zeros,
        then the non-zero voxels posted (the BOSS ignores the zeros of a post)."""
        if self.mode == "replace" and not data.all():
            self._clear(channel, box)
        if data.any():
            self._post(channel, box, data)

    def _clear(self, channel: str, box: Box) -> None:
        """Set ``box`` to zero with the to-black endpoint: exactly the box, cuboid-aligned
        or not (boss ``bossspatialdb/views.py``, ``CutoutToBlack.put``)."""
        remote, resource = self._remote(), self._resource(channel)
        x_range, y_range, z_range = self._ranges(box)
        resolution = self.config.resolution
        self._call(
            lambda: remote.create_cutout_to_black(
                resource, resolution, x_range, y_range, z_range
            ),
            what=f"clearing {self._where(channel, box)}",
        )

    def _post(self, channel: str, box: Box, data: np.ndarray) -> None:
        """POST ``data``, which has a non-zero voxel; the BOSS stores only those."""
        if not data.any():
            return
        if np.sum(data) == 0:
            # intern skips create_cutout when np.sum(data) == 0, and uint64 labels can sum
            # to a multiple of 2**64: post the halves, whose sums differ, separately.
            for half in halve(box):
                self._post(channel, half, data[half.relative_to(box).slices()])
            return
        remote, resource = self._remote(), self._resource(channel)
        x_range, y_range, z_range = self._ranges(box)
        resolution = self.config.resolution
        contiguous = np.ascontiguousarray(data)
        self._call(
            lambda: remote.create_cutout(
                resource, resolution, x_range, y_range, z_range, contiguous
            ),
            what=f"writing {self._where(channel, box)}",
        )
