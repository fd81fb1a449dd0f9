"""`BossEmulator`: the offline BOSS as one object to start, stop, fill and inspect.

>>> import numpy as np
>>> volume = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8)
>>> with BossEmulator(token="secret-token") as boss:
...     boss.create_volume("coll", "exp", {"ch0": volume})
...     remote = boss.remote()
...     channel = remote.get_channel("ch0", "coll", "exp")
...     cutout = remote.get_cutout(channel, 0, [2, 6], [0, 8], [1, 3], parallel=False)
>>> bool((cutout == volume[1:3, 0:8, 2:6]).all())
True
"""

from __future__ import annotations

import datetime
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import blosc
import numpy as np

from .._bossapi import DATATYPES, MAX_CUTOUT_BYTES
from ..errors import ChannelError, ConfigError
from ..geometry import Box, as_triple
from . import cuboids
from .cuboid_stores import CuboidStore, DiskCuboids, MemoryCuboids
from .datarequest import Backend, ChannelRequest
from .downsampling import Downsampler
from .errors import BossError, ServerError
from .faults import EmulatorStats, FaultInjector, Faults
from .http import EmulatorServer
from .paths import ResourcePath
from .quirks import Quirks
from .resources import NAME_PATTERN, ResourceTree
from .routes import BossApi

if TYPE_CHECKING:
    from intern.remote.boss import BossRemote

__all__ = ["BossEmulator", "PURGE_AFTER"]

PURGE_AFTER = datetime.timedelta(days=1, hours=12)
"""How long the BOSS keeps a deleted resource before removing it (boss-tools
activities/delete_cuboid.py)."""


def _check_token(instance: object, attribute: attrs.Attribute, value: object) -> None:
    # Never quote the value: it is a secret.
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ConfigError("token must be a non-empty string without whitespace")


def _check_port(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(
            f"port must be an integer from 0 (any free port) to 65535, got {value!r}", value
        )


def _check_max_bytes(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 0 < value <= blosc.MAX_BUFFERSIZE
    ):
        raise ConfigError(
            f"max_cutout_bytes must be an integer from 1 to {blosc.MAX_BUFFERSIZE} (blosc's "
            f"largest buffer), got {value!r}",
            value,
        )


def _as_store(value: object) -> Path | None:
    return None if value is None else Path(os.fspath(value))  # type: ignore[arg-type]


@attrs.define(repr=False)
class BossEmulator:
    """An HTTP server on loopback that speaks the BOSS API v1 as intern uses it.

    Constructing it does no I/O; `start` (or ``with``) binds the port and serves from a
    background thread, `stop` closes it. With ``store=None`` resources and voxels live in
    memory and survive a stop and start; with a directory they live there
    (``resources.sqlite`` and ``cuboids/``) and survive the process too.

    Parameters
    ----------
    token:
        The API token clients must send as ``Authorization: Token <token>``. It never
        appears in the emulator's repr, logs or error bodies.
    port:
        TCP port to listen on; 0 picks a free one (read it back from `port` or `url`).
    address:
        Interface to bind; loopback by default.
    max_cutout_bytes:
        Largest cutout, uncompressed, that one GET or POST may move (uint64: four times
        this); larger ones get the BOSS's 413. Defaults to the BOSS's 520 MiB.
    faults:
        Faults to inject from the start; change them any time through `faults`.
    store:
        None for memory, or a directory to keep everything in (created if needed).
    exact_id_index:
        Answer ``/v1/ids`` and ``/v1/boundingbox`` from the stored voxels, as a BOSS whose
        object index were filled would; by default they answer as the BOSS does today
        (see `ndframework.bossemu.volume`).
    quirks:
        Which of the BOSS's oddities to reproduce: all by default, so that a pipeline meets
        here what it will meet on the BOSS; ``Quirks.without(name, ...)`` turns some off.
    """

    token: str = attrs.field(validator=_check_token)
    _requested_port: int = attrs.field(default=0, alias="port", validator=_check_port)
    address: str = "127.0.0.1"
    max_cutout_bytes: int = attrs.field(default=MAX_CUTOUT_BYTES, validator=_check_max_bytes)
    _initial_faults: Faults = attrs.field(
        factory=Faults, alias="faults", validator=attrs.validators.instance_of(Faults)
    )
    store: Path | None = attrs.field(default=None, converter=_as_store)
    exact_id_index: bool = False
    quirks: Quirks = attrs.field(factory=Quirks, validator=attrs.validators.instance_of(Quirks))
    _injector: FaultInjector = attrs.field(init=False)
    _backend: Backend | None = attrs.field(default=None, init=False)
    _server: EmulatorServer | None = attrs.field(default=None, init=False)
    _thread: threading.Thread | None = attrs.field(default=None, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    def __attrs_post_init__(self) -> None:
        self._injector = FaultInjector(self._initial_faults)

    def __repr__(self) -> str:
        where = self.url if self.running else "not running"
        return f"<BossEmulator {where}>"

    # -- storage ------------------------------------------------------------------------------

    def _open(self) -> Backend:
        with self._lock:
            if self._backend is None:
                store: CuboidStore
                sourceless = {
                    "annotation_requires_source": not self.quirks.annotation_without_source
                }
                if self.store is None:
                    tree, store = ResourceTree.open(None, **sourceless), MemoryCuboids()
                else:
                    self.store.mkdir(parents=True, exist_ok=True)
                    tree = ResourceTree.open(self.store / "resources.sqlite", **sourceless)
                    store = DiskCuboids.open(self.store / "cuboids")
                backend = Backend(
                    tree, store, self.max_cutout_bytes, exact_id_index=self.exact_id_index,
                    quirks=self.quirks,
                )
                backend.downsampler = Downsampler(backend)
                self._backend = backend
            return self._backend

    @property
    def resources(self) -> ResourceTree:
        """The resource tree (collections, frames, experiments, channels, metadata)."""
        return self._open().resources

    @property
    def cuboids(self) -> CuboidStore:
        """The cuboid store holding the voxels."""
        return self._open().cuboids

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._server is not None

    def start(self) -> BossEmulator:
        """Open the store, bind the port and serve from a background thread; returns self.

        Raises
        ------
        RuntimeError
            If it is already running.
        OSError
            If the port cannot be bound (e.g. it is in use).
        """
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        backend = self._open()
        api = BossApi(backend, token=self.token, injector=self._injector)
        server = EmulatorServer((self.address, self._requested_port), api)
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"boss-emulator-{server.server_address[1]}",
            daemon=True,
        )
        self._server = server
        self._thread.start()
        backend.downsampler.start()  # type: ignore[union-attr]
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and release the port; a directory store is
        closed too. Safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=10)
        backend = self._backend
        if backend is not None:
            backend.downsampler.stop()  # type: ignore[union-attr]
            if self.store is not None:
                with self._lock:
                    backend.resources.close()
                    self._backend = None

    def __enter__(self) -> BossEmulator:
        return self if self.running else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- where it is --------------------------------------------------------------------------

    def _bound(self) -> EmulatorServer:
        if self._server is None:
            raise RuntimeError(
                "the BossEmulator is not running; call start() or use it in a with block"
            )
        return self._server

    @property
    def port(self) -> int:
        """The TCP port it listens on (running only)."""
        return int(self._bound().server_address[1])

    @property
    def host(self) -> str:
        """``address:port``, the ``host`` of an intern configuration (running only)."""
        return f"{self.address}:{self.port}"

    @property
    def protocol(self) -> str:
        """Always ``"http"``."""
        return "http"

    @property
    def url(self) -> str:
        """``http://address:port`` (running only)."""
        return f"{self.protocol}://{self.host}"

    def intern_config(self) -> dict[str, str]:
        """The configuration dict ``BossRemote`` takes: protocol, host and token."""
        return {"protocol": self.protocol, "host": self.host, "token": self.token}

    def remote(self) -> BossRemote:
        """A new intern ``BossRemote`` configured for this emulator (running only)."""
        from intern.remote.boss import BossRemote

        return BossRemote(self.intern_config())

    # -- faults, counters, jobs ---------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The faults injected now; assign a new `Faults` to change them (it resets the draw
        and the error window)."""
        return self._injector.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._injector.faults = faults

    @property
    def stats(self) -> EmulatorStats:
        """Counts of the requests answered so far."""
        return self._injector.stats()

    def reset_stats(self) -> None:
        """Set the request counters back to zero."""
        self._injector.reset()

    def purge(self, older_than: datetime.timedelta = PURGE_AFTER) -> list[str]:
        """Remove the resources deleted more than ``older_than`` ago, with their cuboids,
        metadata and id counters, as the BOSS's delete step function does a day and a half
        after a delete (boss-tools activities/delete_cuboid.py); their names are free again.
        Returns the lookup keys removed."""
        backend = self._open()
        purged = backend.resources.purge(older_than)
        for key in purged:
            if key.count("&") == 2:  # a channel's: its cuboids go with it
                backend.cuboids.delete_channel(key)
        return purged

    def wait_for_downsamples(self, timeout: float | None = None) -> bool:
        """Wait until no downsample is queued or running; whether that happened in time."""
        return self._open().downsampler.wait(timeout)  # type: ignore[union-attr]

    # -- data ---------------------------------------------------------------------------------

    def create_volume(
        self,
        collection: str,
        experiment: str,
        channels: Mapping[str, np.ndarray],
        origin: Sequence[int] = (0, 0, 0),
        *,
        voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
        voxel_unit: str = "nanometers",
        num_hierarchy_levels: int = 1,
        hierarchy_method: str = "anisotropic",
    ) -> None:
        """Create an experiment whose channels hold ``channels``, and its coordinate frame.

        The collection is created if it does not exist; the coordinate frame, named
        ``"{collection}_{experiment}"``, covers the arrays exactly, starting at ``origin``
        (which may be negative: the BOSS's frames may start below 0, though its cutout URLs
        cannot reach there). Arrays are ZYX, or TZYX for an experiment with a time axis; all
        must have the same shape. uint8 and uint16 arrays become image channels, uint64
        arrays annotation channels, whose sources are the image channels (a volume of labels
        alone has none, which the BOSS allows: `Quirks.annotation_without_source`). Works
        whether or not the server is running.

        Parameters
        ----------
        collection, experiment:
            Names; the experiment must not exist yet.
        channels:
            Channel name to uint8, uint16 or uint64 array.
        origin:
            (z, y, x) of the arrays' first voxel in the coordinate frame.
        voxel_size, voxel_unit:
            The frame's voxel size, (z, y, x), and its unit.
        num_hierarchy_levels, hierarchy_method:
            The experiment's resolution hierarchy.

        Raises
        ------
        ConfigError
            If an array, name or origin is invalid, or the experiment or frame exists.
        """
        arrays = _as_tzyx(channels)
        start = as_triple(origin, "origin")
        time_samples, *shape = next(iter(arrays.values())).shape
        box = Box.from_shape(shape, start)
        if len(voxel_size) != 3:
            raise ConfigError(f"voxel_size must be (z, y, x), got {voxel_size!r}", voxel_size)
        for name, kind in (
            (collection, "collection"),
            (experiment, "experiment"),
            *((c, "channel") for c in arrays),
        ):
            if not (isinstance(name, str) and 0 < len(name) <= 255 and NAME_PATTERN.match(name)):
                raise ConfigError(
                    f"{kind} name {name!r} is invalid: the BOSS takes 1 to 255 letters, digits, "
                    "'_' and '-'",
                    name,
                )
        backend = self._open()
        tree = backend.resources
        frame = f"{collection}_{experiment}"
        try:
            try:
                tree.get(ResourcePath(collection=collection))
            except BossError:
                tree.create(ResourcePath(collection=collection), {})
            tree.create(ResourcePath(coord=frame), _frame_body(box, voxel_size, voxel_unit))
            tree.create(
                ResourcePath(collection=collection, experiment=experiment),
                {
                    "coord_frame": frame,
                    "num_time_samples": time_samples,
                    "num_hierarchy_levels": num_hierarchy_levels,
                    "hierarchy_method": hierarchy_method,
                    # the BOSS stores null without one, which intern 1.4.2 cannot parse
                    "time_step_unit": "seconds",
                },
            )
            # Image channels first: the annotation channels name them as their sources, which
            # a BOSS that requires sources (Quirks.annotation_without_source off) asks for.
            images = [name for name, array in arrays.items() if array.dtype != np.uint64]
            for name, array in sorted(arrays.items(), key=lambda item: item[0] not in images):
                body: dict[str, object] = {"datatype": array.dtype.name, "type": "image"}
                if name not in images:
                    body.update(type="annotation", sources=images)
                path = ResourcePath(collection=collection, experiment=experiment, channel=name)
                tree.create(path, body)
                key = tree.resolve(path).lookup_key
                cuboids.write(backend.cuboids, key, 0, box, array)
        except (BossError, ServerError) as error:
            raise ConfigError(f"cannot create {collection}/{experiment}: {error}") from error

    def channel_array(
        self,
        collection: str,
        experiment: str,
        channel: str,
        *,
        resolution: int | None = None,
        iso: bool = False,
    ) -> np.ndarray:
        """A channel's whole volume at ``resolution`` (its base resolution by default), a
        (T, Z, Y, X) array over its coordinate frame as boss-tools shrinks it per level.

        Raises
        ------
        ChannelError
            If the collection, experiment or channel does not exist.
        """
        backend = self._open()
        path = ResourcePath(collection=collection, experiment=experiment, channel=channel)
        try:
            request = ChannelRequest(backend.resources.resolve(path))
        except BossError as error:
            raise ChannelError(error.message, channel) from error
        hierarchy = request.hierarchy
        level = hierarchy.base_resolution if resolution is None else resolution
        start_xyz, stop_xyz = hierarchy.downsample_frame(level, iso)
        box = Box(tuple(reversed(start_xyz)), tuple(reversed(stop_xyz)))
        samples = request.experiment["num_time_samples"]
        storage_iso = iso and hierarchy.uses_iso_keys(level, iso)
        return cuboids.read(
            backend.cuboids,
            request.lookup_key,
            level,
            box,
            request.dtype,
            time_range=(0, samples),
            iso=storage_iso,
        )


def _as_tzyx(channels: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not channels:
        raise ConfigError("channels must name at least one array, got none", channels)
    arrays = {}
    for name, array in channels.items():
        array = np.asarray(array)
        if array.ndim not in (3, 4) or 0 in array.shape:
            raise ConfigError(
                f"channel {name!r} must be a non-empty ZYX or TZYX array, got shape {array.shape}",
                array.shape,
            )
        if array.dtype.name not in DATATYPES:
            raise ConfigError(
                f"channel {name!r} has dtype {array.dtype}; the BOSS stores {', '.join(DATATYPES)}",
                array.dtype,
            )
        arrays[name] = array if array.ndim == 4 else array[np.newaxis]
    shapes = {name: array.shape for name, array in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ConfigError(
            f"all channels must have the same (T, Z, Y, X) shape, got {shapes}", shapes
        )
    return arrays


def _frame_body(box: Box, voxel_size: Sequence[float], voxel_unit: str) -> dict[str, Any]:
    body: dict[str, Any] = {"voxel_unit": voxel_unit}
    for index, axis in enumerate("zyx"):
        body[f"{axis}_start"] = box.start[index]
        body[f"{axis}_stop"] = box.stop[index]
        body[f"{axis}_voxel_size"] = voxel_size[index]
    return body
