"""``--output PATH``: the zarr store a run writes to, opened when it exists, otherwise
described first (`PlannedStore`) so that everything is checked before it is created, and
removed again when the command that created it fails before any block is done."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import ConfigError
from ..geometry import Box, Triple, as_triple
from ..storage import DataSink, ZarrSink
from ..processor import check_outputs

__all__ = ["PlannedStore", "declared_outputs", "output_sink", "remove_store"]


class PlannedStore(DataSink):
    """The zarr store that ``--output`` will create: its channels, bounds and chunks,
    as `ZarrSink.create` makes them, for checking (or planning) a run before the store
    exists. It holds no data: nothing is ever written to it."""

    def __init__(self, path: str, dtypes: Mapping[str, np.dtype], bounds: Box,
                 chunk_shape: Triple) -> None:
        self.path = path
        self.dtypes = dict(dtypes)
        self._bounds = bounds
        self.requested_chunks = as_triple(chunk_shape, "chunk_shape", minimum=1)

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self.dtypes)

    @property
    def bounds(self) -> Box:
        return self._bounds

    def dtype(self, channel: str) -> np.dtype:
        return self.dtypes[channel]

    @property
    def chunk_shape(self) -> Triple:
        # as ZarrSink.create cuts them: no larger than the bounds
        a, b, c = (min(chunk, max(extent, 1))
                   for chunk, extent in zip(self.requested_chunks, self._bounds.shape))
        return a, b, c

    def describe(self) -> str:
        channels = ", ".join(f"{name} ({dtype})" for name, dtype in self.dtypes.items())
        return f"ZarrSink({self.path!r}, to be created: {channels})"

    def write_box(self, box: Box, arrays: dict[str, np.ndarray]) -> None:
        raise AssertionError(f"{self.describe()} is a plan: it is never written")

    def create(self) -> ZarrSink:
        """Create the store it describes."""
        return ZarrSink.create(self.path, self.dtypes, self._bounds,
                               chunk_shape=self.requested_chunks)


def declared_outputs(processor: Any) -> dict[str, np.dtype]:
    """The output channels the processor declares (its ``outputs``), dtypes checked."""
    return check_outputs(getattr(processor, "outputs", None)) or {}


def output_sink(path: str, explicit: Mapping[str, str], declared: Mapping[str, np.dtype],
                source: Any, tiler: Any) -> ZarrSink | PlannedStore:
    """The store at ``path``, opened when it exists (it must have the ``explicit``
    ``--output-channel`` channels); else the `PlannedStore` of the declared outputs and the
    explicit channels, over the whole source, chunked like the blocks."""
    if Path(path).exists():
        sink = ZarrSink(path)
        for name, dtype in explicit.items():
            if name not in sink.channels or sink.dtype(name) != np.dtype(dtype):
                have = ", ".join(f"{n}:{sink.dtype(n)}" for n in sink.channels)
                raise ConfigError(
                    f"--output {path!r} exists with channels {have}, not {name}:{dtype}; "
                    f"choose another --output path", path)
        return sink
    wanted = {**declared, **{name: np.dtype(dtype) for name, dtype in explicit.items()}}
    if not wanted:
        raise ConfigError(
            f"--output {path!r} does not exist; give --output-channel NAME:DTYPE to create "
            f"it (or declare the processor's outputs)", path)
    chunks = getattr(tiler or source.default_tiler(), "block_shape", None) or source.chunk_shape
    # over the whole source, on the grid the blocks follow, so that any --bounds fits it
    return PlannedStore(path, wanted, source.bounds, chunks or (64, 64, 64))


def remove_store(path: str) -> None:
    """Remove the store this command created at ``path``."""
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)
