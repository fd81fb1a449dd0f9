"""A local BOSS API emulator: the subset of BOSS API v1 that intern's ``BossRemote`` uses.

It serves, over plain HTTP on loopback, the project service (collections, coordinate frames,
experiments, channels: create, get, update, delete, list) and the volume service (blosc
cutouts: GET, POST and the to-black PUT, at resolution 0), with token authentication, the
BOSS's status codes and JSON error bodies, and fault injection for testing retries and
timeouts (`Faults`: failing a fraction of cutouts, for a while or for good; latency; a
frozen server). The unmodified intern client talks to it like to ``api.bossdb.io``.

Writes merge as on the BOSS: a cutout POST stores only its non-zero voxels, zeros leave what
is stored alone, and only the to-black PUT clears voxels (see ``_emulator_cutout``).

>>> import numpy as np
>>> volume = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8)
>>> with BossEmulator(token="secret-token") as boss:
...     boss.create_volume("coll", "exp", {"ch0": volume})
...     remote = boss.remote()
...     channel = remote.get_channel("ch0", "coll", "exp")
...     cutout = remote.get_cutout(channel, 0, [2, 6], [0, 8], [1, 3], parallel=False)
>>> bool((cutout == volume[1:3, 0:8, 2:6]).all())
True

Run it from a shell with ``python -m ndframework.boss.emulator --port 8000 --token T --demo``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import blosc
import numpy as np

from ..errors import ChannelError, ConfigError
from ..geometry import Box, as_triple
from ._emulator_api import BossApi, EmulatorStats, Faults
from ..synthetic import demo_volume
from ._emulator_http import EmulatorServer
from ._emulator_model import DATATYPES, ApiError, check_name
from ._emulator_store import Store

if TYPE_CHECKING:
    from intern.remote.boss import BossRemote

__all__ = [
    "BossEmulator",
    "EmulatorStats",
    "Faults",
    "DEFAULT_MAX_CUTOUT_BYTES",
    "TOKEN_ENV_VAR",
    "demo_volume",
    "main",
]

DEFAULT_MAX_CUTOUT_BYTES = 520 * 2**20
"""The BOSS's limit on one cutout, uncompressed: 520 MiB."""

TOKEN_ENV_VAR = "NDFRAMEWORK_BOSS_TOKEN"
"""Environment variable `main` reads the API token from when ``--token`` is not given."""


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


@attrs.define(repr=False)
class BossEmulator:
    """An HTTP server on loopback that speaks the BOSS API v1 as intern uses it.

    Constructing it does no I/O; `start` (or ``with``) binds the port and serves from a
    background thread, `stop` closes it. Resources and data live in memory and survive a
    stop and start.

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
        Largest cutout, uncompressed, that one GET or POST may move; larger ones get
        HTTP 413 as from the BOSS. Defaults to the BOSS's 520 MiB.
    faults:
        Faults to inject from the start; change them any time through `faults`.
    """

    token: str = attrs.field(validator=_check_token)
    _requested_port: int = attrs.field(default=0, alias="port", validator=_check_port)
    address: str = "127.0.0.1"
    max_cutout_bytes: int = attrs.field(
        default=DEFAULT_MAX_CUTOUT_BYTES, validator=_check_max_bytes
    )
    _initial_faults: Faults = attrs.field(
        factory=Faults, alias="faults", validator=attrs.validators.instance_of(Faults)
    )
    _api: BossApi = attrs.field(init=False)
    _server: EmulatorServer | None = attrs.field(default=None, init=False)
    _thread: threading.Thread | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self._api = BossApi(
            Store(),
            token=self.token,
            max_cutout_bytes=self.max_cutout_bytes,
            faults=self._initial_faults,
        )

    def __repr__(self) -> str:
        where = self.url if self.running else "not running"
        return f"<BossEmulator {where}>"

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._server is not None

    def start(self) -> BossEmulator:
        """Bind the port and serve from a background thread; returns self.

        Raises
        ------
        RuntimeError
            If it is already running.
        OSError
            If the port cannot be bound (e.g. it is in use).
        """
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        server = EmulatorServer((self.address, self._requested_port), self._api)
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"boss-emulator-{server.server_address[1]}",
            daemon=True,
        )
        self._server = server
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and release the port. Safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=10)

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

    # -- faults and counters ------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The faults injected now; assign a new `Faults` to change them (it resets the draw
        and the error window)."""
        return self._api.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._api.faults = faults

    @property
    def stats(self) -> EmulatorStats:
        """Counts of the requests answered so far."""
        return self._api.stats()

    def reset_stats(self) -> None:
        """Set the request counters back to zero."""
        self._api.reset_stats()

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
    ) -> None:
        """Create an experiment whose channels hold ``channels``, and its coordinate frame.

        The collection is created if it does not exist; the coordinate frame, named
        ``"{collection}_{experiment}"``, covers the arrays exactly, starting at ``origin``.
        Arrays are ZYX, or TZYX for an experiment with a time axis; all must have the same
        shape. uint8 and uint16 arrays become image channels, uint64 arrays annotation
        channels. Works whether or not the server is running.

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

        Raises
        ------
        ConfigError
            If an array, name or origin is invalid, or the experiment or frame exists.
        """
        arrays = _as_tzyx(channels)
        start = as_triple(origin, "origin", minimum=0)
        time_samples, *shape = next(iter(arrays.values())).shape
        box = Box.from_shape(shape, start)
        if len(voxel_size) != 3:
            raise ConfigError(f"voxel_size must be (z, y, x), got {voxel_size!r}", voxel_size)
        frame = f"{collection}_{experiment}"
        store = self._api.store
        try:
            for name, kind in (
                (collection, "collection"),
                (experiment, "experiment"),
                *((c, "channel") for c in arrays),
            ):
                check_name(name, kind)
            if collection not in store.list_collections():
                store.create_collection(collection, {})
            store.create_coord_frame(frame, _frame_body(box, voxel_size, voxel_unit))
            store.create_experiment(
                collection, experiment, {"coord_frame": frame, "num_time_samples": time_samples}
            )
            for name, array in arrays.items():
                kind = "annotation" if array.dtype == np.uint64 else "image"
                store.create_channel(
                    collection, experiment, name, {"datatype": array.dtype.name, "type": kind}
                )
                volume = store.cutout_target(collection, experiment, name).volume
                volume.write(range(time_samples), box, array)
        except ApiError as error:
            raise ConfigError(
                f"cannot create {collection}/{experiment}: {error.message}"
            ) from error

    def channel_array(self, collection: str, experiment: str, channel: str) -> np.ndarray:
        """A copy of a channel's whole volume, (T, Z, Y, X) over its coordinate frame.

        Raises
        ------
        ChannelError
            If the collection, experiment or channel does not exist.
        """
        try:
            return self._api.store.cutout_target(collection, experiment, channel).volume.snapshot()
        except ApiError as error:
            raise ChannelError(error.message, channel) from error


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


# -- command line ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ndframework.boss.emulator",
        description="Serve a local BOSS API emulator that intern's BossRemote can use.",
    )
    parser.add_argument(
        "--address", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8000,
        help="TCP port, 0 for any free port (default: %(default)s)",
    )
    parser.add_argument("--token", help=f"API token clients must send (default: ${TOKEN_ENV_VAR})")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="seed collection 'demo', experiment 'synthetic', channels 'em' and 'mask'",
    )
    parser.add_argument(
        "--max-cutout-mib",
        type=float,
        default=DEFAULT_MAX_CUTOUT_BYTES / 2**20,
        help="largest cutout, uncompressed, in MiB (default: %(default)s)",
    )
    faults = parser.add_argument_group("fault injection")
    faults.add_argument(
        "--error-rate", type=float, default=0.0, help="fraction of cutout requests that fail"
    )
    faults.add_argument(
        "--error-status", type=int, default=503, help="HTTP status of a failure (default: 503)"
    )
    faults.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    faults.add_argument("--seed", type=int, default=0, help="seed of the failure draw (default: 0)")
    faults.add_argument(
        "--error-window",
        type=float,
        default=None,
        help="seconds from the first cutout request during which --error-rate applies "
        "(default: always)",
    )
    faults.add_argument(
        "--frozen",
        action="store_true",
        help="accept connections and never answer, as a hung server does",
    )
    return parser


def _print_banner(
    emulator: BossEmulator, token_source: str, demo_shape: tuple[int, ...] | None
) -> None:
    # Say where the token comes from, never what it is.
    print(f"BOSS emulator serving at {emulator.url}")
    print(
        f"intern config: protocol = http, host = {emulator.host}, "
        f"token = the value of {token_source}"
    )
    if demo_shape is not None:
        print(
            "demo data: collection 'demo', experiment 'synthetic', channels 'em' (uint8) and "
            f"'mask' (uint16), (z, y, x) = {demo_shape}"
        )
    print("Press Ctrl-C to stop.", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the emulator until interrupted (Ctrl-C); returns the exit status.

    The token comes from ``--token`` or the ``NDFRAMEWORK_BOSS_TOKEN`` environment
    variable; it is never printed.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    token = args.token or os.environ.get(TOKEN_ENV_VAR)
    if not token:
        parser.error(f"give the API token with --token or the {TOKEN_ENV_VAR} environment variable")
    try:
        faults = Faults(
            error_rate=args.error_rate,
            status=args.error_status,
            latency=args.latency,
            seed=args.seed,
            error_window=args.error_window,
            frozen=args.frozen,
        )
        emulator = BossEmulator(
            token,
            port=args.port,
            address=args.address,
            max_cutout_bytes=int(args.max_cutout_mib * 2**20),
            faults=faults,
        )
    except ValueError as error:  # ConfigError is a ValueError too
        parser.error(str(error))
    demo_shape = None
    if args.demo:
        demo = demo_volume()
        emulator.create_volume("demo", "synthetic", demo)
        demo_shape = demo["em"].shape
    try:
        emulator.start()
    except OSError as error:
        print(f"error: cannot listen on {args.address}:{args.port}: {error}", file=sys.stderr)
        return 1
    _print_banner(emulator, "--token" if args.token else f"${TOKEN_ENV_VAR}", demo_shape)
    try:
        while emulator.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
