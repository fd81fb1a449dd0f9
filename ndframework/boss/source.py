"""Reading a BOSS volume block by block through the ``intern`` client: `BossSource`."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..geometry import Box
from ..storage import DataSource
from ..tiling import CuboidTiler
from ._arguments import as_box
from ._retry import RetryPolicy
from ._secret import Secret
from ._split import MAX_CUTOUT_BYTES, TooLarge, smaller
from ._volume import DEFAULT_TIMEOUT, BossVolume
from .config import BossConfig

__all__ = ["BossSource"]


class BossSource(BossVolume, DataSource):
    """A source over channels of a BOSS experiment, read with intern's ``BossRemote``.

    Constructing one does no I/O; `from_config` reads ``neurodata.cfg`` and validates it
    against the server at once. Arrays are ZYX, or TZYX with a ``t_range``; ``bounds`` is
    the 3-D region either way. Blocks larger than one request may carry are fetched in
    several, cuboid-aligned where possible.

    Parameters
    ----------
    host:
        Host of the BOSS API, e.g. ``"api.bossdb.io"`` (with ``":port"`` if needed).
    token:
        The API token. It never appears in a repr, a message, a log line or pickled bytes.
    collection, experiment:
        Where the channels are.
    channels:
        Channel names, a sequence or a comma-separated string.
    protocol:
        ``"https"`` or ``"http"``.
    resolution:
        Resolution level to read: 0 is native; a channel has levels ``base_resolution`` to
        ``base_resolution + num_hierarchy_levels - 1``. Coordinates, bounds and blocks are
        in that level's voxels.
    bounds:
        The region to read, a ZYX `Box` (default: the coordinate frame's extent at that
        resolution: x and y halved per level above the base, z too in an isotropic
        hierarchy).
    t_range:
        ``(start, stop)`` time samples to read; arrays then gain a leading time axis.
    timeout:
        Seconds to connect and to wait for an answer: a number or a (connect, read) pair.
    retry:
        How transient failures (connection errors, timeouts, HTTP 5xx, 429) are retried.
    max_request_bytes:
        Largest request, uncompressed: the BOSS's 520 MiB unless a server says less.

    Examples
    --------
    >>> import numpy as np
    >>> from ndframework.bossemu import BossEmulator
    >>> volume = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8)
    >>> with BossEmulator(token="doc-token") as boss:
    ...     boss.create_volume("coll", "exp", {"em": volume})
    ...     source = BossSource(boss.host, "doc-token", "coll", "exp", "em",
    ...                         protocol=boss.protocol).validate()
    ...     data = source.read(Box((1, 0, 2), (3, 8, 6)))
    >>> source.bounds, bool((data["em"] == volume[1:3, :, 2:6]).all())
    (Box(start=(0, 0, 0), stop=(4, 8, 8)), True)
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
        t_range: tuple[int, int] | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_request_bytes: int = MAX_CUTOUT_BYTES,
    ) -> None:
        config = BossConfig(
            protocol, host, token, collection, experiment, channels,
            resolution=resolution, t_range=t_range,
        ).with_box(as_box(bounds))
        super().__init__(
            config, timeout=timeout, retry=retry, max_request_bytes=max_request_bytes
        )

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str],
        *,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_request_bytes: int = MAX_CUTOUT_BYTES,
    ) -> BossSource:
        """Read ``neurodata.cfg`` at ``path`` and validate it against the server.

        Raises
        ------
        ConfigError
            For any problem with the file or its values, naming the file, the key and the
            value (see `BossConfig.from_file` and `BossVolume.validate`).
        """
        source: BossSource = cls.from_settings(
            BossConfig.from_file(path),
            timeout=timeout, retry=retry, max_request_bytes=max_request_bytes,
        )
        return source.validate()

    def default_tiler(
        self, bounds: Box | None = None, channels: Sequence[str] | None = None
    ) -> CuboidTiler:
        """The tiler a pipeline uses when given none: blocks of whole BOSS cuboids,
        (16, 1024, 1024) in z, y, x, on the BOSS's own cuboid grid."""
        return CuboidTiler()

    def read_box(self, box: Box, channels: tuple[str, ...]) -> dict[str, np.ndarray]:
        return {name: self._read_channel(name, box) for name in channels}

    def _read_channel(self, channel: str, box: Box) -> np.ndarray:
        dtype = self.dtype(channel)
        t_range = self.config.t_range
        lead = () if t_range is None else (t_range[1] - t_range[0],)
        if box.empty:
            return np.zeros(lead + box.shape, dtype)
        pieces = self._pieces(box, channel)
        if len(pieces) == 1:
            try:
                return _own(self._get(channel, box), dtype)
            except TooLarge as error:
                pieces = smaller(box, error)
        result = np.empty(lead + box.shape, dtype)
        while pieces:
            piece = pieces.pop()
            try:
                data = self._get(channel, piece)
            except TooLarge as error:
                pieces.extend(smaller(piece, error))
                continue
            result[(Ellipsis, *piece.relative_to(box).slices())] = data
        return result

    def _get(self, channel: str, box: Box) -> np.ndarray:
        remote, resource = self._remote(), self._resource(channel)
        x_range, y_range, z_range = self._ranges(box)
        t_range = None if self.config.t_range is None else list(self.config.t_range)
        return self._call(
            lambda: remote.get_cutout(
                resource, self.config.resolution, x_range, y_range, z_range,
                time_range=t_range, parallel=False,  # intern's own pool cannot start in a worker
            ),
            what=f"reading {self._where(channel, box)}",
        )


def _own(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``data`` as a writable array of ``dtype`` that the caller owns.

    intern returns a read-only view of the decompressed bytes.
    """
    if data.dtype == dtype and data.flags.writeable and data.flags.owndata:
        return data
    return np.array(data, dtype=dtype)
