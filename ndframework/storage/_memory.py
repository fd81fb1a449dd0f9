"""Volumes held in memory: the source and sink for tests, notebooks and small data."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..geometry import Box, Triple, as_triple
from ._base import DataSink, DataSource

__all__ = ["InMemorySource", "InMemorySink"]


def _checked_arrays(arrays: Mapping[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    if not arrays:
        raise ConfigError(f"{what} needs at least one channel, got none", arrays)
    checked = {}
    shapes = set()
    for name, array in arrays.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"channel names must be non-empty strings, got {name!r}", name)
        array = np.asarray(array)
        if array.ndim != 3:
            raise ConfigError(
                f"channel {name!r} must be a 3-D (z, y, x) array, got {array.ndim}-D with "
                f"shape {array.shape}",
                array.shape,
            )
        shapes.add(array.shape)
        checked[name] = array
    if len(shapes) > 1:
        listing = ", ".join(f"{name!r}: {a.shape}" for name, a in checked.items())
        raise ConfigError(f"all channels of {what} must have one shape, got {listing}", shapes)
    return checked


class _InMemoryVolume:
    def __init__(self, arrays: Mapping[str, np.ndarray], origin: Sequence[int], what: str):
        self._arrays = _checked_arrays(arrays, what)
        self._origin = as_triple(origin, "origin")
        shape = next(iter(self._arrays.values())).shape
        self._bounds = Box.from_shape(shape, self._origin)

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self._arrays)

    @property
    def bounds(self) -> Box:
        return self._bounds

    def dtype(self, channel: str) -> np.dtype:
        self.check_channels([channel])  # type: ignore[attr-defined]
        return self._arrays[channel].dtype

    def describe(self) -> str:
        channels = ", ".join(f"{n}:{a.dtype}" for n, a in self._arrays.items())
        return f"{type(self).__name__}({channels}; bounds {self._bounds})"


class InMemorySource(_InMemoryVolume, DataSource):
    """A source over numpy arrays, one per channel, all of one ZYX shape.

    Parameters
    ----------
    arrays:
        ``{channel: ZYX array}``.
    origin:
        Coordinates (z, y, x) of each array's first voxel.

    Examples
    --------
    >>> source = InMemorySource({"em": np.arange(24, dtype=np.uint8).reshape(2, 3, 4)},
    ...                         origin=(10, 0, 0))
    >>> source.bounds
    Box(start=(10, 0, 0), stop=(12, 3, 4))
    >>> source.read(Box((11, 0, 0), (12, 1, 2)))["em"]
    array([[[12, 13]]], dtype=uint8)
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], origin: Sequence[int] = (0, 0, 0)):
        super().__init__(arrays, origin, "InMemorySource")

    def _read_box(self, box: Box, channels: tuple[str, ...]) -> dict[str, np.ndarray]:
        local = box.relative_to(self._bounds).slices()
        return {name: self._arrays[name][local].copy() for name in channels}


class InMemorySink(_InMemoryVolume, DataSink):
    """A sink into numpy arrays in this process: for serial and thread executors.

    Build it with `InMemorySink.zeros` or from arrays to write into; read results from
    ``sink.arrays``.
    """

    in_process_only = True

    def __init__(self, arrays: Mapping[str, np.ndarray], origin: Sequence[int] = (0, 0, 0)):
        super().__init__(arrays, origin, "InMemorySink")

    @classmethod
    def zeros(
        cls,
        shape: Sequence[int],
        dtypes: Mapping[str, object],
        origin: Sequence[int] = (0, 0, 0),
    ) -> "InMemorySink":
        """A sink of zero-filled arrays of ``shape``, one per ``{channel: dtype}``."""
        shape_t: Triple = as_triple(shape, "shape", minimum=0)
        return cls({name: np.zeros(shape_t, dtype) for name, dtype in dtypes.items()}, origin)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays written into, by channel."""
        return dict(self._arrays)

    def _write_box(self, box: Box, arrays: dict[str, np.ndarray]) -> None:
        local = box.relative_to(self._bounds).slices()
        for name, array in arrays.items():
            self._arrays[name][local] = array
