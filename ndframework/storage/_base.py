"""The two storage ABCs: where blocks are read from and where outputs are written."""

from __future__ import annotations

import abc
import contextlib
import threading
from typing import Iterator, Mapping, Sequence

import numpy as np

from ..errors import ChannelError, OutOfBoundsError, OutputError
from ..geometry import Box, Triple
from ..tiling import RegularTiler, Tiler, default_block_shape

__all__ = ["DataSource", "DataSink"]


class _Volume(abc.ABC):
    """What sources and sinks share: named channels over one bounding box."""

    @property
    @abc.abstractmethod
    def channels(self) -> tuple[str, ...]:
        """Names of the channels, in a fixed order."""

    @property
    @abc.abstractmethod
    def bounds(self) -> Box:
        """The region that holds data, in ZYX voxel coordinates."""

    @abc.abstractmethod
    def dtype(self, channel: str) -> np.dtype:
        """The numpy dtype of ``channel``."""

    @property
    def chunk_shape(self) -> Triple | None:
        """Storage alignment (z, y, x) that reads and writes should follow, or None."""
        return None

    def check_channels(self, channels: Sequence[str] | None) -> tuple[str, ...]:
        """``channels`` as a tuple (all when None), or `ChannelError` naming an unknown one."""
        available = self.channels
        if channels is None:
            return available
        if isinstance(channels, str):
            channels = (channels,)
        chosen = tuple(channels)
        for channel in chosen:
            if channel not in available:
                raise ChannelError(
                    f"unknown channel {channel!r} in {self.describe()}; "
                    f"valid channels: {', '.join(map(repr, available)) or 'none'}",
                    channel,
                )
        if not chosen:
            raise ChannelError(
                f"no channel chosen; valid channels: {', '.join(map(repr, available))}", chosen
            )
        return chosen

    def check_box(self, box: Box) -> Box:
        """``box`` when it lies inside the bounds, else `OutOfBoundsError` naming both."""
        if not self.bounds.contains(box):
            raise OutOfBoundsError(
                f"region {box} lies outside the bounds {self.bounds} of {self.describe()}", box
            )
        return box

    def describe(self) -> str:
        """A short human description, free of secrets."""
        return type(self).__name__

    def __repr__(self) -> str:
        return self.describe()


class DataSource(_Volume):
    """Where blocks come from: a few named 3-D channels in one ZYX coordinate frame.

    Subclasses implement ``channels``, ``bounds``, ``dtype`` and ``read_box`` (called by
    `read` with the box and channels already checked); they may override ``chunk_shape``.
    A subclass may override `read` itself instead of ``read_box``: it then checks its own
    arguments. Sources must pickle, and open files or connections lazily in the process
    that reads, so that each worker process opens its own. Worker threads share one source:
    reads from several threads at once must be safe. `ndframework.testing` has the test
    class a source should pass.

    Examples
    --------
    >>> class Ramp(DataSource):
    ...     channels = ("ramp",)
    ...     bounds = Box((0, 0, 0), (4, 4, 4))
    ...     def dtype(self, channel):
    ...         return np.dtype("uint16")
    ...     def read_box(self, box, channels):
    ...         z = np.arange(box.start[0], box.stop[0], dtype="uint16")
    ...         return {"ramp": np.broadcast_to(z[:, None, None], box.shape).copy()}
    >>> Ramp().read(Box((1, 0, 0), (3, 1, 1)))["ramp"].ravel()
    array([1, 2], dtype=uint16)
    """

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "read" in cls.__dict__ and getattr(cls.read_box, "__isabstractmethod__", False):
            cls.read_box = _read_box_through_read  # type: ignore[method-assign]

    def default_tiler(
        self, bounds: Box | None = None, channels: Sequence[str] | None = None
    ) -> Tiler:
        """The tiler a pipeline uses over ``bounds`` of ``channels`` (default: all) when
        given none: blocks of whole storage chunks (64³ voxels when there are none) on the
        chunk grid through the source's start, about 32 MiB a block over all channels.

        Whole chunks, so that a block without a halo decodes each of its chunks once and
        parallel writes of the same shape share none. Many chunks a side, so that a thin
        halo costs little: a block of n chunks along an axis with a halo thinner than a
        chunk touches n + 2 chunks along it, and a block of b voxels reads b + 2h. With
        8 × 32 × 32 chunks of uint8 (8 KiB), 32 MiB is 4096 chunks, 16 a side: blocks of
        128 × 512 × 512 voxels. A one-voxel halo then reads
        130·514·514 / (128·512·512) − 1 ≈ 2.4 % more voxels, and touches
        (18/16)³ − 1 ≈ 42 % more chunks, which a source that keeps decoded chunks (as
        `ZarrSource` does) decodes once for the neighbouring blocks of a worker. A block of
        one such chunk would read (10·34·34)/(8·32·32) − 1 ≈ 41 % more voxels and touch
        27 chunks to use one.
        """
        bytes_per_voxel = sum(self.dtype(name).itemsize for name in self.check_channels(channels))
        shape = default_block_shape(self.chunk_shape, bounds or self.bounds, bytes_per_voxel)
        return RegularTiler(shape, origin=self.bounds.start)

    def release(self) -> None:
        """Drop what the source keeps in this process between reads (a cache of decoded
        chunks); the pipeline calls it when a run ends. The default keeps nothing."""

    def read(self, box: Box, channels: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Read ``box`` of each channel (all when None) as ``{channel: ZYX array}``.

        The arrays are writable, of the channel's dtype, and the caller's own.
        """
        chosen = self.check_channels(channels)
        self.check_box(box)
        return self.read_box(box, chosen)

    @abc.abstractmethod
    def read_box(self, box: Box, channels: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Read ``box`` of ``channels`` as ``{channel: ZYX array}``: the primitive a source
        implements. `read` has checked both against this source: ``box`` lies inside
        ``bounds`` and ``channels`` is a non-empty tuple of known names. Return writable
        arrays of each channel's dtype that the caller owns (copies, not views of a cache).
        """


_reentry = threading.local()


def _read_box_through_read(
    self: DataSource, box: Box, channels: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """``read_box`` of a source that overrides `read` instead."""
    with _once(self, "read", "read_box(box, channels)"):
        return self.read(box, channels)


class DataSink(_Volume):
    """Where block outputs go: named 3-D channels, written one box at a time.

    Subclasses implement ``channels``, ``bounds``, ``dtype`` and ``write_box`` (called by
    `write` with the box, channels, shapes and dtypes already checked), or override `write`
    itself; and declare ``chunk_shape`` so that the pipeline can refuse, before a run, a
    tiling whose parallel writes would share a storage chunk. Worker threads share one
    sink: writes of separate boxes from several threads at once must be safe. Sinks used by
    worker processes must pickle and reopen their storage where they are used.
    """

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "write" in cls.__dict__ and getattr(cls.write_box, "__isabstractmethod__", False):
            cls.write_box = _write_box_through_write  # type: ignore[method-assign]

    @property
    def chunk_origin(self) -> Triple:
        """A corner of the storage chunk grid, (z, y, x): by default the bounds' start."""
        return self.bounds.start

    in_process_only: bool = False
    """True for sinks that hold their data in this process's memory: writes made in another
    process would be lost, so the pipeline refuses them with a process-based executor."""

    def write(self, box: Box, arrays: Mapping[str, np.ndarray]) -> None:
        """Write each ``{channel: ZYX array}`` over ``box``; arrays must match its shape."""
        self.check_box(box)
        self.check_channels(list(arrays))
        converted = {}
        for channel, array in arrays.items():
            try:
                array = np.asarray(array)
            except Exception as error:
                raise OutputError(
                    f"output {channel!r} cannot be made into an array: {error}"
                ) from error
            if array.shape != box.shape:
                raise OutputError(
                    f"output {channel!r} has shape {array.shape}; the box {box} needs "
                    f"shape {box.shape}"
                )
            _check_storable(channel, array, self.dtype(channel))
            converted[channel] = array
        self.write_box(box, converted)

    @abc.abstractmethod
    def write_box(self, box: Box, arrays: dict[str, np.ndarray]) -> None:
        """Write ``arrays`` over ``box``: the primitive a sink implements. `write` has
        checked both: ``box`` lies inside ``bounds``, every channel is known, and every
        array has the box's shape and a dtype the channel holds without loss."""


def _write_box_through_write(self: DataSink, box: Box, arrays: dict[str, np.ndarray]) -> None:
    """``write_box`` of a sink that overrides `write` instead."""
    with _once(self, "write", "write_box(box, arrays)"):
        self.write(box, arrays)


@contextlib.contextmanager
def _once(volume: _Volume, method: str, primitive: str) -> Iterator[None]:
    """Refuse the loop of an override of ``method`` that calls the base class's, which
    calls the primitive, which calls the override again."""
    active = getattr(_reentry, "active", None)
    if active is None:
        active = _reentry.active = set()
    key = (id(volume), method)
    if key in active:
        name = type(volume).__name__
        raise TypeError(
            f"{name}.{method}() calls the base class's {method}(), which calls "
            f"{primitive}: implement {primitive} in {name}, or do the whole work in "
            f"{method}() without calling the base class's")
    active.add(key)
    try:
        yield
    finally:
        active.discard(key)


def _check_storable(channel: str, array: np.ndarray, dtype: np.dtype) -> None:
    """Refuse an output that would change its values when stored as ``dtype``.

    A safe cast always passes; integers of a wider type pass when every value fits, as
    labelling functions often return int32 or int64 for a uint16 channel.
    """
    if np.can_cast(array.dtype, dtype, casting="safe"):
        return
    both_integer = array.dtype.kind in "iub" and np.dtype(dtype).kind in "iu"
    if both_integer and array.size:
        info = np.iinfo(dtype)
        low, high = array.min(), array.max()
        if info.min <= low and high <= info.max:
            return
        raise OutputError(
            f"output {channel!r} holds values from {low} to {high}, outside the range "
            f"{info.min}..{info.max} of channel {channel!r} ({np.dtype(dtype)})"
        )
    if both_integer:
        return
    raise OutputError(
        f"output {channel!r} has dtype {array.dtype}, which cannot be stored in channel "
        f"{channel!r} of dtype {np.dtype(dtype)} without changing values"
    )
