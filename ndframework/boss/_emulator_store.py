"""The BOSS emulator's state: the resource tree and each channel's voxels.

One re-entrant lock guards the tree (small metadata operations only). Voxel data live in a
`Volume` per channel with its own lock, taken for writes; reads take no lock, so cutouts of
different channels, and reads of one channel, run concurrently.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
import numpy as np

from ..geometry import Box
from ._emulator_model import (
    ApiError,
    ChannelRecord,
    CollectionRecord,
    CoordFrameRecord,
    ErrorCode,
    ExperimentRecord,
    parse_channel,
    parse_collection,
    parse_coord_frame,
    parse_experiment,
    update_channel,
    update_collection,
    update_coord_frame,
    update_experiment,
)

__all__ = ["Volume", "CutoutTarget", "Store"]

V = TypeVar("V")


@attrs.define
class Volume:
    """The voxels of one channel, shape (T, Z, Y, X) over its frame, zero until written.

    The array is allocated on the first write; reads before that return zeros without
    allocating, so a large, sparsely used frame costs nothing until it is written.
    """

    dtype: np.dtype = attrs.field(converter=np.dtype)
    """Voxel type."""
    time_samples: int
    """Length of the time axis."""
    frame: Box
    """The frame's extent, ZYX; voxel (z, y, x) is stored at ``(z, y, x) - frame.start``."""
    _data: np.ndarray | None = attrs.field(default=None, init=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(T, Z, Y, X)."""
        return (self.time_samples, *self.frame.shape)

    def _index(self, times: range, box: Box) -> tuple[slice, ...]:
        return (slice(times.start, times.stop), *box.relative_to(self.frame).slices())

    def read(self, times: range, box: Box) -> np.ndarray:
        """A C-ordered copy of the voxels in ``box`` at ``times``, shape (T, Z, Y, X)."""
        data = self._data
        if data is None:
            return np.zeros((len(times), *box.shape), dtype=self.dtype)
        return data[self._index(times, box)].copy()  # C order, never a view of the store

    def write(self, times: range, box: Box, values: np.ndarray | int) -> None:
        """Store ``values`` (broadcast to (T, Z, Y, X)) in ``box`` at ``times``, zeros
        included: what loading a volume and the to-black endpoint need (a cutout POST
        merges instead, see `merge`)."""
        with self._lock:
            if self._data is None:
                if isinstance(values, int) and values == 0:
                    return  # still all zero
                self._data = self._allocate()
            self._data[self._index(times, box)] = values

    def merge(self, times: range, box: Box, values: np.ndarray) -> None:
        """Store the non-zero voxels of ``values`` (T, Z, Y, X) in ``box`` at ``times``;
        where ``values`` is zero, the stored voxel stays as it was.

        This is how the BOSS merges a cutout POST into what it holds: every cuboid written
        goes through ``Cube.overwrite`` (spdb ``spdb/spatialdb/imagecube.py`` and
        ``annocube.py``, ``overwrite``), the C ``overwriteDense8/16/64`` of
        ``spdb/c_lib/c_version/overwriteDense.c``: ``if (annodata[i] != 0) data[i] =
        annodata[i]``, applied when the page-out lambda flushes the write to S3 (boss-tools
        ``lambda/s3_flush_lambda.py``, ``existing_cube.overwrite(new_cube.data, ...)``).
        """
        nonzero = values != 0
        if not nonzero.any():
            return  # nothing changes, and an unallocated volume stays unallocated
        with self._lock:
            if self._data is None:
                self._data = self._allocate()
            np.copyto(self._data[self._index(times, box)], values, where=nonzero)

    def snapshot(self) -> np.ndarray:
        """A copy of the whole volume, (T, Z, Y, X)."""
        return self.read(range(self.time_samples), self.frame)

    def _allocate(self) -> np.ndarray:
        try:
            return np.zeros(self.shape, dtype=self.dtype)
        except MemoryError:
            raise ApiError(
                507,
                ErrorCode.IO_ERROR,
                f"The emulator cannot hold a {self.dtype} channel of shape {self.shape} "
                "(T, Z, Y, X) in memory; use a smaller coordinate frame.",
            ) from None


@attrs.frozen
class CutoutTarget:
    """What a cutout request needs, looked up under the tree lock and used outside it."""

    channel: ChannelRecord
    """The channel read or written."""
    experiment: ExperimentRecord
    """Its experiment (time axis, resolution levels)."""
    frame: CoordFrameRecord
    """Its coordinate frame (valid ranges)."""
    volume: Volume
    """Its voxels."""


@attrs.define
class _ChannelNode:
    record: ChannelRecord
    volume: Volume


@attrs.define
class _ExperimentNode:
    record: ExperimentRecord
    channels: dict[str, _ChannelNode] = attrs.Factory(dict)


@attrs.define
class _CollectionNode:
    record: CollectionRecord
    experiments: dict[str, _ExperimentNode] = attrs.Factory(dict)


def _rekey(mapping: dict[str, V], old: str, new: str, what: str) -> None:
    """Move ``mapping[old]`` to ``new``, refusing a name that is taken."""
    if new == old:
        return
    if new in mapping:
        raise ApiError(409, ErrorCode.RESOURCE_EXISTS, f"{what} {new!r} already exists.")
    mapping[new] = mapping.pop(old)


def _refuse_if_used(users: list[str], what: str, used_by: str) -> None:
    if users:
        raise ApiError(
            409,
            ErrorCode.INTEGRITY_ERROR,
            f"Cannot delete {what}: it is still used by {used_by} {', '.join(map(repr, users))}.",
        )


@attrs.define
class Store:
    """Collections, coordinate frames, experiments, channels and their voxels."""

    creator: str = "emulator"
    """User name reported as every resource's creator."""
    _lock: threading.RLock = attrs.field(factory=threading.RLock, init=False, repr=False)
    _collections: dict[str, _CollectionNode] = attrs.field(factory=dict, init=False)
    _frames: dict[str, CoordFrameRecord] = attrs.field(factory=dict, init=False)

    # -- lookups (call with the lock held) ---------------------------------------------------

    def _collection(self, collection: str) -> _CollectionNode:
        try:
            return self._collections[collection]
        except KeyError:
            raise ApiError.not_found(f"Collection {collection!r}") from None

    def _experiment(self, collection: str, experiment: str) -> _ExperimentNode:
        try:
            return self._collection(collection).experiments[experiment]
        except KeyError:
            raise ApiError.not_found(
                f"Experiment {experiment!r} in collection {collection!r}"
            ) from None

    def _channel(self, collection: str, experiment: str, channel: str) -> _ChannelNode:
        try:
            return self._experiment(collection, experiment).channels[channel]
        except KeyError:
            raise ApiError.not_found(
                f"Channel {channel!r} in {collection!r}/{experiment!r}"
            ) from None

    def _frame(self, name: str) -> CoordFrameRecord:
        try:
            return self._frames[name]
        except KeyError:
            raise ApiError.not_found(f"Coordinate frame {name!r}") from None

    # -- collections --------------------------------------------------------------------------

    def list_collections(self) -> list[str]:
        """Names of all collections."""
        with self._lock:
            return list(self._collections)

    def get_collection(self, collection: str) -> dict[str, Any]:
        """The collection's JSON."""
        with self._lock:
            node = self._collection(collection)
            return node.record.to_json(self.creator, list(node.experiments))

    def create_collection(self, collection: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a collection from a POST body; 409 if it exists."""
        record = parse_collection(collection, body)
        with self._lock:
            if collection in self._collections:
                raise ApiError(
                    409, ErrorCode.RESOURCE_EXISTS, f"Collection {collection!r} already exists."
                )
            self._collections[collection] = _CollectionNode(record)
        return self.get_collection(collection)

    def update_collection(self, collection: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a PUT body (rename, description, visibility)."""
        with self._lock:
            node = self._collection(collection)
            record = update_collection(node.record, body)
            _rekey(self._collections, collection, record.name, "Collection")
            node.record = record
            return self.get_collection(record.name)

    def delete_collection(self, collection: str) -> None:
        """Delete an empty collection; 409 while it has experiments."""
        with self._lock:
            node = self._collection(collection)
            _refuse_if_used(list(node.experiments), f"collection {collection!r}", "experiments")
            del self._collections[collection]

    # -- coordinate frames --------------------------------------------------------------------

    def list_coord_frames(self) -> list[str]:
        """Names of all coordinate frames."""
        with self._lock:
            return list(self._frames)

    def get_coord_frame(self, name: str) -> dict[str, Any]:
        """The coordinate frame's JSON."""
        with self._lock:
            return self._frame(name).to_json(self.creator)

    def create_coord_frame(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a coordinate frame from a POST body; 409 if it exists."""
        record = parse_coord_frame(name, body)
        with self._lock:
            if name in self._frames:
                raise ApiError(
                    409, ErrorCode.RESOURCE_EXISTS, f"Coordinate frame {name!r} already exists."
                )
            self._frames[name] = record
            return record.to_json(self.creator)

    def update_coord_frame(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a PUT body (rename, description); experiments follow a rename."""
        with self._lock:
            record = update_coord_frame(self._frame(name), body)
            _rekey(self._frames, name, record.name, "Coordinate frame")
            self._frames[record.name] = record
            for experiment in self._experiments_using(name):
                experiment.record = attrs.evolve(experiment.record, coord_frame=record.name)
            return record.to_json(self.creator)

    def delete_coord_frame(self, name: str) -> None:
        """Delete a coordinate frame; 409 while an experiment uses it."""
        with self._lock:
            self._frame(name)
            users = [node.record.name for node in self._experiments_using(name)]
            _refuse_if_used(users, f"coordinate frame {name!r}", "experiments")
            del self._frames[name]

    def _experiments_using(self, frame: str) -> list[_ExperimentNode]:
        return [
            experiment
            for collection in self._collections.values()
            for experiment in collection.experiments.values()
            if experiment.record.coord_frame == frame
        ]

    # -- experiments --------------------------------------------------------------------------

    def list_experiments(self, collection: str) -> list[str]:
        """Names of the collection's experiments."""
        with self._lock:
            return list(self._collection(collection).experiments)

    def get_experiment(self, collection: str, experiment: str) -> dict[str, Any]:
        """The experiment's JSON."""
        with self._lock:
            node = self._experiment(collection, experiment)
            return node.record.to_json(self.creator, collection, list(node.channels))

    def create_experiment(
        self, collection: str, experiment: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Create an experiment from a POST body; its coordinate frame must exist."""
        record = parse_experiment(experiment, body)
        with self._lock:
            parent = self._collection(collection)
            if experiment in parent.experiments:
                raise ApiError(
                    409,
                    ErrorCode.RESOURCE_EXISTS,
                    f"Experiment {experiment!r} already exists in collection {collection!r}.",
                )
            if record.coord_frame not in self._frames:
                raise ApiError.bad_value(
                    "coord_frame", record.coord_frame, "the name of an existing coordinate frame"
                )
            parent.experiments[experiment] = _ExperimentNode(record)
            return self.get_experiment(collection, experiment)

    def update_experiment(
        self, collection: str, experiment: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Apply a PUT body (rename, description, hierarchy)."""
        with self._lock:
            node = self._experiment(collection, experiment)
            record = update_experiment(node.record, body)
            _rekey(self._collection(collection).experiments, experiment, record.name, "Experiment")
            node.record = record
            return self.get_experiment(collection, record.name)

    def delete_experiment(self, collection: str, experiment: str) -> None:
        """Delete an experiment; 409 while it has channels."""
        with self._lock:
            node = self._experiment(collection, experiment)
            _refuse_if_used(list(node.channels), f"experiment {experiment!r}", "channels")
            del self._collection(collection).experiments[experiment]

    # -- channels -----------------------------------------------------------------------------

    def list_channels(self, collection: str, experiment: str) -> list[str]:
        """Names of the experiment's channels."""
        with self._lock:
            return list(self._experiment(collection, experiment).channels)

    def get_channel(self, collection: str, experiment: str, channel: str) -> dict[str, Any]:
        """The channel's JSON."""
        with self._lock:
            return self._channel(collection, experiment, channel).record.to_json(
                self.creator, experiment
            )

    def create_channel(
        self, collection: str, experiment: str, channel: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Create a channel (and its empty volume) from a POST body."""
        record = parse_channel(channel, body)
        with self._lock:
            parent = self._experiment(collection, experiment)
            if channel in parent.channels:
                raise ApiError(
                    409,
                    ErrorCode.RESOURCE_EXISTS,
                    f"Channel {channel!r} already exists in {collection!r}/{experiment!r}.",
                )
            self._check_channel(record, parent)
            frame = self._frames[parent.record.coord_frame]
            volume = Volume(record.datatype, parent.record.num_time_samples, frame.box)
            parent.channels[channel] = _ChannelNode(record, volume)
            return record.to_json(self.creator, experiment)

    def update_channel(
        self, collection: str, experiment: str, channel: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Apply a PUT body (rename, description, sources, related); data stay."""
        with self._lock:
            parent = self._experiment(collection, experiment)
            node = self._channel(collection, experiment, channel)
            record = update_channel(node.record, body)
            self._check_channel(record, parent)
            _rekey(parent.channels, channel, record.name, "Channel")
            node.record = record
            if record.name != channel:
                self._follow_rename(parent, channel, record.name)
            return record.to_json(self.creator, experiment)

    def delete_channel(self, collection: str, experiment: str, channel: str) -> None:
        """Delete a channel and its data; 409 while another channel names it as a source."""
        with self._lock:
            parent = self._experiment(collection, experiment)
            self._channel(collection, experiment, channel)
            users = [
                name for name, node in parent.channels.items() if channel in node.record.sources
            ]
            _refuse_if_used(users, f"channel {channel!r}", "channels")
            del parent.channels[channel]

    def _check_channel(self, record: ChannelRecord, parent: _ExperimentNode) -> None:
        for key in ("sources", "related"):
            unknown = [
                name
                for name in getattr(record, key)
                if name not in parent.channels and name != record.name
            ]
            if unknown:
                raise ApiError.bad_value(key, unknown, "names of channels in the same experiment")
        if record.default_time_sample >= parent.record.num_time_samples:
            raise ApiError.bad_value(
                "default_time_sample",
                record.default_time_sample,
                f"a time sample below the experiment's {parent.record.num_time_samples}",
            )

    @staticmethod
    def _follow_rename(parent: _ExperimentNode, old: str, new: str) -> None:
        def renamed(names: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(new if name == old else name for name in names)

        for node in parent.channels.values():
            node.record = attrs.evolve(
                node.record,
                sources=renamed(node.record.sources),
                related=renamed(node.record.related),
            )

    # -- voxel data ---------------------------------------------------------------------------

    def cutout_target(self, collection: str, experiment: str, channel: str) -> CutoutTarget:
        """The records and volume a cutout of this channel works on."""
        with self._lock:
            parent = self._experiment(collection, experiment)
            node = self._channel(collection, experiment, channel)
            return CutoutTarget(
                node.record, parent.record, self._frames[parent.record.coord_frame], node.volume
            )
