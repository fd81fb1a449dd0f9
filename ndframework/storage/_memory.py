"""Volumes held in memory: the source and sink for tests, notebooks and small data."""

from __future__ import annotations

import copy

import threading
import warnings
import weakref
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..geometry import Box, Triple, as_triple
from ._base import DataSink, DataSource
from ._shared import Segments, SharedArray, can_share

__all__ = ["InMemorySource", "InMemorySink"]


def _checked_arrays(arrays: Mapping[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    if not isinstance(arrays, Mapping):
        described = (f"an array of shape {arrays.shape}" if hasattr(arrays, "shape")
                     else repr(arrays))
        raise ConfigError(
            f"{what} takes {{channel: ZYX array}}, got {described}; name its channel, e.g. "
            f"{what}({{'em': array}})", arrays)
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

    Worker processes share one copy of the arrays: the first time the source is pickled
    (for worker processes), each array is copied into a shared memory segment, which this
    process then reads from too, and a pickle holds only the segments' names. Workers map
    the segments read-only; every read still returns arrays of the caller's own. The
    segments are removed when the source is closed or collected, and by multiprocessing's
    resource tracker if this process dies first. Treat the arrays as read-only once the
    source is made: a change made after the source was first pickled is not seen.

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
        self._sharing = threading.Lock()
        self._shared: dict[str, SharedArray | np.ndarray] | None = None
        """What a pickle holds per channel: a segment's reference, or the array itself
        (empty, or no room in shared memory)."""
        self._release: weakref.finalize | None = None
        """Unlinks the segments this source made, once: at close(), collection or exit."""

    def read_box(self, box: Box, channels: tuple[str, ...]) -> dict[str, np.ndarray]:
        local = box.relative_to(self._bounds).slices()
        return {name: self._arrays[name][local].copy() for name in channels}

    def close(self) -> None:
        """Remove the shared memory segments made when this source was pickled.

        Copies unpickled earlier keep reading what they mapped; copies unpickled later
        fail. The source itself stays usable, and shares its arrays anew if pickled again.
        """
        with self._sharing:
            if self._release is not None:
                self._release()
                self._release = None
            self._shared = None

    def __copy__(self) -> InMemorySource:
        """A source over the same arrays that owns no segment: it shares its arrays anew
        if pickled (a mapped segment stays readable after its owner unlinks it)."""
        copied = type(self).__new__(type(self))
        copied.__dict__.update(self.__dict__)
        copied._arrays = dict(self._arrays)
        copied._sharing = threading.Lock()
        copied._shared = None
        copied._release = None
        return copied

    def __deepcopy__(self, memo: dict[int, Any]) -> InMemorySource:
        """A source over copies of the arrays (and of any other attribute)."""
        copied = self.__copy__()
        for name, value in self.__dict__.items():
            if name not in ("_arrays", "_sharing", "_shared", "_release"):
                copied.__dict__[name] = copy.deepcopy(value, memo)
        copied._arrays = {name: np.array(array, copy=True)
                          for name, array in self._arrays.items()}
        return copied

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"] = self._share()
        del state["_sharing"], state["_release"]  # the copy owns no segment
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Map the segments of the pickled source (read-only, no copy); pickled again, the
        copy refers to the same segments."""
        self.__dict__.update(state)
        self._shared = dict(state["_arrays"])
        self._arrays = {
            name: item.attach() if isinstance(item, SharedArray) else item
            for name, item in self._shared.items()
        }
        self._sharing = threading.Lock()
        self._release = None

    def _share(self) -> dict[str, SharedArray | np.ndarray]:
        """What a pickle holds per channel; copies the arrays into segments the first
        time. This process then reads the segments too, so that a private copy of an
        array that only the source held is freed."""
        with self._sharing:
            if self._shared is None:
                shareable = {n: a for n, a in self._arrays.items() if can_share(a)}
                try:
                    segments, references = Segments.share(shareable)
                except OSError as error:
                    warnings.warn(
                        f"{self.describe()} travels to worker processes as a copy for each: "
                        f"its arrays could not be put in shared memory ({error}); "
                        f"/dev/shm may be too small (docker run --shm-size)",
                        RuntimeWarning, stacklevel=2,
                    )
                    segments, references = Segments([]), {}
                self._release = weakref.finalize(self, segments.unlink)
                self._arrays = {
                    name: references[name].attach() if name in references else array
                    for name, array in self._arrays.items()
                }
                self._shared = {name: references.get(name, array)
                                for name, array in self._arrays.items()}
            return self._shared


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
        dtypes: Mapping[str, object],
        bounds: Box | Sequence[int],
    ) -> "InMemorySink":
        """A sink of zero-filled arrays, one per ``{channel: dtype}``, over ``bounds`` (a
        `Box`, or a shape (z, y, x) starting at the origin): the argument order of
        `ZarrSink.create`.

        >>> InMemorySink.zeros({"labels": "uint32"}, Box((10, 0, 0), (12, 4, 4)))
        InMemorySink(labels:uint32; bounds [10:12, 0:4, 0:4])
        """
        if not isinstance(dtypes, Mapping):
            raise ConfigError(
                f"InMemorySink.zeros(dtypes, bounds) takes {{channel: dtype}} first, as "
                f"ZarrSink.create(path, dtypes, bounds) does; got {dtypes!r}", dtypes)
        if not isinstance(bounds, Box):
            bounds = Box.from_shape(as_triple(bounds, "bounds (a Box or a shape z, y, x)",
                                              minimum=0))
        arrays = {}
        for name, dtype in dtypes.items():
            try:
                arrays[name] = np.zeros(bounds.shape, np.dtype(dtype))  # type: ignore
            except TypeError:
                raise ConfigError(f"{dtype!r} of channel {name!r} is not a numpy dtype",
                                  dtype) from None
        return cls(arrays, bounds.start)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays written into, by channel."""
        return dict(self._arrays)

    def write_box(self, box: Box, arrays: dict[str, np.ndarray]) -> None:
        local = box.relative_to(self._bounds).slices()
        for name, array in arrays.items():
            self._arrays[name][local] = array
