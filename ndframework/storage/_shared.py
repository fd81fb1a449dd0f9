"""Arrays in named shared memory: one copy in RAM, however many worker processes read it.

The process that shares an array (the coordinator) copies it once into a segment of
`multiprocessing.shared_memory` and owns the segment: `Segments.unlink` removes it, and if
the owner dies first, even by SIGKILL, multiprocessing's resource tracker, with which the
segment is registered at creation, removes it when the last process holding the tracker's
pipe (the owner, its workers, its forkserver) has exited.

Every process, the owner too, maps a segment read-only by name, and never registers it with
the resource tracker. ``SharedMemory(name)`` would: before Python 3.13 (which adds
``track=False``) it registers every attach, so that the attaching process's tracker unlinks
the segment, or warns of a leak, when that process ends (gh-82300, bpo-38119). A worker
with a tracker of its own would then remove the segment under the coordinator, and one that
shares the coordinator's tracker can register a name just after the owner unlinked it, for
a false leak warning at exit.
"""

from __future__ import annotations

import mmap
import os
from multiprocessing import shared_memory
from typing import Mapping

import attrs
import numpy as np

try:
    import _posixshmem  # what multiprocessing.shared_memory uses on POSIX
except ImportError:  # Windows: segments live while a handle is open, another model
    _posixshmem = None

__all__ = ["SharedArray", "Segments", "can_share"]


def can_share(array: np.ndarray) -> bool:
    """True when ``array`` can live in a shared segment: plain data of at least one byte
    (a segment cannot be empty), on a platform with POSIX shared memory."""
    return _posixshmem is not None and array.nbytes > 0 and not array.dtype.hasobject


@attrs.frozen
class SharedArray:
    """A reference to an array in a shared memory segment: what travels in a pickle."""

    name: str
    """The segment's name, as `multiprocessing.shared_memory` spells it (no leading /)."""
    dtype: str
    """The array's dtype, as ``np.dtype.str``."""
    shape: tuple[int, ...]
    """The array's shape; its data fill the segment's start in C order."""

    def attach(self) -> np.ndarray:
        """The array, mapped read-only from the segment; the mapping lasts as long as the
        array (or a view of it) does, also after the segment's name is unlinked."""
        dtype = np.dtype(self.dtype)
        size = int(np.prod(self.shape)) * dtype.itemsize
        try:
            descriptor = _posixshmem.shm_open("/" + self.name, os.O_RDONLY, mode=0o600)
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f"the shared memory segment {self.name!r} of an InMemorySource is gone: the "
                f"source it was shared from has been closed or collected, or lives on "
                f"another machine"
            ) from error
        try:
            mapping = mmap.mmap(descriptor, size, access=mmap.ACCESS_READ)
        finally:
            os.close(descriptor)
        return np.frombuffer(mapping, dtype, count=size // dtype.itemsize).reshape(self.shape)


def _reserve(name: str, size: int) -> None:
    """Allocate the pages of segment ``name`` now: a full /dev/shm then raises ENOSPC here,
    where writing into a mapping of unallocated pages would kill the process (SIGBUS)."""
    if not hasattr(os, "posix_fallocate"):  # macOS: no tmpfs overcommit to guard against
        return
    descriptor = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
    try:
        os.posix_fallocate(descriptor, 0, size)
    finally:
        os.close(descriptor)


class Segments:
    """Shared memory segments owned by this process, made by `Segments.share`."""

    def __init__(self, segments: list[shared_memory.SharedMemory]) -> None:
        self._segments = segments
        self._owner = os.getpid()

    @classmethod
    def share(
        cls, arrays: Mapping[str, np.ndarray]
    ) -> tuple[Segments, dict[str, SharedArray]]:
        """Copy each array into a new segment of its own; return the segments and the
        references to them, by channel. Arrays must pass `can_share`. An `OSError` (such
        as no room left in /dev/shm) leaves no segment behind."""
        owned = cls([])
        references = {}
        try:
            for name, array in arrays.items():
                segment = shared_memory.SharedMemory(create=True, size=array.nbytes)
                owned._segments.append(segment)  # registered with the resource tracker
                _reserve(segment.name, array.nbytes)
                target = np.ndarray(array.shape, array.dtype, buffer=segment.buf)
                np.copyto(target, array, casting="no")
                del target  # releases segment.buf, so that close() can unmap it
                # Readers map it themselves: the owner needs no writable mapping or handle.
                segment.close()
                references[name] = SharedArray(segment.name, array.dtype.str, array.shape)
        except BaseException:
            owned.unlink()
            raise
        return owned, references

    @property
    def names(self) -> tuple[str, ...]:
        """The segments' names."""
        return tuple(segment.name for segment in self._segments)

    def unlink(self) -> None:
        """Remove the segments' names (mappings in use stay valid until they are dropped).
        Only the process that made them does: a forked child holds a copy of this object."""
        if os.getpid() != self._owner:
            return
        segments, self._segments = self._segments, []
        for segment in segments:
            try:
                segment.unlink()  # and unregisters it from the resource tracker
            except FileNotFoundError:
                pass
